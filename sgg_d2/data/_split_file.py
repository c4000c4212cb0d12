"""The common frame of the loaders that read one JSON annotation file per split.

VRD and OpenImages differ only in the JSON type of the file and in how its images are
read; :func:`split_file_loader` builds their public ``load_*`` function around that part
(same signature, checks, box rule and log lines for both) and
:func:`register_split_file` their ``register_*`` function's body.
"""

import os
from functools import partial
from typing import Any, Callable, Dict, List, Tuple

from ._boxes import SplitRecords
from ._checks import DatasetFormatError, load_json_file, register_split, require_file

__all__ = ["AddImages", "split_file_loader", "register_split_file"]

# The name of each accepted JSON type in the error messages.
_JSON_TYPES = {list: "list", dict: "object"}

# ``add_images(split, data, annotation_file, image_root, num_classes, num_predicates)``:
# passes every image of the parsed ``data`` through ``split.skip`` and ``split.add``.
AddImages = Callable[[SplitRecords, Any, str, str, int, int], None]

_LOADER_DOC = """Load one {dataset} annotation file as Detectron2 scene-graph dicts.

    Args:
        annotation_file: {annotation_file}
        image_root: {image_root}
        num_classes, num_predicates: sizes of the class lists (for range checks).
        degenerate_boxes: zero-area box rule (see :mod:`sgg_d2.data._boxes`).
        filter_empty_relations: drop images without relations (counted, logged); by
            default they are kept with no annotations.

    Returns:
        list of dicts (data contract), in {order}.
    """


def split_file_loader(
    name: str,
    dataset: str,
    container: type,
    add_images: AddImages,
    *,
    annotation_file: str,
    image_root: str,
    order: str,
) -> Callable[..., List[Dict[str, Any]]]:
    """The public loader of a format with one JSON annotation file per split.

    Args:
        name: the loader's name (``__name__``), e.g. ``"load_vrd"``.
        dataset: the format's name in log lines, e.g. ``"VRD"``.
        container: ``list`` or ``dict``, the JSON type the file must hold.
        add_images: reads the images of the parsed file (see :data:`AddImages`).
        annotation_file, image_root, order: the loader's documentation of its first two
            arguments and of the order of the returned dicts.

    Returns:
        ``load(annotation_file, image_root, num_classes, num_predicates, *,
        degenerate_boxes="enlarge", filter_empty_relations=False)``.
    """

    def load(
        annotation_file: str,
        image_root: str,
        num_classes: int,
        num_predicates: int,
        *,
        degenerate_boxes: str = "enlarge",
        filter_empty_relations: bool = False,
    ) -> List[Dict[str, Any]]:
        label = f"{dataset} ({os.path.basename(annotation_file)})"
        split = SplitRecords(label, degenerate_boxes, filter_empty_relations)
        data = load_json_file(annotation_file, "annotation_file")
        if not isinstance(data, container):
            raise DatasetFormatError(
                f"annotation_file {annotation_file}: expected a JSON {_JSON_TYPES[container]}"
            )
        add_images(split, data, annotation_file, image_root, num_classes, num_predicates)
        return split.finish()

    load.__name__ = load.__qualname__ = name
    load.__module__ = add_images.__module__
    load.__doc__ = _LOADER_DOC.format(
        dataset=dataset,
        annotation_file=annotation_file,
        image_root=image_root,
        order=order,
    )
    return load


def register_split_file(
    name: str,
    loader: Callable[..., List[Dict[str, Any]]],
    annotation_file: str,
    image_root: str,
    load_classes: Callable[[], Tuple[List[str], List[str]]],
    evaluator_type: str,
    **options: Any,
) -> None:
    """Register ``loader``'s split of ``annotation_file`` under ``name`` (lazily).

    Checks that ``annotation_file`` exists, then reads the class lists with
    ``load_classes()`` (``(thing_classes, predicate_classes)``) and hands over to
    :func:`~sgg_d2.data._checks.register_split` with ``options`` (``train_split``,
    ``metadata`` and ``loader``'s keyword options, all checked now).
    """
    require_file(annotation_file, "annotation_file")
    classes = load_classes()
    load = partial(loader, annotation_file, image_root, *map(len, classes))
    register_split(name, load, classes, evaluator_type, image_root, **options)
