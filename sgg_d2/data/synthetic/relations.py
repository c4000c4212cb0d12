"""Predicate rules of the synthetic world (from masks, draw order and boxes) and the
sampling of which pairs get annotated.

Every ordered pair (subject s, object o) of a scene gets exactly one *primary* predicate,
a deterministic function of the rendered geometry, decided by the first rule that holds:

1. overlap: amodal masks share >= ``OVERLAP_PIXELS`` pixels. Then, by draw order,
   ``inside`` (s drawn over o and >= ``CONTAIN_FRACTION`` of s within o's mask), ``on``
   (s drawn over o otherwise), ``behind`` (o drawn over s);
2. ``in hole of``: >= ``CONTAIN_FRACTION`` of s's mask lies in the hole of o (ring, frame);
3. ``around``: the converse (o is in the hole of s);
4. ``touching``: mask gap <= ``TOUCH_GAP`` px (adjacent, or overlapping by a few pixels);
5. ``near``: mask gap <= ``NEAR_GAP`` px;
6. geometric, from the visible boxes' centres (dx, dy = centre(o) - centre(s)):
   ``left of`` / ``right of`` when |dx| >= |dy| (sign of dx, dx >= 0 -> left of),
   else ``above`` / ``below`` (dy > 0 -> above; image y grows downwards).

The crowded world (``CrowdedRules``) inserts five geometric rules between 5 and 6:

5a. ``beside``: mask gap <= ``beside_gap`` and |dx| >= |dy| (horizontal neighbours);
5b. ``far from``: mask gap >= ``far_gap``;
5c. ``larger than`` / ``smaller than``: amodal area of s >= ``size_ratio`` x that of o
    (resp. o's >= ``size_ratio`` x s's);
5d. ``diagonal to``: min(|dx|, |dy|) >= ``diagonal`` x max(|dx|, |dy|).

"touching" and "near" pairs also have a *secondary* predicate: their geometric direction
(rule 6). The mask gap is the Euclidean distance between pixel centres of the two masks
(1 = 4-adjacent, 0 = overlapping).
"""

from dataclasses import dataclass
from typing import Callable, Optional

import cv2
import numpy as np

from .shapes import hole_mask
from .world import CROWDED_PREDICATES

__all__ = [
    "OVERLAP_PIXELS",
    "CONTAIN_FRACTION",
    "TOUCH_GAP",
    "NEAR_GAP",
    "CrowdedRules",
    "pair_statistics",
    "relation_labels",
    "sample_annotations",
]

OVERLAP_PIXELS = 20
CONTAIN_FRACTION = 0.95
TOUCH_GAP = 1.5
NEAR_GAP = 10.0

# Default predicates are a prefix of the crowded ones: one index map serves both worlds.
_P = {name: i for i, name in enumerate(CROWDED_PREDICATES)}


@dataclass(frozen=True)
class CrowdedRules:
    """Thresholds of the crowded world's extra geometric rules (see module docstring).

    Attributes:
        beside_gap: max mask gap (px) of "beside".
        far_gap: min mask gap (px) of "far from".
        size_ratio: min amodal area ratio of "larger than" / "smaller than".
        diagonal: min ratio min(|dx|, |dy|) / max(|dx|, |dy|) of "diagonal to".
    """

    beside_gap: float
    far_gap: float
    size_ratio: float = 4.0
    diagonal: float = 0.8

    @classmethod
    def for_size(cls, long_side: float) -> "CrowdedRules":
        """Thresholds scaled to an image's long side (px)."""
        return cls(beside_gap=0.1 * long_side, far_gap=0.45 * long_side)


def pair_statistics(masks: np.ndarray, hollow: np.ndarray) -> dict:
    """Pairwise mask measurements.

    Args:
        masks: bool (N, H, W) amodal masks, in draw order (later = on top).
        hollow: bool (N,), whether each object's class has a hole.

    Returns:
        dict of (N, N) float64 arrays: ``overlap`` (|M_i & M_j|, diagonal = area),
        ``in_hole`` (|M_i & hole(M_j)|), ``gap`` (min distance from M_i to M_j, 0 when
        they overlap; symmetric).
    """
    n = masks.shape[0]
    flat = masks.reshape(n, -1).astype(np.float32)
    holes = np.stack(
        [hole_mask(m) if h else np.zeros_like(m) for m, h in zip(masks, hollow)]
    ).reshape(n, -1)
    gap = np.zeros((n, n))
    for j in range(n):
        # Distance of every pixel to the nearest pixel of mask j (0 on the mask).
        dist = cv2.distanceTransform(
            (~masks[j]).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE
        )
        for i in range(n):
            if i != j:
                gap[i, j] = float(dist[masks[i]].min())
    return {
        "overlap": (flat @ flat.T).astype(np.float64),
        "in_hole": (flat @ holes.astype(np.float32).T).astype(np.float64),
        "gap": np.minimum(gap, gap.T),
    }


def _direction(box_s: np.ndarray, box_o: np.ndarray) -> int:
    dx = (box_o[0] + box_o[2] - box_s[0] - box_s[2]) / 2
    dy = (box_o[1] + box_o[3] - box_s[1] - box_s[3]) / 2
    if abs(dx) >= abs(dy):
        return _P["left of"] if dx >= 0 else _P["right of"]
    return _P["above"] if dy > 0 else _P["below"]


def _crowded(s: int, o: int, stats: dict, boxes: np.ndarray, rules: CrowdedRules) -> int:
    gap, area_s, area_o = stats["gap"][s, o], stats["overlap"][s, s], stats["overlap"][o, o]
    dx = abs(boxes[o][0] + boxes[o][2] - boxes[s][0] - boxes[s][2]) / 2
    dy = abs(boxes[o][1] + boxes[o][3] - boxes[s][1] - boxes[s][3]) / 2
    if gap <= rules.beside_gap and dx >= dy:
        return _P["beside"]
    if gap >= rules.far_gap:
        return _P["far from"]
    if area_s >= rules.size_ratio * area_o:
        return _P["larger than"]
    if area_o >= rules.size_ratio * area_s:
        return _P["smaller than"]
    if min(dx, dy) >= rules.diagonal * max(dx, dy):
        return _P["diagonal to"]
    return -1


def _primary(s: int, o: int, stats: dict, boxes: np.ndarray, rules=None) -> int:
    overlap, in_hole, gap = stats["overlap"], stats["in_hole"], stats["gap"]
    area_s, area_o = overlap[s, s], overlap[o, o]
    if overlap[s, o] >= OVERLAP_PIXELS:
        if s < o:
            return _P["behind"]
        return _P["inside"] if overlap[s, o] >= CONTAIN_FRACTION * area_s else _P["on"]
    if in_hole[s, o] >= CONTAIN_FRACTION * area_s:
        return _P["in hole of"]
    if in_hole[o, s] >= CONTAIN_FRACTION * area_o:
        return _P["around"]
    if gap[s, o] <= TOUCH_GAP:
        return _P["touching"]
    if gap[s, o] <= NEAR_GAP:
        return _P["near"]
    if rules is not None:
        label = _crowded(s, o, stats, boxes, rules)
        if label >= 0:
            return label
    return _direction(boxes[s], boxes[o])


def relation_labels(
    masks: np.ndarray,
    hollow: np.ndarray,
    boxes: np.ndarray,
    stats: Optional[dict] = None,
    rules: Optional[CrowdedRules] = None,
):
    """Primary and secondary predicate of every ordered pair.

    Args:
        masks: bool (N, H, W) amodal masks in draw order.
        hollow: bool (N,).
        boxes: float (N, 4) visible-mask boxes XYXY (for the geometric rule).
        stats: :func:`pair_statistics` of the same masks, if already computed.
        rules: the crowded world's extra rules, or None (default world).

    Returns:
        (primary, secondary): int64 (N, N) 0-based predicates; -1 on the diagonal and,
        for ``secondary``, where a pair has none.
    """
    n = masks.shape[0]
    stats = pair_statistics(masks, hollow) if stats is None else stats
    primary = np.full((n, n), -1, dtype=np.int64)
    secondary = np.full((n, n), -1, dtype=np.int64)
    for s in range(n):
        for o in range(n):
            if s == o:
                continue
            primary[s, o] = _primary(s, o, stats, boxes, rules)
            if primary[s, o] in (_P["touching"], _P["near"]):
                secondary[s, o] = _direction(boxes[s], boxes[o])
    return primary, secondary


def sample_annotations(
    rng: np.random.Generator,
    primary: np.ndarray,
    secondary: np.ndarray,
    weights: np.ndarray,
    secondary_probability: float,
    forbidden: Optional[Callable[[int, int, int], bool]] = None,
    forced: tuple = (),
) -> np.ndarray:
    """Choose the annotated pairs of one image (at least one when any pair is allowed).

    A pair is annotated with probability ``weights[primary]`` (always when in
    ``forced``); an annotated pair with a secondary predicate also gets it with
    probability ``secondary_probability``. A pair any of whose (s, o, predicate) labels
    is ``forbidden`` (held out of train) is never annotated. If nothing was chosen, one
    allowed pair is drawn with probability proportional to its weight.

    Args:
        primary, secondary: int64 (N, N) from :func:`relation_labels`.
        weights: float (P,) annotation probability per predicate.
        forbidden: ``f(s_index, o_index, predicate) -> bool``.
        forced: (s, o) index pairs that must be annotated.

    Returns:
        int64 (R, 3) sorted unique rows ``[subject, object, predicate]``; (0, 3) only if
        every pair is forbidden.
    """
    n = primary.shape[0]
    pairs = [(s, o) for s in range(n) for o in range(n) if s != o]
    draws = rng.random((len(pairs), 2))
    forbidden = forbidden or (lambda s, o, p: False)
    allowed, rows = [], []
    for (s, o), (u_pair, u_second) in zip(pairs, draws):
        labels = [int(primary[s, o])] + ([int(secondary[s, o])] if secondary[s, o] >= 0 else [])
        if any(forbidden(s, o, p) for p in labels):
            continue
        allowed.append((s, o))
        if (s, o) in forced or u_pair < weights[labels[0]]:
            rows.append((s, o, labels[0]))
            if len(labels) > 1 and u_second < secondary_probability:
                rows.append((s, o, labels[1]))
    if not rows and allowed:
        w = np.array([weights[primary[s, o]] for s, o in allowed], dtype=np.float64)
        w = w if w.sum() > 0 else np.ones_like(w)
        s, o = allowed[int(rng.choice(len(allowed), p=w / w.sum()))]
        rows.append((s, o, int(primary[s, o])))
    if not rows:
        return np.zeros((0, 3), dtype=np.int64)
    return np.unique(np.array(rows, dtype=np.int64), axis=0)
