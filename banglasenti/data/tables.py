"""Input tables: csv, tsv, jsonl or parquet files read into strings with one-line errors, and their text cells
cleaned as training saw them (prepare reads the training data, predict the texts to label, the same way)."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from banglasenti.storage.artifacts import InputError

WHITESPACE = re.compile(r"\s+")
FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}


def detect_format(path: Path, fmt: str) -> str:
    """The table format: explicit, or from the file extension."""
    if fmt != "auto":
        return fmt
    found = FORMATS.get(path.suffix.lower())
    if found is None:
        raise InputError(f"{path}: unsupported extension {path.suffix!r} (use .csv, .tsv, .jsonl or .parquet)")
    return found


def jsonl_records(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for every non-blank line of a JSONL file; a line that is not a JSON object is named."""
    with open(path, encoding="utf-8-sig") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise InputError(f"{path}: line {lineno}: not valid JSON ({err.msg})") from None
            if not isinstance(record, dict):
                raise InputError(f"{path}: line {lineno}: expected a JSON object")
            yield lineno, record


def _read_jsonl(path: Path) -> pd.DataFrame:
    return pd.DataFrame.from_records([record for _, record in jsonl_records(path)])


def check_utf8(path: Path) -> None:
    """Fail on the first byte that is not UTF-8, naming its line and byte offset."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, line = 0, 1
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as err:
                start = max(err.start - len(err.object) + len(block), 0)  # the decoder may hold earlier bytes
                line += block[:start].count(b"\n")
                raise InputError(
                    f"{path}: line {line}: not UTF-8 text (byte {offset + start}: "
                    f"{block[start : start + 1]!r}); save the file as UTF-8"
                ) from None
            offset += len(block)
            line += block.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise InputError(f"{path}: not UTF-8 text (the file ends inside a character)") from None


def read_table(path: Path, fmt: str = "auto") -> pd.DataFrame:
    """Read a csv/tsv/jsonl/parquet file into a DataFrame of strings, with one-line errors."""
    fmt = detect_format(path, fmt)
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty")
    with open(path, "rb") as handle:
        if handle.read(2) == b"\x1f\x8b":
            raise InputError(f"{path}: file is gzip-compressed; decompress it first")
    if fmt != "parquet":
        check_utf8(path)
    try:
        if fmt == "parquet":
            frame = pd.read_parquet(path)
        elif fmt == "jsonl":
            frame = _read_jsonl(path)
        else:
            frame = pd.read_csv(
                path,
                sep="\t" if fmt == "tsv" else ",",
                dtype=str,
                keep_default_na=False,
                encoding="utf-8-sig",
            )
    except UnicodeDecodeError as err:
        bad = err.object[err.start : err.start + 1]
        raise InputError(f"{path}: not UTF-8 text (byte {err.start}: {bad!r})") from None
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: file is empty") from None
    except pd.errors.ParserError as err:
        raise InputError(f"{path}: malformed {fmt}: {str(err).strip().splitlines()[-1]}") from None
    except (OSError, ValueError) as err:
        if isinstance(err, InputError):
            raise
        raise InputError(f"{path}: cannot read as {fmt}: {str(err).strip().splitlines()[0]}") from None
    return frame


def as_text(value: Any) -> str:
    """A cell as text; missing values (None, NaN) become empty strings."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value)


def clean_text(text: str) -> str:
    """Unicode NFC, whitespace runs collapsed to one space, ends stripped."""
    return WHITESPACE.sub(" ", unicodedata.normalize("NFC", text)).strip()
