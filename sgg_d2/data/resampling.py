"""Bi-level resampling of scene-graph training data (BGNN: Li et al., CVPR 2021, "Bipartite
Graph Network with Adaptive Message Passing for Unbiased Scene Graph Generation").

On the data side, so any model can use it (``DATALOADER.SGG_RESAMPLING``):

1. **Image-level over-sampling** (LVIS' repeat factor sampling, on predicates): predicate
   ``p`` gets ``r_p = max(1, sqrt(t / f_p))`` with ``f_p`` its share of all training
   relations and ``t = REPEAT_THRESHOLD``; image ``i`` gets ``r_i = max_{p in i} r_p``
   (1 without relations) and is drawn ``r_i`` times an epoch in expectation by
   Detectron2's ``RepeatFactorTrainingSampler`` (stochastic rounding each epoch).
2. **Instance-level under-sampling**: each time an image with ``r_i > 1`` is mapped, each
   of its relations, of predicate ``p``, is dropped with probability
   ``min(1, max(0, gamma_d * (1 - r_p / r_i)))``, ``gamma_d = DROP_RATE``: frequent
   predicates that only come along with a rare one lose instances, the image's rarest
   predicate never does, and images that are not over-sampled keep everything.

As in the authors' code (PySGG), ``f_p`` counts relation instances (not images, as LVIS
does for categories) and the drop applies to every draw of an over-sampled image. Two
differences: the authors round each ``r_p`` once, at random, to an integer before taking
the image maximum, here ``r_p`` stays real and Detectron2's sampler rounds ``r_i`` at
random each epoch (the same expected repeats, no unseeded draw at start-up); and a dropped
relation is removed from the image, so its pair may be sampled as background, which is
what the authors' PredCls / SGCls sampling does with it (their dropped label -1 is not a
positive there).

Randomness: drops draw from numpy's global generator, which :class:`SeededMapper`
seeds per mapper call (no workers) and Detectron2 seeds per worker, so a run is
deterministic under ``SEED`` and resumes exactly.
"""

import logging
from typing import Dict, List, Sequence

import numpy as np
import torch
from detectron2.data.samplers import RepeatFactorTrainingSampler

__all__ = [
    "RelationDropper",
    "build_resampling",
    "drop_probabilities",
    "image_repeat_factors",
    "predicate_repeat_factors",
]

logger = logging.getLogger(__name__)


def _predicates(record: Dict) -> np.ndarray:
    """(R,) int64 predicates of a dataset dict's relations."""
    return np.asarray(record.get("relations", ()), dtype=np.int64).reshape(-1, 3)[:, 2]


def predicate_repeat_factors(
    dataset_dicts: Sequence[Dict], num_predicates: int, threshold: float
) -> np.ndarray:
    """Repeat factor of each predicate, ``r_p = max(1, sqrt(t / f_p))``.

    Args:
        dataset_dicts: training dicts (``relations`` (R, 3) rows, predicate last).
        num_predicates: P.
        threshold: t, the relation share below which a predicate's images are repeated.

    Returns:
        (P,) float64; 1 for predicates without training relations.

    Raises:
        ValueError: ``threshold`` not positive, or a predicate outside [0, P).
    """
    if not threshold > 0:
        raise ValueError(
            f"DATALOADER.SGG_RESAMPLING.REPEAT_THRESHOLD is {threshold}; expected a share > 0"
        )
    predicates = np.concatenate([_predicates(r) for r in dataset_dicts] + [np.zeros(0, int)])
    if len(predicates) and (predicates.min() < 0 or predicates.max() >= num_predicates):
        raise ValueError(
            f"bi-level resampling: a training relation has predicate {int(predicates.max())} "
            f"or {int(predicates.min())}, outside [0, {num_predicates}) (MODEL.SGG.NUM_PREDICATES)"
        )
    counts = np.bincount(predicates, minlength=num_predicates).astype(np.float64)
    share = counts / max(counts.sum(), 1.0)
    factors = np.ones(num_predicates)
    seen = counts > 0
    factors[seen] = np.maximum(1.0, np.sqrt(threshold / share[seen]))
    return factors


def image_repeat_factors(
    dataset_dicts: Sequence[Dict], predicate_factors: np.ndarray
) -> torch.Tensor:
    """``r_i = max_{p in image i} r_p`` (1 for an image without relations).

    Returns:
        (N,) float32, what ``RepeatFactorTrainingSampler`` takes.
    """
    factors = [
        float(predicate_factors[p].max()) if len(p) else 1.0
        for p in (_predicates(r) for r in dataset_dicts)
    ]
    return torch.tensor(factors, dtype=torch.float32)


def drop_probabilities(
    predicates: np.ndarray, predicate_factors: np.ndarray, image_factor: float, drop_rate: float
) -> np.ndarray:
    """Drop probability of each relation of an image: ``min(1, max(0, gamma_d * (1 - r_p /
    r_i)))`` when ``r_i > 1``, else 0.

    Args:
        predicates: (R,) int64 predicates of the image's relations.
        predicate_factors: (P,) ``r_p``; image_factor: ``r_i``; drop_rate: ``gamma_d``.

    Returns:
        (R,) float64 probabilities.
    """
    if image_factor <= 1.0:
        return np.zeros(len(predicates))
    ratio = predicate_factors[predicates] / image_factor
    return np.clip(drop_rate * (1.0 - ratio), 0.0, 1.0)


class RelationDropper:
    """The instance-level step: ``(dataset_dict, relations) -> kept relations``.

    Called by ``SceneGraphDatasetMapper`` after its duplicate filtering (as the authors
    drop after theirs); ``r_i`` comes from the dict's own ``relations`` (all of them).

    Args:
        predicate_factors: (P,) ``r_p`` (:func:`predicate_repeat_factors`).
        drop_rate: ``gamma_d`` (``DATALOADER.SGG_RESAMPLING.DROP_RATE``), >= 0.
    """

    def __init__(self, predicate_factors: np.ndarray, drop_rate: float):
        if not drop_rate >= 0:
            raise ValueError(f"DATALOADER.SGG_RESAMPLING.DROP_RATE is {drop_rate}; expected >= 0")
        self.predicate_factors = np.asarray(predicate_factors, dtype=np.float64)
        self.drop_rate = float(drop_rate)

    def image_factor(self, dataset_dict: Dict) -> float:
        """``r_i`` of a dataset dict."""
        predicates = _predicates(dataset_dict)
        return float(self.predicate_factors[predicates].max()) if len(predicates) else 1.0

    def __call__(self, dataset_dict: Dict, relations: np.ndarray, rng=np.random) -> np.ndarray:
        """
        Args:
            dataset_dict: the image's dataset dict (its ``relations`` give ``r_i``).
            relations: (R, 3) int64 rows to thin out (e.g. after duplicate filtering).
            rng: a source with ``random_sample`` (default numpy's global generator).

        Returns:
            (R', 3) the kept rows, in their order.
        """
        prob = drop_probabilities(
            relations[:, 2], self.predicate_factors, self.image_factor(dataset_dict), self.drop_rate
        )
        if not prob.any():
            return relations
        return relations[rng.random_sample(len(relations)) >= prob]

    def __repr__(self) -> str:
        return f"RelationDropper(drop_rate={self.drop_rate})"


def build_resampling(cfg, dataset_dicts: List[Dict]):
    """The sampler and the relation dropper of ``DATALOADER.SGG_RESAMPLING``.

    Args:
        cfg: the config; dataset_dicts: the training dicts, in the loader's order.

    Returns:
        ``(RepeatFactorTrainingSampler, RelationDropper)``.
    """
    rs = cfg.DATALOADER.SGG_RESAMPLING
    factors = predicate_repeat_factors(
        dataset_dicts, cfg.MODEL.SGG.NUM_PREDICATES, rs.REPEAT_THRESHOLD
    )
    images = image_repeat_factors(dataset_dicts, factors)
    logger.info(
        "Bi-level resampling: %d of %d images over-sampled, %.3f draws an image on average "
        "(REPEAT_THRESHOLD %s, DROP_RATE %s)",
        int((images > 1).sum()),
        len(images),
        float(images.mean()) if len(images) else 0.0,
        rs.REPEAT_THRESHOLD,
        rs.DROP_RATE,
    )
    return RepeatFactorTrainingSampler(images), RelationDropper(factors, rs.DROP_RATE)
