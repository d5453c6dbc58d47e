"""How the steps become KFP lightweight components."""

import os
import sys
from collections.abc import Callable

LOCAL_IMAGE = "python:3.11-slim"  # only a label for the local runner; the vertex target sets real images


def running_in_kfp_executor() -> bool:
    """True inside a KFP executor, where kfp.dsl exposes only the runtime types (no decorators)."""
    return os.environ.get("_KFP_RUNTIME", "false") == "true"


def one_line_excepthook(exc_type, exc, tb) -> None:
    """Expected failures (bad input or config, a stopped training) end a step with one line, no traceback."""
    from banglasenti.runtime.command_line import EXPECTED_ERRORS

    if issubclass(exc_type, EXPECTED_ERRORS) and not os.environ.get("BANGLASENTI_DEBUG"):
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return
    sys.__excepthook__(exc_type, exc, tb)


if running_in_kfp_executor():
    sys.excepthook = one_line_excepthook


def lightweight_component(func: Callable) -> Callable:
    """Make `func` a KFP component (kfp baked into the image, so no pip install at start-up).

    Inside a KFP executor the function is left undecorated: the executor runs the shipped source itself.
    """
    if running_in_kfp_executor():
        return func
    from kfp import dsl

    return dsl.component(func, base_image=LOCAL_IMAGE, install_kfp_package=False)
