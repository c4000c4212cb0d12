"""Register the standard dataset names under ``$SGG_DATASETS`` (default ``./datasets``).

Importing this module calls :func:`register_all_builtin`. A name is registered when the
main annotation file of its split exists (images are only needed at load time; a missing
one is then an error naming the file). The synthetic world is registered only once its
generator finished (``synthetic/SUCCESS.json`` exists); likewise the crowded world
(``synthetic_crowded/``, names ``synthetic_crowded_*``). Registration is lazy: nothing is
loaded until ``DatasetCatalog.get``. Names that are already registered are left alone, so
re-importing or calling :func:`register_all_builtin` again is harmless. Expected layouts
are documented in ``datasets/README.md``.
"""

import json
import logging
import os
from functools import partial
from typing import Callable, Dict, List, Optional

from detectron2.data import DatasetCatalog
from detectron2.data.datasets import register_coco_instances

from .openimages import register_openimages
from .scene_graph_json import register_scene_graph_json
from .visual_genome import register_visual_genome
from .vrd import register_vrd

__all__ = ["register_all_builtin", "default_datasets_root", "resolve_data_path"]

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def default_datasets_root() -> str:
    """``$SGG_DATASETS`` if set, else ``./datasets``."""
    return os.environ.get("SGG_DATASETS", "datasets")


def resolve_data_path(path: str) -> str:
    """A data file named in a config: ``path`` itself when it exists (or is absolute or
    empty); a missing relative ``datasets/<rest>`` is looked up as ``$SGG_DATASETS/<rest>``,
    so configs written for ``./datasets`` also work with the data kept elsewhere. Returns
    ``path`` unchanged when neither exists (the caller's error names it)."""
    if not path or os.path.isabs(path) or os.path.exists(path):
        return path
    parts = os.path.normpath(path).split(os.sep)
    if parts[0] != "datasets" or len(parts) < 2:
        return path
    candidate = os.path.join(default_datasets_root(), *parts[1:])
    return candidate if os.path.exists(candidate) else path


def _register(name: str, main_file: str, register: Callable[[], None], done: List[str]) -> None:
    """Call ``register`` when ``main_file`` exists and ``name`` is not yet registered."""
    if name in DatasetCatalog.list() or not os.path.isfile(main_file):
        return
    try:
        register()
    except (OSError, ValueError, KeyError) as e:
        # A broken dataset folder must not break ``import sgg_d2``; say why it is missing.
        logger.warning("Dataset %s not registered: %s", name, e)
        return
    done.append(name)


def _register_splits(
    prefix: str, main_files: Dict[str, str], register: Callable[..., None], done, metadata: dict
) -> None:
    """Register ``<prefix>_<split>`` for each split whose main file exists (see ``_register``).

    ``register(name, main_file, split, train_split=..., metadata=...)`` does it, with the
    training split ``<prefix>_train`` and a copy of ``metadata``.
    """
    for split, main_file in main_files.items():
        name = f"{prefix}_{split}"
        kwargs = {"train_split": f"{prefix}_train", "metadata": dict(metadata)}
        _register(name, main_file, partial(register, name, main_file, split, **kwargs), done)


def _register_vg_format(
    prefix: str, folder: str, image_root: str, val_size: int, done, extra: Optional[dict] = None
) -> None:
    h5_file = os.path.join(folder, "VG-SGG-with-attri.h5")
    dicts_file = os.path.join(folder, "VG-SGG-dicts-with-attri.json")
    image_data_file = os.path.join(folder, "image_data.json")

    def register(name: str, h5: str, split: str, **kwargs) -> None:
        files = (h5, dicts_file, image_data_file, image_root)
        register_visual_genome(name, *files, split, val_size=val_size, **kwargs)

    main_files = {split: h5_file for split in SPLITS}
    _register_splits(prefix, main_files, register, done, {"dataset_root": folder, **(extra or {})})


def _register_vrd_format(
    prefix: str, folder: str, image_roots: dict, done, extra: Optional[dict] = None
) -> None:
    classes = (os.path.join(folder, "objects.json"), os.path.join(folder, "predicates.json"))

    def register(name: str, ann: str, split: str, **kwargs) -> None:
        register_vrd(name, ann, image_roots[split], *classes, **kwargs)

    main_files = {s: os.path.join(folder, f"annotations_{s}.json") for s in image_roots}
    _register_splits(prefix, main_files, register, done, {"dataset_root": folder, **(extra or {})})


def _register_openimages_format(
    prefix: str, folder: str, image_root: str, done, extra: Optional[dict] = None
) -> None:
    annotations = os.path.join(folder, "annotations")
    categories = os.path.join(annotations, "categories_dict.json")

    def register(name: str, ann: str, split: str, **kwargs) -> None:
        register_openimages(name, ann, categories, image_root, **kwargs)

    main_files = {s: os.path.join(annotations, f"vrd-{s}-anno.json") for s in SPLITS}
    _register_splits(prefix, main_files, register, done, {"dataset_root": folder, **(extra or {})})


def _register_synthetic(folder: str, done, prefix: str = "synthetic") -> None:
    """Register one synthetic world (``prefix`` = ``synthetic`` or ``synthetic_crowded``).

    Every scene-graph split's metadata gets ``predicate_groups`` ({"mask_dependent":
    [...], "geometric": [...]} predicate names). The VG-format and custom-JSON splits of
    a world with ``tags.json`` (the crowded one) also get ``image_tags`` ({int image_id:
    ["confusion", "proximal"] subset}, ids as in the dataset dicts).
    """
    success = os.path.join(folder, "SUCCESS.json")
    if not os.path.isfile(success):
        return
    from .synthetic.generate import read_tags  # imported only when a world is present
    from .synthetic.world import DEFAULT_WORLD

    try:
        with open(success) as f:
            num_val = int(json.load(f)["num_val"])
        tags = read_tags(folder)
    except (OSError, ValueError, KeyError, TypeError) as e:
        logger.warning(
            "Synthetic datasets %s_* not registered: %s has no valid 'num_val' or its "
            "tags.json is malformed (%s)",
            prefix,
            success,
            e,
        )
        return
    groups = tags["predicate_groups"] if tags else DEFAULT_WORLD.predicate_groups
    extra = {"predicate_groups": groups}
    tagged = {**extra, **({"image_tags": tags["image_tags"]} if tags else {})}
    images = os.path.join(folder, "images")
    _register_vg_format(prefix, folder, images, num_val, done, tagged)
    _register_vrd_format(
        f"{prefix}_vrd", os.path.join(folder, "vrd"), {"train": images, "test": images}, done,
        extra,
    )  # fmt: skip
    _register_openimages_format(
        f"{prefix}_openimages", os.path.join(folder, "openimages"), images, done, extra
    )
    json_files = {s: os.path.join(folder, "json", f"scene_graphs_{s}.json") for s in SPLITS}
    _register_splits(
        f"{prefix}_json",
        json_files,
        lambda name, json_file, split, **kwargs: register_scene_graph_json(
            name, json_file, images, **kwargs
        ),
        done,
        {"dataset_root": folder, **tagged},
    )
    masks = os.path.join(folder, "coco_masks")
    mask_files = {s: os.path.join(masks, "annotations", f"instances_{s}.json") for s in SPLITS[:2]}
    _register_splits(
        f"{prefix}_masks",
        mask_files,
        lambda name, json_file, split, train_split, metadata: register_coco_instances(
            name, {**metadata, "train_split": train_split}, json_file, os.path.join(masks, "images")
        ),
        done,
        {"dataset_root": masks},
    )


def register_all_builtin(root: Optional[str] = None) -> List[str]:
    """Register every standard dataset whose files are present under ``root``.

    Args:
        root: datasets folder; default :func:`default_datasets_root`.

    Returns:
        the names registered by this call.
    """
    root = root or default_datasets_root()
    done: List[str] = []
    vg = os.path.join(root, "vg")
    _register_vg_format("vg150", vg, os.path.join(vg, "VG_100K"), 5000, done)
    vrd = os.path.join(root, "vrd")
    vrd_images = {s: os.path.join(vrd, "sg_dataset", f"sg_{s}_images") for s in ("train", "test")}
    _register_vrd_format("vrd", vrd, vrd_images, done)
    oi = os.path.join(root, "openimages_v6")
    _register_openimages_format("openimages_v6", oi, os.path.join(oi, "images"), done)
    _register_synthetic(os.path.join(root, "synthetic"), done)
    _register_synthetic(os.path.join(root, "synthetic_crowded"), done, "synthetic_crowded")
    if done:
        logger.info("Registered datasets under %s: %s", root, ", ".join(done))
    return done


register_all_builtin()
