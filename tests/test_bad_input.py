"""Bad input to every step's command line: one line on stderr naming the file, row, column or key, a non-zero
exit, no traceback and no output left behind. Odd but valid tables work. A property-based test feeds random
tables and bytes to prepare."""

import gzip
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from banglasenti.config.schema import DataConfig
from banglasenti.data.preparation import prepare_data
from banglasenti.data.tables import clean_text, read_table
from banglasenti.storage.artifacts import InputError
from components import base_model, evaluate, prepare, tokenization, train
from tests.test_prepare import make_frame

GOOD = make_frame(10).to_csv(index=False)


def run_main(module, argv: list[str], capsys) -> tuple[int, str]:
    code = module.main(argv)
    err = capsys.readouterr().err
    return code, err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code != 0
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err


def nothing_written(out: Path) -> bool:
    return not out.exists() or not [p for p in out.rglob("*") if p.is_file()]


BAD_TABLES = [
    # (file name, bytes, what the message must say)
    ("empty.csv", b"", "empty.csv: file is empty"),
    ("header.csv", b"text,label\n", "header.csv: no data rows (header only)"),
    ("cols.csv", "review,sentiment\nভালো,1\n".encode(), "cols.csv: missing column(s) ['text', 'label']"),
    ("unknown.csv", "text,label\nভালো,1\nখারাপ,positive\n".encode(), "row 2: label 'positive' is not one of"),
    ("range.csv", "text,label\nভালো,1\nখারাপ,3\n".encode(), "row 2: label '3' is not one of 0, 1, 2"),
    ("negative.csv", "text,label\nভালো,-1\n".encode(), "row 1: label '-1'"),
    ("nolabel.csv", "text,label\nভালো,\n".encode(), "row 1: label ''"),
    (
        "single.csv",
        b"text,label\n" + "".join(f"ভালো {i},1\n" for i in range(30)).encode(),
        "single.csv: only one class (positive)",
    ),
    ("few.csv", "text,label\nভালো,1\nখারাপ,0\nঠিক,2\n".encode(), "few.csv: too few rows to split"),
    ("blank.csv", b"text,label\n  ,1\n\t,0\n", "blank.csv: no rows left to split"),
    (
        "latin1.csv",
        "text,label\nভালো,1\n".encode() + "caf\xe9,0\n".encode("latin-1"),
        "latin1.csv: line 3: not UTF-8 text (byte ",
    ),
    ("garbage.csv", bytes(range(256)) * 8, "not UTF-8 text"),
    ("garbage.parquet", bytes(range(256)) * 8, "garbage.parquet: cannot read as parquet"),
    ("packed.csv", gzip.compress(GOOD.encode()), "packed.csv: file is gzip-compressed"),
    ("quotes.csv", 'text,label\n"ভালো,1\nখারাপ,0\n'.encode(), "quotes.csv: malformed csv"),
    ("fields.csv", "text,label\nভালো,1\nখারাপ,0,extra\n".encode(), "line 3"),
    ("broken.jsonl", '{"text": "ভালো", "label": 1}\n{"text": \n'.encode(), "broken.jsonl: line 2: not valid JSON"),
    ("list.jsonl", b"[1, 2]\n", "list.jsonl: line 1: expected a JSON object"),
    ("data.xlsx", b"PK\x03\x04", "data.xlsx: unsupported extension '.xlsx'"),
]


@pytest.mark.parametrize(("name", "content", "message"), BAD_TABLES, ids=[c[0] for c in BAD_TABLES])
def test_prepare_rejects_bad_tables_in_one_line(tmp_path, capsys, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    out = tmp_path / "out"
    code, err = run_main(prepare, ["--input", str(path), "--output-dir", str(out)], capsys)
    assert code == 2
    assert_one_line_error(code, err, message)
    assert nothing_written(out)


def test_prepare_rejects_missing_paths_directories_and_unreadable_files(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    code, err = run_main(prepare, ["--input", str(tmp_path / "none.csv"), "--output-dir", str(out)], capsys)
    assert_one_line_error(code, err, "none.csv: no such file")
    code, err = run_main(prepare, ["--input", str(tmp_path), "--output-dir", str(out)], capsys)
    assert_one_line_error(code, err, f"{tmp_path}: is a directory")
    locked = tmp_path / "locked.csv"
    locked.write_text(GOOD)
    locked.chmod(0)
    if os.geteuid() == 0:  # root reads any file: apply the mode bits as an ordinary user would meet them
        from banglasenti.storage import artifacts as storage

        monkeypatch.setattr(storage.os, "access", lambda p, mode: bool(os.stat(p).st_mode & 0o444))
    code, err = run_main(prepare, ["--input", str(locked), "--output-dir", str(out)], capsys)
    assert_one_line_error(code, err, "locked.csv: permission denied")
    assert nothing_written(out)


@pytest.mark.component
def test_debug_shows_the_traceback(tmp_path):
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "components.prepare",
            "--input",
            str(tmp_path / "none.csv"),
            "--output-dir",
            str(tmp_path / "o"),
            "--debug",
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode != 0 and "Traceback" in run.stderr and "InputError" in run.stderr


@pytest.mark.component
def test_kfp_executor_reports_expected_errors_in_one_line(tmp_path):
    """Inside a KFP executor (_KFP_RUNTIME=true) a failing step ends with one line, not a traceback."""
    code = (
        "from banglasenti.config.schema import Config\nfrom components.prepare import run_prepare\n"
        f"cfg = Config().with_overrides({{'data.uri': {str(tmp_path / 'none.csv')!r}}})\n"
        "run_prepare(cfg, 'a', 'b', 'c', 'd')\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "_KFP_RUNTIME": "true"}
    )
    assert run.returncode == 1
    assert run.stderr == f"error: {tmp_path / 'none.csv'}: no such file\n"


def test_odd_but_valid_tables_work(tmp_path):
    long_text = "ভালো " * 20_000
    rows = [
        ("ভালো\r\nজিনিস", "1", "x"),
        ('বলল "দারুণ", তারপর\nচলে গেল', "1", "y"),
        ("😀 দারুণ 👍🏽", "1", ""),
        ("Mixed বাংলা and English 123", "0", ""),
        ("हिंदी और বাংলা", "2", ""),
        (long_text, "0", ""),
    ] + [(f"খবর নম্বর {i}", str(i % 3), "") for i in range(40)]
    frame = pd.DataFrame(rows, columns=["text", "label", "extra column"])
    path = tmp_path / "odd.csv"
    path.write_bytes(b"\xef\xbb\xbf" + frame.to_csv(index=False, lineterminator="\r\n").encode())
    prepared = prepare_data(str(path), DataConfig(), tmp_path)
    kept = pd.concat(prepared.splits.values())
    assert len(kept) == len(rows)
    texts = set(kept["text"])
    assert {"ভালো জিনিস", 'বলল "দারুণ", তারপর চলে গেল', "😀 দারুণ 👍🏽", "हिंदी और বাংলা"} <= texts
    assert clean_text(long_text) in texts
    tsv = tmp_path / "odd.tsv"
    frame.to_csv(tsv, sep="\t", index=False)
    assert sum(prepare_data(str(tsv), DataConfig(), tmp_path).stats["rows_out"].values()) == len(rows)
    jsonl = tmp_path / "odd.jsonl"
    frame.to_json(jsonl, orient="records", lines=True, force_ascii=False)
    assert sum(prepare_data(str(jsonl), DataConfig(), tmp_path).stats["rows_out"].values()) == len(rows)


def test_later_steps_reject_bad_inputs_in_one_line(tmp_path, capsys, prepared_dir, base_dir, tokenized_dir):
    out = tmp_path / "out"
    missing = str(tmp_path / "missing.parquet")
    code, err = run_main(base_model, ["--train", missing, "--output-dir", str(out)], capsys)
    assert_one_line_error(code, err, "missing.parquet: no such file")
    code, err = run_main(base_model, ["--train", str(prepared_dir / "report.md"), "--output-dir", str(out)], capsys)
    assert_one_line_error(code, err, "report.md: not a readable parquet file")
    code, err = run_main(
        base_model, ["--train", str(tokenized_dir / "train.parquet"), "--output-dir", str(out)], capsys
    )
    assert_one_line_error(code, err, "train.parquet: missing column(s) ['text']")
    code, err = run_main(
        base_model, ["--train", missing, "--output-dir", str(out), "--set", f"model.name={tmp_path}"], capsys
    )
    assert_one_line_error(code, err, f"{tmp_path}: not a model directory (no config.json)")

    code, err = run_main(
        tokenization, ["--splits", str(tmp_path), "--base-model", str(base_dir), "--output-dir", str(out)], capsys
    )
    assert_one_line_error(code, err, "train.parquet: no such file")
    code, err = run_main(
        tokenization,
        ["--splits", str(prepared_dir), "--base-model", str(tmp_path / "nobase"), "--output-dir", str(out)],
        capsys,
    )
    assert_one_line_error(code, err, "nobase: no such model directory")

    common = ["--mode", "lora", "--output-dir", str(out)]
    code, err = run_main(train, [*common, "--base-model", str(base_dir), "--tokenized", str(prepared_dir)], capsys)
    assert_one_line_error(code, err, "train.parquet: missing column(s) ['input_ids', 'num_tokens']")  # packed rows
    code, err = run_main(
        train,
        [*common, "--base-model", str(base_dir), "--tokenized", str(prepared_dir), "--set", "tokenize.packing=false"],
        capsys,
    )
    assert_one_line_error(code, err, "train.parquet: missing column(s) ['input_ids', 'attention_mask', 'length']")
    code, err = run_main(train, [*common, "--base-model", str(prepared_dir), "--tokenized", str(tokenized_dir)], capsys)
    assert_one_line_error(code, err, f"{prepared_dir}: cannot load a tokenizer from it")
    code, err = run_main(
        train, [*common, "--base-model", str(base_dir), "--tokenized", str(tokenized_dir), "--set", "lora.r=0"], capsys
    )
    assert_one_line_error(code, err, "lora.r: Input should be greater than 0")

    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((base_dir / "config.json").read_text())
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    code, err = run_main(
        evaluate,
        [
            "--base-model",
            str(base_dir),
            "--tokenized",
            str(tokenized_dir),
            "--lora",
            str(pickled),
            "--baseline",
            str(pickled),
            "--output-dir",
            str(out),
        ],
        capsys,
    )
    assert_one_line_error(code, err, "pickled: no *.safetensors weights (pickled weights are not loaded)")
    assert nothing_written(out)


# Property-based: random tables and random bytes.

VALID_LABELS = st.sampled_from(["0", "1", "2", " 1 ", "2.0"])
LABELS = st.one_of(VALID_LABELS, st.sampled_from(["3", "", "x", "-1", "1.5"]))
TEXTS = st.one_of(
    st.sampled_from(["ভালো", "খারাপ", "ঠিক আছে", "  ", "", "ok", "😀", "a\nb", 'q"uote']),
    st.text(alphabet=st.sampled_from(list("অআকখগঘ ১২ab😀\n\t\",'")), max_size=12),
    st.text(max_size=30),
)


def prepare_or_clean_error(path, work) -> None:
    """Prepare `path`: either a one-line InputError, or splits that partition what the file holds exactly
    (read back, since csv may reinterpret, e.g. an empty last row)."""
    try:
        prepared = prepare_data(str(path), DataConfig(), work)
    except InputError as err:
        assert "\n" not in str(err) and str(err)
        event("clean error")
        return
    event("prepared")
    check_partition(prepared, read_table(path))


def check_partition(prepared, frame: pd.DataFrame) -> None:
    """Splits are disjoint, cover exactly the kept rows, and each row keeps its cleaned text and label."""
    rows = [r for part in prepared.splits.values() for r in part["row"].tolist()]
    assert len(rows) == len(set(rows)) == sum(prepared.stats["rows_out"].values())
    stats = prepared.stats
    assert len(rows) == stats["rows_in"] - stats["dropped_empty"] - stats["dropped_non_bengali"] - stats.get(
        "dedup_removed_rows", 0
    )
    texts = [t for part in prepared.splits.values() for t in part["text"]]
    assert len(texts) == len(set(texts))  # de-duplicated: no text twice, so none in two splits
    for part in prepared.splits.values():
        for row, text, label in zip(part["row"], part["text"], part["label"]):
            assert text == clean_text(str(frame.iloc[row - 1]["text"])) != ""
            assert int(float(frame.iloc[row - 1]["label"])) == label


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.one_of(
        st.lists(st.tuples(TEXTS, VALID_LABELS, st.booleans()), min_size=30, max_size=120).map(
            lambda rs: [(f"{t} {i}" if unique else t, label) for i, (t, label, unique) in enumerate(rs)]
        ),
        st.lists(st.tuples(TEXTS, LABELS), max_size=20),
    ),
    suffix=st.sampled_from([".csv", ".tsv", ".jsonl", ".parquet"]),
)
def test_random_tables_give_a_clean_error_or_an_exact_partition(tmp_path_factory, rows, suffix):
    work = tmp_path_factory.mktemp("prop")
    frame = pd.DataFrame(rows, columns=["text", "label"], dtype=str)
    path = work / f"data{suffix}"
    if suffix == ".parquet":
        frame.to_parquet(path, index=False)
    elif suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        frame.to_csv(path, index=False, sep="\t" if suffix == ".tsv" else ",")
    prepare_or_clean_error(path, work)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    content=st.one_of(
        st.binary(max_size=400),
        st.text(alphabet=st.sampled_from(list('ab,\t"\n\r\x00ভা১{}:[]01 ')), max_size=200).map(
            lambda t: ("text,label\n" + t).encode()
        ),
    ),
    suffix=st.sampled_from([".csv", ".tsv", ".jsonl", ".parquet"]),
)
def test_random_bytes_give_a_clean_error_or_an_exact_partition(tmp_path_factory, content, suffix):
    work = tmp_path_factory.mktemp("bytes")
    path = work / f"data{suffix}"
    path.write_bytes(content)
    prepare_or_clean_error(path, work)


@pytest.mark.parametrize(
    ("module", "argv", "key"),
    [
        (prepare, ["--input", "/nonexistent.csv", "--output-dir", "OUT", "--set", "data.seed=abc"], "data.seed"),
        (
            base_model,
            ["--train", "/nonexistent.parquet", "--output-dir", "OUT", "--set", "model.tiny.vocab_size=-5"],
            "model.tiny.vocab_size",
        ),
        (
            tokenization,
            [
                "--splits",
                "/nonexistent",
                "--base-model",
                "/nonexistent",
                "--output-dir",
                "OUT",
                "--set",
                "tokenize.buckets=[64, 32, 128]",
            ],
            "tokenize",
        ),
        (
            train,
            [
                "--mode",
                "lora",
                "--base-model",
                "/no",
                "--tokenized",
                "/no",
                "--output-dir",
                "OUT",
                "--set",
                "train.checkpoint_steps=-1",
            ],
            "train.checkpoint_steps",
        ),
        (
            train,
            [
                "--mode",
                "baseline",
                "--base-model",
                "/no",
                "--tokenized",
                "/no",
                "--output-dir",
                "OUT",
                "--set",
                "train.baseline_learning_rate=0",
            ],
            "train.baseline_learning_rate",
        ),
        (
            evaluate,
            [
                "--base-model",
                "/no",
                "--tokenized",
                "/no",
                "--lora",
                "/no",
                "--baseline",
                "/no",
                "--output-dir",
                "OUT",
                "--set",
                "train.eval_batch_size=[1]",
            ],
            "train.eval_batch_size",
        ),
        (
            train,
            [
                "--mode",
                "lora",
                "--base-model",
                "/no",
                "--tokenized",
                "/no",
                "--output-dir",
                "OUT",
                "--set",
                "train.checkpoint_dirr=/tmp",
            ],
            "train.checkpoint_dirr: unknown key",
        ),
    ],
)
def test_config_errors_name_the_key_before_any_input_is_touched(tmp_path, capsys, module, argv, key):
    out = tmp_path / "out"
    code, err = run_main(module, [str(out) if a == "OUT" else a for a in argv], capsys)
    assert code == 2
    assert_one_line_error(code, err, f": {key}")
    assert "no such" not in err and "nonexistent" not in err  # the config failed first, not the inputs
    assert nothing_written(out)
