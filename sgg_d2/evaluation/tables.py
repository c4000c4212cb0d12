"""Readable text tables of evaluation results (for the log and the CLI)."""

from typing import Dict, List, Mapping, Sequence

import numpy as np
from tabulate import tabulate

__all__ = ["metric_grid_table", "per_predicate_table", "per_predicate_json", "ordered"]


def metric_grid_table(
    metrics: Mapping[str, float], families: Sequence[str], columns: Sequence[str]
) -> str:
    """Rows = metric families, columns = suffixes; cell ``family + column`` if present.

    Example: families ``("R", "mR")``, columns ``("@20", "@50")`` reads ``"R@20"`` etc.
    """
    rows = []
    for family in families:
        cells = [metrics.get(f"{family}{column}") for column in columns]
        if any(cell is not None for cell in cells):
            rows.append([family] + ["-" if cell is None else cell for cell in cells])
    return tabulate(rows, headers=["metric", *columns], tablefmt="pipe", floatfmt=".2f")


def per_predicate_table(
    names: Sequence[str], per_predicate: Mapping[str, np.ndarray], columns: Sequence[str]
) -> str:
    """One row per predicate class; ``columns`` name arrays of ``per_predicate``."""
    present = [c for c in columns if c in per_predicate]
    rows = [[i, name] + [per_predicate[c][i] for c in present] for i, name in enumerate(names)]
    return tabulate(rows, headers=["id", "predicate", *present], tablefmt="pipe", floatfmt=".2f")


def per_predicate_json(
    names: Sequence[str], per_predicate: Mapping[str, np.ndarray]
) -> Dict[str, Dict[str, float]]:
    """``{predicate name: {column: value}}`` with plain Python numbers."""
    out: Dict[str, Dict[str, float]] = {}
    for i, name in enumerate(names):
        out[name] = {key: _plain(values[i]) for key, values in per_predicate.items()}
    return out


def _plain(value) -> float:
    return int(value) if np.issubdtype(np.asarray(value).dtype, np.integer) else float(value)


def ordered(metrics: Dict[str, float], families: List[str], columns: Sequence[str]):
    """The same metrics ordered family by family, then column by column."""
    keys = [f"{f}{c}" for f in families for c in columns if f"{f}{c}" in metrics]
    return {key: metrics[key] for key in keys}
