"""``SceneGraphEvaluator``: the Visual Genome protocol (SGDet / SGCls / PredCls).

Metrics (percent): R@K, ng-R@K, mR@K, ng-mR@K, zsR@K, ng-zsR@K, F@K and ng-F@K (harmonic
mean of R@K and mR@K), ``mR@K[head]`` / ``mR@K[body]`` / ``mR@K[tail]`` (predicate groups by
training count, :mod:`.predicate_groups`) and, in the GT-box modes (PredCls, SGCls), A@K;
per-predicate recall in the log table and the JSON file. The protocol is documented in
``docs/EVALUATION.md`` and :mod:`.functional.recall`.

Subsets (:mod:`.subsets` defines R@K / mR@K on a subset of images and predicates,
:mod:`.metadata_subsets` reads the named ones): when the dataset's metadata has
``predicate_groups`` (group name -> predicate names) and/or ``image_tags`` (image_id ->
list of tags), the results also hold ``R@K[name]`` and ``mR@K[name]`` for every group (all
images, the group's predicates) and every tag (the tagged images, all predicates);
:meth:`SceneGraphEvaluator.evaluate_subset` evaluates any other subset after
:meth:`~.base.RelationEvaluatorBase.evaluate`.
"""

import logging
import os
from typing import Any, Dict, Hashable, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.utils import comm

from ..config.defaults import SGG_MODES
from .base import ObjectOutputs, RelationEvaluatorBase
from .functional.candidates import (
    overlapping_pairs,
    select_graph_constrained,
    select_pair_predicates,
)
from .functional.many_to_many import match_scene_graph_images
from .functional.matching import GroundTruthGraph
from .functional.recall import aggregate_scene_graph_recall, f_scores, zero_shot_mask
from .ground_truth import as_triplets, triplet_classes
from .metadata_subsets import (
    Subset,
    metadata_subsets,
    predicate_indices,
    subset_details,
    subset_metrics,
    subset_table,
)
from .predicate_groups import (
    GROUP_NAMES,
    PYSGG_RULE,
    PredicateGroupRule,
    TrainingGroups,
    check_subset_names,
    load_training_groups,
    rule_from_config,
)
from .prediction_io import numpy_candidates
from .subsets import subset_recall
from .tables import metric_grid_table, ordered, per_predicate_json, per_predicate_table

__all__ = ["SceneGraphEvaluator", "GT_BOX_MODES"]

logger = logging.getLogger(__name__)

# Modes where the model's instances are the image's annotations, in dataset order.
GT_BOX_MODES = ("predcls", "sgcls")
FAMILIES = ["R", "mR", "F", "zsR", "ng-R", "ng-mR", "ng-F", "ng-zsR", "A"]
_NOT_LOADED = object()  # SceneGraphEvaluator._groups before the first lookup


class SceneGraphEvaluator(RelationEvaluatorBase):
    """R@K / ng-R@K / mR@K / ng-mR@K / zsR@K / F@K / A@K evaluator of a scene-graph dataset.

    ``mode`` only changes what is reported and which pairs compete:

    - ``None``: metrics that do not depend on the mode (all but A@K), all pairs compete.
    - ``"predcls"`` / ``"sgcls"``: additionally A@K (pair accuracy), which requires the
      output instances to be the image's annotations in dataset order (same count).
    - ``"sgdet"``: with ``sgdet_overlap_only``, only pairs whose boxes overlap (IoU > 0)
      compete (a protocol variant, off by default).

    Subsets: ``R@K[name]`` / ``mR@K[name]`` from the dataset metadata's
    ``predicate_groups`` and ``image_tags`` (module docstring), and
    :meth:`evaluate_subset` for any subset. Long tail: ``mR@K[head]``, ``mR@K[body]``,
    ``mR@K[tail]`` from the training split's predicate counts (:mod:`.predicate_groups`).
    """

    kind = "scene_graph"

    @configurable
    def __init__(
        self,
        dataset_name: str,
        mode: Optional[str] = None,
        output_dir: Optional[str] = None,
        ks: Sequence[int] = (20, 50, 100),
        iou_threshold: float = 0.5,
        sgdet_overlap_only: bool = False,
        zero_shot_triplets: Optional[np.ndarray] = None,
        statistics_cache_dir: Optional[str] = None,
        predicate_groups: Union[PredicateGroupRule, Dict[str, Any], None] = PYSGG_RULE,
    ):
        """
        Args:
            dataset_name: registered scene-graph dataset (ground truth by ``image_id``).
            mode: ``"predcls"``, ``"sgcls"``, ``"sgdet"`` or None (see class docstring).
            output_dir: where the metrics JSON and compact predictions are written.
            ks: the K of every @K metric; max(ks) candidates are kept per image.
            iou_threshold: IoU for subject and for object, inclusive (protocol: 0.5).
            sgdet_overlap_only: SGDet only; restrict candidate pairs to overlapping boxes.
            zero_shot_triplets: (Z, 3) rows (subject class, object class, predicate);
                None asks the data layer (``get_zero_shot_triplets``); an empty array
                turns zsR@K off.
            statistics_cache_dir: cache folder passed to ``get_zero_shot_triplets``.
            predicate_groups: head / body / tail boundaries (a rule or its ``to_dict``;
                default PySGG's counts); None: no ``mR@K[head/body/tail]``.

        Raises:
            ValueError: invalid ``mode`` (lists the valid ones), ``ks``, zero-shot array
                or predicate group rule.
        """
        if mode is not None and mode not in SGG_MODES:
            raise ValueError(f"mode is {mode!r}; valid modes are {', '.join(SGG_MODES)} or None")
        ks = tuple(int(k) for k in ks)
        if not ks or min(ks) <= 0 or len(set(ks)) != len(ks):
            raise ValueError(f"ks must be distinct positive integers, got {ks}")
        super().__init__(dataset_name, output_dir, iou_threshold)
        self._mode = mode
        self._ks = tuple(sorted(ks))
        self._overlap_only = bool(sgdet_overlap_only)
        self._zero_shot = None if zero_shot_triplets is None else as_triplets(zero_shot_triplets)
        self._statistics_cache_dir = statistics_cache_dir
        self._group_rule = PredicateGroupRule.coerce(predicate_groups)
        self._groups: Any = _NOT_LOADED  # Optional[TrainingGroups], looked up once
        self._evaluated_ids: List[Hashable] = []
        self._last_evaluation = None  # (image ids, gts, matches) of the last evaluation

    @classmethod
    def from_config(cls, cfg, dataset_name: str, output_dir: Optional[str] = None):
        cache_dir = cfg.DATASETS.SGG.STATISTICS_CACHE_DIR or os.path.join(
            cfg.OUTPUT_DIR, "sgg_statistics"
        )
        return {
            "dataset_name": dataset_name,
            "mode": cfg.MODEL.SGG.MODE,
            "output_dir": output_dir,
            "ks": tuple(cfg.TEST.SGG.RECALL_KS),
            "iou_threshold": cfg.TEST.SGG.IOU_THRESHOLD,
            "sgdet_overlap_only": cfg.TEST.SGG.SGDET_OVERLAP_ONLY,
            "statistics_cache_dir": cache_dir,
            "predicate_groups": rule_from_config(cfg),
        }

    def settings(self) -> Dict[str, Any]:
        return {
            "mode": self._mode,
            "ks": list(self._ks),
            "iou_threshold": self._iou_threshold,
            "sgdet_overlap_only": self._overlap_only,
            "predicate_groups": self._group_rule.to_dict() if self._group_rule else None,
        }

    def zero_shot_triplets(self) -> np.ndarray:
        """(Z, 3) int64 zero-shot triplets; fetched from the data layer on first use."""
        if self._zero_shot is None:
            from ..data.statistics import get_zero_shot_triplets  # data layer, lazily

            found = get_zero_shot_triplets(self._dataset_name, self._statistics_cache_dir)
            self._zero_shot = as_triplets(found)
        return self._zero_shot

    def training_groups(self) -> Optional[TrainingGroups]:
        """The head / body / tail groups from the training split, looked up on first use;
        None when off or skipped (with one log notice, see
        :func:`~.predicate_groups.load_training_groups`).

        Raises:
            ValueError: a metadata subset is named head, body or tail, or the training
                split does not fit the dataset.
        """
        if self._groups is _NOT_LOADED:
            self._groups = None
            if self._group_rule is not None:
                names = self._predicate_classes
                self._groups = load_training_groups(self._dataset_name, names, self._group_rule)
        if self._groups is not None:
            check_subset_names(self._dataset_name, self.metadata_subsets())
        return self._groups

    def reset(self):
        super().reset()
        if comm.is_main_process():
            self.zero_shot_triplets()  # fail before inference, not after it
            self.training_groups()

    def _check_gt_boxes(self, image_id, num_instances: int, gt: GroundTruthGraph):
        if self._mode in GT_BOX_MODES and num_instances != len(gt.labels):
            raise ValueError(
                f"image_id {image_id!r}: mode {self._mode!r} expects the output instances to "
                f"be the {len(gt.labels)} annotations in dataset order, got {num_instances}"
            )

    def _compact(self, image_id, outputs: ObjectOutputs, gt: GroundTruthGraph):
        self._check_gt_boxes(image_id, len(outputs.labels), gt)
        rel = outputs.relations
        pairs, predicates, scores = rel.pair_indices, rel.predicates, rel.scores
        predicate_scores = rel.predicate_scores
        if self._mode == "sgdet" and self._overlap_only:
            keep = overlapping_pairs(outputs.boxes, pairs)
            pairs, predicates, scores = pairs[keep], predicates[keep], scores[keep]
            predicate_scores = predicate_scores[keep]
        k = max(self._ks)
        in_gt = _pairs_in(pairs, gt.relations[:, :2])
        candidates = {
            "gc": select_graph_constrained(pairs, predicates, scores, k),
            "ng": select_pair_predicates(pairs, predicate_scores, outputs.object_scores, k),
            # A@K: the graph-constrained ranking restricted to ground-truth pairs.
            "pairs": select_graph_constrained(pairs[in_gt], predicates[in_gt], scores[in_gt], k),
        }
        return outputs.record(
            image_id, {name: numpy_candidates(c) for name, c in candidates.items()}
        )

    def _match(self, record: Dict[str, Any], gt: GroundTruthGraph):
        return self._match_many([record], [gt])[0]

    def _match_many(self, records: List[Dict[str, Any]], gts: List[GroundTruthGraph]):
        wanted = ["gc", "ng"]
        if self._mode in GT_BOX_MODES:
            wanted.append("pairs")
            for record, gt in zip(records, gts):
                self._check_gt_boxes(record["image_id"], len(record["labels"]), gt)
        predictions = [
            (
                record["boxes"],
                record["labels"],
                {
                    n: (record["candidates"][n]["pairs"], record["candidates"][n]["predicates"])
                    for n in wanted
                },
            )
            for record in records
        ]
        return match_scene_graph_images(gts, predictions, self._iou_threshold)

    def _zero_shot_masks(self, gts: List[GroundTruthGraph]):
        zero_shot = self.zero_shot_triplets()
        if len(zero_shot) == 0:
            logger.warning(f"No zero-shot triplets for '{self._dataset_name}': no zsR@K")
            return None
        # One membership test for the whole dataset, then split per image.
        classes = np.concatenate([triplet_classes(gt) for gt in gts] + [np.zeros((0, 3))])
        mask = zero_shot_mask(classes.astype(np.int64), zero_shot)
        masks = np.split(mask, np.cumsum([len(gt.relations) for gt in gts])[:-1])
        if not mask.any():
            logger.warning("No evaluated image has a zero-shot GT triplet: no zsR@K")
        return masks

    def _finish(self, matches, records):
        # The base class evaluates in dataset order; keep the image ids in that order so
        # that _summarize and evaluate_subset know which image each match belongs to.
        ids = [image_id for image_id, _ in matches]
        self._evaluated_ids = sorted(ids, key=lambda image_id: self._lookup(image_id)[0])
        self._last_evaluation = None
        return super()._finish(matches, records)

    def evaluate_subset(
        self,
        image_ids: Optional[Iterable[Hashable]] = None,
        predicates: Optional[Iterable[Union[str, int]]] = None,
    ) -> Dict[str, float]:
        """R@K, mR@K, ng-R@K, ng-mR@K (percent) of a subset, from the last evaluation.

        Definitions in :mod:`.subsets`: R@K over the GT triplets whose predicate is in
        the subset (images of the subset having one), mR@K over the subset's predicate
        classes present in its images. Call after ``evaluate`` (or
        ``evaluate_predictions``), on the main process.

        Args:
            image_ids: the images (ids as in the dataset dicts); None: every evaluated
                image. Ids that were not evaluated are ignored.
            predicates: predicate names or 0-based indices; None: all predicates.

        Returns:
            ``{"R@K": %, "mR@K": %, "ng-R@K": %, "ng-mR@K": %}`` per K; ``{}`` when the
            subset has no GT triplet.

        Raises:
            RuntimeError: nothing was evaluated yet.
            ValueError: an unknown predicate name or index (lists the valid names).
        """
        if self._last_evaluation is None:
            raise RuntimeError("evaluate_subset needs a finished evaluate() on this process")
        ids, gts, matches = self._last_evaluation
        mask = None
        if image_ids is not None:
            wanted = set(image_ids)
            mask = np.array([image_id in wanted for image_id in ids], dtype=bool)
        indices = None
        if predicates is not None:
            names, dataset = self._predicate_classes, self._dataset_name
            indices = predicate_indices(predicates, names, dataset, "")
        return subset_recall(
            [gt.relations[:, 2] for gt in gts],
            matches,
            self._ks,
            self.num_predicates,
            images=mask,
            predicates=indices,
        )

    def metadata_subsets(self) -> Dict[str, Subset]:
        """name -> (image ids or None, predicate indices or None) from the dataset
        metadata's ``predicate_groups`` and ``image_tags``; see
        :func:`~.metadata_subsets.metadata_subsets`.

        Raises:
            ValueError: malformed metadata, naming the dataset, key and entry.
        """
        return metadata_subsets(self._dataset_name, self._predicate_classes)

    def _subset_metrics(self, gts, matches) -> Tuple[Dict[str, float], Dict[str, Any]]:
        metrics: Dict[str, float] = {}
        details: Dict[str, Any] = {}
        gt_predicates = [gt.relations[:, 2] for gt in gts]
        for name, (ids, indices) in self.metadata_subsets().items():
            mask = None
            if ids is not None:
                mask = np.array([i in ids for i in self._evaluated_ids], dtype=bool)
            found = subset_recall(
                gt_predicates, matches, self._ks, self.num_predicates, mask, indices
            )
            details[name] = subset_details(gt_predicates, mask, indices, self._predicate_classes)
            if not found:
                logger.warning(f"Subset {name!r} of '{self._dataset_name}' has no GT triplet")
            metrics.update(subset_metrics(found, name, self._ks))
        return metrics, details

    def _summarize(self, gts: List[GroundTruthGraph], matches: List[Dict[str, np.ndarray]]):
        self._last_evaluation = (list(self._evaluated_ids), gts, matches)
        masks = self._zero_shot_masks(gts)
        metrics, per_predicate = aggregate_scene_graph_recall(
            [gt.relations[:, 2] for gt in gts],
            matches,
            self._ks,
            self.num_predicates,
            zero_shot=masks,
            pair_accuracy=self._mode in GT_BOX_MODES,
        )
        metrics.update(f_scores(metrics, self._ks))
        columns = [f"@{k}" for k in self._ks]
        metrics = ordered(metrics, FAMILIES, columns)
        groups = self.training_groups()
        found_groups = groups.metrics(per_predicate, self._ks) if groups else {}
        group_title = groups.title() if groups else ""
        metrics.update(found_groups)
        found_subsets, subsets = self._subset_metrics(gts, matches)
        metrics.update(found_subsets)
        details = {
            "mode": self._mode,
            "num_images_with_relations": sum(1 for gt in gts if len(gt.relations)),
            "num_gt_triplets": int(sum(len(gt.relations) for gt in gts)),
            "num_zero_shot_gt_triplets": int(sum(m.sum() for m in masks)) if masks else 0,
            "per_predicate": per_predicate_json(self._predicate_classes, per_predicate),
            "predicate_groups": groups.details(self._predicate_classes) if groups else None,
            "subsets": subsets,
        }
        class_columns = ["num_gt", "num_images"]
        class_columns += [f"{prefix}R@{k}" for prefix in ("", "ng-") for k in self._ks]
        table = (
            f"mode: {self._mode}, {len(gts)} images\n"
            + metric_grid_table(metrics, FAMILIES, columns)
            + subset_table(found_groups, list(GROUP_NAMES), columns, group_title)
            + subset_table(found_subsets, list(subsets), columns)
            + "\nPer-predicate recall (mean over images containing the predicate):\n"
            + per_predicate_table(self._predicate_classes, per_predicate, class_columns)
        )
        return metrics, details, table


def _pairs_in(pairs: torch.Tensor, gt_pairs: np.ndarray) -> torch.Tensor:
    """(R,) bool: which predicted (subject, object) index pairs are ground-truth pairs."""
    if len(gt_pairs) == 0 or len(pairs) == 0:
        return torch.zeros(len(pairs), dtype=torch.bool, device=pairs.device)
    gt = torch.as_tensor(gt_pairs, device=pairs.device)
    size = int(max(int(pairs.max()), int(gt.max()))) + 1
    # A dense (size, size) lookup table is cheaper than isin for the few objects per image.
    table = torch.zeros((size, size), dtype=torch.bool, device=pairs.device)
    table[gt[:, 0], gt[:, 1]] = True
    return table[pairs[:, 0], pairs[:, 1]]
