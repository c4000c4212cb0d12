"""Statistics of ``tools/ablate.py``: metrics over seeds (mean ± std), paired (same-seed)
differences with their standard error and verdict, and the printed tables. Pure Python
(no Detectron2, no torch), so every figure is cheap to check by hand in tests.
"""

import math
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from tabulate import tabulate

# Metrics kept in the main table (the subset metrics "...[name]" are added when present).
MAIN_METRICS = ["R@20", "R@50", "R@100", "mR@20", "mR@50", "mR@100", "F@50", "zsR@50", "ng-R@50"]
HEADLINE_METRICS = ["R@50", "mR@50"]


def metric_names(runs: Sequence[dict]) -> set:
    """Every metric name that some evaluation of ``runs`` reported."""
    return {k for r in runs for e in r["evals"].values() for k in e["metrics"]}


def mean_std(values: Sequence[float]) -> Tuple[float, float, int]:
    """(mean, sample standard deviation (n - 1), n); std is NaN for n < 2."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan, 0
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan, n
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)), n


def verdict(mean: float, se: float) -> str:
    """``holds`` when the mean difference is > 0 and > 2 standard errors, else ``not shown``
    (also when the standard error is unknown, e.g. a single seed)."""
    if math.isnan(mean) or math.isnan(se):
        return "not shown"
    return "holds" if mean > 0 and mean > 2 * se else "not shown"


def paired_difference(a: Mapping[int, float], b: Mapping[int, float]) -> Dict[str, object]:
    """A - B over the seeds both have: mean, SE = std(differences) / sqrt(n), n, verdict."""
    seeds = sorted(set(a) & set(b))
    diffs = [a[s] - b[s] for s in seeds]
    mean, std, n = mean_std(diffs)
    se = std / math.sqrt(n) if n >= 2 else math.nan
    return {"mean": mean, "se": se, "n": n, "seeds": seeds, "verdict": verdict(mean, se)}


def per_seed(runs: Sequence[dict], model: str, mode: str, metric: str) -> Dict[int, float]:
    """seed -> value of ``metric`` for ``model`` evaluated in ``mode`` (finished runs)."""
    out = {}
    for run in runs:
        value = run.get("evals", {}).get(mode, {}).get("metrics", {}).get(metric)
        if run["model"] == model and value is not None and not math.isnan(value):
            out[run["seed"]] = value
    return out


def study_metrics(runs, metrics=None, per_predicate=False):
    """``(main, subset, compared)`` metric names of finished ``runs``: the headline table's
    (:data:`MAIN_METRICS` found), the R@50 / mR@50 subsets (``R@50[tag]``), and those the
    comparisons judge (``metrics``, default the headline ones and the subsets; with
    ``per_predicate`` also every ``R@50(<predicate>)``)."""
    names = metric_names(runs)
    subset = sorted(k for k in names if "[" in k and k.split("[")[0] in ("R@50", "mR@50"))
    main = [m for m in MAIN_METRICS if m in names]
    compared = list(metrics or HEADLINE_METRICS + subset)
    if per_predicate:
        compared += sorted(k for k in names if k.startswith("R@50(") and k not in compared)
    return main, subset, compared


def summarize(runs, models, modes, metrics) -> Dict[str, Dict[str, Dict[str, dict]]]:
    """model -> mode -> metric -> {mean, std, n} over seeds."""
    summary = {}
    for model in models:
        for mode in modes:
            for metric in metrics:
                values = list(per_seed(runs, model, mode, metric).values())
                mean, std, n = mean_std(values)
                if n:
                    cell = summary.setdefault(model, {}).setdefault(mode, {})
                    cell[metric] = {"mean": mean, "std": std, "n": n}
    return summary


def format_mean_std(cell: Optional[dict]) -> str:
    """``"12.34 ± 0.56"``; ``"12.34"`` for one seed; ``"-"`` when missing."""
    if not cell:
        return "-"
    if math.isnan(cell["std"]):
        return f"{cell['mean']:.2f}"
    return f"{cell['mean']:.2f} ± {cell['std']:.2f}"


def summary_table(summary, models, modes, metrics) -> str:
    """One row per model x mode, one column per metric (mean ± std over seeds)."""
    rows = []
    for model in models:
        for mode in modes:
            cells = summary.get(model, {}).get(mode, {})
            if cells:
                n = max(c["n"] for c in cells.values())
                rows.append([model, mode, n] + [format_mean_std(cells.get(m)) for m in metrics])
    return tabulate(rows, headers=["model", "mode", "seeds", *metrics], tablefmt="pipe")


def comparison_rows(runs, pairs, modes, metrics) -> List[dict]:
    """Every (A:B, mode, metric) paired difference (see :func:`paired_difference`)."""
    rows = []
    for a, b in pairs:
        for mode in modes:
            for metric in metrics:
                stats = paired_difference(
                    per_seed(runs, a, mode, metric), per_seed(runs, b, mode, metric)
                )
                if stats["n"]:
                    rows.append({"a": a, "b": b, "mode": mode, "metric": metric, **stats})
    return rows


def eval_variant_rows(runs, models, eval_modes: Mapping, metrics) -> List[dict]:
    """Each evaluation variant (``--modes NAME=MODE:KEY=VALUE``) against its plain mode, per
    model and metric: the same trained runs scored two ways (e.g. with and without logit
    adjustment), as paired differences (:func:`paired_difference`); ``a`` / ``b`` read
    ``model [NAME]`` / ``model [MODE]``."""
    rows = []
    for name, ev in eval_modes.items():
        for model in models if ev.overrides else ():
            for metric in metrics:
                stats = paired_difference(
                    per_seed(runs, model, name, metric), per_seed(runs, model, ev.base, metric)
                )
                if stats["n"]:
                    a, b = f"{model} [{name}]", f"{model} [{ev.base}]"
                    rows.append({"a": a, "b": b, "mode": ev.base, "metric": metric, **stats})
    return rows


def comparison_table(rows: Sequence[dict]) -> str:
    table = [
        [
            f"{r['a']} - {r['b']}",
            r["mode"],
            r["metric"],
            f"{r['mean']:+.2f}",
            "-" if math.isnan(r["se"]) else f"{r['se']:.2f}",
            r["n"],
            r["verdict"],
        ]
        for r in rows
    ]
    headers = ["A - B", "mode", "metric", "mean diff", "SE", "n", "verdict"]
    return tabulate(table, headers=headers, tablefmt="pipe", disable_numparse=True)
