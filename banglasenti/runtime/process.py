"""Process-wide settings shared by the steps: quiet library logs, progress lines, library versions for lineage."""

from __future__ import annotations

import importlib.metadata
import os
import sys
import warnings

LINEAGE_PACKAGES = ("torch", "transformers", "peft", "datasets", "tokenizers", "scikit-learn", "kfp", "torch_xla")
PROGRESS_MARK = "» "  # a step's progress line: what the local run shows of the step (banglasenti/local/run_log.py)


def progress(message: str) -> None:
    """One line of what the step is doing or did (rows, epochs, scores), on stderr (a command's stdout stays its
    result; kfp's runners show both streams), in one write (a container's log keeps the line whole), flushed."""
    sys.stderr.write(f"{PROGRESS_MARK}{message}\n")
    sys.stderr.flush()


def quiet_libraries() -> None:
    """Keep step logs readable: no load reports, progress bars or advisory warnings from HF libraries."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import datasets
    import transformers

    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|peft)\.")
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that shape results."""
    versions = {}
    for name in LINEAGE_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions
