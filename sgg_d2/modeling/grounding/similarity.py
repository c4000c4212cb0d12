"""The lingual similarity S (target classes x auxiliary classes) used for mask transfer.

``S`` has shape (d_g, d_m): row g holds the weights of the d_m auxiliary class masks that
make the mask of target class g (see :class:`MaskTransferHead`). Normalisations
(``MODEL.SGG.GROUNDING.SIMILARITY``), with t_g, a_m the class word vectors:

- ``"dot"`` (the paper): ``S[g, m] = t_g . a_m``;
- ``"softmax"``: ``S[g] = softmax_m(t_g . a_m / T)``; entries below a threshold are set to
  0 (the row's maximum is always kept) and the row is renormalised to sum to 1, so each
  target mask is a convex combination of auxiliary masks;
- ``"cosine"``: ``S[g, m] = cos(t_g, a_m)``.

Rows can be fixed to one auxiliary class: by exact (case-insensitive) name match, and by an
explicit mapping file (JSON ``{"target name": "auxiliary name"}``), which wins over the
exact match. Fixed rows need no word vector.
"""

import json
import logging
import os
from typing import Dict, Optional, Sequence

import numpy as np

from ...data.builtin import resolve_data_path
from .word_vectors import WordVectorSource, cached_class_vectors

__all__ = [
    "SIMILARITIES",
    "similarity_matrix",
    "fixed_rows",
    "load_class_mapping",
    "build_similarity",
    "grounding_similarity",
    "dataset_class_names",
    "default_cache_dir",
]

logger = logging.getLogger(__name__)

SIMILARITIES = ("dot", "softmax", "cosine")


def similarity_matrix(
    target: np.ndarray,
    aux: np.ndarray,
    normalization: str = "dot",
    temperature: float = 1.0,
    threshold: float = 0.0,
) -> np.ndarray:
    """S from class vectors.

    Args:
        target: (d_g, D) target class vectors; aux: (d_m, D) auxiliary class vectors.
        normalization: one of :data:`SIMILARITIES` (module docstring).
        temperature: softmax temperature (``"softmax"`` only).
        threshold: softmax entries below it are zeroed (``"softmax"`` only).

    Returns:
        (d_g, d_m) float64.
    """
    if normalization not in SIMILARITIES:
        raise ValueError(
            f"similarity normalisation {normalization!r} (MODEL.SGG.GROUNDING.SIMILARITY); "
            f"valid: {', '.join(SIMILARITIES)}"
        )
    if normalization == "cosine":
        t = target / np.linalg.norm(target, axis=1, keepdims=True).clip(min=1e-12)
        a = aux / np.linalg.norm(aux, axis=1, keepdims=True).clip(min=1e-12)
        return t @ a.T
    dot = target @ aux.T
    if normalization == "dot":
        return dot
    if temperature <= 0:
        raise ValueError(f"softmax temperature must be > 0, got {temperature}")
    z = dot / temperature
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    keep = (p >= threshold) | (p == p.max(axis=1, keepdims=True))
    p = np.where(keep, p, 0.0)
    return p / p.sum(axis=1, keepdims=True)


def load_class_mapping(path: str) -> Dict[str, str]:
    """Read a JSON object ``{target class name: auxiliary class name}``."""
    with open(path, encoding="utf8") as f:
        mapping = json.load(f)
    if not isinstance(mapping, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
    ):
        raise ValueError(f"{path}: expected a JSON object of class name -> class name strings")
    return mapping


def fixed_rows(
    target_names: Sequence[str],
    aux_names: Sequence[str],
    exact_name_match: bool = True,
    mapping: Optional[Dict[str, str]] = None,
    mapping_source: str = "class mapping",
) -> Dict[int, int]:
    """Target class index -> auxiliary class index for rows of S fixed to one-hot.

    Raises:
        KeyError: a mapping entry names a class absent from its vocabulary.
    """
    aux_index = {n.lower(): i for i, n in enumerate(aux_names)}
    target_index = {n: i for i, n in enumerate(target_names)}
    rows = {}
    if exact_name_match:
        rows = {
            g: aux_index[n.lower()] for g, n in enumerate(target_names) if n.lower() in aux_index
        }
    for t_name, a_name in (mapping or {}).items():
        if t_name not in target_index:
            raise KeyError(f"{mapping_source}: {t_name!r} is not a target class")
        if a_name.lower() not in aux_index:
            raise KeyError(
                f"{mapping_source}: {a_name!r} (for {t_name!r}) is not an auxiliary class; "
                f"auxiliary classes: {', '.join(aux_names)}"
            )
        rows[target_index[t_name]] = aux_index[a_name.lower()]
    return rows


def build_similarity(
    target_names: Sequence[str],
    aux_names: Sequence[str],
    vectors: WordVectorSource,
    *,
    normalization: str = "dot",
    temperature: float = 1.0,
    threshold: float = 0.0,
    exact_name_match: bool = True,
    mapping_file: str = "",
) -> np.ndarray:
    """S (d_g, d_m) float32 for two vocabularies: word vectors, normalisation, fixed rows.

    Args:
        target_names: d_g target class names; aux_names: d_m auxiliary class names.
        vectors: word-vector file, format and cache folder of the class vectors (a file
            is needed only when some row is not fixed).
        normalization, temperature, threshold: see :func:`similarity_matrix`.
        exact_name_match, mapping_file: rows fixed to one auxiliary class (module docstring).
    """
    mapping = load_class_mapping(mapping_file) if mapping_file else None
    fixed = fixed_rows(target_names, aux_names, exact_name_match, mapping, mapping_file)
    free = [g for g in range(len(target_names)) if g not in fixed]
    S = np.zeros((len(target_names), len(aux_names)), dtype=np.float64)
    if free:
        if not vectors.path:
            raise ValueError(
                "MODEL.SGG.GROUNDING.WORD_VECTORS is empty, but target classes "
                f"{[target_names[g] for g in free][:10]} need word vectors"
            )
        t, a = cached_class_vectors([target_names[g] for g in free], aux_names, vectors)
        S[free] = similarity_matrix(t, a, normalization, temperature, threshold)
    for g, m in fixed.items():
        S[g] = 0.0
        S[g, m] = 1.0
    logger.info(
        "Similarity S %s (%s): %d rows from word vectors, %d fixed rows",
        S.shape,
        normalization,
        len(free),
        len(fixed),
    )
    return S.astype(np.float32)


def grounding_similarity(
    g,
    target_names: Sequence[str],
    aux_names: Sequence[str],
    cache_dir: str,
    normalization: Optional[str] = None,
) -> np.ndarray:
    """S (d_g, d_m) float32 as a ``MODEL.SGG.GROUNDING`` config node ``g`` sets it up.

    Args:
        g: the config node (``WORD_VECTORS``, ``WORD_VECTORS_FORMAT``, ``SIMILARITY``,
            ``SOFTMAX_TEMPERATURE``, ``SOFTMAX_THRESHOLD``, ``EXACT_NAME_MATCH``,
            ``CLASS_MAPPING_FILE``).
        target_names: d_g target class names; aux_names: d_m auxiliary class names.
        cache_dir: cache folder of the class vectors (see :func:`default_cache_dir`).
        normalization: instead of ``g.SIMILARITY`` (e.g. to compare normalisations).
    """
    return build_similarity(
        target_names,
        aux_names,
        WordVectorSource(resolve_data_path(g.WORD_VECTORS), g.WORD_VECTORS_FORMAT, cache_dir),
        normalization=normalization or g.SIMILARITY,
        temperature=g.SOFTMAX_TEMPERATURE,
        threshold=g.SOFTMAX_THRESHOLD,
        exact_name_match=g.EXACT_NAME_MATCH,
        mapping_file=g.CLASS_MAPPING_FILE,
    )


def dataset_class_names(dataset_name: str):
    """``thing_classes`` of a registered dataset (loading it once if only then known,
    as for ``register_coco_instances``)."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    meta = MetadataCatalog.get(dataset_name)
    if meta.get("thing_classes") is None:
        DatasetCatalog.get(dataset_name)  # COCO-format loaders set thing_classes when loading
    names = meta.get("thing_classes")
    if not names:
        raise ValueError(f"dataset {dataset_name!r} has no thing_classes in its metadata")
    return list(names)


def default_cache_dir(output_dir: str, configured: str) -> str:
    """The configured cache folder, else ``<OUTPUT_DIR>/grounding_cache`` ("" if neither:
    then the vector file's folder is used)."""
    if configured:
        return configured
    return os.path.join(output_dir, "grounding_cache") if output_dir else ""
