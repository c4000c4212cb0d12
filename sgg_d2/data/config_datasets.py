"""Custom datasets named in the config, and a clear error for datasets that are missing.

``DATASETS.SGG.JSON`` lists ``[name, annotation_file, image_root]`` triples of scene-graph
JSON files (format: ``datasets/README.md``); :func:`register_config_datasets` registers
them (``load_config`` calls it, so ``train_net.py``, ``demo/demo.py`` and
``python -m sgg_d2.evaluation --config-file`` all see them)::

    python train_net.py --config-file configs/synthetic/motifs_R18_FPN_sgcls.yaml \\
        DATASETS.SGG.JSON '[["my_train", "my/train.json", "my/images"],
                            ["my_test", "my/test.json", "my/images"]]' \\
        DATASETS.TRAIN '("my_train",)' DATASETS.TEST '("my_test",)'
"""

import os
from typing import Iterable, List, Set

from detectron2.data import DatasetCatalog, MetadataCatalog

from ._checks import REGISTERED_BEFORE_SGG_D2
from .builtin import default_datasets_root
from .scene_graph_json import register_scene_graph_json

__all__ = [
    "DatasetNotRegisteredError",
    "register_config_datasets",
    "register_json_datasets",
    "require_registered",
]


class DatasetNotRegisteredError(KeyError):
    """A dataset named in the config is not registered (message says where it was looked
    for)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def register_json_datasets(entries: Iterable, key: str = "DATASETS.SGG.JSON") -> List[str]:
    """Register ``[name, annotation_file, image_root]`` entries; returns the new names.

    A name registered before from the same annotation file is left alone (calling this
    twice is harmless); the same name for another file is an error.

    Raises:
        ValueError: naming ``key`` and the bad entry (not three strings, a missing
            annotation file or image folder, a name taken by another dataset).
    """
    done = []
    for i, entry in enumerate(entries):
        if (
            not isinstance(entry, (list, tuple))
            or len(entry) != 3
            or not all(isinstance(v, str) and v for v in entry)
        ):
            raise ValueError(
                f"{key}[{i}] is {entry!r}; expected [name, annotation_file, image_root]"
            )
        name, json_file, image_root = entry
        if name in DatasetCatalog.list():
            known = MetadataCatalog.get(name).get("annotation_file", None)
            if known is not None and os.path.abspath(known) == os.path.abspath(json_file):
                continue
            raise ValueError(
                f"{key}[{i}]: dataset name {name!r} is already registered"
                + (f" from {known}" if known else " (a builtin or another dataset)")
                + "; choose another name"
            )
        if not os.path.isfile(json_file):
            raise ValueError(f"{key}[{i}] ({name!r}): annotation file {json_file} not found")
        if not os.path.isdir(image_root):
            raise ValueError(f"{key}[{i}] ({name!r}): image folder {image_root} not found")
        # dataset_root: statistics are cached next to the annotations, as for builtin data
        folder = os.path.dirname(os.path.abspath(json_file))
        meta = {"dataset_root": folder}
        register_scene_graph_json(name, json_file, image_root, metadata=meta)
        done.append(name)
    return done


def register_config_datasets(cfg) -> List[str]:
    """Register the datasets of ``cfg.DATASETS.SGG.JSON`` (see the module docstring)."""
    return register_json_datasets(cfg.DATASETS.SGG.JSON)


_CONFIG_HINT = "DATASETS.SGG.JSON [[name, annotation_file, image_root]]"


def require_registered(names: Iterable[str], key: str, register_hint: str = _CONFIG_HINT) -> None:
    """Raise a clear error when a dataset of config key ``key`` is not registered.

    ``register_hint`` says how the caller registers custom scene-graph JSON data (the
    config key by default; the evaluation CLI's ``--register`` option there).

    Raises:
        DatasetNotRegisteredError: (a ``KeyError``) naming the missing dataset, the
            datasets root where builtin names are looked for, how to register custom
            data, and the registered names (Detectron2's own built-ins only counted).
    """
    known = set(DatasetCatalog.list())
    for name in names:
        if name in known:
            continue
        root = os.path.abspath(default_datasets_root())
        raise DatasetNotRegisteredError(
            f"{key}: dataset {name!r} is not registered. Builtin names are registered from "
            f"$SGG_DATASETS={root} when their files exist there (layouts: datasets/README.md"
            f"{'; that folder does not exist' if not os.path.isdir(root) else ''}); custom "
            f"scene-graph JSON data: {register_hint}. {_registered_summary(known)}"
        )


def _registered_summary(known: Set[str]) -> str:
    """The registered names worth listing: sgg_d2's and the user's. Detectron2's own
    built-ins (registered before sgg_d2, without ``predicate_classes``) are only counted."""
    d2_builtin = {
        n
        for n in known & REGISTERED_BEFORE_SGG_D2
        if MetadataCatalog.get(n).get("predicate_classes") is None
    }
    listed = ", ".join(sorted(known - d2_builtin)) or "none"
    return f"Registered: {listed} ({len(d2_builtin)} Detectron2 built-in names not listed)"
