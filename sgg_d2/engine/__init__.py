"""Training and evaluation entry points (``setup``/``main`` of ``train_net.py``, trainer)."""

from .launch import load_config, main, setup
from .predictor import SceneGraphPredictor
from .trainer import SceneGraphTrainer

__all__ = ["SceneGraphPredictor", "SceneGraphTrainer", "load_config", "main", "setup"]
