"""Reading inputs from local paths, https:// URLs and gs:// URIs; writing outputs that are safe on Cloud Storage FUSE.

On Vertex AI every artifact lives on a Cloud Storage FUSE mount (/gcs/...), which refuses to rename a non-empty
directory and has no hard links (docs/reliability.md). So a file is written to a temporary name and replaced
(`atomic_file`), and a directory is written in place and committed by a manifest written last
(`committed_directory`); readers refuse a directory whose manifest says it is unfinished (`require_committed`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

SAMPLE_URI = "sample"
SAMPLE_PATH = Path(__file__).resolve().parents[1] / "data" / "bangla_sentiment_sample.csv"


class InputError(ValueError):
    """An input cannot be read; the message names it."""


def split_gs_uri(uri: str) -> tuple[str, str]:
    """gs://bucket/some/key -> ("bucket", "some/key")."""
    parsed = urlparse(uri)
    if parsed.scheme != "gs" or not parsed.netloc:
        raise InputError(f"{uri}: not a gs://bucket/path URI")
    return parsed.netloc, parsed.path.lstrip("/")


def fuse_path(uri: str) -> str:
    """gs://bucket/path -> /gcs/bucket/path (Cloud Storage FUSE mount of Vertex AI jobs); other paths unchanged."""
    if uri.startswith("gs://"):
        bucket, key = split_gs_uri(uri)
        return f"/gcs/{bucket}/{key}".rstrip("/")
    return uri


def gcs_client():  # -> google.cloud.storage.Client
    """A storage client; anonymous against an emulator named by STORAGE_EMULATOR_HOST."""
    from google.cloud import storage

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        project = os.environ.get("GOOGLE_CLOUD_PROJECT", "local")
        return storage.Client(project=project, credentials=AnonymousCredentials())
    return storage.Client()


GCS_RETRY_SECONDS_ENV = "BANGLASENTI_GCS_RETRY_SECONDS"
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def gcs_retry_seconds() -> float:
    """How long GCS calls keep retrying transient faults ($BANGLASENTI_GCS_RETRY_SECONDS, default 120)."""
    return float(os.environ.get(GCS_RETRY_SECONDS_ENV, "120"))


def gcs_retry():  # -> google.api_core.retry.Retry
    """google-cloud-storage's DEFAULT_RETRY: 408/429/5xx answers, dropped or reset connections and timeouts are
    retried with exponential backoff and jitter (1 s doubling up to 60 s), for `gcs_retry_seconds()` in all."""
    from google.cloud.storage.retry import DEFAULT_RETRY

    total = gcs_retry_seconds()
    return DEFAULT_RETRY.with_timeout(total).with_delay(initial=min(1.0, total / 10), maximum=60.0)


def one_line(err: BaseException) -> str:
    """An exception's message on one line."""
    return " ".join(str(err).split()) or err.__class__.__name__


def gcs_error(uri: str, err: Exception, writing: bool = False) -> InputError:
    """A Cloud Storage failure reading (or `writing`) `uri` as a one-line InputError saying what to do."""
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc

    if isinstance(err, gexc.RetryError):
        cause = err.cause if err.cause is not None else err
        return InputError(
            f"{uri}: GCS still failing after retrying for {gcs_retry_seconds():g} s "
            f"({cause.__class__.__name__}: {one_line(cause)}); try again later"
        )
    if isinstance(err, gexc.NotFound):
        return InputError(f"{uri}: not found (check the bucket and object name)")
    if isinstance(err, gexc.Forbidden):
        permission = "storage.objects.create" if writing else "storage.objects.get"
        return InputError(f"{uri}: permission denied (the service account needs {permission})")
    if isinstance(err, auth_exc.DefaultCredentialsError):
        return InputError(
            f"{uri}: no Google Cloud credentials (run `gcloud auth application-default login` "
            "or run under a service account)"
        )
    return InputError(
        f"{uri}: cannot {'write to' if writing else 'read from'} GCS: {err.__class__.__name__}: {one_line(err)}"
    )


def gcs_faults() -> tuple[type[Exception], ...]:
    """The exceptions a Cloud Storage call ends with when the service or the network fails (for gcs_error)."""
    import requests
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc

    return gexc.GoogleAPIError, auth_exc.GoogleAuthError, requests.RequestException


def _download_gcs_file(uri: str, dest: Path) -> None:
    bucket, key = split_gs_uri(uri)
    try:
        gcs_client().bucket(bucket).blob(key).download_to_filename(str(dest), retry=gcs_retry())
    except gcs_faults() as err:
        raise gcs_error(uri, err) from None


def safe_name(name: str, default: str = "download") -> str:
    """A file name from untrusted text (URL path, object name): no separators, no '..', no odd characters."""
    cleaned = SAFE_NAME.sub("_", name).strip("._") or default
    return cleaned[:200]


def _download_https_file(uri: str, dest: Path) -> None:
    """GET with urllib3's retry: 429/5xx answers and dropped connections retried with exponential backoff."""
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    retry = Retry(
        total=5,
        backoff_factor=1.0,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods={"GET"},
        raise_on_status=False,
    )
    with requests.Session() as session:
        session.mount("http://", HTTPAdapter(max_retries=retry))
        session.mount("https://", HTTPAdapter(max_retries=retry))
        try:
            with session.get(uri, stream=True, timeout=60) as resp:
                if resp.status_code != 200:
                    raise InputError(f"{uri}: HTTP {resp.status_code} {resp.reason}")
                with open(dest, "wb") as out:
                    for chunk in resp.iter_content(chunk_size=1 << 20):
                        out.write(chunk)
        except requests.RequestException as err:
            raise InputError(f"{uri}: cannot download ({err.__class__.__name__}, after retries)") from None


def local_copy(uri: str, workdir: Path) -> Path:
    """Return a local file holding `uri` (downloaded into `workdir` when remote)."""
    if uri == SAMPLE_URI:
        return SAMPLE_PATH
    scheme = urlparse(uri).scheme
    if scheme in ("gs", "http", "https"):
        name = Path(urlparse(uri).path).name
        dest = Path(workdir) / safe_name(name)
        suffix = Path(name).suffix.lower()
        if suffix and dest.suffix.lower() != suffix:  # keep the extension that names the format
            dest = dest.with_name(dest.name + suffix)
        if scheme == "gs":
            _download_gcs_file(uri, dest)
        else:
            _download_https_file(uri, dest)
        return dest
    return require_file(uri[len("file://") :] if uri.startswith("file://") else uri)


def require_file(path: str | Path) -> Path:
    """`path` as a readable regular file, or a one-line InputError saying why not."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a file")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: permission denied")
    return path


def read_parquet(path: str | Path, columns: list[str] | None = None):  # -> pandas.DataFrame
    """A parquet file written by an earlier step (inside a committed directory artifact, if in one), checked for
    the columns the caller needs."""
    import pandas as pd

    path = require_committed(require_file(path))
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as err:  # pyarrow's errors derive from these
        raise InputError(f"{path}: not a readable parquet file ({one_line(err)[:200]})") from None
    missing = [c for c in columns or [] if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; found {list(frame.columns)}")
    return frame[columns] if columns else frame


def require_model_dir(
    path: str | Path, config: str = "config.json", weights: str = "*.safetensors", source: str | None = None
) -> Path:
    """A saved model directory with its config and safetensors weights (pickled weights are never loaded); errors
    name `source` (e.g. the gs:// URI it was downloaded from), else the path."""
    path = require_saved_dir(path, source)
    name = source or str(path)
    if not (path / config).is_file():
        raise InputError(f"{name}: not a model directory (no {config})")
    if not any(path.glob(weights)):
        raise InputError(f"{name}: no {weights} weights (pickled weights are not loaded)")
    return path


def download_gcs_directory(uri: str, dest: Path) -> list[str]:
    """Copy every object under a gs:// prefix into `dest`; returns the relative names.

    Object names that would land outside `dest` ('..', absolute parts) are refused."""
    bucket_name, prefix = split_gs_uri(uri.rstrip("/") + "/")
    names: list[str] = []
    root = dest.resolve()
    try:
        client = gcs_client()
        for blob in client.list_blobs(bucket_name, prefix=prefix, retry=gcs_retry()):
            rel = blob.name[len(prefix) :]
            if not rel or rel.endswith("/"):
                continue
            target = (dest / rel).resolve()
            if ".." in Path(rel).parts or not target.is_relative_to(root):
                raise InputError(f"{uri}: object name {blob.name!r} points outside the directory; refusing it")
            target.parent.mkdir(parents=True, exist_ok=True)
            blob.download_to_filename(str(target), retry=gcs_retry())
            names.append(rel)
    except gcs_faults() as err:
        raise gcs_error(uri, err) from None
    if not names:
        raise InputError(f"{uri}: no objects under this prefix")
    return sorted(names)


def process_umask() -> int:
    """This process's umask: read from /proc where Linux shows it (setting it to read it back would, for a moment,
    give files other threads create mode 0666)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def open_mode(directory: bool = False) -> int:
    """The mode open() (or mkdir(), with `directory`) gives a new file: 0666 (0777) less the process's umask."""
    return (0o777 if directory else 0o666) & ~process_umask()


@contextlib.contextmanager
def atomic_file(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `final`; it is renamed onto `final` only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", dir=final.parent)
    os.close(fd)
    os.chmod(name, open_mode())  # mkstemp makes 0600 files: steps running as other users read them
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def sha256_file(path: Path) -> str:
    """The sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# Directory artifacts: written in place, committed by a manifest written last.

ARTIFACT_MANIFEST = "artifact_manifest.json"
WRITING, COMMITTED = "writing", "committed"


def manifest_files(directory: Path, manifest: str) -> list[Path]:
    """The files a manifest covers: every file under `directory` but the manifest and hidden temporary files."""
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.name != manifest and not p.name.startswith("."))


def write_manifest(directory: Path, manifest: str, **extra: Any) -> None:
    """Commit `directory`: record the size and sha256 of every file in `manifest`, written (replaced) last."""
    files = {
        str(p.relative_to(directory)): {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
        for p in manifest_files(directory, manifest)
    }
    with atomic_file(directory / manifest) as tmp:
        tmp.write_text(json.dumps({**extra, "files": files}, indent=1), encoding="utf-8")


def manifest_problem(directory: Path, manifest: str, check_sha256: bool = True) -> str | None:
    """Why `directory` is not a complete commit (no or unfinished manifest, missing, resized or altered file)."""
    try:
        recorded = json.loads((directory / manifest).read_text(encoding="utf-8"))
        files = recorded["files"]
    except FileNotFoundError:
        return "no manifest (the save did not finish)"
    except KeyError:
        return "its writer did not finish (no commit)" if recorded.get("state") == WRITING else "unreadable manifest"
    except (OSError, ValueError, TypeError):
        return "unreadable manifest"
    for name, expected in files.items():
        path = directory / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != expected["bytes"]:
            return f"{name} has {path.stat().st_size} bytes, expected {expected['bytes']}"
        if check_sha256 and sha256_file(path) != expected["sha256"]:
            return f"{name} does not match its sha256"
    return None


def _owned(directory: Path) -> bool:
    """Whether `directory` may be cleared for a new write: empty, or written by `committed_directory`."""
    return (directory / ARTIFACT_MANIFEST).is_file() or not any(not p.name.startswith(".") for p in directory.iterdir())


@contextlib.contextmanager
def committed_directory(final: str | Path) -> Iterator[Path]:
    """Write a directory artifact in place: yields `final`, committed by its manifest once the block succeeds.

    A "writing" manifest goes in first, then earlier contents are removed, so a write killed at any point
    leaves a directory that `require_committed` refuses. If the block raises, what it wrote is removed.
    A non-empty directory this function did not write is never cleared."""
    final = Path(final)
    if final.exists() and not final.is_dir():
        final.unlink()
    final.mkdir(parents=True, exist_ok=True)
    if not _owned(final):
        raise InputError(
            f"{final}: output directory holds files this project did not write; refusing to "
            "replace them (choose another directory or empty it)"
        )
    with atomic_file(final / ARTIFACT_MANIFEST) as tmp:
        tmp.write_text(json.dumps({"state": WRITING}), encoding="utf-8")
    for child in final.iterdir():
        if child.name == ARTIFACT_MANIFEST:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    try:
        yield final
        readable_by_other_users(final)
    except BaseException:
        shutil.rmtree(final, ignore_errors=True)
        raise
    write_manifest(final, ARTIFACT_MANIFEST, state=COMMITTED)


def readable_by_other_users(directory: Path) -> None:
    """Give every file and directory under `directory` at least open()'s (mkdir()'s) mode: libraries that write
    through a private temporary file (safetensors' adapter weights: 0600) or directory would leave it unreadable to
    a step running as another user (the TPU image's steps run as root, the CPU image's as uid 10001)."""
    modes = {False: open_mode(), True: open_mode(directory=True)}  # one umask read for the whole tree
    for path in directory.rglob("*"):
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            continue
        mode, current = modes[path.is_dir()], path.stat().st_mode & 0o777
        if current & mode != mode:
            path.chmod(current | mode)


def commit_problem(directory: Path) -> str | None:
    """Why the directory artifact `directory` is not committed (its write did not finish, or a file no longer
    matches the manifest's name and size), or None; a directory without a manifest (a model saved elsewhere)
    has no problem."""
    if not (directory / ARTIFACT_MANIFEST).exists():
        return None
    return manifest_problem(directory, ARTIFACT_MANIFEST, check_sha256=False)


def files_digest(files: dict[str, str]) -> str:
    """sha256 over {relative name: sha256} of a directory's files."""
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def directory_digest(directory: str | Path) -> str:
    """The content digest of `directory`, every file read (its artifact manifest left out)."""
    directory = Path(directory)
    return files_digest(
        {str(p.relative_to(directory)): sha256_file(p) for p in manifest_files(directory, ARTIFACT_MANIFEST)}
    )


def content_digest(directory: str | Path) -> str:
    """sha256 over the relative name and sha256 of every file of `directory`: taken from its artifact manifest when
    the directory is a committed artifact (no file is read again, which matters on /gcs/), else computed."""
    directory = require_committed(directory)
    try:
        recorded = json.loads((directory / ARTIFACT_MANIFEST).read_text(encoding="utf-8"))["files"]
        return files_digest({name: entry["sha256"] for name, entry in recorded.items()})
    except (OSError, ValueError, KeyError, TypeError):
        return directory_digest(directory)


def require_saved_dir(path: str | Path, source: str | None = None) -> Path:
    """`path` as a Path if it is a directory and not an uncommitted artifact; else a one-line InputError naming it
    (or `source`). What a model directory holds is require_model_dir's check."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{source or path}: no such model directory")
    return require_committed(path, source)


def require_committed(path: str | Path, source: str | None = None) -> Path:
    """`path`, unless it or the directory above it (an artifact's subdirectory: export's merged/) is an
    uncommitted or damaged directory artifact; then a one-line InputError naming it (or `source`)."""
    path = Path(path)
    for directory in (path, path.parent):
        if (directory / ARTIFACT_MANIFEST).exists():
            problem = commit_problem(directory)
            if problem:
                raise InputError(
                    f"{source or directory}: uncommitted directory artifact ({problem}); "
                    "run the step that writes it again"
                )
            break
    return path


def copy_artifact_tree(source: Path, dest: Path) -> None:
    """Copy a directory's files into `dest` (existing or not), leaving out its artifact manifest."""
    shutil.copytree(source, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns(ARTIFACT_MANIFEST))
