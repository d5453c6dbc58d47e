"""The smoke job and the persistent compilation cache on XLA's CPU backend with two devices.

Two identical smoke runs share one cache directory: the first compiles and stores every graph, the second
loads them and compiles nothing. These run in the XLA environment: `make test-xla`.
"""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import FAST_OVERRIDES, ROOT

pytestmark = pytest.mark.xla

DEVICES = 2
STEPS = 6


def smoke_on_xla(base_dir, tokenized_dir, out_dir) -> dict:
    """`python -m components.smoke` in a fresh process on XLA's CPU backend; returns diagnostics.json."""
    overrides = {**FAST_OVERRIDES, "train.batch_size": 8, "train.eval_batch_size": 16}
    sets = [arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}")]
    env = {**os.environ, "PJRT_DEVICE": "CPU", "CPU_NUM_DEVICES": str(DEVICES)}
    env.pop("XLA_PERSISTENT_CACHE_PATH", None)
    done = subprocess.run(
        [sys.executable, "-m", "components.smoke", "--config", str(ROOT / "configs" / "local.yaml"), *sets,
         "--base-model", str(base_dir), "--tokenized", str(tokenized_dir), "--output-dir", str(out_dir),
         "--steps", str(STEPS)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert (out_dir / "diagnostics.md").read_text().startswith(f"# Smoke run: {STEPS} steps per mode")
    return json.loads((out_dir / "diagnostics.json").read_text())


def test_smoke_diagnostics_and_a_second_run_compiles_nothing(base_dir, tokenized_dir, tmp_path):
    pytest.importorskip("torch_xla", reason="torch_xla is installed in the XLA environment only: make test-xla")
    first = smoke_on_xla(base_dir, tokenized_dir, tmp_path / "first")
    second = smoke_on_xla(base_dir, tokenized_dir, tmp_path / "second")
    print(json.dumps({run: {mode: {k: r[k] for k in ("graphs_compiled", "xla_graphs", "persistent_cache",
                                                      "compile_time", "step_seconds")}
                            for mode, r in d["runs"].items()} for run, d in (("first", first), ("second", second))},
                     indent=1))

    cache = first["compile_cache"]
    assert cache.startswith(str(tmp_path / "xla-compile-cache" / "cpu-torch_xla-")) and second["compile_cache"] == cache
    assert any(os.scandir(cache))
    for mode, run in first["runs"].items():
        assert run["device_kind"] == "xla" and run["device_type"] == "CPU" and run["device_count"] == DEVICES
        assert run["mesh"] == {"shape": [DEVICES], "axis_names": ["data"], "device_ids": list(range(DEVICES))}
        assert run["batch"]["input_ids_shape"][0] == 8 * DEVICES
        assert run["batch"]["input_ids_sharding"].startswith(f"{{devices=[{DEVICES},1]"), run["batch"]
        assert set(run["parameter_dtypes"]) == {"float32"}, mode
        assert set(run["optimizer_state_dtypes"]) == {"float32"}, mode
        assert run["steps"] == STEPS and run["step_seconds"]["first"] > 0
        assert run["graphs_compiled"] >= 1 and run["compile_time"]["total_seconds"] > 0
        assert "CompileTime" in run["metrics_report"] and "ExecuteTime" in run["metrics_report"]
    # The cache: the first run stored what it compiled, the second loaded it and compiled no graph at all.
    assert first["runs"]["baseline"]["persistent_cache"]["misses"] >= 1
    for mode, run in second["runs"].items():
        assert run["graphs_compiled"] == 0, (mode, run["xla_graphs"])
        assert sum(run["xla_graphs"]["step_loop_compiles"]) == 0
        assert run["persistent_cache"]["misses"] == 0
    assert second["runs"]["baseline"]["persistent_cache"]["hits"] >= first["runs"]["baseline"]["persistent_cache"][
        "misses"]
