"""The local run's console: a line per step on the terminal, kfp's whole log in the file."""

import io
import sys

import pytest

from banglasenti.local.run_log import RunLog, quiet_run
from banglasenti.runtime.process import PROGRESS_MARK, progress

KFP_LOG = [
    "21:00:00.100 - INFO - Executing task \x1b[96m'prepare'\x1b[0m",
    "21:00:00.101 - INFO - Streamed logs:",
    "    [KFP Executor 2026-11-29 21:00:00,200 INFO]: Got executor_input:",
    '    {"inputs": {"parameterValues": {"config_json": "{}"}}}',
    f"    {PROGRESS_MARK}694 rows read, train 555, val 69, test 70",
    "    WARNING: 3 rows are not Bengali",
    "21:00:03.000 - INFO - Task \x1b[96m'prepare'\x1b[0m finished with status \x1b[92mSUCCESS\x1b[0m",
    "21:00:03.001 - INFO - Task 'prepare' outputs:",
    "    train: Dataset( name='train', uri='/runs/x/prepare/train', metadata={'rows': 555} )",
    "21:00:03.100 - INFO - Executing task 'tokenize'",
    "    Traceback (most recent call last):",
    "    banglasenti.storage.artifacts.InputError: /runs/x/base/model: no such model directory",
    "21:00:04.000 - ERROR - Task 'tokenize' finished with status FAILURE",
]


def run_through(lines: list[str]) -> tuple[str, str]:
    log, terminal = io.StringIO(), io.StringIO()
    stream = RunLog(log, terminal)
    for line in lines:  # in pieces, as print writes them
        stream.write(line[:10])
        stream.write(line[10:] + "\n")
    return log.getvalue(), terminal.getvalue()


def test_the_terminal_shows_a_line_per_step_and_the_file_everything():
    log, terminal = run_through(KFP_LOG)
    assert log == "".join(line + "\n" for line in KFP_LOG)
    shown = terminal.splitlines()
    assert shown[0] == "prepare: 694 rows read, train 555, val 69, test 70"
    assert shown[1] == "prepare: WARNING: 3 rows are not Bengali"
    assert shown[2].startswith("prepare: done in ")
    assert "executor_input" not in terminal and "parameterValues" not in terminal and "outputs:" not in terminal


def test_a_failed_step_shows_its_last_lines():
    _, terminal = run_through(KFP_LOG)
    assert "tokenize: FAILURE after" in terminal
    assert "    banglasenti.storage.artifacts.InputError: /runs/x/base/model: no such model directory" in terminal
    assert "Got executor_input" not in terminal  # prepare's lines are not tokenize's


def test_quiet_run_restores_stdout_and_writes_the_log(tmp_path, capsys):
    path = tmp_path / "logs" / "run.log"
    with quiet_run(path):
        print(f"{PROGRESS_MARK}epoch 1 of 3")
        print("noise from a library")
    assert not isinstance(sys.stdout, RunLog)
    assert path.read_text(encoding="utf-8") == f"{PROGRESS_MARK}epoch 1 of 3\nnoise from a library\n"
    assert capsys.readouterr().out == "run: epoch 1 of 3\n"


def test_progress_lines_go_to_stderr(capsys):
    progress("3 epochs")
    assert capsys.readouterr() == ("", f"{PROGRESS_MARK}3 epochs\n")


def test_a_task_the_runner_gives_up_on_is_reported_with_its_last_lines(tmp_path, capsys):
    """kfp raising without logging the task's end (raise_on_error): the open task is shown as failed on exit."""
    with pytest.raises(RuntimeError), quiet_run(tmp_path / "run.log"):
        print("21:00:00.100 - INFO - Executing task 'train-lora'")
        print("    ValueError: lora.r must be positive")
        raise RuntimeError("Pipeline 'banglasenti-local' finished with status FAILURE")
    shown = capsys.readouterr().out.splitlines()
    assert shown[0].startswith("train-lora: FAILURE after ")
    assert shown[1] == "    ValueError: lora.r must be positive"
