"""Shared input checks and catalog helpers of the scene-graph dataset loaders.

Every loader reports bad input through these helpers so that messages look alike: a
missing file names the option that pointed to it, a malformed file names the file and the
offending key, id or index.
"""

import inspect
import json
import logging
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

__all__ = [
    "DatasetFormatError",
    "require_file",
    "require_keys",
    "load_json_file",
    "image_size",
    "resolve_train_split",
    "register_lazy",
    "DEGENERATE_RULES",
    "check_degenerate_rule",
    "register_split",
    "REGISTERED_BEFORE_SGG_D2",
]

logger = logging.getLogger(__name__)

# Names in the catalog before sgg_d2 registered anything: Detectron2's own built-ins
# (registered when ``detectron2.data`` is imported, which the import above does).
REGISTERED_BEFORE_SGG_D2 = frozenset(DatasetCatalog.list())

# EXIF orientations 5-8 rotate by 90 degrees, so width and height swap once Detectron2's
# ``read_image`` has applied them.
_EXIF_ORIENTATION_TAG = 0x0112
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)

# Values of the loaders' ``degenerate_boxes`` option (rules in :mod:`._boxes`).
DEGENERATE_RULES = ("enlarge", "drop", "error")


class DatasetFormatError(ValueError):
    """An annotation file does not follow its documented format (message says where)."""


def require_file(path: str, option: str) -> str:
    """Return ``path`` if it is an existing file.

    Args:
        path: the file path.
        option: name of the argument/option that pointed to it, used in the message.

    Raises:
        FileNotFoundError: ``"<option>: no such file: <path>"``.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{option}: no such file: {path}")
    return path


def require_keys(entry: Any, keys: Sequence[str], where: str) -> None:
    """Check that ``entry`` is a dict holding every key of ``keys``.

    Raises:
        DatasetFormatError: ``"<where>: missing key(s) <k1>, <k2>"``.
    """
    missing = [k for k in keys if not isinstance(entry, dict) or k not in entry]
    if missing:
        raise DatasetFormatError(f"{where}: missing key(s) {', '.join(missing)}")


def load_json_file(path: str, option: str) -> Any:
    """Read a JSON file given through ``option``; errors name the option and the path."""
    require_file(path, option)
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise DatasetFormatError(f"{option}: {path} is not valid JSON ({e})") from e


def image_size(path: str) -> Tuple[int, int]:
    """Size ``(width, height)`` of an image file as Detectron2's ``read_image`` returns it.

    Only the header is read. EXIF orientations that rotate by 90 degrees swap the sides,
    matching the EXIF handling of ``detectron2.data.detection_utils.read_image``.

    Raises:
        FileNotFoundError: naming the image file.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image file not found: {path}")
    with Image.open(path) as im:
        width, height = im.size
        orientation = im.getexif().get(_EXIF_ORIENTATION_TAG)
    if orientation in _TRANSPOSING_ORIENTATIONS:
        width, height = height, width
    return width, height


def check_degenerate_rule(rule: str) -> str:
    """Validate the ``degenerate_boxes`` option."""
    if rule not in DEGENERATE_RULES:
        raise ValueError(f"degenerate_boxes is {rule!r}; valid values are {DEGENERATE_RULES}")
    return rule


def resolve_train_split(name: str, train_split: Optional[str]) -> str:
    """Name of the training split whose statistics apply to dataset ``name``.

    An explicit ``train_split`` wins. Otherwise a name ending in ``_val`` or ``_test`` maps
    to the same prefix with ``_train`` (``vg150_test`` -> ``vg150_train``), and any other
    name is taken to be a training split itself.
    """
    if train_split:
        return train_split
    for suffix in ("_val", "_test"):
        if name.endswith(suffix):
            return name[: -len(suffix)] + "_train"
    return name


def register_lazy(name: str, loader: Callable[[], List[Dict]], metadata: Dict[str, Any]) -> None:
    """Register ``loader`` under ``name`` in ``DatasetCatalog`` and set its metadata.

    Nothing is loaded now; Detectron2 calls ``loader`` on ``DatasetCatalog.get(name)``.

    Raises:
        ValueError: ``name`` is already registered (remove it from ``DatasetCatalog`` and
            ``MetadataCatalog`` first to re-register).
    """
    if name in DatasetCatalog.list():
        raise ValueError(
            f"dataset {name!r} is already registered; call DatasetCatalog.remove({name!r}) "
            f"and MetadataCatalog.remove({name!r}) before registering it again"
        )
    DatasetCatalog.register(name, loader)
    MetadataCatalog.get(name).set(**metadata)
    logger.debug("Registered dataset %s", name)


def register_split(
    name: str,
    loader: Callable[..., List[Dict]],
    classes: Tuple[List[str], List[str]],
    evaluator_type: str,
    image_root: str,
    *,
    train_split: Optional[str] = None,
    metadata: Optional[Dict[str, Any]] = None,
    category_ids: Optional[Sequence[int]] = None,
    **options: Any,
) -> None:
    """Register ``loader(**options)`` under ``name`` (lazily) with scene-graph metadata.

    The common part of every ``register_*`` function of the loaders.

    Args:
        name: dataset name.
        loader: loads the split when called with ``options`` (its file arguments bound).
        classes: ``(thing_classes, predicate_classes)``, set as metadata.
        evaluator_type, image_root: set as metadata.
        train_split: matching training split; default derived from ``name`` by
            :func:`resolve_train_split`.
        metadata: extra metadata to set (e.g. ``dataset_root``); wins over the above.
        category_ids: the annotation file's own id of each class, in ``thing_classes``
            order (default: the 0-based index). Set as Detectron2's
            ``thing_dataset_id_to_contiguous_id`` (``{id: index}``), which its
            ``COCOEvaluator`` uses to score box predictions (0-based classes) against
            the dataset.
        options: keyword options of ``loader``; checked now (an unknown name is a
            ``TypeError``, a bad ``degenerate_boxes`` a ``ValueError``).

    Raises:
        ValueError: ``name`` is already registered (see :func:`register_lazy`).
    """
    signature = inspect.signature(loader)
    signature.bind_partial(**options)
    default_rule = signature.parameters["degenerate_boxes"].default
    check_degenerate_rule(options.get("degenerate_boxes", default_rule))
    ids = range(len(classes[0])) if category_ids is None else category_ids
    register_lazy(
        name,
        lambda: loader(**options),
        {
            "thing_classes": classes[0],
            "thing_dataset_id_to_contiguous_id": {int(i): k for k, i in enumerate(ids)},
            "predicate_classes": classes[1],
            "evaluator_type": evaluator_type,
            "train_split": resolve_train_split(name, train_split),
            "image_root": image_root,
            **(metadata or {}),
        },
    )
