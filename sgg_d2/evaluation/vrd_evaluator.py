"""``VRDEvaluator``: VRD relationship and phrase detection (Lu et al. 2016).

R@N (N in 50, 100) at k in (1, 10, 70) predicates per pair, greedy one-to-one matching
in score order, recall summed over the dataset; see :mod:`.functional.vrd`.
"""

from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from detectron2.config import configurable

from .base import ObjectOutputs, RelationEvaluatorBase
from .functional.candidates import select_pair_predicates
from .functional.matching import GroundTruthGraph, ImagePrediction
from .functional.vrd import VRD_CRITERIA, aggregate_vrd_recall, match_vrd_image
from .prediction_io import numpy_candidates
from .tables import metric_grid_table

__all__ = ["VRDEvaluator"]


class VRDEvaluator(RelationEvaluatorBase):
    """Relationship / phrase detection recall on a VRD-style dataset.

    Metric names: ``"<rel|phr>_k<k>_R@<N>"``, e.g. ``"rel_k1_R@50"`` (relationship
    detection, one predicate per pair, top 50), in percent.
    """

    kind = "vrd"

    @configurable
    def __init__(
        self,
        dataset_name: str,
        output_dir: Optional[str] = None,
        recall_ns: Sequence[int] = (50, 100),
        predicate_ks: Sequence[int] = (1, 10, 70),
        iou_threshold: float = 0.5,
    ):
        """
        Args:
            dataset_name: registered dataset (ground truth by ``image_id``).
            output_dir: where the metrics JSON and compact predictions are written.
            recall_ns: N of R@N, the number of top-scored candidates kept per image.
            predicate_ks: k, the predicates each pair may contribute; a k >= P means all.
            iou_threshold: minimum IoU (relationship: both boxes; phrase: union box).

        Raises:
            ValueError: if ``recall_ns`` or ``predicate_ks`` are not positive integers.
        """
        self._ns = tuple(sorted(int(n) for n in recall_ns))
        self._pred_ks = tuple(sorted(int(k) for k in predicate_ks))
        if not self._ns or min(self._ns) <= 0 or not self._pred_ks or min(self._pred_ks) <= 0:
            raise ValueError(
                f"recall_ns {tuple(recall_ns)} and predicate_ks {tuple(predicate_ks)} must be "
                "non-empty positive integers"
            )
        super().__init__(dataset_name, output_dir, iou_threshold)

    def settings(self) -> Dict[str, Any]:
        return {
            "recall_ns": list(self._ns),
            "predicate_ks": list(self._pred_ks),
            "iou_threshold": self._iou_threshold,
        }

    def _compact(self, image_id, outputs: ObjectOutputs, gt: GroundTruthGraph):
        rel = outputs.relations
        candidates = {}
        for k in self._pred_ks:
            per_pair = k if k < self.num_predicates else None
            chosen = select_pair_predicates(
                rel.pair_indices,
                rel.predicate_scores,
                outputs.object_scores,
                max(self._ns),
                per_pair=per_pair,
            )
            candidates[f"k{k}"] = numpy_candidates(chosen)
        return outputs.record(image_id, candidates)

    def _match(self, record: Dict[str, Any], gt: GroundTruthGraph):
        candidates = {
            f"k{k}": (
                record["candidates"][f"k{k}"]["pairs"],
                record["candidates"][f"k{k}"]["predicates"],
            )
            for k in self._pred_ks
        }
        prediction = ImagePrediction(record["boxes"], record["labels"], candidates)
        return match_vrd_image(gt, prediction, self._iou_threshold)

    def _summarize(self, gts: List[GroundTruthGraph], matches: List[Dict[str, np.ndarray]]):
        num_gt = [len(gt.relations) for gt in gts]
        metrics = aggregate_vrd_recall(num_gt, matches, self._ns)
        families = [f"{c}_k{k}_" for c in VRD_CRITERIA for k in self._pred_ks]
        table = (
            f"{len(gts)} images, {sum(num_gt)} GT triplets (rel = relationship, phr = phrase "
            "detection; k = predicates per pair; dataset-level recall)\n"
            + metric_grid_table(metrics, families, [f"R@{n}" for n in self._ns])
        )
        details = {"num_gt_triplets": sum(num_gt)}
        return metrics, details, table
