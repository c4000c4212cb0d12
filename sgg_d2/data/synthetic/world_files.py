"""The bookkeeping files of a generated synthetic world and their readers.

``SUCCESS.json`` (written last: its presence means the world is complete) holds the
generator version, the :class:`~.generate.WorldConfig` parameters and a summary
(:func:`~.summary.world_summary`); ``tags.json`` (crowded world only) holds the predicate
groups and the per-image tags.
"""

import json
import os
from dataclasses import asdict
from typing import Any, Callable, Optional

from .scene import IMAGE_TAGS

__all__ = [
    "GENERATOR_VERSION",
    "SUCCESS_FILE",
    "TAGS_FILE",
    "read_success",
    "read_tags",
    "is_complete",
]

# 2: the auxiliary mask images overlap in drawing order, with visible-only masks.
GENERATOR_VERSION = 2
SUCCESS_FILE = "SUCCESS.json"
# Crowded world only: predicate groups and per-image tags (``read_tags``).
TAGS_FILE = "tags.json"


def _read_json(path: str) -> Any:
    """Parsed JSON of the file ``path``.

    Raises:
        ValueError: naming the file, if it is not valid JSON.
    """
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from e


def read_success(root: str) -> Optional[dict]:
    """Contents of ``ROOT/SUCCESS.json``, or None when the world is absent/incomplete.

    Raises:
        ValueError: naming the file, if it exists but is not a JSON object.
    """
    path = os.path.join(root, SUCCESS_FILE)
    if not os.path.isfile(path):
        return None
    content = _read_json(path)
    if not isinstance(content, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(content).__name__}")
    return content


def read_tags(root: str) -> Optional[dict]:
    """Contents of ``ROOT/tags.json`` (crowded world), or None when absent.

    Returns:
        ``{"predicate_groups": {group: [predicate names]}, "image_tags": {int image_id:
        [tags]}}`` (JSON string keys turned back into ints).

    Raises:
        ValueError: naming the file and the key, if it is malformed.
    """
    path = os.path.join(root, TAGS_FILE)
    if not os.path.isfile(path):
        return None
    content = _read_json(path)
    for key in ("predicate_groups", "image_tags"):
        if not isinstance(content, dict) or not isinstance(content.get(key), dict):
            raise ValueError(f"{path}: expected an object with a {key!r} object")
    try:
        image_tags = {int(k): [str(t) for t in v] for k, v in content["image_tags"].items()}
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: 'image_tags' must map integer ids to tag lists ({e})") from e
    unknown = {t for tags in image_tags.values() for t in tags} - set(IMAGE_TAGS)
    if unknown:
        raise ValueError(f"{path}: unknown image tags {sorted(unknown)}; known: {IMAGE_TAGS}")
    groups = {str(g): [str(p) for p in names] for g, names in content["predicate_groups"].items()}
    return {"predicate_groups": groups, "image_tags": image_tags}


def is_complete(root: str, cfg: Any, log: Callable[[str], None], preset: str) -> bool:
    """Whether ``root`` holds a complete world of this generator version, preset and
    :class:`~.generate.WorldConfig` ``cfg``; an unreadable ``SUCCESS.json`` is logged
    through ``log`` and counts as incomplete."""
    try:
        done = read_success(root)
    except ValueError as e:
        log(f"regenerating: {e}")
        return False
    return (
        done is not None
        and done.get("parameters") == asdict(cfg)
        and done.get("version") == GENERATOR_VERSION
        and done.get("preset", "default") == preset
    )
