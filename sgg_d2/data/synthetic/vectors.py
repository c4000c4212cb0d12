"""Construction of the synthetic world's word vectors (GloVe text format).

Each auxiliary class is a *concept* with a random unit direction. A word made of a concept
(auxiliary name or target class name, per :data:`TARGET_TO_AUX`) is that direction plus a
smaller word-specific random part, so e.g. "ball" is close to "circle" and far from
"stripe". Every other word (predicate words, colours, a few fillers) is random; random
50-d directions are nearly orthogonal.
"""

import os
from typing import Dict, List

import numpy as np

from .world import AUX_CLASSES, COLOURS, DEFAULT_WORLD, WorldSpec

__all__ = ["VECTOR_DIM", "vocabulary_words", "build_word_vectors", "write_glove"]

VECTOR_DIM = 50
_OWN_WEIGHT = 0.45  # size of the word-specific part relative to the concept direction
_CONCEPT_WEIGHT = {"crescent": 0.8}  # a crescent is only partly a circle
_NORM = 5.0  # GloVe-like vector length
_FILLERS = ("the", "a", "shape", "object", "image", "of")


def vocabulary_words(spec: WorldSpec = DEFAULT_WORLD) -> List[str]:
    """Every word the file of world ``spec`` covers, in file order (each word once)."""
    words: List[str] = []
    names = list(AUX_CLASSES) + list(spec.thing_classes) + list(spec.predicates)
    names += [c for c, _ in COLOURS] + list(_FILLERS)
    for name in names:
        for word in name.split():
            if word not in words:
                words.append(word)
    return words


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def build_word_vectors(
    seed: int, dim: int = VECTOR_DIM, spec: WorldSpec = DEFAULT_WORLD
) -> Dict[str, np.ndarray]:
    """Word -> float64 (dim,) vector, deterministic in ``seed``.

    Args:
        seed: world seed (vectors use their own stream of it).
        dim: vector dimension.
        spec: the world whose vocabulary is covered.
    """
    rng = np.random.default_rng([seed, 5])
    concepts = {a: _unit(rng.standard_normal(dim)) for a in AUX_CLASSES}
    vectors = {}
    for word in vocabulary_words(spec):
        own = _unit(rng.standard_normal(dim))
        concept = word if word in concepts else spec.target_to_aux.get(word)
        if concept is None:
            vec = own
        else:
            vec = _CONCEPT_WEIGHT.get(word, 1.0) * concepts[concept] + _OWN_WEIGHT * own
        vectors[word] = _NORM * _unit(vec)
    return vectors


def write_glove(path: str, vectors: Dict[str, np.ndarray]) -> None:
    """Write ``word v1 ... vD`` lines (no header), 5 decimals, in dict order."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for word, vec in vectors.items():
            f.write(word + " " + " ".join(f"{v:.5f}" for v in vec) + "\n")
