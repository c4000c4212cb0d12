"""``Relations``: the scene-graph half of a model's per-image output.

A model returns, per image, ``{"instances": Instances, "relations": Relations}``.
``instances`` holds the objects (``pred_boxes`` in original image coordinates,
``pred_classes``, ``scores``); ``relations`` holds R directed (subject, object) pairs
of those objects with a distribution over the P real predicates (no background column),
sorted by triplet score, best first. Evaluators read only these fields.
"""

from typing import Any, List, Optional, Tuple, Union

import torch
from detectron2.structures import Instances

__all__ = ["Relations", "all_ordered_pairs"]

RELATION_FIELDS = ("pair_indices", "predicate_scores", "predicates", "scores")


def all_ordered_pairs(num_instances: int, device: Union[str, torch.device] = "cpu"):
    """Every ordered pair ``(i, j)``, ``i != j``, of ``num_instances`` objects.

    Args:
        num_instances: N, the number of objects.
        device: device of the returned tensor.

    Returns:
        Tensor (N * (N - 1), 2) int64, row-major: (0, 1), (0, 2), ..., (1, 0), (1, 2), ...
    """
    idx = torch.arange(num_instances, device=device)
    subj, obj = torch.meshgrid(idx, idx, indexing="ij")
    keep = subj != obj
    return torch.stack([subj[keep], obj[keep]], dim=1)


class Relations(Instances):
    """Directed relations between the objects of one image, an ``Instances`` of length R.

    Fields (all tensors on the same device):

    - ``pair_indices``: (R, 2) int64, (subject, object) indices into the image's
      ``Instances``.
    - ``predicate_scores``: (R, P) float, probability of each of the P real predicates
      (no background column).
    - ``predicates``: (R,) int64, arg-max of ``predicate_scores`` (0-based predicate).
    - ``scores``: (R,) float, triplet score ``s_subject * s_object * p(predicate)``.

    Rows are sorted by ``scores``, best first (:meth:`from_pair_scores` does this).
    Indexing, ``to`` and :meth:`cat` return ``Relations``, like ``Instances`` does.

    Example::

        pairs = all_ordered_pairs(len(instances), device=instances.scores.device)
        probs = predicate_logits.softmax(-1)[:, 1:]  # drop the background column
        relations = Relations.from_pair_scores(
            instances.image_size, pairs, probs, instances.scores
        )
    """

    def __init__(self, image_size: Tuple[int, int], **kwargs: Any):
        """
        Args:
            image_size: (height, width) of the image.
            kwargs: fields to set, normally the four listed in the class docstring.
        """
        super().__init__(image_size, **kwargs)

    @classmethod
    def from_pair_scores(
        cls,
        image_size: Tuple[int, int],
        pair_indices: torch.Tensor,
        predicate_scores: torch.Tensor,
        object_scores: torch.Tensor,
    ) -> "Relations":
        """Build sorted relations from per-pair predicate probabilities.

        Each pair gets its arg-max predicate (ties: lowest predicate index) and the triplet
        score ``object_scores[subject] * object_scores[object] * p(predicate)``; rows are
        sorted by that score, best first, with a stable sort (ties keep the input order).

        Args:
            image_size: (height, width) of the image.
            pair_indices: (R, 2) int64, (subject, object) indices into the objects.
            predicate_scores: (R, P) float, probabilities of the P real predicates.
            object_scores: (N,) float, score of each object's class (1 in PredCls).

        Returns:
            Relations of length R, best first.

        Raises:
            ValueError: on inconsistent shapes or pair indices outside ``[0, N)``.
        """
        pair_indices = torch.as_tensor(pair_indices, dtype=torch.int64)
        _check_pair_inputs(pair_indices, predicate_scores, object_scores)
        best_prob, predicates = _argmax_lowest(predicate_scores)
        pair_object_scores = object_scores[pair_indices[:, 0]] * object_scores[pair_indices[:, 1]]
        scores = pair_object_scores.to(best_prob.dtype) * best_prob
        order = torch.sort(scores, descending=True, stable=True).indices
        return cls(
            image_size,
            pair_indices=pair_indices[order],
            predicate_scores=predicate_scores[order],
            predicates=predicates[order],
            scores=scores[order],
        )

    @classmethod
    def empty(
        cls,
        image_size: Tuple[int, int],
        num_predicates: int,
        device: Union[str, torch.device] = "cpu",
    ) -> "Relations":
        """Relations with R = 0 (e.g. an image with fewer than two objects).

        Args:
            image_size: (height, width) of the image.
            num_predicates: P, width of ``predicate_scores``.
            device: device of the (empty) tensors.
        """
        return cls(
            image_size,
            pair_indices=torch.zeros((0, 2), dtype=torch.int64, device=device),
            predicate_scores=torch.zeros((0, num_predicates), device=device),
            predicates=torch.zeros((0,), dtype=torch.int64, device=device),
            scores=torch.zeros((0,), device=device),
        )

    def validate(self, num_instances: Optional[int] = None) -> None:
        """Check that the four fields exist with consistent shapes.

        Args:
            num_instances: if given, N of the image's ``Instances``; every pair index must
                lie in ``[0, N)``.

        Raises:
            ValueError: naming the missing or malformed field.
        """
        missing = [name for name in RELATION_FIELDS if not self.has(name)]
        if missing:
            raise ValueError(f"Relations is missing field(s) {missing}; expected {RELATION_FIELDS}")
        num = len(self.scores)
        shapes = {
            "pair_indices": (num, 2),
            "predicates": (num,),
            "scores": (num,),
        }
        for name, shape in shapes.items():
            if tuple(self.get(name).shape) != shape:
                got = tuple(self.get(name).shape)
                raise ValueError(f"Relations.{name} has shape {got}, expected {shape}")
        if self.predicate_scores.dim() != 2 or self.predicate_scores.shape[0] != num:
            got = tuple(self.predicate_scores.shape)
            raise ValueError(f"Relations.predicate_scores has shape {got}, expected ({num}, P)")
        if num_instances is not None and num > 0:
            low, high = int(self.pair_indices.min()), int(self.pair_indices.max())
            if low < 0 or high >= num_instances:
                raise ValueError(
                    f"Relations.pair_indices range [{low}, {high}] is outside [0, "
                    f"{num_instances}) of the image's {num_instances} instances"
                )

    @classmethod
    def _from_instances(cls, instances: Instances) -> "Relations":
        ret = cls(instances.image_size)
        for name, value in instances.get_fields().items():
            ret.set(name, value)
        return ret

    def to(self, *args: Any, **kwargs: Any) -> "Relations":
        """Like ``Instances.to``: every field moved/cast, returned as ``Relations``."""
        return Relations._from_instances(super().to(*args, **kwargs))

    def __getitem__(self, item: Union[int, slice, torch.Tensor]) -> "Relations":
        """Like ``Instances.__getitem__``, returning ``Relations``."""
        return Relations._from_instances(super().__getitem__(item))

    @staticmethod
    def cat(relation_lists: List["Relations"]) -> "Relations":
        """Concatenate along R (no re-sorting), returned as ``Relations``."""
        return Relations._from_instances(Instances.cat(relation_lists))


def _argmax_lowest(scores: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Max over the last axis and its lowest index among ties: ((R,), (R,) int64)."""
    if scores.shape[0] == 0:
        empty = scores.new_zeros((0,))
        return empty, torch.zeros((0,), dtype=torch.int64, device=scores.device)
    # torch.argmax documents that the first maximal index is returned on ties.
    predicates = scores.argmax(dim=1)
    return scores.gather(1, predicates[:, None])[:, 0], predicates


def _check_pair_inputs(pairs: torch.Tensor, pred_scores: torch.Tensor, obj_scores: torch.Tensor):
    if pairs.dim() != 2 or pairs.shape[1] != 2:
        raise ValueError(f"pair_indices has shape {tuple(pairs.shape)}, expected (R, 2)")
    if pred_scores.dim() != 2 or pred_scores.shape[0] != pairs.shape[0]:
        raise ValueError(
            f"predicate_scores has shape {tuple(pred_scores.shape)}, expected "
            f"({pairs.shape[0]}, P) to match pair_indices"
        )
    if obj_scores.dim() != 1:
        raise ValueError(f"object_scores has shape {tuple(obj_scores.shape)}, expected (N,)")
    num = obj_scores.shape[0]
    if pairs.numel() and (int(pairs.min()) < 0 or int(pairs.max()) >= num):
        raise ValueError(
            f"pair_indices range [{int(pairs.min())}, {int(pairs.max())}] is outside [0, {num}) "
            f"of object_scores"
        )
