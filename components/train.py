"""train-lora / train-baseline: the two training steps (the training itself: banglasenti/training/runner.py).

    python -m components.train --mode lora --base-model runs/base --tokenized runs/tok --output-dir runs/lora
    python -m components.train --mode baseline --base-model runs/base --tokenized runs/tok --output-dir runs/full

The output directory is a save_pretrained directory (adapter + head for LoRA, full weights for the
baseline) with the tokenizer.

Checkpoints (every `train.checkpoint_steps` steps and every epoch) go to `train.checkpoint_dir`, else
$AIP_CHECKPOINT_DIR on Vertex AI, else beside the output; a killed run started again with the same output
location resumes from the last intact one and ends as an uninterrupted run would (banglasenti/training/checkpoints.py).
"""

import json
from typing import Any

from kfp.dsl import Dataset, Input, Metrics, Model, Output

from banglasenti.config.schema import Config
from banglasenti.runtime.kfp_support import lightweight_component
from banglasenti.storage.artifacts import atomic_file
from banglasenti.training.runner import MODES, SCALAR_METRICS, Mode, train_model


def publish(mode: Mode, summary: dict[str, Any], model_artifact, metrics_artifact) -> None:
    """Lineage metadata on the Model; per-model scalar keys (lora_*, baseline_*) on the Metrics, whose file
    holds the per-epoch curves (Vertex Experiments takes only scalars from metadata)."""
    model_artifact.metadata.update(summary)
    for key in SCALAR_METRICS:
        metrics_artifact.log_metric(f"{mode}_{key}", float(summary[key]))
    with atomic_file(metrics_artifact.path) as tmp:
        tmp.write_text(json.dumps({"model": mode, "history": summary["history"]}, indent=2), encoding="utf-8")


def train_step(mode: Mode, cfg: Config, base_model, tokenized, model, metrics) -> None:
    """What both training components do with the run's config: training, then metrics and lineage on the artifacts."""
    from banglasenti.runtime.process import progress, quiet_libraries
    from banglasenti.storage.lineage import BASE_MODEL_KEYS, DATA_KEYS, TOKENIZER_KEYS, carry, stamp, training_lineage

    quiet_libraries()
    summary = train_model(mode, cfg, base_model.path, tokenized.path, model.path)
    progress(
        f"{mode}: {summary['epochs_run']} epochs, best val macro-F1 {summary['best_val_macro_f1']:.4f} (epoch "
        f"{summary['best_epoch']}), {summary['train_examples_per_second']:g} train examples/s"
    )
    publish(mode, summary, model, metrics)
    stamp(
        model,
        **training_lineage(cfg),
        **carry(base_model, BASE_MODEL_KEYS),
        **carry(tokenized, {**DATA_KEYS, **TOKENIZER_KEYS}),
    )


@lightweight_component
def train_lora(
    config_json: str,
    lora_r: int,
    lora_alpha: int,
    lora_target_modules: list,
    learning_rate: float,
    epochs: int,
    batch_size: int,
    seed: int,
    base_model: Input[Model],
    tokenized: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
):
    """Fine-tune LoRA adapters and the classifier head."""
    from banglasenti.config.parameters import run_overrides
    from banglasenti.config.schema import config_from_json
    from components.train import train_step

    overrides = run_overrides(
        lora_r=lora_r,
        lora_alpha=lora_alpha,
        lora_target_modules=lora_target_modules,
        lora_learning_rate=learning_rate,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
    )
    train_step("lora", config_from_json(config_json, overrides), base_model, tokenized, model, metrics)


@lightweight_component
def train_baseline(
    config_json: str,
    learning_rate: float,
    epochs: int,
    batch_size: int,
    seed: int,
    base_model: Input[Model],
    tokenized: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
):
    """Fully fine-tune every weight (the baseline)."""
    from banglasenti.config.parameters import run_overrides
    from banglasenti.config.schema import config_from_json
    from components.train import train_step

    overrides = run_overrides(baseline_learning_rate=learning_rate, epochs=epochs, batch_size=batch_size, seed=seed)
    train_step("baseline", config_from_json(config_json, overrides), base_model, tokenized, model, metrics)


def main(argv: list[str] | None = None) -> int:
    from banglasenti.runtime.command_line import base_parser, load_cli_config, run_cli

    parser = base_parser(__doc__)
    parser.add_argument("--mode", choices=MODES, required=True, help="lora adapters or full fine-tuning")
    parser.add_argument("--base-model", required=True, help="base model directory")
    parser.add_argument("--tokenized", required=True, help="directory of tokenized splits")
    parser.add_argument("--output-dir", required=True, help="directory to save the trained model into")

    def work(args) -> None:
        from banglasenti.runtime.process import quiet_libraries

        cfg = load_cli_config(args)
        quiet_libraries()
        summary = train_model(args.mode, cfg, args.base_model, args.tokenized, args.output_dir)
        print(json.dumps({k: summary[k] for k in SCALAR_METRICS}))

    return run_cli(parser, work, argv)


if __name__ == "__main__":
    raise SystemExit(main())
