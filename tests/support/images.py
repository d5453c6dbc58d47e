"""The locally built images (`make images`): their tags, and podman to run them.

Any test can ask for an image by its Dockerfile's name (`local_image("serve")` for containers/serve.Dockerfile);
it fails, saying how to build it, when the image is not there.
"""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "localhost/banglasenti-"  # make images: IMAGE_PREFIX=banglasenti, podman's localhost/ for local names


def podman(*args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    """podman ARGS; output captured as text."""
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: run `make engine` (containers/engine.sh)")
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=check, timeout=timeout)


def local_image(name: str) -> str:
    """The local tag of the image built from containers/<name>.Dockerfile; fails unless it exists."""
    if not (ROOT / "containers" / f"{name}.Dockerfile").is_file():
        pytest.fail(f"no containers/{name}.Dockerfile")
    tag = f"{PREFIX}{name}:latest"
    if podman("image", "exists", tag, check=False).returncode != 0:
        pytest.fail(f"image {tag} is not built: run `make images`")
    return tag
