"""The base model a run fine-tunes, as a self-contained directory (weights + tokenizer): the base-model step's work
(components/base_model.py).

`model.name` is a Hugging Face Hub id (downloaded at `model.revision`, the resolved commit recorded), a local
or gs:// directory (copied), or `tiny`: a small XLM-R (same architecture and special tokens, fewer and
narrower layers) with a Unigram tokenizer trained on the train texts, pre-trained with masked-LM on them
for `model.tiny.pretrain_steps` steps (capped by `pretrain_max_seconds`), so fine-tuning starts from
weights that have seen Bengali rather than from noise.
"""

import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from banglasenti.config.schema import Config, ModelConfig, TinyModelConfig
from banglasenti.runtime.process import progress
from banglasenti.storage.artifacts import (
    ARTIFACT_MANIFEST,
    InputError,
    committed_directory,
    directory_digest,
    download_gcs_directory,
    require_model_dir,
)

if TYPE_CHECKING:
    import torch
    from transformers import XLMRobertaForMaskedLM


TINY = "tiny"


SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # ids 0..4 (XLM-R: the same first four)


MODEL_FILE_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt"]


def train_unigram_tokenizer(texts: list[str], vocab_size: int):
    """A SentencePiece Unigram vocabulary (as XLM-R's) in an XLM-R tokenizer: <s> <pad> </s> <unk> <mask> first."""
    import io

    import sentencepiece as spm
    from transformers import XLMRobertaTokenizer

    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=proto,
        model_type="unigram",
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        character_coverage=1.0,
        normalization_rule_name="identity",
        max_sentencepiece_length=12,
        num_threads=1,
        unk_id=0,
        bos_id=-1,
        eos_id=-1,
        pad_id=-1,
        minloglevel=2,
    )
    sp = spm.SentencePieceProcessor(model_proto=proto.getvalue())
    pieces = [
        (sp.id_to_piece(i), sp.get_score(i))
        for i in range(sp.get_piece_size())
        if not (sp.is_unknown(i) or sp.is_control(i))
    ]
    return XLMRobertaTokenizer(vocab=[(token, 0.0) for token in SPECIAL_TOKENS] + pieces)


# XLM-R's conventions, whatever its size: 514 positions (padding_idx 1 + 512), one token type, its special ids.
XLMR_CONVENTIONS: dict[str, Any] = {
    "max_position_embeddings": 514,
    "type_vocab_size": 1,
    "layer_norm_eps": 1e-5,
    "pad_token_id": 1,
    "bos_token_id": 0,
    "eos_token_id": 2,
}


def tiny_model_config(cfg: TinyModelConfig, vocab_size: int):
    """An XLMRobertaConfig with XLM-R's conventions (pad 1, bos 0, eos 2, 514 positions, eps 1e-5)."""
    from transformers import XLMRobertaConfig

    return XLMRobertaConfig(
        vocab_size=vocab_size,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        intermediate_size=cfg.intermediate_size,
        **XLMR_CONVENTIONS,
    )


def masked_lm_loss(model: "XLMRobertaForMaskedLM", batch: "dict[str, torch.Tensor]") -> "torch.Tensor":
    """An XLM-R masked-LM's `model(**batch).loss` (to float rounding), with the prediction head run over the masked
    positions alone (about 15 % of the tokens) instead of every position: the head's projection onto the
    vocabulary is most of a tiny model's cost. `batch` is left as it is."""
    import torch

    labels = batch["labels"]
    hidden = model.base_model(**{k: v for k, v in batch.items() if k != "labels"}).last_hidden_state
    masked = labels != -100
    return torch.nn.functional.cross_entropy(model.lm_head(hidden[masked]), labels[masked])


def pretrain_masked_lm(model, tokenizer, texts: list[str], cfg: TinyModelConfig, max_length: int) -> dict[str, Any]:
    """Masked-LM pre-training on `texts`; returns steps, losses and seconds."""
    import torch
    from transformers import DataCollatorForLanguageModeling

    if cfg.pretrain_steps == 0:
        return {"pretrain_steps": 0}
    encoded = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15, seed=cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.pretrain_learning_rate, weight_decay=0.01)
    warmup = max(1, cfg.pretrain_steps // 10)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (cfg.pretrain_steps - step) / max(1, cfg.pretrain_steps - warmup))

    lr_schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    model.train()
    start, step, losses = time.monotonic(), 0, []
    batch_size = min(cfg.pretrain_batch_size, len(encoded))
    while step < cfg.pretrain_steps and time.monotonic() - start < cfg.pretrain_max_seconds:
        order = torch.randperm(len(encoded), generator=generator).tolist()
        for first in range(0, len(order) - batch_size + 1, batch_size):
            batch = collator([{"input_ids": encoded[i]} for i in order[first : first + batch_size]])
            loss = masked_lm_loss(model, batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            lr_schedule.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.detach())
            step += 1
            if step >= cfg.pretrain_steps or time.monotonic() - start >= cfg.pretrain_max_seconds:
                break
    model.eval()
    head = torch.stack(losses[: min(20, len(losses))]).mean().item()
    tail = torch.stack(losses[-min(20, len(losses)) :]).mean().item()
    if step < cfg.pretrain_steps:
        print(
            f"WARNING: masked-LM pre-training stopped by the {cfg.pretrain_max_seconds:g} s cap after {step} of "
            f"{cfg.pretrain_steps} steps: the base model depends on this machine's speed",
            flush=True,
        )
    return {
        "pretrain_steps": step,
        "pretrain_seconds": round(time.monotonic() - start, 1),
        "pretrain_loss_first": round(head, 4),
        "pretrain_loss_last": round(tail, 4),
        "pretrain_perplexity_last": round(math.exp(min(tail, 50.0)), 2),
    }


def build_tiny_base(texts: list[str], cfg: TinyModelConfig, max_length: int, out_dir: Path) -> dict[str, Any]:
    """Train the tokenizer, initialise and pre-train the tiny XLM-R, save both to `out_dir`."""
    from transformers import XLMRobertaForMaskedLM, set_seed

    if not texts:
        raise InputError("no training texts to build the tiny base model from")
    set_seed(cfg.seed)
    tokenizer = train_unigram_tokenizer(texts, cfg.vocab_size)
    model = XLMRobertaForMaskedLM(tiny_model_config(cfg, len(tokenizer)))
    stats = pretrain_masked_lm(model, tokenizer, texts, cfg, max_length)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return {"vocab_size": len(tokenizer), "parameters": sum(p.numel() for p in model.parameters()), **stats}


def resolve_hub_model(name: str, revision: str | None, out_dir: Path) -> dict[str, Any]:
    """Download a Hub model's safetensors weights and tokenizer; record the resolved commit."""
    from huggingface_hub import HfApi, snapshot_download

    info = HfApi().model_info(name, revision=revision)
    snapshot_download(repo_id=name, revision=info.sha, local_dir=out_dir, allow_patterns=MODEL_FILE_PATTERNS)
    shutil.rmtree(out_dir / ".cache", ignore_errors=True)
    return {"revision": info.sha}


def copy_model_dir(source: Path, out_dir: Path) -> None:
    for pattern in MODEL_FILE_PATTERNS:
        for file in source.glob(pattern):
            if file.name != ARTIFACT_MANIFEST:
                shutil.copy2(file, out_dir / file.name)


def resolve_base_model(
    model_cfg: ModelConfig, train_texts: list[str], max_length: int, out_dir: str | Path
) -> dict[str, Any]:
    """Write the base model into `out_dir` (committed once complete) and return its lineage metadata."""
    name = model_cfg.name
    meta: dict[str, Any] = {"base_model": name}
    with committed_directory(out_dir) as tmp:
        if name == TINY:
            meta["kind"] = "tiny"
            progress(
                f"building the tiny offline XLM-R: masked-LM pre-training on {len(train_texts)} train texts, "
                f"{model_cfg.tiny.pretrain_steps} steps (at most {model_cfg.tiny.pretrain_max_seconds:g} s)"
            )
            meta.update(build_tiny_base(train_texts, model_cfg.tiny, max_length, tmp))
            if meta.get("pretrain_steps"):
                progress(
                    f"pre-trained {meta['pretrain_steps']} steps in {meta['pretrain_seconds']:g} s, masked-LM "
                    f"loss {meta['pretrain_loss_first']:.2f} -> {meta['pretrain_loss_last']:.2f}"
                )
        elif name.startswith("gs://"):
            meta["kind"] = "gcs"
            with tempfile.TemporaryDirectory() as download:
                download_gcs_directory(name, Path(download))
                require_model_dir(Path(download), source=name)
                copy_model_dir(Path(download), tmp)
        elif Path(name).expanduser().is_dir():
            meta["kind"] = "local"
            source = Path(name).expanduser()
            require_model_dir(source, source=name)
            copy_model_dir(source, tmp)
        elif name.startswith(("/", ".", "~")):
            raise InputError(f"{name}: no such model directory")
        else:
            meta["kind"] = "hub"
            meta.update(resolve_hub_model(name, model_cfg.revision, tmp))
        meta["content_sha256"] = directory_digest(tmp)
    progress(f"base model {name} ({meta['kind']}) ready")
    return meta


def run_base_model(cfg: Config, train_path: str, out_dir: str) -> dict[str, Any]:
    """What the KFP component and the command line do: `cfg.model.name` resolved into `out_dir`."""
    from banglasenti.runtime.process import quiet_libraries
    from banglasenti.storage.artifacts import read_parquet

    quiet_libraries()
    texts = read_parquet(train_path, ["text"])["text"].tolist() if cfg.model.name == TINY else []
    return resolve_base_model(cfg.model, texts, cfg.tokenize.max_length, out_dir)
