"""The LoRA sweep's leaderboard: trials ranked by val macro-F1, the best one copied (the select-best-trial step,
components/select_best_trial.py).

Each trial carries its training summary (LoRA settings, best val macro-F1) as metadata. Ties go to the earlier trial
in the grid. Only val scores decide; the test split stays untouched until the chosen trial is evaluated.
"""

from typing import Any  # noqa: UP035 - KFP reads List[...] in component signatures

from banglasenti.storage.artifacts import atomic_file, committed_directory, copy_artifact_tree, require_committed


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
