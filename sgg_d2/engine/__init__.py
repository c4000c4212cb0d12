"""Training and evaluation entry points (``setup``/``main`` of ``train_net.py``, trainer)."""

from .launch import main, setup
from .trainer import SceneGraphTrainer

__all__ = ["SceneGraphTrainer", "main", "setup"]
