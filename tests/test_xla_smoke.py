"""The smoke job and the persistent compilation cache on XLA's CPU backend with two devices.

A second smoke run with the same cache directory finds every graph the first one compiled and stored (same
graph hashes). The CPU backend cannot load a stored executable ("Deserializing serialized executable not
supported" in torch_xla 2.9's PJRT CPU client), so there each found graph counts as a deserialize failure and
is compiled again; a TPU loads it (a hit) and compiles nothing. These run in the XLA environment: `make test-xla`.
"""

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.conftest import FAST_OVERRIDES, ROOT
from tests.support.xla_process import DEVICES, failure_tail, run_on_xla, xla_env

pytestmark = pytest.mark.xla

STEPS = 6


def smoke_on_xla(base_dir, tokenized_dir, out_dir, *modes: str, rerun_after_crash: Sequence[Path]) -> dict:
    """`python -m components.smoke` in a fresh process on XLA's CPU backend; returns diagnostics.json.
    `rerun_after_crash`: the directories it writes into, emptied before a run again (tests/support/xla_process.py; its
    temporary directory is a new one each time)."""
    overrides = {**FAST_OVERRIDES, "train.batch_size": 8, "train.eval_batch_size": 16, "tokenize.packing": True}
    sets = [arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}")]
    done = run_on_xla(
        [
            sys.executable,
            "-m",
            "components.smoke",
            "--config",
            str(ROOT / "configs" / "local.yaml"),
            *sets,
            "--base-model",
            str(base_dir),
            "--tokenized",
            str(tokenized_dir),
            "--output-dir",
            str(out_dir),
            "--steps",
            str(STEPS),
            *(arg for mode in modes for arg in ("--mode", mode)),
        ],
        xla_env(tpu_branch=False),
        cwd=ROOT,
        timeout=1800,
        rerun_after_crash=rerun_after_crash,
    )
    assert done.returncode == 0, failure_tail(done)
    assert (out_dir / "diagnostics.md").read_text().startswith(f"# Smoke run: {STEPS} steps per mode")
    return json.loads((out_dir / "diagnostics.json").read_text())


def test_smoke_diagnostics_and_the_compile_cache(base_dir, tokenized_dir, tmp_path):
    pytest.importorskip("torch_xla", reason="torch_xla is installed in the XLA environment only: make test-xla")
    first = smoke_on_xla(
        base_dir,
        tokenized_dir,
        tmp_path / "first",
        rerun_after_crash=[tmp_path / "first", tmp_path / "xla-compile-cache"],
    )
    for mode, run in first["runs"].items():
        assert run["device_kind"] == "xla" and run["device_type"] == "CPU" and run["device_count"] == DEVICES
        assert run["mesh"] == {"shape": [DEVICES], "axis_names": ["data"], "device_ids": list(range(DEVICES))}
        rows, width = run["batch"]["input_ids_shape"]  # packed: 8 texts per device in fewer rows of 128 tokens
        assert width == 128 and rows % DEVICES == 0 and rows < 8 * DEVICES
        assert run["batch"]["input_ids_sharding"].startswith(f"{{devices=[{DEVICES},1]"), run["batch"]
        assert set(run["parameter_dtypes"]) == {"float32"}, mode
        assert set(run["optimizer_state_dtypes"]) == {"float32"}, mode
        assert run["optimizer"] == "torch.optim.adamw.AdamW"
        assert run["steps"] == STEPS and run["step_seconds"]["first"] > 0
        assert run["graphs_compiled"] >= 1 and run["compile_seconds"] > 0
        assert "Metric: CompileTime" in run["metrics_report"]
        assert run["xla_graphs"]["step_loop_host_transfers"] == [0]
        # Without a cache entry, every graph compiled is stored.
        assert run["persistent_cache"]["misses"] == run["graphs_compiled"] and run["persistent_cache"]["hits"] == 0
    cache = first["compile_cache"]
    assert cache.startswith(str(tmp_path / "xla-compile-cache" / "cpu-torch_xla-"))
    entries = len(os.listdir(cache))  # also the graphs compiled outside training (moving the model, saving)
    assert entries >= sum(run["graphs_compiled"] for run in first["runs"].values())

    # The same run again: every graph is found in the cache and none is stored anew.
    second = smoke_on_xla(
        base_dir, tokenized_dir, tmp_path / "second", "lora", rerun_after_crash=[tmp_path / "second"]
    )  # it stores no graph: the cache stays
    again, before = second["runs"]["lora"], first["runs"]["lora"]
    keys = ("graphs_compiled", "xla_graphs", "persistent_cache")
    print(json.dumps({"without cache": {k: before[k] for k in keys}, "with cache": {k: again[k] for k in keys}}))
    assert second["compile_cache"] == cache
    assert again["persistent_cache"]["misses"] == 0
    found = again["persistent_cache"]["hits"] + again["persistent_cache"]["deserialize_failures"]
    assert found == before["graphs_compiled"] == again["graphs_compiled"] + again["persistent_cache"]["hits"]
    assert len(os.listdir(cache)) == entries
    if again["persistent_cache"]["hits"]:  # a backend that loads executables compiles nothing
        assert again["graphs_compiled"] == 0
