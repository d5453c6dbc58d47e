"""kfp.local's DockerRunner with each step's exit status read reliably.

kfp (2.17) starts every container with `auto_remove=True`, streams its logs, then asks for its exit status and
takes a container it can no longer find for one that succeeded. podman removes an exited container before that
question, so a failed step was reported as SUCCESS. `install()` replaces the one function of kfp that starts
the container (`kfp.local.docker_task_handler.run_docker_container`) with `run_container`: no auto-removal; the
logs, then the exit status, then the container removed. It checks first that kfp still calls that function with
the arguments it expects, and stops with a clear error otherwise.
"""

from __future__ import annotations

import codecs
import inspect
from types import ModuleType
from typing import Any

# kfp's container-start function: its name and parameters, as DockerTaskHandler.run calls it.
KFP_FUNCTION = "run_docker_container"
KFP_PARAMETERS = ["client", "image", "command", "volumes", "container_run_args"]


class KfpInternalsChanged(RuntimeError):
    """The installed kfp no longer starts DockerRunner's containers as run_container expects."""


def run_container(
    client: Any, image: str, command: list[str], volumes: dict[str, Any], **container_run_args: Any
) -> int:
    """Run `command` in `image` (pulled if absent), print its logs, return its exit status, then remove it."""
    if container_run_args.pop("auto_remove", False):
        raise ValueError("DockerRunner: auto_remove=True loses the exit status; leave it out")
    if ":" not in image.rsplit("/", 1)[-1] and "@" not in image:
        image = f"{image}:latest"
    if not any(image in ((i.tags or []) + (i.attrs.get("RepoDigests") or [])) for i in client.images.list()):
        print(f"Pulling image {image!r}", flush=True)
        client.images.pull(image)
    # Created, then started inside the try: a container whose start fails is removed too.
    container = client.containers.create(
        image=image, command=command, detach=True, volumes=volumes, auto_remove=False, **container_run_args
    )
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # a character may span two chunks
    try:
        container.start()
        for chunk in container.logs(stream=True, follow=True):
            print(decoder.decode(chunk), end="", flush=True)
        print(decoder.decode(b"", final=True), end="", flush=True)
        return int(container.wait()["StatusCode"])
    finally:
        container.remove(force=True)


def check_kfp(module: ModuleType) -> None:
    """Raise KfpInternalsChanged unless `module` (kfp.local.docker_task_handler) has the function run_container
    replaces, with its parameters, and its DockerTaskHandler.run calls it."""
    found = getattr(module, KFP_FUNCTION, None)
    handler = getattr(module, "DockerTaskHandler", None)
    where = f"{module.__name__} (kfp {_kfp_version()})"
    if found is None or handler is None:
        raise KfpInternalsChanged(
            f"{where} has no {KFP_FUNCTION} or DockerTaskHandler: banglasenti/local/container_runner.py "
            "must be adapted to this kfp"
        )
    if found is not run_container:
        params = list(inspect.signature(found).parameters)
        if params != KFP_PARAMETERS:
            raise KfpInternalsChanged(
                f"{where}.{KFP_FUNCTION} takes {params}, expected {KFP_PARAMETERS}: "
                "banglasenti/local/container_runner.py must be adapted to this kfp"
            )
    if KFP_FUNCTION not in handler.run.__code__.co_names:
        raise KfpInternalsChanged(
            f"{where}: DockerTaskHandler.run no longer calls {KFP_FUNCTION}: "
            "banglasenti/local/container_runner.py must be adapted to this kfp"
        )


def install() -> None:
    """Make kfp's DockerRunner start its containers through run_container (after check_kfp)."""
    from kfp.local import docker_task_handler

    from banglasenti.runtime.private_api import set_private

    check_kfp(docker_task_handler)
    set_private(docker_task_handler, KFP_FUNCTION, run_container, "kfp.local.docker_task_handler")


def _kfp_version() -> str:
    from importlib.metadata import version

    return version("kfp")
