"""``SOLVER.OPTIMIZER``: Detectron2's SGD, or AdamW with the same parameter groups."""

import torch
from detectron2.solver import build_optimizer as build_sgd_optimizer
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping

__all__ = ["OPTIMIZERS", "build_optimizer"]

OPTIMIZERS = ("SGD", "ADAMW")


def build_optimizer(cfg, model: torch.nn.Module) -> torch.optim.Optimizer:
    """The optimizer named by ``cfg.SOLVER.OPTIMIZER`` over ``model``'s trainable parameters.

    ``"SGD"`` is exactly Detectron2's ``build_optimizer``. ``"ADAMW"`` uses the same
    parameter groups (``get_default_optimizer_params``: ``BASE_LR``, ``WEIGHT_DECAY_NORM``,
    ``BIAS_LR_FACTOR``, ``WEIGHT_DECAY_BIAS``), ``torch.optim.AdamW`` with ``SOLVER.BETAS``
    and decoupled ``WEIGHT_DECAY``, and Detectron2's ``SOLVER.CLIP_GRADIENTS``. The LR
    schedule (warmup, steps) is Detectron2's for both.

    Raises:
        ValueError: naming ``SOLVER.OPTIMIZER`` when it is not one of :data:`OPTIMIZERS`.
    """
    name = str(cfg.SOLVER.OPTIMIZER).upper()
    if name == "SGD":
        return build_sgd_optimizer(cfg, model)
    if name != "ADAMW":
        raise ValueError(
            f"SOLVER.OPTIMIZER must be one of {OPTIMIZERS}, got {cfg.SOLVER.OPTIMIZER!r}"
        )
    params = get_default_optimizer_params(
        model,
        base_lr=cfg.SOLVER.BASE_LR,
        weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
        bias_lr_factor=cfg.SOLVER.BIAS_LR_FACTOR,
        weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS,
    )
    return maybe_add_gradient_clipping(cfg, torch.optim.AdamW)(
        params,
        lr=cfg.SOLVER.BASE_LR,
        betas=tuple(cfg.SOLVER.BETAS),
        weight_decay=cfg.SOLVER.WEIGHT_DECAY,
    )
