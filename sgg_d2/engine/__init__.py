"""Training and evaluation entry points (``setup``/``main`` of ``train_net.py``, trainer),
inference (``SceneGraphPredictor``) and strict weight loading (``StrictCheckpointer``)."""

from .launch import load_config, main, setup
from .predictor import SceneGraphPredictor, load_inference_config
from .trainer import SceneGraphTrainer
from .weights import StrictCheckpointer, WeightsMismatchError

__all__ = [
    "SceneGraphPredictor",
    "SceneGraphTrainer",
    "StrictCheckpointer",
    "WeightsMismatchError",
    "load_config",
    "load_inference_config",
    "main",
    "setup",
]
