"""predict: labels and class probabilities from a trained or exported model.

    python -m banglasenti.serving.predict --model runs/export/merged --text "খুব ভালো লাগলো" --text "একদম বাজে"
    python -m banglasenti.serving.predict --model runs/export --input reviews.csv --output predictions.parquet
    python -m banglasenti.serving.predict --model runs/lora --base-model runs/base --input data.tsv \\
        --set data.text_column=review
    python -m banglasenti.serving.predict --model runs/export --input gs://b/texts.jsonl --output gs://b/pred.jsonl \\
        --output-format vertex

--model takes a merged or fully fine-tuned save_pretrained directory, an export directory (its merged/ is
used), or a LoRA adapter directory together with --base-model. Input tables are csv/tsv/jsonl/parquet (local,
https:// or gs://) read like prepare reads them (`data.text_column`, `data.format`); texts are cleaned,
tokenized as in training and predicted in batches (`train.eval_batch_size`), packed into rows or padded to buckets
as the model's recorded `tokenize` settings say, and returned in input order.
Without --output, one JSON object per text is printed; with it (local or gs://), the format follows the extension.
A JSONL input holds one `{"text": ...}` object per line, as Vertex AI batch prediction reads instances;
`--output-format vertex` writes `{"instance": ..., "prediction": {"label", "label_id", "scores"}}` lines as
Vertex AI batch prediction and banglasenti.serving.server answer. Input order is kept. An exported model says which
trained model it holds and whether it is only a demo (trained on the embedded sample or the tiny base): a
demo model's predictions carry a `warning`, also printed on stderr.
"""

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from banglasenti.config.schema import CLASS_NAMES, Config, TokenizeConfig
from banglasenti.storage.artifacts import InputError, atomic_file, require_saved_dir

PROBABILITY_COLUMNS = [f"p_{name}" for name in CLASS_NAMES]
RUNTIME_ENV = "BANGLASENTI_SERVE_RUNTIME"  # auto (the default): serving.json's runtime; pytorch: the PyTorch model
RUNTIMES = ("auto", "pytorch")


def resolve_model_dir(model: str | Path) -> Path:
    """An export directory's merged/ model, or the directory itself."""
    from banglasenti.models.modeling import MERGED

    model = require_saved_dir(model)
    return model / MERGED if (model / MERGED / "config.json").exists() else model


def model_info(model_dir: str | Path) -> dict[str, Any]:
    """What the export recorded beside a served model (banglasenti.models.modeling.SERVING_INFO), or {}."""
    from banglasenti.models.modeling import SERVING_INFO

    path = Path(model_dir) / SERVING_INFO
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise InputError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(info, dict):
        raise InputError(f"{path}: expected a JSON object")
    return info


def serving_config(info: dict[str, Any], cfg: Config | None = None) -> Config:
    """`cfg` (default settings when None) with the tokenization the model was trained with, when recorded."""
    cfg = cfg or Config()
    if "tokenize" not in info:
        return cfg
    return cfg.model_copy(update={"tokenize": TokenizeConfig.model_validate(info["tokenize"])})


def load_model(model: str | Path, base_model: str | Path | None):
    """(model, tokenizer) from a merged/full directory or an adapter with its base. An exported model whose
    serving.json names an ONNX Runtime file is that file's session (unless $BANGLASENTI_SERVE_RUNTIME is `pytorch`;
    a value other than that or `auto` is an InputError);
    otherwise the PyTorch model in eval mode."""
    import os

    from banglasenti.data.encoding import load_tokenizer
    from banglasenti.models.modeling import ADAPTER_CONFIG, load_trained_model

    model_dir = resolve_model_dir(model)
    if (model_dir / ADAPTER_CONFIG).exists() and base_model is None:
        raise InputError(f"{model_dir}: a LoRA adapter; give the base model it was trained on with --base-model")
    runtime = model_info(model_dir).get("runtime") or {}
    chosen = os.environ.get(RUNTIME_ENV) or "auto"
    if chosen not in RUNTIMES:
        raise InputError(f"{RUNTIME_ENV}={chosen!r}: expected one of {', '.join(RUNTIMES)}")
    if base_model is None and runtime.get("name") == "onnxruntime" and chosen == "auto":
        from banglasenti.serving.onnx_runtime import OnnxClassifier

        path = model_dir / str(runtime.get("file"))
        if not path.is_file() or path.parent != model_dir:
            raise InputError(f"{model_dir}: serving.json names the ONNX file {runtime.get('file')!r}, which is absent")
        return OnnxClassifier(path), load_tokenizer(model_dir)
    return load_trained_model(model_dir, base_model or model_dir), load_tokenizer(model_dir)


def predict_texts(texts: list[str], model, tokenizer, cfg: Config) -> pd.DataFrame:
    """Predicted label, class id and class probabilities for every text, in input order."""
    import datasets
    import pyarrow as pa
    import torch

    from banglasenti.data.encoding import tokenize_frame
    from banglasenti.data.tables import as_text, clean_text
    from banglasenti.models.inference import predict_logits

    frame = pd.DataFrame({"text": [clean_text(as_text(t)) for t in texts], "label": 0})
    table, _ = tokenize_frame(frame, tokenizer, cfg.tokenize)
    if hasattr(model, "table_logits"):  # an ONNX Runtime session (banglasenti/serving/onnx_runtime.py)
        logits = model.table_logits(table, cfg.train.eval_batch_size, tokenizer.pad_token_id)
    else:
        # A fixed fingerprint: datasets would otherwise hash the whole table (milliseconds per call, for nothing).
        dataset = datasets.Dataset(pa.Table.from_pandas(table, preserve_index=False), fingerprint="predict-texts")
        packing = cfg.tokenize if packing_pays(table, cfg.tokenize) else None
        logits = predict_logits(model, dataset, cfg.train.eval_batch_size, tokenizer.pad_token_id, packing)
    probs = torch.softmax(torch.from_numpy(logits), dim=-1).numpy()
    ids = probs.argmax(axis=-1)
    out = pd.DataFrame({"text": list(texts), "label": [CLASS_NAMES[i] for i in ids], "label_id": ids})
    for k, column in enumerate(PROBABILITY_COLUMNS):
        out[column] = probs[:, k].astype(np.float64)
    return out


def packing_pays(table: pd.DataFrame, tokenize: TokenizeConfig) -> bool:
    """Whether packing these texts into rows of `max_length` tokens computes fewer positions than padding each to
    its bucket: a few short texts (one request's) fill a fraction of a row, many fill rows. The logits are the same
    either way (to float rounding)."""
    if not tokenize.packing or table.empty:
        return False
    tokens, texts = int(table["num_tokens"].sum()), len(table)
    fewest_rows = max(-(-tokens // tokenize.max_length), -(-texts // tokenize.pack_slots))
    return fewest_rows * tokenize.max_length < int(table["length"].sum())


def read_jsonl_texts(path: Path, column: str) -> list[str]:
    """The `column` string of every line of a JSONL file of objects; a bad line is named."""
    from banglasenti.data.tables import check_utf8, jsonl_records

    check_utf8(path)
    texts = []
    for lineno, record in jsonl_records(path):
        if column not in record:
            raise InputError(f"{path}: line {lineno}: expected an object with a {column!r} field")
        if not isinstance(record[column], str):
            raise InputError(f"{path}: line {lineno}: {column!r} must be a string, got {type(record[column]).__name__}")
        texts.append(record[column])
    if not texts:
        raise InputError(f"{path}: no lines")
    return texts


def read_texts(uri: str, cfg: Config) -> list[str]:
    """The text column of a csv/tsv/jsonl/parquet table (local, https:// or gs://)."""
    from banglasenti.data.tables import as_text, detect_format, read_table
    from banglasenti.storage.artifacts import local_copy

    with tempfile.TemporaryDirectory() as workdir:
        path = local_copy(uri, Path(workdir))
        if detect_format(path, cfg.data.format) == "jsonl":
            return read_jsonl_texts(path, cfg.data.text_column)
        frame = read_table(path, cfg.data.format)
    if cfg.data.text_column not in frame.columns:
        raise InputError(
            f"{uri}: missing column {cfg.data.text_column!r}; found {list(frame.columns)} "
            "(choose one with --set data.text_column=NAME)"
        )
    return [as_text(v) for v in frame[cfg.data.text_column]]


def write_predictions(frame: pd.DataFrame, path: str | Path) -> None:
    """Write by extension: .csv, .tsv, .jsonl or .parquet."""
    path = Path(path)
    suffix = path.suffix.lower()
    with atomic_file(path) as tmp:
        if suffix == ".parquet":
            frame.to_parquet(tmp, index=False)
        elif suffix in (".csv", ".tsv"):
            frame.to_csv(tmp, index=False, sep="\t" if suffix == ".tsv" else ",")
        elif suffix in (".jsonl", ".ndjson"):
            frame.to_json(tmp, orient="records", lines=True, force_ascii=False)
        else:
            raise InputError(f"{path}: unsupported output extension {suffix!r} (use .csv, .tsv, .jsonl or .parquet)")


def vertex_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Vertex AI batch prediction's output lines: {"instance": {"text"}, "prediction": {label, label_id, scores}}."""
    records = []
    for row in frame.to_dict(orient="records"):
        prediction = {
            "label": row["label"],
            "label_id": int(row["label_id"]),
            "scores": {name: float(row[col]) for name, col in zip(CLASS_NAMES, PROBABILITY_COLUMNS)},
        }
        if "warning" in row:
            prediction["warning"] = row["warning"]
        records.append({"instance": {"text": row["text"]}, "prediction": prediction})
    return records


def write_output(frame: pd.DataFrame, output: str, output_format: str) -> None:
    """Write predictions to a local path or gs:// URI; `vertex` format: JSONL lines of vertex_records."""
    from banglasenti.storage.artifacts import split_gs_uri

    suffix = Path(output).suffix.lower()
    if output_format == "vertex" and suffix not in (".jsonl", ".ndjson"):
        raise InputError(f"{output}: --output-format vertex writes JSONL (use .jsonl)")
    with tempfile.TemporaryDirectory() as workdir:
        path = Path(workdir) / f"predictions{suffix}" if output.startswith("gs://") else Path(output)
        if output_format == "vertex":
            with atomic_file(path) as tmp:
                tmp.write_text(
                    "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in vertex_records(frame)), encoding="utf-8"
                )
        else:
            write_predictions(frame, path)
        if output.startswith("gs://"):
            from banglasenti.storage.artifacts import gcs_client, gcs_error, gcs_faults, gcs_retry

            bucket, key = split_gs_uri(output)
            try:
                gcs_client().bucket(bucket).blob(key).upload_from_filename(str(path), retry=gcs_retry())
            except gcs_faults() as err:
                raise gcs_error(output, err, writing=True) from None


def main(argv: list[str] | None = None) -> int:
    from banglasenti.runtime.command_line import base_parser, load_cli_config, run_cli
    from banglasenti.runtime.process import quiet_libraries

    parser = base_parser(__doc__)
    parser.add_argument("--model", required=True, help="merged/full model, export or LoRA adapter directory")
    parser.add_argument("--base-model", help="base model directory (only for a LoRA adapter directory)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", help="table of texts: csv/tsv/jsonl/parquet, local, https:// or gs://")
    source.add_argument("--text", action="append", help="a text to classify (repeatable)")
    parser.add_argument(
        "--output", help="write predictions here (.csv/.tsv/.jsonl/.parquet, local or gs://) instead of stdout"
    )
    parser.add_argument(
        "--output-format",
        choices=("table", "vertex"),
        default="table",
        help="table: one flat record per text; vertex: {instance, prediction} JSONL lines",
    )

    def work(args) -> None:
        quiet_libraries()
        cfg = load_cli_config(args)
        texts = args.text if args.text else read_texts(args.input, cfg)
        model, tokenizer = load_model(args.model, args.base_model)
        info = model_info(resolve_model_dir(args.model))
        predictions = predict_texts(texts, model, tokenizer, serving_config(info, cfg))
        if info.get("warning"):
            predictions["warning"] = info["warning"]
            print(f"warning: {info['warning']}", file=sys.stderr)
        if args.output:
            write_output(predictions, args.output, args.output_format)
            print(f"wrote {len(predictions)} predictions to {args.output}", file=sys.stderr)
        else:
            records = (
                vertex_records(predictions) if args.output_format == "vertex" else predictions.to_dict(orient="records")
            )
            for record in records:
                print(json.dumps(record, ensure_ascii=False, default=int))

    return run_cli(parser, work, argv)


if __name__ == "__main__":
    raise SystemExit(main())
