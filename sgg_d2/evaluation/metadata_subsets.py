"""Named subsets of a scene-graph dataset, read from its metadata, and their report.

``predicate_groups`` (group name -> predicate names) gives one predicate subset over all
images per group; ``image_tags`` (image_id -> list of tags) one image subset per tag over
all predicates. :class:`~.sg_evaluator.SceneGraphEvaluator` reports ``R@K[name]`` and
``mR@K[name]`` (:data:`SUBSET_FAMILIES`) for each, computed by
:func:`~.subsets.subset_recall`.
"""

from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
from detectron2.data import MetadataCatalog

from .tables import metric_grid_table

__all__ = [
    "SUBSET_FAMILIES",
    "Subset",
    "predicate_indices",
    "metadata_subsets",
    "subset_details",
    "subset_metrics",
    "subset_table",
]

# Families reported for the metadata subsets (evaluate_subset also gives the ng- ones).
SUBSET_FAMILIES = ("R", "mR")

# (image ids or None for all images, predicate indices or None for all predicates).
Subset = Tuple[Optional[set], Optional[List[int]]]


def predicate_indices(
    predicates: Iterable[Union[str, int]], names: Sequence[str], dataset_name: str, where: str
) -> List[int]:
    """0-based indices of predicate names or indices.

    Args:
        predicates: names of ``names`` or indices in ``[0, len(names))``.
        names: the dataset's predicate classes.
        dataset_name: named in the error message.
        where: prefix of the error message (e.g. ``"... predicate_groups['x']: "``).

    Raises:
        ValueError: an unknown name or index (lists the valid names).
    """
    names = list(names)
    indices = []
    for p in predicates:
        if isinstance(p, (int, np.integer)) and 0 <= int(p) < len(names):
            indices.append(int(p))
        elif isinstance(p, str) and p in names:
            indices.append(names.index(p))
        else:
            raise ValueError(
                f"{where}predicate {p!r} is not a predicate of '{dataset_name}' "
                f"(names or indices 0..{len(names) - 1}: {', '.join(names)})"
            )
    return indices


def metadata_subsets(dataset_name: str, names: Sequence[str]) -> Dict[str, Subset]:
    """name -> :data:`Subset` from the metadata of ``dataset_name``.

    ``predicate_groups`` (dict group -> predicate names of ``names``) gives predicate
    subsets over all images; ``image_tags`` (dict image_id -> tags) gives one image subset
    per tag over all predicates. A group and a tag may not share a name. Groups come
    first, each kind in sorted name order.

    Raises:
        ValueError: malformed metadata, naming the dataset, key and entry.
    """
    meta = MetadataCatalog.get(dataset_name)
    groups = meta.get("predicate_groups", None) or {}
    tags = meta.get("image_tags", None) or {}
    where = f"dataset '{dataset_name}' metadata"
    if not isinstance(groups, dict) or not isinstance(tags, dict):
        raise ValueError(
            f"{where}: predicate_groups and image_tags must be dicts "
            f"(got {type(groups).__name__}, {type(tags).__name__})"
        )
    subsets: Dict[str, Subset] = {}
    for group, group_names in sorted(groups.items()):
        if isinstance(group_names, str):
            raise ValueError(f"{where} predicate_groups[{group!r}]: expected a list of names")
        at = f"{where} predicate_groups[{group!r}]: "
        subsets[str(group)] = (None, predicate_indices(group_names, names, dataset_name, at))
    by_tag: Dict[str, set] = {}
    for image_id, image_tags in tags.items():
        if isinstance(image_tags, str):
            raise ValueError(f"{where} image_tags[{image_id!r}]: expected a list of tags")
        for tag in image_tags:
            by_tag.setdefault(str(tag), set()).add(image_id)
    for tag, ids in sorted(by_tag.items()):
        if tag in subsets:
            raise ValueError(f"{where}: {tag!r} is both a predicate group and an image tag")
        subsets[tag] = (ids, None)
    return subsets


def subset_details(
    gt_predicates: Sequence[np.ndarray],
    images: Optional[np.ndarray],
    indices: Optional[List[int]],
    names: Sequence[str],
) -> Dict[str, Any]:
    """JSON-able size of a subset.

    Args:
        gt_predicates: per image, (G_i,) int64 GT predicates.
        images: (n,) bool, the subset's images; None: all.
        indices: the subset's predicate indices; None: all.
        names: the dataset's predicate classes.

    Returns:
        ``{"num_images", "num_gt_triplets", "predicates"}`` (predicate names, or None
        for all).
    """
    images = np.ones(len(gt_predicates), dtype=bool) if images is None else images
    in_q = np.ones(len(names), dtype=bool)
    if indices is not None:
        in_q[:] = False
        in_q[indices] = True
    return {
        "num_images": int(images.sum()),
        "num_gt_triplets": int(sum(in_q[p].sum() for p, m in zip(gt_predicates, images) if m)),
        "predicates": None if indices is None else [names[i] for i in indices],
    }


def subset_metrics(found: Dict[str, float], name: str, ks: Sequence[int]) -> Dict[str, float]:
    """The :data:`SUBSET_FAMILIES` metrics of :func:`~.subsets.subset_recall`'s result
    ``found`` under subset-qualified keys (``"R@50"`` -> ``"R@50[name]"``), family by
    family and K by K."""
    return {
        f"{family}@{k}[{name}]": found[f"{family}@{k}"]
        for family in SUBSET_FAMILIES
        for k in ks
        if f"{family}@{k}" in found
    }


def subset_table(
    metrics: Dict[str, float], names: List[str], columns: List[str], title: str = ""
) -> str:
    """Log table of the subset metrics (``"R@50[name]"`` keys), one row per family and
    subset, under ``title`` (default: the metadata subsets' one); empty when there are
    none."""
    if not metrics:
        return ""
    title = title or "Subsets (R@K over the subset's GT triplets, mR@K over its classes):"
    families = [f"{family}[{name}]" for name in names for family in SUBSET_FAMILIES]
    # metric_grid_table reads family + column, e.g. "R[x]" + "@50"; rename to match.
    renamed = {}
    for key, value in metrics.items():
        family_at, name = key[:-1].split("[", 1)
        family, k = family_at.split("@")
        renamed[f"{family}[{name}]@{k}"] = value
    return f"\n{title}\n" + metric_grid_table(renamed, families, columns)
