"""Shared machinery of sgg_d2's relation evaluators (Detectron2 ``DatasetEvaluator``).

Life cycle, as driven by Detectron2's ``inference_on_dataset``:

- ``process``: per image, look the ground truth up by ``image_id`` and keep a *compact*
  record of the prediction (boxes, labels and the few ranked candidate lists the
  metrics read; never all N(N-1) x P scores).
- ``evaluate``: every process matches its own records (the per-image work is
  distributed), the matches are gathered on the main process with
  ``detectron2.utils.comm.gather``, which computes, logs and saves the metrics.
  Non-main processes return ``{}``.

Results are ``{"sgg": {metric: percent}}``. With ``output_dir``, ``<kind>_metrics.json``
(every metric and per-predicate numbers) and ``<kind>_predictions.pth`` (the compact
records, see :mod:`.prediction_io`) are written there; ``python -m sgg_d2.evaluation``
re-evaluates the latter.
"""

import abc
import itertools
import json
import logging
import os
from typing import Any, Dict, Hashable, List, Optional, Tuple

import numpy as np
import torch
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm
from detectron2.utils.file_io import PathManager

from ..structures import Relations
from .functional.matching import GroundTruthGraph
from .ground_truth import load_ground_truth, predicate_classes_of
from .prediction_io import save_compact_predictions

__all__ = ["RelationEvaluatorBase", "ObjectOutputs"]

RESULT_KEY = "sgg"


class ObjectOutputs:
    """Validated tensors of one image's output (all on the output's device).

    Attributes:
        boxes: (N, 4) float, XYXY in original image coordinates.
        labels: (N,) int64. object_scores: (N,) float.
        relations: :class:`~sgg_d2.structures.Relations` of length R.
    """

    def __init__(self, boxes, labels, object_scores, relations: Relations):
        self.boxes, self.labels, self.object_scores = boxes, labels, object_scores
        self.relations = relations

    def record(self, image_id: Hashable, candidates: Dict[str, Dict[str, np.ndarray]]):
        """The compact record kept per image (numpy, CPU)."""
        return {
            "image_id": image_id,
            "boxes": self.boxes.detach().float().cpu().numpy(),
            "labels": self.labels.cpu().numpy().astype(np.int64),
            "candidates": candidates,
        }


def _check_finite(image_id: Hashable, fields: Dict[str, torch.Tensor]) -> None:
    """Raise naming the image, the field and the first bad row if a tensor has NaN/inf (a
    NaN score would silently drop candidates from the rankings)."""
    for name, tensor in fields.items():
        # One reduction per field: a sum is finite iff every entry is (scores and boxes are
        # far below float overflow); the slow search for the row runs only on failure.
        if tensor.numel() and not bool(torch.isfinite(tensor.sum())):
            bad = ~torch.isfinite(tensor.reshape(len(tensor), -1)).all(dim=1)
            rows = torch.nonzero(bad).flatten()
            if len(rows) == 0:  # finite entries whose sum overflowed
                continue
            raise ValueError(
                f"image_id {image_id!r}: {name} has NaN/inf in {len(rows)} row(s), first row "
                f"{int(rows[0])} = {tensor[int(rows[0])].tolist()}; the evaluator needs "
                "finite values"
            )


class RelationEvaluatorBase(DatasetEvaluator, abc.ABC):
    """Base of the scene-graph, VRD and OpenImages evaluators.

    Subclasses set :attr:`kind` and implement :meth:`settings`, :meth:`_compact`,
    :meth:`_match` and :meth:`_summarize`.
    """

    kind = ""

    def __init__(self, dataset_name: str, output_dir: Optional[str], iou_threshold: float):
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._iou_threshold = float(iou_threshold)
        self._predicate_classes = predicate_classes_of(dataset_name)
        self._ground_truth: Optional[Dict[Hashable, Tuple[int, GroundTruthGraph]]] = None
        self._predictions: List[Dict[str, Any]] = []
        self._logger = logging.getLogger(__name__)

    @classmethod
    def from_config(cls, cfg, dataset_name: str, output_dir: Optional[str] = None):
        """Constructor arguments of a ``@configurable`` subclass: the dataset, the output
        folder and ``TEST.SGG.IOU_THRESHOLD``; the other arguments keep their defaults."""
        return {
            "dataset_name": dataset_name,
            "output_dir": output_dir,
            "iou_threshold": cfg.TEST.SGG.IOU_THRESHOLD,
        }

    @abc.abstractmethod
    def settings(self) -> Dict[str, Any]:
        """Keyword arguments (besides dataset and output_dir) that rebuild this evaluator."""

    @abc.abstractmethod
    def _compact(self, image_id: Hashable, outputs: ObjectOutputs, gt: GroundTruthGraph):
        """Compact record of one image's prediction (see :mod:`.prediction_io`)."""

    @abc.abstractmethod
    def _match(self, record: Dict[str, Any], gt: GroundTruthGraph) -> Dict[str, np.ndarray]:
        """Per-image matching result (small arrays) for :meth:`_summarize`."""

    def _match_many(
        self, records: List[Dict[str, Any]], gts: List[GroundTruthGraph]
    ) -> List[Dict[str, np.ndarray]]:
        """:meth:`_match` over many images (subclasses may vectorise it)."""
        return [self._match(record, gt) for record, gt in zip(records, gts)]

    @abc.abstractmethod
    def _summarize(self, gts: List[GroundTruthGraph], matches: List[Dict[str, np.ndarray]]):
        """Return (metrics in percent, JSON-able details, text table for the log)."""

    @property
    def num_predicates(self) -> int:
        """P, number of predicate classes of the dataset."""
        return len(self._predicate_classes)

    def ground_truth(self) -> Dict[Hashable, Tuple[int, GroundTruthGraph]]:
        """image_id -> (dataset position, ground truth); loaded once, on first use."""
        if self._ground_truth is None:
            self._ground_truth = load_ground_truth(self._dataset_name)
        return self._ground_truth

    def _lookup(self, image_id: Hashable) -> Tuple[int, GroundTruthGraph]:
        index = self.ground_truth()
        if image_id not in index:
            raise ValueError(
                f"image_id {image_id!r} is not in dataset '{self._dataset_name}' "
                f"({len(index)} images); ground truth is looked up by image_id"
            )
        return index[image_id]

    def reset(self):
        self._predictions = []

    def process(self, inputs, outputs):
        """Keep a compact record of each image's prediction.

        Args:
            inputs: list of dicts with ``image_id``.
            outputs: list of dicts with ``instances`` (``pred_boxes``, ``pred_classes``,
                ``scores``) and ``relations`` (:class:`~sgg_d2.structures.Relations`).
        """
        if len(inputs) != len(outputs):
            raise ValueError(f"process got {len(inputs)} inputs but {len(outputs)} outputs")
        for inp, out in zip(inputs, outputs):
            if "image_id" not in inp:
                raise ValueError(f"an input dict has no 'image_id' (keys: {sorted(inp)})")
            image_id = inp["image_id"]
            gt = self._lookup(image_id)[1]
            unpacked = self._unpack(image_id, out)
            self._predictions.append(self._compact(image_id, unpacked, gt))

    def _unpack(self, image_id: Hashable, output: Dict[str, Any]) -> ObjectOutputs:
        for key in ("instances", "relations"):
            if key not in output:
                raise ValueError(f"image_id {image_id!r}: model output has no '{key}'")
        instances, relations = output["instances"], output["relations"]
        for field in ("pred_boxes", "pred_classes", "scores"):
            if not instances.has(field):
                raise ValueError(f"image_id {image_id!r}: output instances have no '{field}'")
        num = len(instances.pred_classes)
        try:
            relations.validate(num)
        except ValueError as err:
            raise ValueError(f"image_id {image_id!r}: {err}") from err
        if relations.predicate_scores.shape[1] != self.num_predicates:
            raise ValueError(
                f"image_id {image_id!r}: relations.predicate_scores has "
                f"{relations.predicate_scores.shape[1]} columns, dataset "
                f"'{self._dataset_name}' has {self.num_predicates} predicates"
            )
        boxes = instances.pred_boxes.tensor
        _check_finite(
            image_id,
            {
                "relations.predicate_scores": relations.predicate_scores,
                "relations.scores": relations.scores,
                "instances.scores": instances.scores,
                "instances.pred_boxes": boxes,
            },
        )
        return ObjectOutputs(boxes, instances.pred_classes, instances.scores, relations)

    def evaluate(self):
        """Match per process, gather on the main process and compute the metrics.

        Returns:
            ``{"sgg": {metric: percent}}`` on the main process, ``{}`` elsewhere.
        """
        comm.synchronize()
        gts = [self._lookup(record["image_id"])[1] for record in self._predictions]
        matched = self._match_many(self._predictions, gts)
        local = [(record["image_id"], m) for record, m in zip(self._predictions, matched)]
        matches = list(itertools.chain(*comm.gather(local, dst=0)))
        records = None
        if self._output_dir:
            records = list(itertools.chain(*comm.gather(self._predictions, dst=0)))
        if not comm.is_main_process():
            return {}
        return self._finish(matches, records)

    def evaluate_predictions(self, records: List[Dict[str, Any]], save_records: bool = False):
        """Evaluate compact records in this process (e.g. loaded from a saved file).

        Args:
            records: compact records (numpy), one per image.
            save_records: also write them to ``output_dir``.

        Returns:
            ``{"sgg": {metric: percent}}``.
        """
        gts = [self._lookup(record["image_id"])[1] for record in records]
        matched = self._match_many(records, gts)
        matches = [(record["image_id"], m) for record, m in zip(records, matched)]
        return self._finish(matches, records if save_records else None)

    def _finish(self, matches, records):
        if not matches:
            self._logger.warning(f"[{type(self).__name__}] received no predictions to evaluate")
            return {}
        positions = {}
        for image_id, _ in matches:
            if image_id in positions:
                raise ValueError(f"image_id {image_id!r} was evaluated twice")
            positions[image_id] = self._lookup(image_id)[0]
        order = sorted(range(len(matches)), key=lambda i: positions[matches[i][0]])
        num_dataset = len(self.ground_truth())
        if len(matches) < num_dataset:
            self._logger.warning(
                f"[{type(self).__name__}] {len(matches)} of the {num_dataset} images of "
                f"'{self._dataset_name}' were evaluated; the others are not counted"
            )
        gts = [self._lookup(matches[i][0])[1] for i in order]
        metrics, details, table = self._summarize(gts, [matches[i][1] for i in order])
        self._logger.info(f"{self.kind} evaluation of '{self._dataset_name}':\n{table}")
        if self._output_dir:
            if records is not None:  # dataset order, whichever process kept them
                records = sorted(records, key=lambda r: positions[r["image_id"]])
            self._save(metrics, details, len(matches), records)
        return {RESULT_KEY: metrics}

    def _save(self, metrics, details, num_images, records):
        PathManager.mkdirs(self._output_dir)
        summary = {
            "dataset": self._dataset_name,
            "evaluator": self.kind,
            "settings": self.settings(),
            "num_images": num_images,
            "metrics": metrics,
            **details,
        }
        path = os.path.join(self._output_dir, f"{self.kind}_metrics.json")
        with PathManager.open(path, "w") as f:
            json.dump(summary, f, indent=2)
        self._logger.info(f"Saved {self.kind} metrics to {path}")
        if records is not None:
            path = os.path.join(self._output_dir, f"{self.kind}_predictions.pth")
            with PathManager.open(path, "wb") as f:
                save_compact_predictions(f, self.kind, self._dataset_name, self.settings(), records)
            self._logger.info(f"Saved {len(records)} compact predictions to {path}")
