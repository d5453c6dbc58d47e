"""select-best-trial: the LoRA sweep's trial with the highest val macro-F1, and a leaderboard of all trials.

The trials are the train-lora Model artifacts collected from the sweep's ParallelFor (the ranking:
banglasenti/evaluation/leaderboard.py).
"""

from typing import List  # noqa: UP035 - KFP reads List[...] in component signatures

from kfp.dsl import Input, Markdown, Metrics, Model, Output

from banglasenti.runtime.kfp_support import lightweight_component


@lightweight_component
def select_best_trial(
    trials: Input[List[Model]],  # noqa: UP006 - KFP's spelling of a collected list
    best_model: Output[Model],
    leaderboard: Output[Markdown],
    metrics: Output[Metrics],
):
    """Pick the LoRA trial with the best val macro-F1; copy its model, write the leaderboard."""
    from banglasenti.evaluation.leaderboard import select_best

    summaries = [dict(t.metadata) for t in trials]
    best = select_best([t.path for t in trials], summaries, best_model.path, leaderboard.path)
    best_model.metadata.update(
        {**summaries[best["trial"]], "sweep_trial": best["trial"], "sweep_trials": best["trials"]}
    )
    for key in ("trial", "r", "alpha", "val_macro_f1", "trials"):
        metrics.log_metric(f"sweep_best_{key}", float(best[key]))
