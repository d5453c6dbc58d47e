"""The LoRA sweep: grid, trial selection, compiled ParallelFor spec, and a whole local run."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from banglasenti.config.schema import CONFIG_DIR, SweepConfig, load_config
from banglasenti.evaluation.leaderboard import rank_trials, render_leaderboard, select_best
from banglasenti.local.gcsfuse_semantics import SWITCH_ENV
from pipelines.sweep_pipeline import SWEEP_TASKS, TRIAL_JOB, build_sweep_pipeline
from pipelines.vertex import output_directory
from tests.conftest import FAST_OVERRIDES

ROOT = Path(__file__).resolve().parent.parent


def summary(r, f1, targets=("query", "value")):
    return {
        "lora": {"r": float(r), "alpha": float(2 * r), "target_modules": list(targets)},
        "best_val_macro_f1": f1,
        "trainable_parameters": 100.0 * r,
        "epochs_run": 2.0,
        "wall_seconds": 1.5,
    }


def test_grid_is_the_product_of_the_settings():
    grid = SweepConfig(r=[4, 8], alpha_ratio=[1, 2], target_modules=[["query"], ["all-linear"]]).grid()
    assert len(grid) == 8
    assert {"r": 8, "alpha": 16, "target_modules": ["all-linear"]} in grid
    assert {(g["r"], g["alpha"]) for g in grid} == {(4, 4), (4, 8), (8, 8), (8, 16)}


def test_best_trial_by_val_macro_f1_ties_to_the_earlier(tmp_path):
    summaries = [summary(4, 0.51), summary(8, 0.63), summary(16, 0.63), summary(2, 0.40)]
    assert [r["trial"] for r in rank_trials(summaries)] == [1, 2, 0, 3]
    dirs = []
    for i in range(4):
        (tmp_path / f"t{i}").mkdir()
        (tmp_path / f"t{i}" / "adapter_config.json").write_text(json.dumps({"trial": i}))
        dirs.append(str(tmp_path / f"t{i}"))
    best = select_best(dirs, summaries, str(tmp_path / "best"), str(tmp_path / "board.md"))
    assert best["trial"] == 1 and best["r"] == 8 and best["trials"] == 4
    assert json.loads((tmp_path / "best" / "adapter_config.json").read_text()) == {"trial": 1}
    board = (tmp_path / "board.md").read_text()
    assert board.index("| 1 | 1 | 8 | 16 |") < board.index("| 2 | 2 | 16 | 32 |") < board.index("| 4 | 3 | 2 | 4 |")
    assert "Chosen: trial 1 (r 8, alpha 16)" in render_leaderboard(rank_trials(summaries))
    with pytest.raises(ValueError, match="no trials"):
        rank_trials([])


@pytest.mark.component
def test_sweep_compiles_for_vertex_with_a_parallel_for_over_the_grid(tmp_path):
    from kfp import compiler

    cfg = load_config(CONFIG_DIR / "banglasenti.yaml", {"sweep.parallelism": 2})
    path = tmp_path / "sweep.yaml"
    compiler.Compiler().compile(build_sweep_pipeline(cfg, "vertex"), package_path=str(path))
    spec = yaml.safe_load(path.read_text())
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == set(SWEEP_TASKS)
    loop = tasks["for-loop-1"]
    assert loop["parameterIterator"]["items"]["inputParameter"] == "pipelinechannel--sweep_grid"
    assert loop["iteratorPolicy"]["parallelismLimit"] == 2
    assert spec["root"]["inputDefinitions"]["parameters"]["sweep_grid"]["defaultValue"] == cfg.sweep.grid()
    trials = tasks["select-best-trial"]["inputs"]["artifacts"]["trials"]["taskOutputArtifact"]
    assert trials["producerTask"] == "for-loop-1"
    evaluate_lora = tasks["evaluate"]["inputs"]["artifacts"]["lora_model"]["taskOutputArtifact"]
    assert evaluate_lora == {"outputArtifactKey": "best_model", "producerTask": "select-best-trial"}
    loop_body = spec["components"]["comp-for-loop-1"]["dag"]["tasks"]["train-lora"]["inputs"]["parameters"]
    assert loop_body["lora_r"]["parameterExpressionSelector"] == 'parseJson(string_value)["r"]'
    images = {
        name: ex["container"]["image"] for name, ex in spec["deploymentSpec"]["executors"].items() if "container" in ex
    }
    assert images["exec-select-best-trial"] == cfg.pipeline.cpu_image
    pools = spec["components"]["comp-train-lora"]["inputDefinitions"]["parameters"]["worker_pool_specs"]
    assert [pool["container_spec"]["image_uri"] for pool in pools["defaultValue"]] == [cfg.pipeline.train_image]
    # the trials' custom jobs share a directory named by the config, the same in every run (each trial keeps its
    # checkpoints in a sub-location keyed by its own identity: banglasenti/training/checkpoints.py)
    out_dir = loop_body["base_output_directory"]["runtimeValue"]["constant"]
    assert out_dir == output_directory(cfg, TRIAL_JOB) and "uuid" not in out_dir


@pytest.mark.component
def test_sweep_trains_one_trial_at_a_time_by_default(tmp_path):
    """One trial and the baseline: two TPU v3-8 jobs (16 cores) at once, not one per trial plus the baseline."""
    from kfp import compiler

    cfg = load_config(CONFIG_DIR / "banglasenti.yaml")
    assert cfg.sweep.parallelism == 1 and len(cfg.sweep.grid()) == 4
    compiler.Compiler().compile(build_sweep_pipeline(cfg, "vertex"), package_path=str(tmp_path / "s.yaml"))
    loop = yaml.safe_load((tmp_path / "s.yaml").read_text())["root"]["dag"]["tasks"]["for-loop-1"]
    assert loop["iteratorPolicy"]["parallelismLimit"] == 1


@pytest.mark.slow
def test_sweep_runs_locally(tmp_path):
    """Two trials on the tiny model, one epoch each, through the KFP local runner (about 75 s on 2 cores), under
    Cloud Storage FUSE semantics ($BANGLASENTI_GCSFUSE_SEMANTICS=1)."""
    sets = [f"{key}={value}" for key, value in {**FAST_OVERRIDES, "train.epochs": 1}.items()]
    sets += [
        "sweep.r=[2, 4]",
        "sweep.target_modules=[[query, value]]",
        "sweep.parallelism=1",
        "report.bootstrap_samples=200",
    ]
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "pipelines" / "sweep.py"),
            "--run-local",
            "--pipeline-root",
            str(tmp_path),
            *[a for s in sets for a in ("--set", s)],
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, SWITCH_ENV: "1"},
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert f"gcsfuse semantics under {tmp_path.resolve()}" in run.stdout  # every step as on Vertex AI's /gcs/
    # the terminal: a line per step (the trials' too); kfp's whole log in the file it names
    assert "\ntrain-lora: lora: " in run.stdout and "\nselect-best-trial: done in " in run.stdout
    assert "executor_input" not in run.stdout
    log = Path(re.search(r"kfp's whole log: (\S+)", run.stdout).group(1))
    assert log.parent == tmp_path.resolve() and "executor_input" in log.read_text(encoding="utf-8")
    run_dir = next(path for path in tmp_path.iterdir() if path.is_dir())
    trials = []
    for i in range(2):
        out = json.loads((run_dir / f"for-loop-1-iteration-{i}" / "train-lora" / "executor_output.json").read_text())
        trials.append(out["artifacts"]["model"]["artifacts"][0]["metadata"])
    assert [t["lora"]["r"] for t in trials] == [2, 4] and [t["lora"]["alpha"] for t in trials] == [4, 8]
    scores = [t["best_val_macro_f1"] for t in trials]
    chosen = scores.index(max(scores))
    select = json.loads((run_dir / "select-best-trial" / "executor_output.json").read_text())["artifacts"]
    assert select["metrics"]["artifacts"][0]["metadata"]["sweep_best_trial"] == chosen
    evaluated = json.loads((run_dir / "evaluate" / "executor_output.json").read_text())["artifacts"]
    metrics = evaluated["metrics"]["artifacts"][0]["metadata"]
    assert {"lora_test_macro_f1", "baseline_test_macro_f1", "reference_test_macro_f1"} <= set(metrics)
    assert (run_dir / "export-model" / "model" / "merged" / "config.json").exists()
    assert "# LoRA sweep: trials by val macro-F1" in run.stdout
    page = re.search(r"HTML report: file://(\S+)", run.stdout).group(1)
    assert page.endswith("/evaluate/report.html")
    assert Path(page).read_bytes() == (run_dir / "evaluate" / "html_report").read_bytes()
