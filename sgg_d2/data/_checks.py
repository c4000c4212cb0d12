"""Shared input checks and catalog helpers of the scene-graph dataset loaders.

Every loader reports bad input through these helpers so that messages look alike: a
missing file names the option that pointed to it, a malformed file names the file and the
offending key, id or index.
"""

import json
import logging
import os
from typing import Any, Callable, Dict, List, Optional, Tuple

from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

__all__ = [
    "DatasetFormatError",
    "require_file",
    "load_json_file",
    "image_size",
    "resolve_train_split",
    "register_lazy",
]

logger = logging.getLogger(__name__)

# EXIF orientations 5-8 rotate by 90 degrees, so width and height swap once Detectron2's
# ``read_image`` has applied them.
_EXIF_ORIENTATION_TAG = 0x0112
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)


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
