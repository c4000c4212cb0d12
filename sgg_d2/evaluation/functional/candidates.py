"""Select the few (pair, predicate) candidates each metric needs from a model's output.

Pure torch, on the device of the inputs. Every selection is deterministic: scores are
sorted in descending order and ties are broken by position (the model's pair order, then
the predicate index), so two runs, or this code and a plain reference, agree exactly.
"""

from typing import NamedTuple, Optional

import torch
from detectron2.structures import Boxes, pairwise_iou

__all__ = [
    "TripletCandidates",
    "stable_top_indices",
    "select_graph_constrained",
    "select_pair_predicates",
    "overlapping_pairs",
]


class TripletCandidates(NamedTuple):
    """T ranked (subject, object, predicate) candidates of one image, best first.

    Attributes:
        pairs: (T, 2) int64, (subject, object) indices into the image's objects.
        predicates: (T,) int64, 0-based predicate.
        scores: (T,) float, triplet score.
    """

    pairs: torch.Tensor
    predicates: torch.Tensor
    scores: torch.Tensor


def stable_top_indices(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` largest scores, best first, ties by lowest index.

    ``torch.topk`` finds the k-th largest value cheaply; only the entries at or above it
    are then sorted with a stable sort, which is what makes ties deterministic.

    Args:
        scores: (n,) float.
        k: number of indices wanted (fewer are returned when n < k).

    Returns:
        (min(k, n),) int64.
    """
    num = scores.shape[0]
    if num > k > 0:
        kth = torch.topk(scores, k, sorted=False).values.min()
        # topk ranks NaN above every number, so any NaN makes the k-th value NaN and the
        # selection below empty: refuse instead (one scalar check, no extra pass).
        if bool(torch.isnan(kth)):
            raise ValueError(f"scores hold NaN ({int(torch.isnan(scores).sum())} of {num})")
        candidates = torch.nonzero(scores >= kth).squeeze(1)
    else:
        candidates = torch.arange(num, device=scores.device)
    # index_select: much cheaper per call than advanced indexing for small tensors.
    order = torch.sort(scores.index_select(0, candidates), descending=True, stable=True).indices
    return candidates.index_select(0, order[:k])


def select_graph_constrained(
    pair_indices: torch.Tensor, predicates: torch.Tensor, scores: torch.Tensor, k: int
) -> TripletCandidates:
    """Graph-constrained top-k: one predicate per pair (the model's arg-max), best k pairs.

    Args:
        pair_indices: (R, 2) int64.
        predicates: (R,) int64, each pair's arg-max predicate.
        scores: (R,) float, triplet scores.
        k: number of triplets kept.

    Returns:
        TripletCandidates with T = min(k, R).
    """
    num = scores.shape[0]
    if num > 1 and bool((scores[:-1] >= scores[1:]).all()):
        keep = torch.arange(min(k, num), device=scores.device)  # the contract: sorted
    else:
        keep = stable_top_indices(scores, k)
    return TripletCandidates(*(x.index_select(0, keep) for x in (pair_indices, predicates, scores)))


def select_pair_predicates(
    pair_indices: torch.Tensor,
    predicate_scores: torch.Tensor,
    object_scores: torch.Tensor,
    k: int,
    per_pair: Optional[int] = None,
    min_score: Optional[float] = None,
) -> TripletCandidates:
    """Top-k (pair, predicate) candidates scored ``s_subject * s_object * p(predicate)``.

    With ``per_pair=None`` every predicate of every pair competes (no graph constraint);
    with ``per_pair=m`` each pair first keeps its m best predicates (ties: lowest
    predicate index), as in the VRD "k" protocol and the OpenImages top-2 rule.

    Args:
        pair_indices: (R, 2) int64, (subject, object) indices into the objects.
        predicate_scores: (R, P) float, predicate probabilities (no background).
        object_scores: (N,) float, score of each object's class.
        k: number of candidates kept overall.
        per_pair: predicates each pair may contribute; None means all P.
        min_score: if given, candidates with score <= min_score are dropped afterwards.

    Returns:
        TripletCandidates with T <= k.
    """
    num_pairs, num_predicates = predicate_scores.shape
    subjects = object_scores.index_select(0, pair_indices[:, 0])
    pair_scores = (subjects * object_scores.index_select(0, pair_indices[:, 1])).to(
        predicate_scores.dtype
    )
    if per_pair is None or per_pair >= num_predicates:
        rows = _rows_that_can_win(pair_scores, predicate_scores, k)
        scores = pair_scores.index_select(0, rows)[:, None] * predicate_scores.index_select(0, rows)
        total = len(rows) * num_predicates
    else:
        rows = torch.arange(num_pairs, device=pair_indices.device)
        scores = pair_scores[:, None] * predicate_scores
        best = torch.sort(predicate_scores, dim=1, descending=True, stable=True).indices
        keep = torch.zeros_like(scores, dtype=torch.bool)
        keep.scatter_(1, best[:, :per_pair], True)
        # Excluded entries sink below every probability product (all >= 0).
        scores = torch.where(keep, scores, torch.full_like(scores, -1.0))
        total = num_pairs * per_pair
    flat = stable_top_indices(scores.reshape(-1), min(k, total))
    chosen_rows = rows.index_select(0, torch.div(flat, num_predicates, rounding_mode="floor"))
    result = TripletCandidates(
        pair_indices.index_select(0, chosen_rows),
        flat % num_predicates,
        scores.reshape(-1).index_select(0, flat),
    )
    if min_score is not None:
        above = result.scores > min_score
        result = TripletCandidates(*(field[above] for field in result))
    return result


def _rows_that_can_win(pair_scores: torch.Tensor, predicate_scores: torch.Tensor, k: int):
    """Rows (in order) that can hold one of the top-k (pair, predicate) candidates.

    If k rows have a best candidate scoring at least t, no candidate of a row whose best
    is below t can be in the top k, so only rows whose best reaches the k-th largest best
    are kept (ties included, order preserved: the result is exact, ties too). Rounding
    is monotonic, so ``s * max(p)`` is exactly the largest product of a row when s >= 0.
    """
    num_pairs = pair_scores.shape[0]
    if num_pairs <= k or bool((pair_scores < 0).any()):
        return torch.arange(num_pairs, device=pair_scores.device)
    row_best = pair_scores * predicate_scores.amax(dim=1)
    kth = torch.topk(row_best, k, sorted=False).values.min()
    if bool(torch.isnan(kth)):  # as in stable_top_indices: NaN would empty the selection
        raise ValueError(
            f"scores hold NaN ({int(torch.isnan(row_best).sum())} of {num_pairs} rows)"
        )
    return torch.nonzero(row_best >= kth).squeeze(1)


def overlapping_pairs(boxes: torch.Tensor, pair_indices: torch.Tensor) -> torch.Tensor:
    """Which pairs have overlapping boxes (IoU > 0), for the SGDet overlap-only protocol.

    Args:
        boxes: (N, 4) float, XYXY absolute.
        pair_indices: (R, 2) int64.

    Returns:
        (R,) bool.
    """
    iou = pairwise_iou(Boxes(boxes), Boxes(boxes))
    return iou[pair_indices[:, 0], pair_indices[:, 1]] > 0
