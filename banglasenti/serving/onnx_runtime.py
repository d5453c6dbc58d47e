"""The served model on ONNX Runtime, kept only when it predicts as the PyTorch model does.

The export step converts the served classifier with torch.onnx (the dynamo exporter; inputs `input_ids` and
`attention_mask`, dynamic batch and length; output `logits`) to `model.onnx`, and that to `model.int8.onnx` with
ONNX Runtime's dynamic quantization (int8 weights of the linear layers). Each is scored against the PyTorch model on
the test split: it is kept only if its labels agree on at least 99.5 % of the texts and its macro-F1 is at most
0.005 below PyTorch's (multilingual encoders have broken under int8 before: onnxruntime#9599, optimum#151). The
first that passes of int8, then fp32, is recorded in serving.json (`runtime`) and served (the other file is
removed); when none passes, or there is no test split to check against, the PyTorch model is served and
`runtime.reason` says why.

ONNX Runtime predicts the texts of a bucket (`tokenize.buckets`) together, each batch cut to its longest text (the
graph's length is dynamic): the packed rows of the PyTorch path need attention masks the exported graph does not
take. The session's threads sleep rather than spin between runs, so a server's
request handling keeps its share of the cores.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
MIN_AGREEMENT = 0.995
MAX_MACRO_F1_DROP = 0.005


class LogitsOnly(torch.nn.Module):
    """What torch.onnx exports: the classifier's logits from token ids and their mask."""

    def __init__(self, classifier: torch.nn.Module):
        super().__init__()
        self.classifier = classifier

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.classifier(input_ids=input_ids, attention_mask=attention_mask).logits


def export_onnx(model, path: Path, pad_token_id: int) -> Path:
    """`model` (a PyTorch sequence classifier) as ONNX at `path`, batch and length dynamic."""
    model = model.eval()
    ids = torch.full((2, 16), pad_token_id, dtype=torch.long)
    ids[:, 0], ids[:, 1:9] = 0, 5
    mask = (ids != pad_token_id).long()
    # DYNAMIC: torch.export records the guards it needs (torch 2.9 guards batch != 1, from its 0/1 specialisation)
    # instead of failing on them; the ONNX graph takes any batch and length (a batch of one is tested).
    batch = length = torch.export.Dim.DYNAMIC
    torch.onnx.export(
        LogitsOnly(model).eval(),
        (ids, mask),
        str(path),
        dynamo=True,
        input_names=["input_ids", "attention_mask"],
        output_names=["logits"],
        dynamic_shapes={"input_ids": {0: batch, 1: length}, "attention_mask": {0: batch, 1: length}},
        external_data=False,
        verbose=False,
    )
    return path


def quantize_int8(source: Path, dest: Path) -> Path:
    """`source` with int8 weights (ONNX Runtime's dynamic quantization) at `dest`."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(dest), weight_type=QuantType.QInt8)
    return dest


class OnnxClassifier:
    """An ONNX Runtime session of an exported classifier."""

    def __init__(self, path: Path, threads: int = 0):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: ONNX Runtime's default, every physical core
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def table_logits(self, table: pd.DataFrame, batch_size: int, pad_token_id: int) -> np.ndarray:
        """Logits of every text of a tokenized table (right-padded `input_ids`, `attention_mask`, `length` the bucket,
        `num_tokens`), in its order: the texts of one bucket together, `batch_size` at a time, each batch cut to its
        longest text."""
        out = np.zeros((len(table), 0), dtype=np.float32)
        buckets, tokens = table["length"].to_numpy(), table["num_tokens"].to_numpy()
        ids = table["input_ids"].to_numpy()
        for bucket in np.unique(buckets):
            rows = np.flatnonzero(buckets == bucket)
            rows = rows[np.argsort(tokens[rows], kind="stable")]
            for start in range(0, len(rows), batch_size):
                chunk = rows[start : start + batch_size]
                width = int(tokens[chunk].max())
                batch_ids = np.full((len(chunk), width), pad_token_id, dtype=np.int64)
                batch_mask = np.zeros((len(chunk), width), dtype=np.int64)
                for row, i in enumerate(chunk):
                    batch_ids[row, : tokens[i]] = ids[i][: tokens[i]]
                    batch_mask[row, : tokens[i]] = 1
                logits = self.session.run(["logits"], {"input_ids": batch_ids, "attention_mask": batch_mask})[0]
                if out.shape[1] == 0:
                    out = np.zeros((len(table), logits.shape[1]), dtype=np.float32)
                out[chunk] = logits
        return out


def compare(candidate: np.ndarray, reference: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Label agreement with the reference's predictions, the candidate's macro-F1, and its drop against the
    reference's (unrounded: `passes` decides on these, serving.json records them rounded)."""
    from sklearn.metrics import f1_score

    ours, theirs = candidate.argmax(axis=-1), reference.argmax(axis=-1)
    ours_f1 = float(f1_score(labels, ours, average="macro"))
    return {
        "label_agreement": float(np.mean(ours == theirs)),
        "macro_f1": ours_f1,
        "macro_f1_drop": float(f1_score(labels, theirs, average="macro")) - ours_f1,
    }


def passes(check: dict[str, float]) -> bool:
    return check["label_agreement"] >= MIN_AGREEMENT and check["macro_f1_drop"] <= MAX_MACRO_F1_DROP


def choose_runtime(
    model_dir: Path, model, tokenizer, table: pd.DataFrame | None, batch_size: int, torch_logits: np.ndarray | None
) -> dict[str, Any]:
    """Convert the served model in `model_dir`, check each conversion on the tokenized test `table` against the
    PyTorch logits, and return serving.json's `runtime`: the file served (or PyTorch) and every check."""
    if table is None or torch_logits is None or not len(table):
        return {"name": "pytorch", "reason": "no test split to check an ONNX conversion against"}
    labels = table["label"].to_numpy()
    fp32 = export_onnx(model, model_dir / ONNX_FILE, tokenizer.pad_token_id)
    int8 = quantize_int8(fp32, model_dir / INT8_FILE)
    checks: dict[str, dict[str, float]] = {}
    kept: dict[str, bool] = {}
    for name, path in (("int8", int8), ("fp32", fp32)):
        start = time.perf_counter()
        logits = OnnxClassifier(path).table_logits(table, batch_size, tokenizer.pad_token_id)
        check = compare(logits, torch_logits, labels)
        kept[name] = passes(check)
        checks[name] = {key: round(value, 5) for key, value in check.items()}
        checks[name]["seconds"] = round(time.perf_counter() - start, 2)
    record: dict[str, Any] = {"texts": len(table), "checks": checks, "min_agreement": MIN_AGREEMENT}
    record["max_macro_f1_drop"] = MAX_MACRO_F1_DROP
    served = next((name for name in ("int8", "fp32") if kept[name]), None)
    files = {"int8": int8, "fp32": fp32}
    for name, path in files.items():  # only the served file stays beside the model
        if name != served:
            path.unlink()
    if served is not None:
        return {"name": "onnxruntime", "file": files[served].name, "precision": served, **record}
    worst = ", ".join(
        f"{n}: agreement {c['label_agreement']:.4f}, macro-F1 drop {c['macro_f1_drop']:+.4f}" for n, c in checks.items()
    )
    return {"name": "pytorch", "reason": f"no ONNX conversion predicts as PyTorch does ({worst})", **record}
