"""Shared command-line plumbing of the steps and the pipeline commands: --config, --set, --debug, one-line
errors."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from banglasenti.config.schema import Config, ConfigError, load_config, parse_override
from banglasenti.storage.artifacts import InputError, one_line
from banglasenti.training.checkpoints import Interrupted

EXPECTED_ERRORS = (ConfigError, InputError, Interrupted)


def base_parser(
    doc: str | None,
    config_default: str | None = None,
    config_help: str = "experiment YAML (default: built-in defaults)",
) -> argparse.ArgumentParser:
    """--config (default `config_default`), --set KEY=VALUE (repeatable) and --debug."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=config_default, help=config_help)
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set train.epochs=3 (repeatable)",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    return parser


def load_cli_config(args: argparse.Namespace, extra: dict[str, Any] | None = None) -> Config:
    """The config from --config and --set; `extra` (from explicit flags) wins over both."""
    pairs = dict(parse_override(o) for o in args.overrides)
    pairs.update(extra or {})
    return load_config(args.config, pairs)


def run_cli(
    parser: argparse.ArgumentParser,
    work: Callable[[argparse.Namespace], int | None],
    argv: list[str] | None = None,
    expected: tuple[type[Exception], ...] = (),
    describe: Callable[[Exception, argparse.Namespace], str | None] | None = None,
) -> int:
    """Parse, run, and turn failures into one line on stderr (tracebacks only with --debug); the exit status is
    what `work` returns (None: 0). Errors of the `expected` kinds (and the config, input and interruption errors)
    exit 2 with their message; any other exits 1, worded by `describe` where it has a line for it."""
    args = parser.parse_args(argv)
    caught: tuple[type[Exception], ...] = (*EXPECTED_ERRORS, *expected)
    try:
        status = work(args)
    except caught as err:
        if args.debug:
            raise
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - the command line reports, --debug shows the traceback
        if args.debug:
            raise
        line = (describe(err, args) if describe else None) or (
            f"{err.__class__.__name__}: {one_line(err)} (run with --debug for the traceback)"
        )
        print(f"error: {line}", file=sys.stderr)
        return 1
    return status or 0
