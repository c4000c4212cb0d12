"""``OpenImagesSGEvaluator``: the OpenImages relationship protocol (RelDN challenge).

R@50 (dataset-level), AP per predicate for relationship and phrase detection (strict
overlap > 0.5, no fallback to the second-best GT), mAP, wmAP and
score_wtd = 0.2 R@50 + 0.4 wmAP_rel + 0.4 wmAP_phr; see :mod:`.functional.openimages`.
"""

from typing import Any, Dict, List, Optional

import numpy as np
from detectron2.config import configurable
from detectron2.utils.logger import create_small_table

from .base import ObjectOutputs, RelationEvaluatorBase
from .functional.candidates import select_pair_predicates
from .functional.matching import GroundTruthGraph
from .functional.openimages import aggregate_openimages, match_openimages_image
from .prediction_io import numpy_candidates
from .tables import per_predicate_json, per_predicate_table

__all__ = ["OpenImagesSGEvaluator"]


class OpenImagesSGEvaluator(RelationEvaluatorBase):
    """R@50, mAP_rel, mAP_phr, wmAP_rel, wmAP_phr, score_wtd and per-predicate AP."""

    kind = "openimages_sg"

    @configurable
    def __init__(
        self,
        dataset_name: str,
        output_dir: Optional[str] = None,
        top_k_per_pair: int = 2,
        max_detections: int = 100,
        min_score: float = 1e-5,
        recall_k: int = 50,
        iou_threshold: float = 0.5,
    ):
        """
        Args:
            dataset_name: registered dataset (ground truth by ``image_id``).
            output_dir: where the metrics JSON and compact predictions are written.
            top_k_per_pair: predicates each pair contributes (protocol: 2).
            max_detections: candidates kept per image (protocol: 100).
            min_score: candidates with score <= this are dropped (protocol: 1e-5).
            recall_k: K of the recall (protocol: 50); must be <= ``max_detections``.
            iou_threshold: recall needs IoU >= it for both boxes; AP needs overlap > it.

        Raises:
            ValueError: on non-positive counts or ``recall_k > max_detections``.
        """
        if min(top_k_per_pair, max_detections, recall_k) <= 0 or recall_k > max_detections:
            raise ValueError(
                f"need positive top_k_per_pair ({top_k_per_pair}), max_detections "
                f"({max_detections}) and recall_k ({recall_k}) <= max_detections"
            )
        super().__init__(dataset_name, output_dir, iou_threshold)
        self._per_pair = int(top_k_per_pair)
        self._max_detections = int(max_detections)
        self._min_score = float(min_score)
        self._recall_k = int(recall_k)

    def settings(self) -> Dict[str, Any]:
        return {
            "top_k_per_pair": self._per_pair,
            "max_detections": self._max_detections,
            "min_score": self._min_score,
            "recall_k": self._recall_k,
            "iou_threshold": self._iou_threshold,
        }

    def _compact(self, image_id, outputs: ObjectOutputs, gt: GroundTruthGraph):
        rel = outputs.relations
        per_pair = self._per_pair if self._per_pair < self.num_predicates else None
        chosen = select_pair_predicates(
            rel.pair_indices,
            rel.predicate_scores,
            outputs.object_scores,
            self._max_detections,
            per_pair=per_pair,
            min_score=self._min_score,
        )
        return outputs.record(image_id, {"top": numpy_candidates(chosen)})

    def _match(self, record: Dict[str, Any], gt: GroundTruthGraph):
        top = record["candidates"]["top"]
        matches = match_openimages_image(
            gt,
            record["boxes"],
            record["labels"],
            top["pairs"],
            top["predicates"],
            recall_iou=self._iou_threshold,
            ap_overlap=self._iou_threshold,
        )
        # AP pools detections over the dataset: keep their scores and predicates.
        matches["scores"] = top["scores"]
        matches["predicates"] = top["predicates"]
        return matches

    def _summarize(self, gts: List[GroundTruthGraph], matches: List[Dict[str, np.ndarray]]):
        metrics, per_predicate = aggregate_openimages(
            [gt.relations[:, 2] for gt in gts],
            [(m["scores"], m["predicates"]) for m in matches],
            matches,
            self.num_predicates,
            recall_k=self._recall_k,
        )
        details = {
            "num_gt_triplets": int(per_predicate["num_gt"].sum()),
            "per_predicate": per_predicate_json(self._predicate_classes, per_predicate),
        }
        table = (
            f"{len(gts)} images\n"
            + create_small_table(metrics)
            + "\nPer-predicate AP (relationship / phrase detection):\n"
            + per_predicate_table(
                self._predicate_classes, per_predicate, ["num_gt", "AP_rel", "AP_phr"]
            )
        )
        return metrics, details, table
