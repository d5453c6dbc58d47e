"""Run the whole pipeline on this machine with the KFP local runner (subprocesses, no containers).

    python pipelines/run_local.py                                  # configs/local.yaml: sample data, tiny base
    python pipelines/run_local.py --set train.epochs=2 --set data.uri=my_data.csv
    python pipelines/run_local.py --config configs/banglasenti.yaml  # the full experiment (needs the Hub)
    python pipelines/run_local.py --gcsfuse-semantics               # artifacts behave as on Vertex's /gcs/

Branches run one after another. Artifacts go under `pipeline.local_root` (default runs/); the paths of
every artifact and of the reports are printed at the end. With --gcsfuse-semantics (or
BANGLASENTI_GCSFUSE_SEMANTICS=1) every step refuses, under the pipeline root, what Cloud Storage FUSE refuses
(renaming a non-empty directory, hard links): see pipelines/gcsfuse.py.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from components.config import CONFIG_DIR, Config, ConfigError, load_config
from pipelines.pipeline import build_pipeline


def init_local_runner(cfg: Config, pipeline_root: str | Path | None = None, gcsfuse_semantics: bool = False) -> Path:
    """kfp.local's SubprocessRunner in this Python environment, artifacts under the pipeline root (returned);
    in the gcsfuse-semantics mode (the flag, or $BANGLASENTI_GCSFUSE_SEMANTICS) for every step it runs."""
    from kfp import local

    from pipelines import gcsfuse

    root = Path(pipeline_root or cfg.pipeline.local_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    if gcsfuse.requested(gcsfuse_semantics):
        gcsfuse.enable([root])
        print(f"gcsfuse semantics under {root}", flush=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    return root


def run_local(cfg: Config, pipeline_root: str | Path | None = None, gcsfuse_semantics: bool = False) -> dict[str, Any]:
    """Run the DAG with kfp.local's SubprocessRunner in this Python environment; return the run's paths."""
    init_local_runner(cfg, pipeline_root, gcsfuse_semantics)
    start = time.monotonic()
    task = build_pipeline(cfg, "local")()
    wall = time.monotonic() - start
    report = Path(task.outputs["report"].path)
    return {
        "run_dir": report.parent.parent,  # <run>/evaluate/report
        "wall_seconds": wall,
        "report": report,
        "data_report": Path(task.outputs["data_report"].path),
        "html_report": Path(task.outputs["html_report"].path),
        "metrics": task.outputs["metrics"].metadata,
    }


def list_artifacts(run_dir: Path) -> list[Path]:
    """Top-level artifacts of every task: <run>/<task>/<output>."""
    return sorted(p for task in run_dir.iterdir() if task.is_dir() for p in task.iterdir()
                  if not p.name.startswith(".") and p.name != "executor_output.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(CONFIG_DIR / "local.yaml"), help="experiment YAML")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set train.epochs=2 (repeatable)")
    parser.add_argument("--pipeline-root", help="where artifacts go (default: the config's pipeline.local_root)")
    parser.add_argument("--gcsfuse-semantics", action="store_true",
                        help="refuse what Cloud Storage FUSE refuses under the pipeline root (as on Vertex AI)")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        result = run_local(cfg, args.pipeline_root, args.gcsfuse_semantics)
    except RuntimeError as err:  # the local runner's "Pipeline ... finished with status FAILURE"; logs are above
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"\nRun finished in {result['wall_seconds']:.0f} s: {result['run_dir']}")
    for path in list_artifacts(result["run_dir"]):
        print(f"  {path.parent.name}/{path.name}: {path}")
    metrics = result["metrics"]
    print("\nTest macro-F1: " + ", ".join(f"{name} {metrics[f'{name}_test_macro_f1']:.4f}"
                                         for name in ("lora", "baseline", "reference", "majority_class")
                                         if f"{name}_test_macro_f1" in metrics))
    print(f"Comparison report: {result['report']}")
    print(f"HTML report: {result['html_report']}")
    print(f"Data-quality report: {result['data_report']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
