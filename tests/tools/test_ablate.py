"""tools/ablate.py: variant parsing, schedules, paired statistics and verdicts (by hand),
tables, and a whole study resumed from finished runs (no training)."""

import json
import math
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tools import _ablate_lib as lib
from tools import _ablate_stats as stats
from tools import ablate
from tools._ablate_study import Study

REPO = Path(__file__).resolve().parents[2]


def test_parse_variant_with_commas_inside_values():
    v = lib.parse_variant("linknet_nolayout=linknet:MODEL.SGG.LINKNET.LAYOUT=False")
    assert (v.name, v.base, v.overrides) == (
        "linknet_nolayout",
        "linknet",
        [("MODEL.SGG.LINKNET.LAYOUT", "False")],
    )
    v = lib.parse_variant("m2=motifs:SOLVER.STEPS=(5,10),MODEL.SGG.EMBED_DIM=32")
    assert v.overrides == [("SOLVER.STEPS", "(5,10)"), ("MODEL.SGG.EMBED_DIM", "32")]
    assert v.opts() == ["SOLVER.STEPS", "(5,10)", "MODEL.SGG.EMBED_DIM", "32"]


def test_parse_variant_alias_has_no_overrides():
    v = lib.parse_variant("motifs_joint=motifs")
    assert (v.name, v.base, v.opts()) == ("motifs_joint", "motifs", [])


@pytest.mark.parametrize(
    "text, match",
    [
        ("m2:SOLVER.MAX_ITER=5", r"expected NAME=BASEMODEL\[:KEY=VALUE"),
        ("m2=motifs:", r"expected NAME=BASEMODEL\[:KEY=VALUE"),
        ("=motifs", r"expected NAME=BASEMODEL\[:KEY=VALUE"),
        ("m2=motifs:solver.max_iter=5", "bad override 'solver.max_iter=5'"),
        ("m2=motifs:SOLVER.MAX_ITER=", "bad override 'SOLVER.MAX_ITER='"),
        ("m 2=motifs:SOLVER.MAX_ITER=5", "name 'm 2' may hold only"),
    ],
)
def test_parse_variant_errors_quote_the_text(text, match):
    with pytest.raises(ValueError, match=match):
        lib.parse_variant(text)


def test_scaled_schedule_keeps_proportions():
    solver = SimpleNamespace(MAX_ITER=1500, STEPS=(1200,), WARMUP_ITERS=50)
    assert lib.scaled_schedule(solver, 300) == [
        "SOLVER.MAX_ITER",
        "300",
        "SOLVER.STEPS",
        "(240,)",
        "SOLVER.WARMUP_ITERS",
        "10",
    ]
    assert lib.scaled_schedule(solver, 20)[-1] == "1"  # warm-up at least one iteration


def test_paired_difference_by_hand():
    # differences 2, 3, 1: mean 2, sample std 1, SE 1/sqrt(3) = 0.577 < 1 -> holds
    diff = stats.paired_difference({1: 10.0, 2: 12.0, 3: 11.0, 4: 50.0}, {1: 8.0, 2: 9.0, 3: 10.0})
    assert diff["n"] == 3 and diff["seeds"] == [1, 2, 3]  # seed 4 has no partner
    assert diff["mean"] == pytest.approx(2.0)
    assert diff["se"] == pytest.approx(1 / math.sqrt(3))
    assert diff["verdict"] == "holds"
    # differences 3, -1, 1: mean 1, std 2, SE 2/sqrt(3) = 1.155; 1 < 2.31 -> not shown
    diff = stats.paired_difference({1: 3.0, 2: -1.0, 3: 1.0}, {1: 0.0, 2: 0.0, 3: 0.0})
    assert diff["se"] == pytest.approx(2 / math.sqrt(3)) and diff["verdict"] == "not shown"
    # a clear loss is never "holds"; one seed has no SE
    assert stats.paired_difference({1: 1.0, 2: 2.0}, {1: 5.0, 2: 6.1})["verdict"] == "not shown"
    single = stats.paired_difference({1: 9.0}, {1: 1.0})
    assert single["n"] == 1 and math.isnan(single["se"]) and single["verdict"] == "not shown"


def test_verdict_rule_is_strict():
    assert stats.verdict(2.0, 0.99) == "holds"
    assert stats.verdict(2.0, 1.0) == "not shown"  # mean = 2 SE exactly
    assert stats.verdict(0.0, 0.0) == "not shown"  # identical runs: no improvement
    assert stats.verdict(-3.0, 0.1) == "not shown"
    assert stats.verdict(1.0, math.nan) == "not shown"


def test_mean_std_and_table_format():
    assert stats.mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0, 3)
    runs = [
        {"model": "a", "seed": s, "evals": {"predcls": {"metrics": {"R@50": v}}}}
        for s, v in [(1, 10.0), (2, 12.0)]
    ] + [{"model": "b", "seed": 1, "evals": {"predcls": {"metrics": {"R@50": 5.0}}}}]
    summary = stats.summarize(runs, ["a", "b"], ["predcls", "sgcls"], ["R@50", "mR@50"])
    assert summary["a"]["predcls"]["R@50"]["mean"] == 11.0
    assert summary["a"]["predcls"]["R@50"]["std"] == pytest.approx(math.sqrt(2))
    table = stats.summary_table(summary, ["a", "b"], ["predcls", "sgcls"], ["R@50", "mR@50"])
    lines = table.splitlines()
    assert len(lines) == 4  # header, rule, a/predcls, b/predcls (no sgcls results)
    assert "| a       | predcls |       2 | 11.00 ± 1.41 | -       |" in lines[2]
    assert "5.00" in lines[3] and "±" not in lines[3]  # one seed: no std
    rows = stats.comparison_rows(runs, [("a", "b")], ["predcls"], ["R@50"])
    assert rows[0]["n"] == 1 and rows[0]["mean"] == 5.0
    text = stats.comparison_table(rows)
    assert "a - b" in text and "+5.00" in text and "not shown" in text


def test_unknown_model_and_world_are_named():
    with pytest.raises(ValueError, match=r"model 'nope': no config .*\(models: .*motifs"):
        lib.leaf_config("nope")
    with pytest.raises(ValueError, match=r"--world imaginary: no such file .*imaginary"):
        lib.world_files("imaginary")


def test_run_logs_the_output_and_names_a_failure(tmp_path):
    log = tmp_path / "ok.log"
    seconds = lib.run([sys.executable, "-c", "import os; print(os.getcwd())"], str(log))
    assert seconds >= 0 and log.read_text() == f"{REPO}\n"  # run from the repository
    bad = tmp_path / "bad.log"
    with pytest.raises(
        RuntimeError, match=rf"exit 3: .* -c 'print\(1\); exit\(3\)' \(log: {bad}\)"
    ):
        lib.run([sys.executable, "-c", "print(1); exit(3)"], str(bad))
    assert bad.read_text() == "1\n"


def test_train_once_reuses_a_finished_run_unless_forced(tmp_path, capsys):
    (tmp_path / "model_final.pth").write_bytes(b"")
    assert lib.train_once("no/such/config.yaml", str(tmp_path)) == str(tmp_path / "model_final.pth")
    assert "reusing" in capsys.readouterr().out
    with pytest.raises(RuntimeError, match="exit 1: .*no/such/config.yaml .*train_stdout.log"):
        lib.train_once("no/such/config.yaml", str(tmp_path), force=True)


def _finished_run(out, model, seed, metrics):
    folder = out / "runs" / model / f"seed{seed}"
    metrics_path = Path(lib.metrics_file(str(folder / "eval_predcls"), "synthetic_test"))
    metrics_path.parent.mkdir(parents=True)
    metrics_path.write_text(json.dumps({"metrics": metrics}))
    (folder / "model_final.pth").write_bytes(b"")
    (folder / "timing.json").write_text(json.dumps({"train": 60.0, "eval_predcls": 6.0}))


def test_study_resumes_from_finished_runs(tmp_path, capsys):
    """Every run is present: no subprocess runs; tables and verdicts come from the files."""
    out = tmp_path / "study"
    (out / "detector").mkdir(parents=True)
    (out / "detector" / "model_final.pth").write_bytes(b"")
    # mR@50[geometric]: b - a = 2, 3, 1 -> holds; R@50: 1, -1, 0 -> not shown
    for seed, (ra, rb, ga, gb) in enumerate(
        [(50, 51, 10, 12), (50, 49, 10, 13), (50, 50, 10, 11)], start=1
    ):
        _finished_run(out, "frequency", seed, {"R@50": ra, "mR@50[geometric]": ga, "zsR@50": 1})
        _finished_run(out, "motifs", seed, {"R@50": rb, "mR@50[geometric]": gb, "zsR@50": 2})
    argv = ["--models", "frequency", "motifs", "--modes", "predcls", "--seeds", "3"]
    argv += ["--out", str(out), "--compare", "motifs:frequency", "--jobs", "2"]
    assert ablate.main(argv) == 0
    printed = capsys.readouterr().out
    assert "$ " not in printed, "nothing is re-run when every result exists"
    assert "[3/6]" in printed and "ETA" not in printed, "reused runs leave no work"
    result = json.loads((out / "ablation.json").read_text())
    assert len(result["runs"]) == 6 and not result["failures"]
    assert result["summary"]["motifs"]["predcls"]["mR@50[geometric]"]["mean"] == 12.0
    verdicts = {(r["metric"]): r["verdict"] for r in result["comparisons"]}
    assert verdicts == {"R@50": "not shown", "mR@50[geometric]": "holds"}
    config = (out / "runs" / "motifs" / "seed2" / "config.yaml").read_text()
    assert "SEED: 2" in config and f"OUTPUT_DIR: {out}/runs/motifs/seed2" in config
    assert "motifs - frequency" in printed and "holds" in printed


def test_dry_run_prints_commands_and_rejects_bad_variants(tmp_path, capsys):
    argv = ["--models", "motifs", "m2=motifs:MODEL.SGG.EMBED_DIM=32", "--modes", "sgdet"]
    argv += ["--seeds", "1", "--out", str(tmp_path), "--dry-run", "--jobs", "2"]
    assert ablate.main(argv) == 0
    printed = capsys.readouterr().out
    assert "OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 " in printed
    assert "MODEL.SGG.MODE sgdet DATASETS.TEST '[\"synthetic_test\"]'" in printed
    config = (tmp_path / "runs" / "m2" / "seed1" / "config.yaml").read_text()
    assert "EMBED_DIM: 32" in config
    # the detector is seeded too (default 1), so a study rerun from scratch repeats it
    assert "SEED: 1\n" in (tmp_path / "detector" / "config.yaml").read_text()
    assert not os.path.exists(tmp_path / "ablation.json")
    bad = ["--models", "x=motifs:MODEL.SGG.NO_SUCH_KEY=1", "--seeds", "1", "--out", str(tmp_path)]
    with pytest.raises(SystemExit, match="model 'x'.*Non-existent key: MODEL.SGG.NO_SUCH_KEY"):
        ablate.main(bad)


def test_eta_counts_only_runs_left_to_train(capsys):
    """A resumed study: 6 tasks, 1 done, 4 reused still to come, 1 left to train; runs of
    10 minutes on 2 jobs -> 5 minutes, not the 25 that counting reused runs would give."""
    study = SimpleNamespace(args=SimpleNamespace(modes=["predcls"], jobs=2))
    record = {
        "model": "motifs",
        "seed": 1,
        "train": {"seconds": 540.0},
        "evals": {"predcls": {"seconds": 60.0, "metrics": {"mR@50": 12.5}}},
    }
    Study.progress(study, record, 1, 6, [600.0], 1)
    Study.progress(study, record, 6, 6, [600.0], 0)
    first, last = capsys.readouterr().out.splitlines()
    assert first == "[1/6] motifs seed 1: 10m00s, predcls mR@50 12.50, ETA 5m00s"
    assert last == "[6/6] motifs seed 1: 10m00s, predcls mR@50 12.50"


def test_evaluation_variant_reuses_the_run_with_eval_only_overrides(tmp_path, capsys):
    """``--modes sgdet o=sgdet:KEY=V``: one training, two evaluations of it in SGDet, the
    second with the override and its own folder; a bad mode is named."""
    argv = ["--models", "motifs", "--modes", "sgdet", "o=sgdet:TEST.SGG.SGDET_OVERLAP_ONLY=True"]
    argv += ["--seeds", "1", "--out", str(tmp_path), "--dry-run"]
    assert ablate.main(argv) == 0
    lines = [x for x in capsys.readouterr().out.splitlines() if "--eval-only" in x]
    assert len(lines) == 2
    plain, overlap = lines
    assert "MODEL.SGG.MODE sgdet" in plain and "OVERLAP_ONLY" not in plain
    assert plain.split("OUTPUT_DIR ")[1].endswith("/runs/motifs/seed1/eval_sgdet")
    assert "MODEL.SGG.MODE sgdet" in overlap
    assert overlap.endswith("/runs/motifs/seed1/eval_o TEST.SGG.SGDET_OVERLAP_ONLY True")
    for bad, match in [
        ("o=sgdett:TEST.SGG.SGDET_OVERLAP_ONLY=True", "mode 'sgdett' is not one of"),
        ("sgdett", "mode 'sgdett' is not one of"),
        ("o=sgdet:", r"--modes 'o=sgdet:': expected NAME=MODE\[:KEY=VALUE"),
    ]:
        with pytest.raises(SystemExit, match=match):
            ablate.main(["--models", "motifs", "--modes", bad, "--out", str(tmp_path)])


def test_per_predicate_recall_is_read_and_compared(tmp_path, capsys):
    """``per_predicate`` recalls become ``R@50(<predicate>)`` metrics; ``--per-predicate``
    compares them (by hand: on, b - a = 4, 6, 5 -> holds; near, -1, 1, 0 -> not shown)."""
    out = tmp_path / "study"
    (out / "detector").mkdir(parents=True)
    (out / "detector" / "model_final.pth").write_bytes(b"")
    for seed, (on_a, on_b, near_a, near_b) in enumerate(
        [(50, 54, 20, 19), (50, 56, 20, 21), (50, 55, 20, 20)], start=1
    ):
        for model, on, near in (("frequency", on_a, near_a), ("motifs", on_b, near_b)):
            _finished_run(out, model, seed, {"R@50": 40.0, "mR@50": 10.0})
            path = Path(
                lib.metrics_file(
                    str(out / "runs" / model / f"seed{seed}" / "eval_predcls"), "synthetic_test"
                )
            )
            data = json.loads(path.read_text())
            data["per_predicate"] = {
                "on": {"R@50": on, "R@100": on + 1, "num_gt": 9},
                "near": {"R@50": near, "num_gt": 3},
            }
            path.write_text(json.dumps(data))
    assert lib.read_metrics(str(path))["R@100(on)"] == 56.0
    argv = ["--models", "frequency", "motifs", "--modes", "predcls", "--seeds", "3"]
    argv += ["--out", str(out), "--compare", "motifs:frequency", "--per-predicate"]
    assert ablate.main(argv) == 0
    rows = {r["metric"]: r for r in json.loads((out / "ablation.json").read_text())["comparisons"]}
    assert set(rows) == {"R@50", "mR@50", "R@50(near)", "R@50(on)"}
    assert rows["R@50(on)"]["mean"] == 5.0 and rows["R@50(on)"]["verdict"] == "holds"
    assert rows["R@50(near)"]["mean"] == 0.0 and rows["R@50(near)"]["verdict"] == "not shown"
    assert "R@50(on)" in capsys.readouterr().out


def test_eval_variant_compared_with_its_mode_by_hand():
    """``--compare-eval-variants``: the same runs scored with an override (``la``) against
    their plain mode; by hand mR@50 la - predcls = 3, 5, 4 -> +4.0, SE 1/sqrt(3): holds."""
    runs = []
    for seed, (plain, adjusted) in enumerate([(10.0, 13.0), (11.0, 16.0), (12.0, 16.0)], 1):
        evals = {
            "predcls": {"metrics": {"mR@50": plain}},
            "la": {"metrics": {"mR@50": adjusted}},
        }
        runs.append({"model": "motifs", "seed": seed, "evals": evals})
    modes = {
        "predcls": lib.Variant("predcls", "predcls"),
        "la": lib.parse_variant("la=predcls:MODEL.SGG.LOGIT_ADJUSTMENT.TAU=1.0", "--modes"),
    }
    (row,) = stats.eval_variant_rows(runs, ["motifs"], modes, ["mR@50"])
    assert (row["a"], row["b"], row["mode"]) == ("motifs [la]", "motifs [predcls]", "predcls")
    assert row["mean"] == pytest.approx(4.0) and row["se"] == pytest.approx(1 / math.sqrt(3))
    assert row["verdict"] == "holds"


def test_bad_inline_model_is_named_as_a_models_entry(tmp_path):
    with pytest.raises(SystemExit, match=r"--models 'm2=motifs:': expected NAME=BASEMODEL"):
        ablate.main(["--models", "motifs", "m2=motifs:", "--out", str(tmp_path), "--dry-run"])
