"""select-best-trial: the LoRA sweep's trial with the highest val macro-F1, and a leaderboard of all trials.

The trials are the train-lora Model artifacts collected from the sweep's ParallelFor; each carries its
training summary (LoRA settings, best val macro-F1) as metadata. Ties go to the earlier trial in the grid.
Only val scores decide; the test split stays untouched until the chosen trial is evaluated.
"""

from typing import Any, List  # noqa: UP035 - KFP reads List[...] in component signatures

from kfp.dsl import Input, Markdown, Metrics, Model, Output

from components.kfp_support import lightweight_component
from components.storage import atomic_file, committed_directory, copy_artifact_tree, require_committed


def trial_row(index: int, summary: dict[str, Any]) -> dict[str, Any]:
    """One trial's settings and scores (metadata numbers come back as floats from KFP; counts are ints)."""
    lora = summary.get("lora", {})
    return {
        "trial": index,
        "r": int(lora["r"]),
        "alpha": int(lora["alpha"]),
        "target_modules": list(lora.get("target_modules", [])),
        "val_macro_f1": float(summary["best_val_macro_f1"]),
        "trainable_parameters": int(summary["trainable_parameters"]),
        "epochs_run": int(summary["epochs_run"]),
        "wall_seconds": float(summary["wall_seconds"]),
    }


def rank_trials(summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Trials sorted best first by val macro-F1 (stable: ties keep grid order)."""
    if not summaries:
        raise ValueError("the sweep produced no trials")
    rows = [trial_row(i, s) for i, s in enumerate(summaries)]
    return sorted(rows, key=lambda r: -r["val_macro_f1"])


def render_leaderboard(ranked: list[dict[str, Any]]) -> str:
    lines = [
        "# LoRA sweep: trials by val macro-F1",
        "",
        "| rank | trial | r | alpha | target modules | val macro-F1 | trainable params | epochs | wall s |",
        "|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for rank, r in enumerate(ranked, start=1):
        lines.append(
            f"| {rank} | {r['trial']} | {r['r']} | {r['alpha']} | {', '.join(r['target_modules'])} | "
            f"{r['val_macro_f1']:.4f} | {r['trainable_parameters']:,} | {r['epochs_run']} | "
            f"{r['wall_seconds']:.1f} |"
        )
    best = ranked[0]
    lines += [
        "",
        f"Chosen: trial {best['trial']} (r {best['r']}, alpha {best['alpha']}), val macro-F1 "
        f"{best['val_macro_f1']:.4f}. The chosen model is evaluated on the test split against the baseline.",
    ]
    return "\n".join(lines) + "\n"


def select_best(
    model_dirs: list[str], summaries: list[dict[str, Any]], out_dir: str, leaderboard_path: str
) -> dict[str, Any]:
    """Copy the best trial's model to `out_dir`, write the leaderboard; return the best trial's row."""
    ranked = rank_trials(summaries)
    best = ranked[0]
    chosen = require_committed(model_dirs[best["trial"]])
    with committed_directory(out_dir) as out:
        copy_artifact_tree(chosen, out)
    with atomic_file(leaderboard_path) as tmp:
        tmp.write_text(render_leaderboard(ranked), encoding="utf-8")
    return {**best, "trials": len(ranked)}


@lightweight_component
def select_best_trial(
    trials: Input[List[Model]],  # noqa: UP006 - KFP's spelling of a collected list
    best_model: Output[Model],
    leaderboard: Output[Markdown],
    metrics: Output[Metrics],
):
    """Pick the LoRA trial with the best val macro-F1; copy its model, write the leaderboard."""
    from components.sweep import select_best

    summaries = [dict(t.metadata) for t in trials]
    best = select_best([t.path for t in trials], summaries, best_model.path, leaderboard.path)
    best_model.metadata.update(
        {**summaries[best["trial"]], "sweep_trial": best["trial"], "sweep_trials": best["trials"]}
    )
    for key in ("trial", "r", "alpha", "val_macro_f1", "trials"):
        metrics.log_metric(f"sweep_best_{key}", float(best[key]))
