"""Preparing a labelled sentiment table: labels mapped, text cleaned, duplicates and conflicts resolved, the
stratified split, and the data-quality report (the prepare step, components/prepare.py).

Conflicting labels for one text: the most frequent label wins, ties are dropped (`data.conflict_rule`).
"""

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from banglasenti.config.schema import CLASS_NAMES, NUM_CLASSES, SPLITS, Config, DataConfig
from banglasenti.data.tables import as_text, clean_text, read_table
from banglasenti.storage.artifacts import InputError, atomic_file, local_copy, sha256_file

BENGALI = re.compile(r"[\u0980-\u09E3\u09F0\u09F1]")  # letters and vowel signs; not digits or symbols


LATIN = re.compile(r"[A-Za-z]")


def map_labels(raw: pd.Series, label_map: dict[str, int], source: str) -> pd.Series:
    """Turn raw labels into class ids; an unknown label names its row (1-based data row)."""
    if label_map:
        table = {str(k): v for k, v in label_map.items()}
    else:
        table = {str(i): i for i in range(NUM_CLASSES)} | {f"{i}.0": i for i in range(NUM_CLASSES)}
    labels = raw.map(lambda v: as_text(v).strip())
    ids = labels.map(table)
    missing = ids.isna()
    if missing.any():
        pos = int(np.flatnonzero(missing.to_numpy())[0])
        allowed = ", ".join(sorted(table)) if label_map else "0, 1, 2"
        raise InputError(f"{source}: row {pos + 1}: label {labels.iloc[pos]!r} is not one of {allowed}")
    return ids.astype("int64")


def resolve_duplicates(frame: pd.DataFrame, rule: str) -> tuple[pd.DataFrame, dict[str, int]]:
    """One row per text: exact duplicates merged; conflicting labels by majority (ties dropped) or dropped.

    The first row of a kept (text, label) pair stays, so `row` still points into the source.
    """
    pairs = frame.groupby(["text", "label"], sort=False).size().rename("n").reset_index()
    by_text = pairs.groupby("text", sort=False)["n"]
    labels_per_text = by_text.transform("size")
    is_top = pairs["n"] == by_text.transform("max")
    tops_per_text = is_top.groupby(pairs["text"], sort=False).transform("sum")
    conflicting = labels_per_text > 1
    winner = ~conflicting | (is_top & (tops_per_text == 1) & (rule == "majority"))
    kept_pairs = pairs.loc[winner, ["text", "label"]]
    firsts = frame.drop_duplicates(["text", "label"]).reset_index()
    kept = firsts.merge(kept_pairs, on=["text", "label"]).set_index("index").sort_index()
    kept.index.name = None
    conflict_texts = set(pairs.loc[conflicting, "text"])
    resolved = int(conflicting[winner].sum())
    in_conflict = frame["text"].isin(conflict_texts)
    dropped_texts = conflict_texts - set(kept["text"])
    return kept, {
        "duplicate_rows": int(len(frame) - frame["text"].nunique()),
        "conflicting_texts": len(conflict_texts),
        "conflicts_resolved": resolved,
        "conflicts_dropped_rows": int((in_conflict & frame["text"].isin(dropped_texts)).sum()),
    }


def split_frame(frame: pd.DataFrame, cfg: DataConfig, source: str = "data") -> dict[str, pd.DataFrame]:
    """Deterministic stratified train/val/test split."""
    from sklearn.model_selection import train_test_split

    class_counts = frame["label"].value_counts()
    if class_counts.empty:
        raise InputError(f"{source}: no rows left to split (every text empty or dropped)")
    if len(class_counts) < 2:
        raise InputError(
            f"{source}: only one class ({CLASS_NAMES[int(class_counts.index[0])]}) in the data: cannot train"
        )
    if cfg.split_method == "original":
        first_test, second_test = 0.2, 0.5
    else:
        first_test = cfg.test_fraction + cfg.val_fraction
        second_test = cfg.test_fraction / first_test
    try:
        train, rest = train_test_split(frame, test_size=first_test, stratify=frame["label"], random_state=cfg.seed)
        val, test = train_test_split(rest, test_size=second_test, stratify=rest["label"], random_state=cfg.seed)
    except ValueError as err:
        raise InputError(
            f"{source}: too few rows to split {len(frame)} rows stratified by class {class_counts.to_dict()}: {err}"
        ) from None
    return {"train": train, "val": val, "test": test}


@dataclass
class PreparedData:
    splits: dict[str, pd.DataFrame]
    stats: dict[str, Any]

    @property
    def report(self) -> str:
        """The data-quality report (Markdown) of these statistics."""
        return render_report(self.stats)


def _percentiles(lengths: pd.Series) -> dict[str, float]:
    qs = lengths.quantile([0.5, 0.9, 0.95, 0.99])
    return {
        "p50": float(qs[0.5]),
        "p90": float(qs[0.9]),
        "p95": float(qs[0.95]),
        "p99": float(qs[0.99]),
        "max": float(lengths.max()),
        "mean": round(float(lengths.mean()), 1),
    }


def prepare_frame(frame: pd.DataFrame, cfg: DataConfig, source: str) -> PreparedData:
    """Validate, clean, de-duplicate and split a raw table."""
    missing = [c for c in (cfg.text_column, cfg.label_column) if c not in frame.columns]
    if missing:
        raise InputError(f"{source}: missing column(s) {missing}; found {list(frame.columns)}")
    if frame.empty:
        raise InputError(f"{source}: no data rows (header only)")
    data = pd.DataFrame(
        {
            "text": frame[cfg.text_column].map(lambda v: clean_text(as_text(v))).to_numpy(),
            "label": map_labels(frame[cfg.label_column], cfg.label_map, source).to_numpy(),
            "row": np.arange(1, len(frame) + 1),
        }
    )
    stats: dict[str, Any] = {"source": source, "rows_in": len(data), "seed": cfg.seed, "split_method": cfg.split_method}
    empty = data["text"] == ""
    stats["dropped_empty"] = int(empty.sum())
    data = data[~empty]
    bengali = data["text"].map(lambda t: len(BENGALI.findall(t)))
    latin = data["text"].map(lambda t: len(LATIN.findall(t)))
    stats["non_bengali_rows"] = int((bengali == 0).sum())
    stats["latin_majority_rows"] = int((latin > bengali).sum())
    stats["dropped_non_bengali"] = 0
    if cfg.drop_non_bengali:
        stats["dropped_non_bengali"] = stats["non_bengali_rows"]
        data = data[bengali > 0]
    stats["exact_duplicate_rows"] = int(data.duplicated(["text", "label"]).sum())
    stats["conflicting_texts"] = int((data.groupby("text")["label"].nunique() > 1).sum())
    if cfg.deduplicate:
        before = len(data)
        data, dup = resolve_duplicates(data, cfg.conflict_rule)
        stats["dedup_removed_rows"] = before - len(data)
        stats.update({f"dedup_{k}": v for k, v in dup.items()})
    splits = split_frame(data.reset_index(drop=True), cfg, source)
    seen: dict[str, set[str]] = {name: set(part["text"]) for name, part in splits.items()}
    stats["cross_split_texts"] = len(
        (seen["train"] & seen["val"]) | (seen["train"] & seen["test"]) | (seen["val"] & seen["test"])
    )
    stats["rows_out"] = {name: len(part) for name, part in splits.items()}
    stats["label_counts"] = {
        name: {CLASS_NAMES[i]: int((part["label"] == i).sum()) for i in range(NUM_CLASSES)}
        for name, part in splits.items()
    }
    stats["text_chars"] = _percentiles(data["text"].str.len())
    stats["text_words"] = _percentiles(data["text"].str.split().str.len())
    return PreparedData(splits=splits, stats=stats)


def render_report(stats: dict[str, Any]) -> str:
    """The data-quality report as Markdown."""
    rows_out = stats["rows_out"]
    lines = [
        "# Data-quality report",
        "",
        f"Source: `{stats['source']}`" + (f" (sha256 `{stats['sha256'][:16]}…`)" if "sha256" in stats else ""),
        f"Split: {stats['split_method']}, seed {stats['seed']}",
        "",
        "## Rows",
        "",
        "| step | rows |",
        "|---|---:|",
        f"| read | {stats['rows_in']} |",
        f"| dropped: empty text | {stats['dropped_empty']} |",
        f"| dropped: no Bengali letter | {stats['dropped_non_bengali']} |",
    ]
    if "dedup_removed_rows" in stats:
        lines.append(f"| dropped: repeated or conflicting texts | {stats['dedup_removed_rows']} |")
    lines += [f"| kept: {name} | {n} |" for name, n in rows_out.items()]
    lines += [
        "",
        "## Findings",
        "",
        f"- exact duplicate rows (same text and label): {stats['exact_duplicate_rows']}",
        f"- texts seen with conflicting labels: {stats['conflicting_texts']}"
        + (
            f" ({stats['dedup_conflicts_resolved']} resolved by majority, "
            f"{stats['dedup_conflicts_dropped_rows']} rows dropped)"
            if "dedup_conflicts_resolved" in stats
            else ""
        ),
        f"- texts in more than one split (leakage): {stats['cross_split_texts']}",
        f"- rows without any Bengali letter: {stats['non_bengali_rows']}",
        f"- rows with more Latin than Bengali letters: {stats['latin_majority_rows']}",
        "",
        "## Labels per split",
        "",
        "| split | " + " | ".join(CLASS_NAMES) + " |",
        "|---|" + "---:|" * NUM_CLASSES,
    ]
    for name, counts in stats["label_counts"].items():
        total = max(sum(counts.values()), 1)
        lines.append(f"| {name} | " + " | ".join(f"{n} ({100 * n / total:.1f} %)" for n in counts.values()) + " |")
    lines += [
        "",
        "## Text length (kept rows)",
        "",
        "| unit | p50 | p90 | p95 | p99 | max | mean |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for unit in ("chars", "words"):
        p = stats[f"text_{unit}"]
        cells = " | ".join(f"{p[k]:g}" for k in ("p50", "p90", "p95", "p99", "max", "mean"))
        lines.append(f"| {unit} | {cells} |")
    warnings = []
    if stats["conflicting_texts"]:
        warnings.append(f"{stats['conflicting_texts']} texts carry conflicting labels: label noise upstream.")
    if stats["cross_split_texts"]:
        warnings.append(f"{stats['cross_split_texts']} texts occur in more than one split: test scores are inflated.")
    if warnings:
        lines += ["", "## Warnings", ""] + [f"- **{w}**" for w in warnings]
    return "\n".join(lines) + "\n"


def prepare_data(uri: str, cfg: DataConfig, workdir: Path) -> PreparedData:
    """Read `uri` (local, https://, gs:// or 'sample') and prepare it."""
    path = local_copy(uri, workdir)
    frame = read_table(path, cfg.format)
    prepared = prepare_frame(frame, cfg, source=uri)
    prepared.stats["sha256"] = sha256_file(path)
    return prepared


def write_split(frame: pd.DataFrame, path: str | Path) -> None:
    with atomic_file(path) as tmp:
        frame.reset_index(drop=True).to_parquet(tmp, index=False)


def write_prepared(prepared: PreparedData, paths: dict[str, str | Path], report_path: str | Path) -> None:
    """Write the three splits and the report; each file appears complete or not at all."""
    for name in SPLITS:
        write_split(prepared.splits[name], paths[name])
    with atomic_file(report_path) as tmp:
        tmp.write_text(prepared.report, encoding="utf-8")


def split_metadata(prepared: PreparedData, name: str) -> dict[str, Any]:
    stats = prepared.stats
    return {
        "split": name,
        "rows": stats["rows_out"][name],
        "label_counts": stats["label_counts"][name],
        "source_uri": stats["source"],
        "source_sha256": stats["sha256"],
        "seed": stats["seed"],
        "split_method": stats["split_method"],
    }


def run_prepare(
    cfg: Config, train_path: str | Path, val_path: str | Path, test_path: str | Path, report_path: str | Path
) -> PreparedData:
    """What the KFP component and the command line do: `cfg.data.uri` read, checked, cleaned and split."""
    from banglasenti.runtime.process import progress

    with tempfile.TemporaryDirectory() as workdir:
        prepared = prepare_data(cfg.data.uri, cfg.data, Path(workdir))
    write_prepared(prepared, {"train": train_path, "val": val_path, "test": test_path}, report_path)
    rows = prepared.stats["rows_out"]
    progress(f"{prepared.stats['rows_in']} rows read, " + ", ".join(f"{name} {n}" for name, n in rows.items()))
    return prepared
