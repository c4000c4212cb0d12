"""Save and load the compact per-image predictions that the evaluators keep.

File layout (``torch.save`` of plain containers and tensors, loadable with
``torch.load(..., weights_only=True)``)::

    {
        "format": "sgg_d2.compact_predictions/1",
        "evaluator": "scene_graph" | "vrd" | "openimages_sg",
        "dataset": str,            # dataset the predictions were made on
        "settings": dict,          # evaluator settings used to build the candidates
        "predictions": [           # one entry per image, dataset order
            {
                "image_id": int | str,
                "boxes": FloatTensor (N, 4),   # XYXY, original image coordinates
                "labels": LongTensor (N,),
                "candidates": {
                    name: {"pairs": LongTensor (T, 2), "predicates": LongTensor (T,),
                           "scores": FloatTensor (T,)},   # best first
                },
            },
        ],
    }

In memory the same records hold numpy arrays instead of tensors.
"""

import os
from typing import Any, Dict, List

import numpy as np
import torch

__all__ = ["FORMAT", "save_compact_predictions", "load_compact_predictions", "numpy_candidates"]

FORMAT = "sgg_d2.compact_predictions/1"
_ARRAY_KEYS = ("boxes", "labels")
_EXPECTED = "expected the <kind>_predictions.pth that an sgg_d2 evaluator writes to its output_dir"


def _convert_record(record: Dict[str, Any], convert) -> Dict[str, Any]:
    out = {"image_id": record["image_id"]}
    for key in _ARRAY_KEYS:
        out[key] = convert(record[key])
    out["candidates"] = {
        name: {field: convert(value) for field, value in fields.items()}
        for name, fields in record["candidates"].items()
    }
    return out


def save_compact_predictions(
    path,
    evaluator: str,
    dataset_name: str,
    settings: Dict[str, Any],
    records: List[Dict[str, Any]],
) -> None:
    """Write compact predictions (numpy records) with ``torch.save``.

    Args:
        path: file name or writable binary file object.
        evaluator: evaluator kind (``SceneGraphEvaluator.kind`` etc.).
        dataset_name: dataset the predictions belong to.
        settings: the evaluator's :meth:`settings`.
        records: compact records, numpy arrays.
    """
    payload = {
        "format": FORMAT,
        "evaluator": evaluator,
        "dataset": dataset_name,
        "settings": dict(settings),
        "predictions": [_convert_record(r, torch.from_numpy) for r in records],
    }
    torch.save(payload, path)


def load_compact_predictions(path: str) -> Dict[str, Any]:
    """Read a file written by :func:`save_compact_predictions`; records hold numpy arrays.

    Raises:
        FileNotFoundError: ``path`` does not exist (or is a folder); names it.
        ValueError: if the file is not in this format (names the file and what was found).
    """
    payload = _read_payload(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(
            f"{path}: not a compact prediction file (expected format {FORMAT!r}, found "
            f"{found!r}); {_EXPECTED}"
        )
    for key in ("evaluator", "dataset", "settings", "predictions"):
        if key not in payload:
            raise ValueError(f"{path}: compact prediction file has no '{key}' entry")
    records = []
    for i, record in enumerate(payload["predictions"]):
        try:
            records.append(_convert_record(record, lambda t: t.numpy()))
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(
                f"{path}: predictions[{i}] is not a compact record (needs image_id, "
                f"{', '.join(_ARRAY_KEYS)} and candidates as tensors; {type(e).__name__}: {e})"
            ) from e
    payload["predictions"] = records
    return payload


def _read_payload(path: str):
    """``torch.load(path, weights_only=True)`` with one-line errors for the user's file."""
    if not os.path.isfile(path):
        what = "is a folder" if os.path.isdir(path) else "no such file"
        raise FileNotFoundError(f"{path}: {what}; {_EXPECTED}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise  # unreadable file: the OS message names it
    except Exception as e:
        # torch.load fails on a file that is not a plain-tensor torch file in many ways
        # (UnpicklingError, KeyError, RuntimeError, EOFError ...), with messages that
        # suggest weights_only=False; a compact prediction file never needs it.
        raise ValueError(
            f"{path}: not a compact prediction file (torch.load(weights_only=True) cannot "
            f"read it: {type(e).__name__}); {_EXPECTED}"
        ) from e


def numpy_candidates(candidates) -> Dict[str, np.ndarray]:
    """``TripletCandidates`` (torch, any device) -> dict of numpy arrays for a record."""
    return {
        "pairs": candidates.pairs.cpu().numpy().astype(np.int64),
        "predicates": candidates.predicates.cpu().numpy().astype(np.int64),
        "scores": candidates.scores.detach().float().cpu().numpy(),
    }
