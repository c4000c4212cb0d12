"""The tables of ``tools/benchmark_relation.py``: a measured (stage, model, N) as row fields,
the printed and Markdown tables, each stage's top operators, and F-Net vs MOTIFS."""

import json

if __package__:  # imported as tools._benchmark_tables (tests)
    from . import _benchmark_lib as lib
else:  # run as a script: its folder is on sys.path
    import _benchmark_lib as lib


def stage_fields(prefix: str, m: dict, peak_gflop_per_s: float) -> dict:
    """A child's measurement as the row fields ``<prefix>_s``, ``<prefix>_flops``, ..."""
    rate = lib.rate_fields(m["flops"], m["time_s"], peak_gflop_per_s)
    row = {
        f"{prefix}_s": m["time_s"],
        f"{prefix}_flops": m["flops"],
        f"{prefix}_gflop_per_s": rate["gflop_per_s"],
        f"{prefix}_flop_fraction_of_peak": rate["flop_fraction_of_peak"],
        f"{prefix}_peak_bytes": m["peak_bytes"],
        f"{prefix}_mb": m["peak_bytes"] / 2**20,
        # the counted FLOPs at the matmul peak: the time the stage would need if it ran there
        f"{prefix}_s_at_peak": m["flops"] / (peak_gflop_per_s * 1e9),
        f"{prefix}_roi_align_flops": m.get("roi_align_flops", 0),
    }
    if m["top_ops"]:
        row[f"{prefix}_top_ops"] = m["top_ops"]
        roi_s = sum(o["self_s"] for o in m["top_ops"] if o["op"] == "torchvision::roi_align")
        row[f"{prefix}_roi_align_s"] = roi_s
        row[f"{prefix}_roi_align_gflop_per_s"] = (
            row[f"{prefix}_roi_align_flops"] / roi_s / 1e9 if roi_s else 0.0
        )
    return row


# fmt: off
COLUMNS = (  # header, row key, width, format
    ("model", "context", -24, ""), ("N", "N", 4, ""), ("pairs", "pairs", 6, ""),
    ("det s", "det_s", 8, ".3f"), ("rel s", "rel_s", 8, ".3f"), ("rel/det", "ratio", 8, ".2f"),
    ("det GFLOP", "det_gflop", 10, ".2f"), ("rel GFLOP", "rel_gflop", 10, ".2f"),
    ("det GFLOP/s", "det_gflop_per_s", 12, ".1f"), ("rel GFLOP/s", "rel_gflop_per_s", 12, ".1f"),
    ("det of peak", "det_flop_fraction_of_peak", 12, ".3f"),
    ("rel of peak", "rel_flop_fraction_of_peak", 12, ".3f"),
    ("det MB", "det_mb", 8, ".1f"), ("rel MB", "rel_mb", 8, ".1f"),
    ("rel s at peak", "rel_s_at_peak", 14, ".3f"),
    ("rel RoIAlign GFLOP", "rel_roi_align_gflop", 19, ".2f"),
    ("rel RoIAlign s", "rel_roi_align_s", 15, ".3f"),
)
# fmt: on


def _cells(row: dict) -> list:
    view = dict(row, ratio=row["rel_s"] / row["det_s"])
    view.update(det_gflop=row["det_flops"] / 1e9, rel_gflop=row["rel_flops"] / 1e9)
    view.update(rel_roi_align_gflop=row.get("rel_roi_align_flops", 0) / 1e9)
    # the RoIAlign time comes from the profile: "-" without --top-ops
    return [format(view[key], fmt) if key in view else "-" for _, key, _, fmt in COLUMNS]


def _line(cells) -> str:
    return "".join(c.ljust(-w) if w < 0 else c.rjust(w) for c, (_, _, w, _) in zip(cells, COLUMNS))


def print_table(rows):
    print(_line([h for h, _, _, _ in COLUMNS]))
    for row in rows:
        print(_line(_cells(row)))


def markdown(rows, header: str) -> str:
    """The table (and each model's top operators, if measured) as Markdown."""
    lines = [header, "", "| " + " | ".join(h for h, *_ in COLUMNS) + " |"]
    lines.append("|" + " --- |" * len(COLUMNS))
    lines += ["| " + " | ".join(_cells(row)) + " |" for row in rows]
    for name, n, ops in top_ops_lists(rows):
        lines.append(f"- {name} (N={n}): {lib.ops_summary(ops)}")
    return "\n".join(lines) + "\n"


def write_json(path, rows):
    if path:
        with open(path, "w") as f:
            json.dump(rows, f, indent=1)


def top_ops_lists(table) -> list:
    """``(name, N, top_ops)`` of each profiled stage: the detector once per N, each model."""
    out, done = [], set()
    for row in table:
        if row.get("det_top_ops") and row["N"] not in done:
            done.add(row["N"])
            out.append(("detector", row["N"], row["det_top_ops"]))
        if row.get("rel_top_ops"):
            out.append((row["context"], row["N"], row["rel_top_ops"]))
    return out


def print_top_ops(table):
    for name, n, ops in top_ops_lists(table):
        for op in ops:
            print(
                f"  {name:<24} N={n:<3} {op['share']:6.1%} {op['self_s']:8.4f} s"
                f" {op['calls']:6d} calls  {op['op']}"
            )


def print_fnet_vs_motifs(table, args):
    rows = {(r["context"], r["N"]): r for r in table}
    if {"MotifsContext", "FactorizableNetContext"} <= set(args.contexts):
        print("\nF-Net vs MOTIFS relation stage (same run): time ratio, memory ratio")
        for n in args.sizes:
            f, m = rows["FactorizableNetContext", n], rows["MotifsContext", n]
            print(
                f"  N={n:>3}: {f['rel_s'] / m['rel_s']:.2f}x time, "
                f"{f['rel_peak_bytes'] / max(m['rel_peak_bytes'], 1):.2f}x memory"
            )
