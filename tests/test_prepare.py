import gzip
import http.server
import json
import subprocess
import sys
import threading
import unicodedata
from pathlib import Path

import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

from banglasenti.config.schema import DataConfig
from banglasenti.data.preparation import prepare_data, prepare_frame, resolve_duplicates, run_prepare
from banglasenti.data.tables import clean_text, read_table
from banglasenti.storage.artifacts import SAMPLE_PATH, InputError


def make_frame(n_per_class: int = 20) -> pd.DataFrame:
    rows = []
    for i in range(n_per_class):
        rows += [(f"ভালো জিনিস {i}", 1), (f"খারাপ অভিজ্ঞতা {i}", 0), (f"তথ্য নম্বর {i}", 2), (f"সাধারণ খবর {i}", 2)]
    return pd.DataFrame(rows, columns=["text", "label"])


def write_table(frame: pd.DataFrame, path: Path) -> Path:
    suffix = path.suffix
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".tsv":
        frame.to_csv(path, index=False, sep="\t")
    elif suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        frame.to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_every_format_gives_the_same_split(tmp_path, suffix):
    frame = make_frame()
    reference = prepare_frame(frame, DataConfig(), "mem")
    prepared = prepare_data(str(write_table(frame, tmp_path / f"data{suffix}")), DataConfig(), tmp_path)
    for name in ("train", "val", "test"):
        assert prepared.splits[name]["text"].tolist() == reference.splits[name]["text"].tolist()
        assert prepared.splits[name]["label"].tolist() == reference.splits[name]["label"].tolist()


def test_split_partitions_rows_stratified_and_deterministic():
    frame = make_frame(50)
    a = prepare_frame(frame, DataConfig(seed=7), "mem")
    b = prepare_frame(frame, DataConfig(seed=7), "mem")
    c = prepare_frame(frame, DataConfig(seed=8), "mem")
    rows = sorted(r for part in a.splits.values() for r in part["row"])
    assert rows == list(range(1, len(frame) + 1))
    assert {k: len(v) for k, v in a.splits.items()} == {"train": 160, "val": 20, "test": 20}
    for part in a.splits.values():
        shares = part["label"].value_counts(normalize=True)
        assert shares[2] == pytest.approx(0.5, abs=0.06)
    assert a.splits["test"]["row"].tolist() == b.splits["test"]["row"].tolist()
    assert a.splits["test"]["row"].tolist() != c.splits["test"]["row"].tolist()


def test_original_split_reproduces_the_two_train_test_split_calls():
    frame = make_frame(50)
    prepared = prepare_frame(frame, DataConfig(split_method="original", deduplicate=False), "mem")
    train, rest = train_test_split(frame, test_size=0.2, stratify=frame["label"], random_state=42)
    val, test = train_test_split(rest, test_size=0.5, stratify=rest["label"], random_state=42)
    assert prepared.splits["train"]["text"].tolist() == train["text"].tolist()
    assert prepared.splits["val"]["text"].tolist() == val["text"].tolist()
    assert prepared.splits["test"]["text"].tolist() == test["text"].tolist()


def test_clean_text_normalises_to_nfc_and_collapses_whitespace():
    decomposed = unicodedata.normalize("NFD", "কোথায়")  # ো and য় have decomposed forms
    assert decomposed != "কোথায়"
    assert clean_text(f"  {decomposed}\t\n  আছো ") == "কোথায় আছো"


def test_duplicates_and_conflicts_are_resolved_and_counted():
    frame = pd.DataFrame(
        {
            "text": ["ক", "ক", "খ", "খ", "খ", "গ", "গ", "ঘ"],
            "label": [1, 1, 0, 0, 2, 1, 2, 2],
        }
    )
    kept, counts = resolve_duplicates(frame, "majority")
    assert dict(zip(kept["text"], kept["label"])) == {"ক": 1, "খ": 0, "ঘ": 2}  # গ is a tie: dropped
    assert counts == {"duplicate_rows": 4, "conflicting_texts": 2, "conflicts_resolved": 1, "conflicts_dropped_rows": 2}
    kept, counts = resolve_duplicates(frame, "drop")
    assert sorted(kept["text"]) == ["ক", "ঘ"]
    assert counts["conflicts_dropped_rows"] == 5


def test_dedup_prevents_cross_split_leakage_and_without_it_leakage_is_reported():
    frame = pd.concat([make_frame(30)] * 2, ignore_index=True)
    deduped = prepare_frame(frame, DataConfig(), "mem")
    assert deduped.stats["cross_split_texts"] == 0
    assert deduped.stats["exact_duplicate_rows"] == 120
    assert sum(deduped.stats["rows_out"].values()) == 120
    leaky = prepare_frame(frame, DataConfig(deduplicate=False), "mem")
    assert leaky.stats["cross_split_texts"] > 0
    assert "more than one split" in leaky.report


def test_label_map_and_non_bengali_rows():
    frame = make_frame(10)
    frame["label"] = frame["label"].map({0: "Negative", 1: "Positive", 2: "Neutral"})
    frame.loc[0, "text"] = "A Paperback book title"
    frame.loc[1, "text"] = "৫০০ ৳ 👍"  # Bengali digits and a currency sign, but no Bengali letter
    cfg = DataConfig(label_map={"Negative": 0, "Positive": 1, "Neutral": 2})
    kept = prepare_frame(frame, cfg, "mem")
    assert kept.stats["non_bengali_rows"] == 2
    assert kept.stats["latin_majority_rows"] == 1
    assert sum(kept.stats["rows_out"].values()) == 40
    dropped = prepare_frame(frame, cfg.model_copy(update={"drop_non_bengali": True}), "mem")
    assert sum(dropped.stats["rows_out"].values()) == 38


def test_empty_texts_are_dropped_and_counted():
    frame = make_frame(10)
    frame.loc[3, "text"] = "   "
    prepared = prepare_frame(frame, DataConfig(), "mem")
    assert prepared.stats["dropped_empty"] == 1
    assert sum(prepared.stats["rows_out"].values()) == 39


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        ("", "empty.csv", "file is empty"),
        ("text,label\n", "header.csv", "no data rows"),
        ("body,label\nভালো,1\n", "cols.csv", "missing column(s) ['text']"),
        ("text,label\nভালো,1\nখারাপ,5\n", "labels.csv", "row 2: label '5' is not one of 0, 1, 2"),
        ("text,label\n" + "ভালো,1\n" * 3, "one.csv", "only one class"),
        ("text,label\nভালো,1\nখারাপ,0\n", "few.csv", "too few rows to split"),
        ("text;label", "data.xlsx", "unsupported extension '.xlsx'"),
        ('{"text": "ভালো", "label": 1}\n{broken\n', "bad.jsonl", "line 2: not valid JSON"),
    ],
)
def test_bad_input_gets_a_one_line_error(tmp_path, content, name, message):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError) as err:
        prepare_data(str(path), DataConfig(), tmp_path)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_non_utf8_gzip_and_directory_are_rejected(tmp_path):
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text,label\ncaf\xe9,1\n".encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8"):
        read_table(latin)
    packed = tmp_path / "packed.csv"
    packed.write_bytes(gzip.compress(b"text,label\n"))
    with pytest.raises(InputError, match="gzip"):
        read_table(packed)
    with pytest.raises(InputError, match="is a directory"):
        prepare_data(str(tmp_path), DataConfig(), tmp_path)
    with pytest.raises(InputError, match="no such file"):
        prepare_data(str(tmp_path / "missing.csv"), DataConfig(), tmp_path)


def test_bom_and_crlf_are_accepted(tmp_path):
    frame = make_frame(10)
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + frame.to_csv(index=False, lineterminator="\r\n").encode())
    prepared = prepare_data(str(path), DataConfig(), tmp_path)
    assert sum(prepared.stats["rows_out"].values()) == 40


@pytest.fixture()
def http_dir(tmp_path):
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_reads_over_http_and_reports_404(http_dir, tmp_path_factory):
    root, url = http_dir
    write_table(make_frame(), root / "data.csv")
    work = tmp_path_factory.mktemp("work")
    prepared = prepare_data(f"{url}/data.csv", DataConfig(), work)
    assert sum(prepared.stats["rows_out"].values()) == 80
    with pytest.raises(InputError, match="HTTP 404"):
        prepare_data(f"{url}/missing.csv", DataConfig(), work)


def test_reads_from_gcs(gcs_emulator, tmp_path):
    from banglasenti.storage.artifacts import gcs_client

    bucket = gcs_client().create_bucket("prepare-raw-data")
    bucket.blob("sets/data.csv").upload_from_string(make_frame().to_csv(index=False))
    prepared = prepare_data("gs://prepare-raw-data/sets/data.csv", DataConfig(), tmp_path)
    assert prepared.stats["source"] == "gs://prepare-raw-data/sets/data.csv"
    assert sum(prepared.stats["rows_out"].values()) == 80
    with pytest.raises(InputError, match="gs://prepare-raw-data/sets/missing.csv: not found"):
        prepare_data("gs://prepare-raw-data/sets/missing.csv", DataConfig(), tmp_path)


def test_sample_is_shipped_and_usable():
    frame = pd.read_csv(SAMPLE_PATH, dtype=str, keep_default_na=False)
    assert len(frame) >= 600
    assert frame["text"].is_unique
    shares = frame["label"].astype(int).value_counts(normalize=True)
    assert all(0.2 < shares[i] < 0.5 for i in range(3))


def test_run_prepare_writes_splits_and_report(fast_cfg, prepared_dir):
    sizes = {name: len(pd.read_parquet(prepared_dir / f"{name}.parquet")) for name in ("train", "val", "test")}
    assert sum(sizes.values()) == len(pd.read_csv(SAMPLE_PATH))
    report = (prepared_dir / "report.md").read_text(encoding="utf-8")
    assert "# Data-quality report" in report and "| kept: train |" in report


def test_failure_leaves_no_output(tmp_path, fast_cfg):
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nভালো,9\n", encoding="utf-8")
    out = tmp_path / "out"
    with pytest.raises(InputError):
        run_prepare(
            fast_cfg.with_overrides({"data.uri": str(bad)}), out / "train", out / "val", out / "test", out / "report"
        )
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.component
def test_command_line_help_and_clean_error(tmp_path):
    help_run = subprocess.run([sys.executable, "-m", "components.prepare", "--help"], capture_output=True, text=True)
    assert help_run.returncode == 0 and "--output-dir" in help_run.stdout
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "components.prepare",
            "--input",
            str(tmp_path / "none.csv"),
            "--output-dir",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "none.csv: no such file" in bad.stderr
    assert "Traceback" not in bad.stderr


@pytest.mark.component
def test_command_line_writes_outputs(tmp_path):
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "components.prepare",
            "--input",
            "sample",
            "--output-dir",
            str(tmp_path),
            "--set",
            "data.seed=3",
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["rows_out"]["train"] == len(pd.read_parquet(tmp_path / "train.parquet"))
