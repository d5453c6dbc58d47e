"""banglasenti/local/container_runner.py: kfp's DockerRunner with the exit status read before the container is removed
(no engine needed; tests/test_images.py runs a failing step through podman)."""

import types

import pytest
from kfp.local import docker_task_handler

from banglasenti.local import container_runner as container_run
from banglasenti.local.container_runner import KfpInternalsChanged, check_kfp, run_container


class FakeContainer:
    def __init__(self, status: int, start_error: Exception | None = None):
        self.status, self.removed, self.start_error = status, False, start_error

    def start(self):
        if self.start_error:
            raise self.start_error

    def logs(self, stream: bool, follow: bool):
        assert stream and follow
        yield b"step output\n"

    def wait(self):
        return {"StatusCode": self.status}

    def remove(self, force: bool):
        self.removed = force


class FakeClient:
    """The parts of docker.DockerClient that run_container uses; records the run's arguments."""

    def __init__(self, status: int, tags: list[str], start_error: Exception | None = None):
        self.container, self.run_args, self.pulled = FakeContainer(status, start_error), None, []
        image = types.SimpleNamespace(tags=tags, attrs={"RepoDigests": []})
        self.images = types.SimpleNamespace(list=lambda: [image], pull=self.pulled.append)
        self.containers = types.SimpleNamespace(create=self._create)

    def _create(self, **kwargs):
        self.run_args = kwargs
        return self.container


@pytest.mark.parametrize("status", [0, 3])
def test_exit_status_comes_back_and_the_container_is_removed_after(status, capsys):
    client = FakeClient(status, ["localhost/img:latest"])
    assert run_container(client, "localhost/img", ["false"], {"/r": {"bind": "/r"}}, network_mode="none") == status
    assert client.run_args["auto_remove"] is False and client.run_args["network_mode"] == "none"
    assert client.run_args["image"] == "localhost/img:latest" and client.pulled == []
    assert client.container.removed
    assert "step output" in capsys.readouterr().out


def test_a_container_that_fails_to_start_is_removed():
    client = FakeClient(0, ["localhost/img:latest"], start_error=RuntimeError("write child: broken pipe"))
    with pytest.raises(RuntimeError, match="broken pipe"):
        run_container(client, "localhost/img", ["true"], {})
    assert client.container.removed


def test_missing_image_is_pulled_and_auto_remove_refused():
    client = FakeClient(0, [])
    assert run_container(client, "registry.example/x/img@sha256:" + "0" * 64, ["true"], {}) == 0
    assert client.pulled == ["registry.example/x/img@sha256:" + "0" * 64]
    with pytest.raises(ValueError, match="auto_remove"):
        run_container(client, "img", ["true"], {}, auto_remove=True)


def test_installed_kfp_passes_the_check_and_install_replaces_its_function(monkeypatch):
    monkeypatch.setattr(docker_task_handler, "run_docker_container", docker_task_handler.run_docker_container)
    check_kfp(docker_task_handler)
    container_run.install()
    assert docker_task_handler.run_docker_container is run_container
    check_kfp(docker_task_handler)  # installing twice is fine


def fake_kfp_module(function=None, calls: bool = True) -> types.ModuleType:
    module = types.ModuleType("kfp.local.docker_task_handler")

    class Calls:
        def run(self):
            return run_docker_container()  # noqa: F821 (a global name, looked up when called)

    class CallsSomethingElse:
        def run(self):
            return start_container()  # noqa: F821

    module.DockerTaskHandler = Calls if calls else CallsSomethingElse
    if function is not None:
        module.run_docker_container = function
    return module


def test_check_names_what_changed_in_kfp():
    def renamed_args(client, image, cmd, volumes, **kwargs):
        return 0

    with pytest.raises(KfpInternalsChanged, match="has no run_docker_container"):
        check_kfp(fake_kfp_module())
    with pytest.raises(KfpInternalsChanged, match=r"takes \['client', 'image', 'cmd'"):
        check_kfp(fake_kfp_module(renamed_args))
    with pytest.raises(KfpInternalsChanged, match="no longer calls run_docker_container"):
        check_kfp(fake_kfp_module(docker_task_handler.run_docker_container, calls=False))
