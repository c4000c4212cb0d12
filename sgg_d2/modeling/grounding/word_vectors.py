"""Class-name word vectors from a gensim ``KeyedVectors`` file, with a small disk cache.

Only the vectors of the class names are kept (a GloVe file can hold millions of words): the
per-class matrices are cached as ``.npz``, keyed by the two vocabularies and the vector
file's absolute path, modification time and size, so changing any of them recomputes.
"""

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np

from ...data.builtin import default_datasets_root

__all__ = [
    "VECTOR_FORMATS",
    "WordVectorSource",
    "load_keyed_vectors",
    "class_vectors",
    "cached_class_vectors",
    "split_class_name",
]

logger = logging.getLogger(__name__)

VECTOR_FORMATS = ("auto", "glove", "word2vec", "word2vec_binary", "kv")


@dataclass(frozen=True)
class WordVectorSource:
    """Where class word vectors come from (``MODEL.SGG.GROUNDING.WORD_VECTORS*``).

    Attributes:
        path: word-vector file (see :func:`load_keyed_vectors`); "" = none.
        fmt: its format, one of :data:`VECTOR_FORMATS`.
        cache_dir: folder of the class-vector cache; "" = a ``.sgg_cache`` folder next to
            the vector file (never the working directory).
    """

    path: str
    fmt: str = "auto"
    cache_dir: str = ""

    def cache_folder(self) -> str:
        """The folder the class vectors are cached in."""
        if self.cache_dir:
            return self.cache_dir
        return os.path.join(os.path.dirname(os.path.abspath(self.path)), ".sgg_cache")


def _require_file(path: str) -> None:
    """Raise ``FileNotFoundError`` (naming the config key) unless ``path`` is a file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"word-vector file not found: {path} (MODEL.SGG.GROUNDING.WORD_VECTORS; a relative "
            "path datasets/<rest> is also looked up as $SGG_DATASETS/<rest>, "
            f"$SGG_DATASETS = {default_datasets_root()!r})"
        )


def _guess_format(path: str) -> str:
    """ "kv" for gensim's native files, "word2vec_binary" for ``.bin``, else by the header."""
    if path.endswith(".kv"):
        return "kv"
    if path.endswith(".bin"):
        return "word2vec_binary"
    with open(path, encoding="utf8") as f:
        first = f.readline().split()
    # A word2vec text file starts with "<vocabulary size> <dimension>"; GloVe has no header.
    if len(first) == 2 and all(tok.isdigit() for tok in first):
        return "word2vec"
    return "glove"


def load_keyed_vectors(path: str, fmt: str = "auto"):
    """Load a word-vector file with gensim.

    Args:
        path: GloVe text file (no header), word2vec text/binary file, or gensim ``.kv``.
        fmt: one of :data:`VECTOR_FORMATS`; "auto" guesses from the extension and header.

    Returns:
        ``gensim.models.KeyedVectors``.

    Raises:
        FileNotFoundError: no such file. ValueError: unknown ``fmt``.
    """
    from gensim.models import KeyedVectors

    if fmt not in VECTOR_FORMATS:
        raise ValueError(f"word-vector format {fmt!r}; valid: {', '.join(VECTOR_FORMATS)}")
    _require_file(path)
    if fmt == "auto":
        fmt = _guess_format(path)
    logger.info("Loading word vectors (%s) from %s", fmt, path)
    if fmt == "kv":
        return KeyedVectors.load(path)
    return KeyedVectors.load_word2vec_format(
        path, binary=fmt == "word2vec_binary", no_header=fmt == "glove"
    )


def split_class_name(name: str) -> List[str]:
    """Words of a class name: split on spaces, underscores and hyphens ("traffic light")."""
    return [w for w in re.split(r"[\s_\-]+", name.strip()) if w]


def _lookup(kv, word: str):
    for candidate in (word, word.lower()):
        if candidate in kv.key_to_index:
            return kv[candidate]
    return None


def class_vectors(kv, names: Sequence[str], source: str = "") -> np.ndarray:
    """One vector per class name; a multi-word name is the mean of its words' vectors.

    Args:
        kv: ``KeyedVectors`` (anything with ``key_to_index`` and ``__getitem__``).
        names: K class names.
        source: where the names come from, for the error message (e.g. a file name).

    Returns:
        (K, dim) float64 array.

    Raises:
        KeyError: listing every class name with a word that has no vector.
    """
    rows, missing = [], []
    for name in names:
        words = split_class_name(name)
        vecs = [_lookup(kv, w) for w in words]
        absent = [w for w, v in zip(words, vecs) if v is None]
        if absent or not words:
            missing.append(f"{name!r} (no vector for {', '.join(absent) or 'an empty name'})")
            continue
        rows.append(np.mean(np.stack(vecs).astype(np.float64), axis=0))
    if missing:
        where = f" in {source}" if source else ""
        raise KeyError(
            f"{len(missing)} class name(s) have no word vector{where}: " + "; ".join(missing)
        )
    return np.stack(rows)


def _cache_key(target: Sequence[str], aux: Sequence[str], path: str, fmt: str) -> str:
    stat = os.stat(path)
    key = {
        "target": list(target),
        "aux": list(aux),
        "file": os.path.abspath(path),
        "mtime_ns": stat.st_mtime_ns,
        "size": stat.st_size,
        "format": fmt,
    }
    return hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def cached_class_vectors(
    target_names: Sequence[str], aux_names: Sequence[str], source: WordVectorSource
) -> Tuple[np.ndarray, np.ndarray]:
    """Target (d_g, dim) and auxiliary (d_m, dim) class vectors, cached on disk.

    Args:
        target_names, aux_names: the two vocabularies.
        source: the word-vector file, its format and the cache folder.

    Returns:
        (target_vectors, aux_vectors), float64.
    """
    path, fmt = source.path, source.fmt
    _require_file(path)
    folder = source.cache_folder()
    cache = os.path.join(
        folder, f"class_vectors_{_cache_key(target_names, aux_names, path, fmt)}.npz"
    )
    if os.path.isfile(cache):
        with np.load(cache) as data:
            return data["target"], data["aux"]
    kv = load_keyed_vectors(path, fmt)
    arrays: Dict[str, np.ndarray] = {
        "target": class_vectors(kv, target_names, f"{path} (target classes)"),
        "aux": class_vectors(kv, aux_names, f"{path} (auxiliary classes)"),
    }
    os.makedirs(folder, exist_ok=True)
    # write then rename (per-process name): concurrent workers never see half a file
    tmp = f"{cache}.{os.getpid()}.tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, cache)
    logger.info("Cached class word vectors in %s", cache)
    return arrays["target"], arrays["aux"]
