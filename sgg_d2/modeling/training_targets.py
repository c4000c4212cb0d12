"""What the ROI heads add to a batch's context inputs in training
(:class:`~sgg_d2.modeling.context.build.TrainingTargets`), from the per-image pair sample."""

from typing import Dict, List

import torch

from .context.build import TrainingTargets
from .relation.sampling import batch_pair_predicates, global_gt_index, object_targets

__all__ = ["block_offsets", "training_targets"]


def block_offsets(sizes: List[int], device) -> torch.Tensor:
    """(len(sizes),) int64 start of each block when blocks of ``sizes`` are concatenated."""
    return torch.tensor([0] + list(sizes[:-1]), device=device).cumsum(0)


def training_targets(
    boxes, obj_to_gt, targets, sampling: Dict[str, list], relations, anchors: bool, predicates: bool
) -> TrainingTargets:
    """GT class and GT index of each object, the GT instances, and from ``sampling`` (the
    ROI heads' per-image sample: ``all_pairs``, ``all_labels``, ``pair_index``, ``ce_mask``,
    ``anchors``) every candidate pair made global, the L0 mask and, with ``anchors``, the
    contrastive anchors; with ``predicates`` (a loss asks for them) every GT predicate of
    each candidate pair from ``relations`` (per image (G_i, 3)).

    Args:
        boxes: per image (N_i, 4) object boxes; obj_to_gt: per image (N_i,) GT index or -1;
            targets: per image GT ``Instances``.
    """
    device = boxes[0].device if boxes else torch.device("cpu")
    offsets = block_offsets([len(b) for b in boxes], device)
    all_pairs = sampling["all_pairs"]
    starts = block_offsets([len(p) for p in all_pairs], device)
    return TrainingTargets(
        obj_gt_classes=object_targets(obj_to_gt, targets),
        obj_gt_index=global_gt_index(obj_to_gt, targets),
        gt_instances=targets,
        all_pairs=torch.cat([p + o for p, o in zip(all_pairs, offsets)]),
        all_pair_labels=torch.cat(sampling["all_labels"]),
        num_all_pairs=[len(p) for p in all_pairs],
        pair_index=torch.cat([k + s for k, s in zip(sampling["pair_index"], starts)]),
        ce_mask=torch.cat(sampling["ce_mask"]),
        contrastive_anchors=torch.cat(sampling["anchors"]) if anchors else None,
        all_pair_predicates=(
            batch_pair_predicates(all_pairs, obj_to_gt, relations, targets) if predicates else None
        ),
    )
