"""Scene-graph recall on a subset of images and/or of predicate classes.

Computed from the evaluator's per-image matches (the first-match rank of every GT
triplet), through the same :func:`~.functional.recall.aggregate_scene_graph_recall`
as the full metrics; nothing is re-matched. Definitions, for a subset (I, Q) of images I
and predicate classes Q (either may be "all"):

- ``R@K[subset]``: over the images of I that have at least one GT triplet whose
  predicate is in Q, the mean of the per-image recall of those triplets (the share of
  them matched within the image's top-K predictions; the top-K list itself is the
  model's, unrestricted: a prediction of a predicate outside Q still takes a slot).
- ``mR@K[subset]``: for each class of Q with at least one GT triplet in the images of I,
  its recall averaged over the images of I containing it; then the mean over those
  classes. Unlike the full-dataset mR@K (which counts a class absent from the test set
  as 0, the Visual Genome protocol), classes absent from the subset are left out; the
  two agree whenever every class occurs.
- ``ng-R@K[subset]`` / ``ng-mR@K[subset]``: the same with the no-graph-constraint ranks.

A subset with no GT triplet at all has no metrics (an empty dict).
"""

from typing import Dict, Optional, Sequence

import numpy as np

from .functional.recall import CRITERION_PREFIX, aggregate_scene_graph_recall

__all__ = ["subset_recall"]


def subset_recall(
    gt_predicates: Sequence[np.ndarray],
    ranks: Sequence[Dict[str, np.ndarray]],
    ks: Sequence[int],
    num_predicates: int,
    images: Optional[np.ndarray] = None,
    predicates: Optional[Sequence[int]] = None,
) -> Dict[str, float]:
    """R@K / mR@K (and ng- variants) of a subset of images and predicate classes.

    Args:
        gt_predicates: per image, (G_i,) int64 GT predicates.
        ranks: per image, name -> (G_i,) first-match ranks (``"gc"``, ``"ng"``), as
            returned by :func:`~.functional.recall.match_scene_graph_image`.
        ks: the K values.
        num_predicates: P, number of predicate classes.
        images: (n,) bool, which images are in the subset; None means all.
        predicates: predicate class indices in the subset; None means all.

    Returns:
        ``{"R@K": %, "mR@K": %, "ng-R@K": %, "ng-mR@K": %}`` for each K (families whose
        ranks are present), or ``{}`` when the subset holds no GT triplet.

    Raises:
        ValueError: ``images`` of the wrong length, or a predicate index outside [0, P).
    """
    n = len(gt_predicates)
    keep_image = np.ones(n, dtype=bool) if images is None else np.asarray(images, dtype=bool)
    if keep_image.shape != (n,):
        raise ValueError(f"images mask has shape {keep_image.shape}, expected ({n},)")
    in_q = np.ones(num_predicates, dtype=bool)
    if predicates is not None:
        chosen = np.asarray(list(predicates), dtype=np.int64)
        bad = chosen[(chosen < 0) | (chosen >= num_predicates)]
        if len(bad):
            raise ValueError(f"predicate indices {bad.tolist()} outside [0, {num_predicates})")
        in_q[:] = False
        in_q[chosen] = True
    sub_predicates, sub_ranks = [], []
    for i in np.flatnonzero(keep_image):
        gt = np.asarray(gt_predicates[i], dtype=np.int64)
        keep = in_q[gt]
        sub_predicates.append(gt[keep])
        sub_ranks.append({name: np.asarray(r)[keep] for name, r in ranks[i].items()})
    if sum(len(p) for p in sub_predicates) == 0:
        return {}
    full, per_predicate = aggregate_scene_graph_recall(
        sub_predicates, sub_ranks, ks, num_predicates
    )
    present = (per_predicate["num_images"] > 0) & in_q
    metrics: Dict[str, float] = {}
    for prefix in CRITERION_PREFIX.values():
        for k in ks:
            if f"{prefix}R@{k}" not in full:
                continue
            metrics[f"{prefix}R@{k}"] = full[f"{prefix}R@{k}"]
            per_class = per_predicate[f"{prefix}R@{k}"]  # percent, 0 where absent
            metrics[f"{prefix}mR@{k}"] = float(per_class[present].mean())
    return metrics
