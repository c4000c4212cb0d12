"""Registry of extra relation losses that any context model can be trained with."""

from typing import Dict, List

import torch
from detectron2.utils.registry import Registry

__all__ = ["RELATION_LOSS_REGISTRY", "apply_relation_losses", "build_relation_losses"]

RELATION_LOSS_REGISTRY = Registry("SGG_RELATION_LOSS")
RELATION_LOSS_REGISTRY.__doc__ = """
Extra losses on the relation logits, added to the cross-entropy for any context model
(e.g. RelDN's graphical contrastive losses). Names listed in
``MODEL.SGG.EXTRA_RELATION_LOSSES`` are built as ``RELATION_LOSS_REGISTRY.get(name)(cfg)``
(an ``nn.Module``, so that it may hold parameters) and called in training as

    loss(rel_logits, pair_labels, inputs) -> Dict[str, Tensor]

with ``rel_logits`` (R, P + 1) (background at 0) of the sampled pairs, ``pair_labels``
(R,) int64 (0 = background, p + 1 = predicate p) and ``inputs`` the ``ContextInputs``
(``pairs``, ``num_pairs``, and in ``training``: ``obj_gt_classes``, ``obj_gt_index`` ...).
Each returned entry is one named, already weighted loss.
"""


def build_relation_losses(cfg) -> List[torch.nn.Module]:
    """The extra losses named in ``cfg.MODEL.SGG.EXTRA_RELATION_LOSSES``."""
    return [RELATION_LOSS_REGISTRY.get(name)(cfg) for name in cfg.MODEL.SGG.EXTRA_RELATION_LOSSES]


def apply_relation_losses(losses, rel_logits, pair_labels, inputs) -> Dict[str, torch.Tensor]:
    """Call each loss of ``losses`` and merge their dicts (names must not collide)."""
    out: Dict[str, torch.Tensor] = {}
    for loss in losses:
        for name, value in loss(rel_logits, pair_labels, inputs).items():
            if name in out:
                raise KeyError(f"two extra relation losses return {name!r}")
            out[name] = value
    return out
