"""export: the LoRA adapter merged into its base model (merge_and_unload), and the adapter itself, in HF format.

    python -m components.export --base-model runs/base --lora runs/lora --output-dir runs/export

Writes `merged/` (a plain save_pretrained classifier with its tokenizer, loadable without PEFT; what
`components.predict` and the Model Registry upload use) and `adapter/` (the PEFT adapter and classifier head
with the tokenizer, to apply to the same base model). The merged model's logits are checked against the
adapter's on a few texts before anything is written.
"""

import json
from pathlib import Path
from typing import Any

from kfp.dsl import Input, Model, Output

from components.kfp_support import lightweight_component
from components.storage import committed_directory, copy_artifact_tree

MERGED, ADAPTER = "merged", "adapter"
CHECK_TEXTS = ["খুব ভালো লাগলো", "একদম বাজে সার্ভিস", "আজ বৃহস্পতিবার", "দাম একটু বেশি কিন্তু মান ভালো"]
MAX_LOGIT_DIFFERENCE = 1e-4


def max_logit_difference(model_a, model_b, tokenizer, texts: list[str]) -> float:
    """Largest absolute difference between the two models' logits on `texts`."""
    import torch

    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        return float((model_a(**batch).logits - model_b(**batch).logits).abs().max())


def merge_lora(base_dir: str | Path, lora_dir: str | Path):
    """The adapter applied to its base model and merged into the weights: a plain transformers model."""
    from components.evaluate import load_trained_model

    return load_trained_model(lora_dir, base_dir).merge_and_unload().eval()


def export_lora(base_dir: str | Path, lora_dir: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Write merged/ and adapter/ under `out_dir` (committed once complete); return sizes and the logit check."""
    from components.evaluate import load_trained_model, model_size_bytes
    from components.runtime import quiet_libraries
    from components.tokenization import load_tokenizer

    quiet_libraries()
    tokenizer = load_tokenizer(lora_dir)
    merged = merge_lora(base_dir, lora_dir)
    difference = max_logit_difference(merged, load_trained_model(lora_dir, base_dir), tokenizer, CHECK_TEXTS)
    if difference > MAX_LOGIT_DIFFERENCE:
        raise RuntimeError(f"merged model differs from the adapter: max logit difference {difference:.2e}")
    with committed_directory(out_dir) as out:
        merged.save_pretrained(str(out / MERGED))
        tokenizer.save_pretrained(str(out / MERGED))
        copy_artifact_tree(Path(lora_dir), out / ADAPTER)
        summary = {"merged_bytes": model_size_bytes(out / MERGED), "adapter_bytes": model_size_bytes(out / ADAPTER),
                   "max_logit_difference": difference, "merged_dir": MERGED, "adapter_dir": ADAPTER}
        (out / "export.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary


@lightweight_component
def export_model(base_model: Input[Model], lora_model: Input[Model], model: Output[Model]):
    """Merge the LoRA adapter into the base model; save the merged model and the adapter (HF format)."""
    from components.export import export_lora

    model.metadata.update(export_lora(base_model.path, lora_model.path, model.path))


def main(argv: list[str] | None = None) -> int:
    from components.cli import base_parser, run_cli

    parser = base_parser(__doc__)
    parser.add_argument("--base-model", required=True, help="base model directory the adapter was trained on")
    parser.add_argument("--lora", required=True, help="trained LoRA model directory")
    parser.add_argument("--output-dir", required=True, help="directory for merged/ and adapter/")

    def work(args) -> None:
        print(json.dumps(export_lora(args.base_model, args.lora, args.output_dir)))

    return run_cli(parser, work, argv)


if __name__ == "__main__":
    raise SystemExit(main())
