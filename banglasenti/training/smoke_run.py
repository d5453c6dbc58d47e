"""A short training of both modes on the training machine and what the device did during it: the smoke step's work
(components/smoke.py).

`--steps` optimizer steps (then one evaluation) of LoRA and of full fine-tuning with the real training code
(banglasenti/training/runner.py), written as `diagnostics.json` and `diagnostics.md`: device kind and count, SPMD
mesh, a training batch's sharding, parameter and optimizer-state dtypes, graphs compiled, compile and step times, the
persistent compilation cache's hits and misses, and torch_xla's metrics report.
"""

import json
import tempfile
from pathlib import Path
from typing import Any

from banglasenti.config.parameters import SMOKE_STEPS
from banglasenti.config.schema import Config
from banglasenti.storage.artifacts import atomic_file

DEFAULT_STEPS = SMOKE_STEPS


SUMMARY_KEYS = (
    "best_val_macro_f1",
    "final_train_loss",
    "wall_seconds",
    "train_examples_per_second",
    "placement",
    "xla_graphs",
    "trainable_parameters",
    "total_parameters",
)


def smoke_config(cfg: Config, steps: int, workdir: Path) -> Config:
    """`cfg` cut to `steps` optimizer steps, no early stopping, checkpoints at the end only, in `workdir`."""
    return cfg.with_overrides(
        {
            "train.max_steps": steps,
            "train.early_stopping_patience": 0,
            "train.checkpoint_steps": 0,
            "train.checkpoint_dir": str(workdir / "checkpoints"),
        }
    )


def run_smoke(
    cfg: Config,
    base_dir: str | Path,
    tokenized_dir: str | Path,
    out_dir: str | Path,
    steps: int = DEFAULT_STEPS,
    modes: tuple[str, ...] = ("lora", "baseline"),
) -> dict[str, Any]:
    """Train each mode for `steps` steps; return the diagnostics of every run (`out_dir`: where the outputs go,
    beside which a local run keeps its compilation cache)."""
    from banglasenti.runtime.process import library_versions
    from banglasenti.training.compile_cache import setup_compile_cache
    from banglasenti.training.diagnostics import recording
    from banglasenti.training.runner import train_model

    if steps <= 0:
        raise ValueError(f"steps must be positive, got {steps}")
    cache = setup_compile_cache(cfg, out_dir)  # before anything touches the device
    runs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="smoke-") as tmp:
        work = Path(tmp)
        run_cfg = smoke_config(cfg, steps, work)
        for mode in modes:
            with recording({}) as record:
                summary = train_model(mode, run_cfg, base_dir, tokenized_dir, work / mode)  # type: ignore[arg-type]
            record.update({key: summary[key] for key in SUMMARY_KEYS if key in summary})
            runs[mode] = record
    return {
        "steps": steps,
        "compile_cache": cache,
        "base_model": str(base_dir),
        "libraries": library_versions(),
        "runs": runs,
    }


def markdown(diagnostics: dict[str, Any]) -> str:
    """A short human summary; the JSON holds everything, the metrics report included."""
    lines = [
        f"# Smoke run: {diagnostics['steps']} steps per mode",
        "",
        f"Compilation cache: `{diagnostics['compile_cache'] or 'off'}`",
        "",
        "| | " + " | ".join(diagnostics["runs"]) + " |",
        "|---|" + "---|" * len(diagnostics["runs"]),
    ]

    def row(label: str, get) -> None:
        cells = []
        for run in diagnostics["runs"].values():
            try:
                cells.append(str(get(run)))
            except (KeyError, TypeError, IndexError):
                cells.append("-")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    row("device", lambda r: f"{r['device_kind']} {r.get('device_type', '')} x{r.get('device_count', 1)}")
    row("mesh", lambda r: f"{r['mesh']['shape']} {r['mesh']['axis_names']}")
    row("batch input_ids", lambda r: f"{r['batch']['input_ids_shape']} `{r['batch']['input_ids_sharding'] or '-'}`")
    row("parameter dtypes", lambda r: r["parameter_dtypes"])
    row("optimizer state dtypes", lambda r: r["optimizer_state_dtypes"])
    row("trainable weights bf16-exact", lambda r: r["trainable_bf16_exact_share"])
    row("XLA_USE_BF16 / XLA_DOWNCAST_BF16", lambda r: "/".join(v or "unset" for v in r["bf16_environment"].values()))
    row("graphs compiled", lambda r: r["graphs_compiled"])
    row("compile time (s)", lambda r: r["compile_seconds"])
    row(
        "persistent cache hits / misses / found, not loadable",
        lambda r: "{hits} / {misses} / {deserialize_failures}".format(**r["persistent_cache"]),
    )
    row("first step (s)", lambda r: r["step_seconds"]["first"])
    row("median later step (s)", lambda r: r["step_seconds"]["median_after_first"])
    row("steps", lambda r: r["steps"])
    row("final train loss", lambda r: round(r["final_train_loss"], 4))
    lines += [
        "",
        "Step times are host-side (XLA runs a step asynchronously); graphs and compile time cover the "
        "whole training call, evaluation included. The torch_xla metrics report is in the JSON.",
    ]
    return "\n".join(lines) + "\n"


def write_diagnostics(diagnostics: dict[str, Any], json_path: str | Path, md_path: str | Path) -> None:
    with atomic_file(md_path) as tmp:
        tmp.write_text(markdown(diagnostics), encoding="utf-8")
    with atomic_file(json_path) as tmp:
        tmp.write_text(json.dumps(diagnostics, indent=2, default=str), encoding="utf-8")


def smoke_step(
    cfg: Config,
    steps: int,
    base_dir: str,
    tokenized_dir: str,
    json_path: str,
    md_path: str,
    modes: tuple[str, ...] = ("lora", "baseline"),
) -> dict[str, Any]:
    """What the KFP component and the command line do: `run_smoke`, its diagnostics written as JSON and Markdown."""
    from banglasenti.runtime.process import quiet_libraries

    quiet_libraries()
    diagnostics = run_smoke(cfg, base_dir, tokenized_dir, Path(json_path).parent, steps, modes)
    write_diagnostics(diagnostics, json_path, md_path)
    return diagnostics
