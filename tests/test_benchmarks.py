"""The benchmark scripts still run: each on small generated data, as a subprocess (its own Ray).

The figures themselves come from running them on the shared AudioSet data (README, Figures)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tagtune.trainables.data import make_synthetic, write_cache

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    """Train and eval caches of one generated data set (same classes)."""
    root = tmp_path_factory.mktemp("bench")
    ds = make_synthetic(n_clips=500, n_classes=12, seed=4)

    def part(rows: slice):
        return dataclasses.replace(ds, x=ds.x[rows], y=ds.y[rows], lengths=ds.lengths[rows], ids=ds.ids[rows])

    return root, write_cache(part(slice(0, 400)), root / "train"), write_cache(part(slice(400, 500)), root / "eval")


def _run(script: str, *args: str, cwd: Path) -> str:
    env = {**os.environ, "TAGTUNE_CACHE_DIR": str(cwd / "cache")}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _row(out: str, *first: str) -> list[str]:
    """The cells of the Markdown table row of ``out`` whose first cells are ``first``."""
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[: len(first)] == list(first):
            return cells
    raise AssertionError(f"no row {first} in:\n{out}")


def _figure(out: str, *first: str, column: int) -> float:
    """One figure of a table row, as a number (a benchmark that printed no figure fails here)."""
    cell = _row(out, *first)[column]
    try:
        return float(cell)
    except ValueError:
        raise AssertionError(f"row {first}: {cell!r} is not a figure") from None


def test_bench_quality_prints_the_reports_tables_and_the_targets(split):
    root, train, evald = split
    out = _run(
        "bench_quality.py",
        "--train",
        str(train),
        "--eval",
        str(evald),
        "--families",
        "fc1,fc2",
        "--trials-per-family",
        "2",
        "--max-epochs",
        "1",
        "--out",
        str(root / "q"),
        cwd=root,
    )
    for heading in ("## seed 000's Fig. 4 and Fig. 3", "## against the reports", "## targets"):
        assert heading in out
    assert "| tagtune final fc1 |" in out and "| best single model mAP |" in out
    for family in ("fc1", "fc2"):  # each final's eval mAUC and mAP: printed, and scores
        # (not a learning check: 1 epoch of fc1 on these 400 generated clips is near chance)
        auc, ap = (_figure(out, f"tagtune final {family}", column=i) for i in (1, 2))
        assert 0.0 <= auc <= 1.0 and 0.0 < ap <= 1.0, (family, auc, ap)
    measured = _figure(out, "best single model mAP", column=2)
    assert 0.0 < measured <= 1.0 and _row(out, "best single model mAP")[4] in ("yes", "no")
    assert (root / "q" / "report.html").is_file()
    # the same search's ensemble selections, scored on eval with the trial checkpoints
    sel = _run("bench_selection.py", "--out", str(root / "q"), "--eval", str(evald), cwd=root)
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in sel.splitlines() if "pool (" in line]
    assert {(r[0].split()[0], r[1]) for r in rows} >= {("all", "greedy"), ("all", "bagged")}
    for cells in rows:
        val_map, eval_map = float(cells[4]), float(cells[5])
        assert 0.0 < val_map <= 1.0 and 0.0 < eval_map <= 1.0 and abs(float(cells[6]) - (val_map - eval_map)) < 2e-4


def test_bench_vs_optuna_prints_ratio_and_efficiency(split):
    root, train, _ = split
    out = _run("bench_vs_optuna.py", "--data", str(train), "--trials", "2", "--epochs", "1", cwd=root)
    assert "| wall-time ratio tagtune / Optuna |" in out and "| search efficiency |" in out
    walls = [_figure(out, name, column=1) for name in ("tagtune wall s (Ray Tune + MLflow callback)",
                                                       "plain Optuna loop wall s (MLflowCallback)")]  # fmt: skip
    assert all(0 < w < 600 for w in walls), walls
    ratio = _figure(out, "wall-time ratio tagtune / Optuna", column=1)
    assert ratio == pytest.approx(walls[0] / walls[1], rel=0.01)  # the table's figures agree
    efficiency = _figure(out, "search efficiency", column=1)
    assert 0.0 < efficiency <= 1.0, efficiency  # training seconds within the slots' wall time


def test_bench_gpu_packs_the_data_and_runs_end_to_end_on_cpu(split):
    """The device script's Python part, on CPU (all but CUDA itself): --pack, then --quick."""
    root, train, _ = split
    npz = root / "gpu_data" / "train.npz"
    assert "400 clips" in _run("bench_gpu.py", "--pack", str(npz), "--source", str(train), cwd=root)
    out = _run("bench_gpu.py", "--data", str(npz), "--device", "cpu", "--quick", "--processes", "2", cwd=root)
    for row in (
        "| seconds per epoch | fc2",
        "| trials per hour | attention, 2 processes",
        "| bf16 autocast vs float32",
    ):
        assert row in out
    assert "| metrics on the device vs scikit-learn |" in out and "| <= 1e-6 | yes |" in out
    assert 0.0 < _figure(out, "seconds per epoch", "fc2 (1 epoch)", column=2) < 600
    assert float(_row(out, "trials per hour", "fc2, 2 processes sharing the cpu")[2]) > 0
    assert _figure(out, "bf16 autocast vs float32", column=2) <= 0.002  # float32 both on CPU: equal


@pytest.mark.slow
def test_bench_fsdd_runs_search_and_finalize_and_prints_test_scores(tmp_path):
    from test_audio import make_fsdd_like

    data = make_fsdd_like(tmp_path / "fsdd", per_class=6)
    out = _run("bench_fsdd.py", "--data", str(data), "--max-epochs", "1", "--out", str(tmp_path / "b"), cwd=tmp_path)
    assert "# FSDD official test split" in out and "| model | test_acc | test_MAP@3 |" in out
    assert "| densenet_audio |" in out
    assert (tmp_path / "b" / "mlflow.db").is_file()


@pytest.mark.slow  # three runs of 20 s each, two Ray start-ups
def test_bench_early_stop_compares_three_runs_on_one_budget(split):
    root, train, _ = split
    out = _run(
        "bench_early_stop.py",
        "--data",
        str(train),
        "--budget",
        "20s",
        "--max-epochs",
        "3",
        "--families",
        "fc1",
        cwd=root,
    )
    for row in (
        "| tagtune, early stopping (asha) |",
        "| tagtune, no early stopping |",
        "| Optuna loop, TPE + HyperbandPruner",
    ):
        assert row in out
    assert "trials started" in out and "epochs trained" in out


def _table_rows(out: str, first_cell: str) -> dict[str, list[str]]:
    """The Markdown rows of ``out`` whose first cell starts with ``first_cell``, by that cell."""
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0].startswith(first_cell):
            rows[cells[0]] = cells[1:]
    return rows


def test_bench_search_quick_prints_a_sane_table_per_system(tmp_path):
    """--quick on the small generated float task: every system's row has a final best
    validation mAUC, a test accuracy, trials started and a chance share within their ranges,
    and the summary compares tagtune's default with the best peer."""
    portfolios = tmp_path / "portfolios"  # the portfolio system's file for the task (learn_portfolio.py writes them)
    portfolios.mkdir()
    (portfolios / "float512.yaml").write_text("fc2:\n- {name: p, params: {lr: 0.001, layers: 2, hidden: 500}}\n")
    out = _run(
        "bench_search.py",
        "--quick",
        "--systems",
        "tagtune,portfolio,optuna,hear",
        "--portfolios",
        str(portfolios),
        "--data-root",
        str(tmp_path / "tasks"),
        "--out",
        str(tmp_path / "out"),
        cwd=tmp_path,
    )
    assert "### float512:" in out
    rows = {k: v for k, v in _table_rows(out, "").items() if k[:1] in "146"}
    assert set(rows) == {
        "1 tagtune (default flags)",
        "1b tagtune --portfolio (learned on the other tasks)",
        "4 Optuna loop: TPE + HyperbandPruner + MLflowCallback",
        "6 hear-eval-kit protocol (re-created)",
    }, rows
    for name, (at25, at50, at100, test, trials, chance) in rows.items():
        assert 0.3 < float(at100) <= 1.0, (name, at100)
        for early in (at25, at50):  # nothing yet at a quarter of 5 s is fine, a number must be <= the final
            assert early == "-" or float(early) <= float(at100) + 1e-9, (name, early, at100)
        assert 0.0 <= float(test) <= 1.0, (name, test)
        assert float(trials) >= 1, (name, trials)
        assert chance == "-" or 0.0 <= float(chance) <= 1.0, (name, chance)
    summary = _table_rows(out, "float512")["float512"]
    assert summary[0] == "accuracy" and summary[-1] in ("yes", "no")
    assert abs(float(summary[1]) - float(rows["1 tagtune (default flags)"][3])) < 1e-4
    assert (tmp_path / "out" / "results.md").is_file() and (tmp_path / "out" / "results.json").is_file()


def test_learn_portfolio_quick_scores_every_candidate_and_picks_leave_one_task_out(tmp_path):
    out = _run(
        "learn_portfolio.py",
        "--quick",
        "--candidates",
        "2",
        "--k",
        "1",
        "--threads",
        "1",
        "--out",
        str(tmp_path),
        "--loto-dir",
        str(tmp_path / "portfolios"),
        cwd=tmp_path,
    )
    from tagtune.portfolio import load_portfolio

    for task in ("audioset", "speech", "fsdd-hear", "float512"):
        loto = load_portfolio(str(tmp_path / "portfolios" / f"{task}.yaml"), ["fc1", "fc2"])
        assert len(loto["fc1"]) == len(loto["fc2"]) == 1  # k = 1 per family
        for family in ("fc1", "fc2"):
            defaults = _figure(out, task, family, column=2)
            portfolio = _figure(out, task, family, column=3)
            assert 0.5 <= defaults <= 1 and 0.5 <= portfolio <= 1
            # learned on the other three tasks only: one of the two candidates
            assert _row(out, task, family)[4] in ("defaults", "q1")
