"""Head, body and tail predicate groups, from the training split's predicate counts.

The long-tail breakdown of PySGG (BGNN, Li et al., CVPR 2021): the predicate classes are
split by their number of training instances (GT relation rows of the training split),
head more than 10,000, body 500 to 10,000, tail fewer than 500 on Visual Genome.
:class:`~.sg_evaluator.SceneGraphEvaluator` reports ``mR@K[head]``, ``mR@K[body]`` and
``mR@K[tail]`` (:func:`~.functional.recall.group_mean_recall`).

A :class:`PredicateGroupRule` holds the two boundaries, either as counts (``"count"``,
PySGG's definition) or as shares of all training instances (``"share"``, for small
datasets where no predicate reaches 10,000 instances):

- head: the value (count or share) is **above** ``head_above`` (strictly);
- tail: the value is **below** ``tail_below`` (strictly);
- body: the rest, ``tail_below <= value <= head_above``.

A predicate that never occurs in training has count 0 (tail unless ``tail_below`` is 0).
"""

import dataclasses
import logging
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog

from .functional.recall import group_mean_recall

__all__ = [
    "GROUP_NAMES",
    "PYSGG_RULE",
    "PredicateGroupRule",
    "TrainingGroups",
    "assign_predicate_groups",
    "check_subset_names",
    "load_training_groups",
    "rule_from_config",
    "training_predicate_counts",
]

logger = logging.getLogger(__name__)

GROUP_NAMES = ("head", "body", "tail")
_MODES = ("count", "share")
_WHERE = "predicate groups (TEST.SGG.PREDICATE_GROUPS)"


@dataclasses.dataclass(frozen=True)
class PredicateGroupRule:
    """Where head, body and tail are split (module docstring).

    Attributes:
        mode: ``"count"`` (boundaries in training instances) or ``"share"`` (boundaries
            as a fraction of all training instances, in [0, 1]).
        head_above: head = value > head_above.
        tail_below: tail = value < tail_below; ``0 <= tail_below <= head_above``.
    """

    mode: str = "count"
    head_above: float = 10000
    tail_below: float = 500

    def __post_init__(self):
        if self.mode not in _MODES:
            raise ValueError(f"{_WHERE}: MODE is {self.mode!r}; expected 'count', 'share' or 'off'")
        head, tail = float(self.head_above), float(self.tail_below)
        if not 0 <= tail <= head:
            raise ValueError(
                f"{_WHERE}: the tail boundary ({tail:g}) must be >= 0 and <= the head "
                f"boundary ({head:g})"
            )
        if self.mode == "share" and head > 1:
            raise ValueError(
                f"{_WHERE}: share boundaries are fractions of the training instances in "
                f"[0, 1], got head {head:g}"
            )

    @classmethod
    def coerce(cls, value: Union["PredicateGroupRule", Mapping[str, Any], None]):
        """A rule from a rule, a mapping of its fields (as :meth:`to_dict`) or None (off).

        Raises:
            ValueError: unknown fields or invalid values.
        """
        if value is None or isinstance(value, cls):
            return value
        if not isinstance(value, Mapping):
            raise ValueError(f"{_WHERE}: expected a mapping of rule fields, got {value!r}")
        unknown = set(value) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(
                f"{_WHERE}: unknown fields {sorted(unknown)}; expected mode, head_above, "
                "tail_below"
            )
        return cls(**value)

    def to_dict(self) -> Dict[str, Any]:
        """Plain fields (saved with the evaluator settings)."""
        return dataclasses.asdict(self)

    def describe(self) -> str:
        """One line, e.g. ``head > 10000, body 500-10000, tail < 500 training instances``."""
        unit = "training instances" if self.mode == "count" else "of the training instances"
        head, tail = f"{self.head_above:g}", f"{self.tail_below:g}"
        return f"head > {head}, body {tail}-{head}, tail < {tail} {unit}"


# PySGG's Visual Genome definition (the config default and the evaluator's).
PYSGG_RULE = PredicateGroupRule("count", 10000, 500)


def rule_from_config(cfg) -> Optional[PredicateGroupRule]:
    """The rule of ``cfg.TEST.SGG.PREDICATE_GROUPS``; None when its MODE is ``"off"``.

    Raises:
        ValueError: invalid MODE or boundaries (names the config key).
    """
    g = cfg.TEST.SGG.PREDICATE_GROUPS
    if g.MODE == "off":
        return None
    if g.MODE == "share":
        return PredicateGroupRule("share", g.HEAD_SHARE_ABOVE, g.TAIL_SHARE_BELOW)
    return PredicateGroupRule(g.MODE, g.HEAD_ABOVE, g.TAIL_BELOW)


def assign_predicate_groups(
    counts: Sequence[int], rule: PredicateGroupRule
) -> Optional[Dict[str, np.ndarray]]:
    """Head, body and tail predicate classes from training instance counts.

    Args:
        counts: (P,) training instances of each predicate class.
        rule: the boundaries.

    Returns:
        ``{"head", "body", "tail"}`` -> sorted class indices (int64, possibly empty),
        together a partition of ``range(P)``; None in ``"share"`` mode when there is no
        training instance at all (shares are undefined).
    """
    values = np.asarray(counts, dtype=np.float64)
    if rule.mode == "share":
        if values.sum() <= 0:
            return None
        values = values / values.sum()
    head = values > rule.head_above
    tail = values < rule.tail_below
    return {
        "head": np.flatnonzero(head),
        "body": np.flatnonzero(~head & ~tail),
        "tail": np.flatnonzero(tail),
    }


def training_predicate_counts(
    dataset_name: str, predicate_classes: Sequence[str]
) -> Union[Tuple[str, np.ndarray], str]:
    """Predicate counts of the training split named by ``dataset_name``'s metadata.

    Every GT relation row of the training split counts once, as in the data layer's
    statistics (:func:`~sgg_d2.data.statistics.compute_statistics`, ``predicate_counts``).

    Args:
        dataset_name: the evaluated dataset; its metadata ``train_split`` names the split.
        predicate_classes: the evaluated dataset's predicate classes (P).

    Returns:
        ``(train split name, (P,) int64 counts)``, or a sentence saying why there are none
        (no ``train_split`` metadata, or that split is not registered).

    Raises:
        ValueError: the training split has other predicate classes, or a relation whose
            predicate is outside [0, P) (names the split, image and row).
    """
    train = MetadataCatalog.get(dataset_name).get("train_split", None)
    if not train:
        return f"the metadata of '{dataset_name}' names no train_split"
    if train not in DatasetCatalog.list():
        return f"its training split '{train}' (metadata train_split) is not registered"
    train_classes = MetadataCatalog.get(train).get("predicate_classes", None)
    if train_classes is not None and list(train_classes) != list(predicate_classes):
        raise ValueError(
            f"training split '{train}' of '{dataset_name}' has other predicate classes "
            f"({len(train_classes)} vs {len(predicate_classes)}); the groups need the same"
        )
    return train, _count_predicates(train, DatasetCatalog.get(train), len(predicate_classes))


def _count_predicates(name: str, dicts: List[Dict], num_predicates: int) -> np.ndarray:
    counts = np.zeros(num_predicates, dtype=np.int64)
    for record in dicts:
        rows = np.asarray(record.get("relations", ()), dtype=np.int64).reshape(-1, 3)
        bad = (rows[:, 2] < 0) | (rows[:, 2] >= num_predicates)
        if bad.any():
            raise ValueError(
                f"training split '{name}', image_id {record.get('image_id')!r}: relation "
                f"{rows[bad][0].tolist()} has a predicate outside [0, {num_predicates})"
            )
        counts += np.bincount(rows[:, 2], minlength=num_predicates)
    return counts


@dataclasses.dataclass(frozen=True)
class TrainingGroups:
    """The head / body / tail groups of a dataset, from its training split.

    Attributes:
        rule: the boundaries used.
        train_split: the registered training split the counts come from.
        counts: (P,) int64 training instances per predicate class.
        groups: ``{"head", "body", "tail"}`` -> class indices (see
            :func:`assign_predicate_groups`).
    """

    rule: PredicateGroupRule
    train_split: str
    counts: np.ndarray
    groups: Dict[str, np.ndarray]

    def metrics(self, per_predicate: Mapping[str, np.ndarray], ks: Sequence[int]):
        """``mR@K[group]`` (percent) of every non-empty group, group by group, then K.

        Args:
            per_predicate: ``"R@K"`` -> (P,) per-class recall in percent, as returned by
                :func:`~.functional.recall.aggregate_scene_graph_recall`.
            ks: the K values.
        """
        by_k = {k: group_mean_recall(per_predicate[f"R@{k}"], self.groups) for k in ks}
        return {
            f"mR@{k}[{name}]": by_k[k][name] for name in GROUP_NAMES for k in ks if name in by_k[k]
        }

    def title(self) -> str:
        """Heading of the groups' log table."""
        return f"Predicate groups of {self.train_split} ({self.rule.describe()}), mR@K:"

    def details(self, names: Sequence[str]) -> Dict[str, Any]:
        """JSON-able description: rule, training split, each group's predicate names and
        training counts (an empty group has no metric)."""
        return {
            "rule": self.rule.to_dict(),
            "train_split": self.train_split,
            "groups": {
                group: {names[i]: int(self.counts[i]) for i in self.groups[group]}
                for group in GROUP_NAMES
            },
        }


def check_subset_names(dataset_name: str, subset_names: Iterable[str]) -> None:
    """Refuse metadata subsets named like a group (their ``mR@K[name]`` would collide).

    Raises:
        ValueError: names the dataset and the subsets.
    """
    taken = sorted(set(GROUP_NAMES) & set(subset_names))
    if taken:
        raise ValueError(
            f"dataset '{dataset_name}' metadata names the subset(s) {taken}, which the "
            "head/body/tail predicate groups report; rename them or set "
            "TEST.SGG.PREDICATE_GROUPS.MODE off"
        )


def load_training_groups(
    dataset_name: str, predicate_classes: Sequence[str], rule: PredicateGroupRule
) -> Optional[TrainingGroups]:
    """The groups of ``dataset_name`` from its training split's counts; None, with one
    log notice, when the training split is unknown or (share mode) has no relation.

    Raises:
        ValueError: see :func:`training_predicate_counts`.
    """
    found = training_predicate_counts(dataset_name, predicate_classes)
    groups = None
    if isinstance(found, str):
        reason = found
    else:
        train, counts = found
        groups = assign_predicate_groups(counts, rule)
        reason = f"its training split '{train}' has no relation to take shares of"
    if groups is None:
        logger.warning(f"mR@K[head/body/tail] skipped for '{dataset_name}': {reason}")
        return None
    return TrainingGroups(rule, train, counts, groups)
