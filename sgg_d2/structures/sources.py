"""Where a model input comes from: the target dataset or the auxiliary mask dataset.

The one piece that the data layer (``data.joint_loader`` tags its inputs) and the models
(``modeling.meta_arch`` / ``modeling.joint_detector`` route them) share, kept here so that
neither imports the other. An input's ``"source"`` is ``"target"`` (the scene-graph / box
dataset) or ``"aux"`` (the auxiliary mask dataset, e.g. COCO); inputs without it are
target inputs.
"""

from typing import Dict, List, Sequence

__all__ = [
    "SOURCE_KEY",
    "DATASET_KEY",
    "TARGET",
    "AUX",
    "SOURCES",
    "input_source",
    "split_by_source",
]

SOURCE_KEY, DATASET_KEY = "source", "dataset_name"
TARGET, AUX = "target", "aux"
SOURCES = (TARGET, AUX)


def input_source(inputs: Dict) -> str:
    """``"target"`` or ``"aux"`` of one model input (default ``"target"``).

    Raises:
        ValueError: ``inputs["source"]`` is neither.
    """
    source = inputs.get(SOURCE_KEY, TARGET)
    if source not in SOURCES:
        raise ValueError(
            f"input {inputs.get('file_name', '?')}: {SOURCE_KEY!r} is {source!r}; "
            f"expected one of {SOURCES}"
        )
    return source


def split_by_source(batched_inputs: Sequence[Dict]) -> Dict[str, List[int]]:
    """Indices of the target and of the auxiliary inputs, in batch order."""
    out: Dict[str, List[int]] = {TARGET: [], AUX: []}
    for i, inputs in enumerate(batched_inputs):
        out[input_source(inputs)].append(i)
    return out
