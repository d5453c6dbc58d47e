"""Reading inputs from local paths, https:// URLs and gs:// URIs, and writing outputs atomically."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

SAMPLE_URI = "sample"
SAMPLE_PATH = Path(__file__).resolve().parent / "data" / "bangla_sentiment_sample.csv"


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


def _gcs_error(uri: str, err: Exception) -> InputError:
    from google.api_core import exceptions as gexc

    if isinstance(err, gexc.NotFound):
        return InputError(f"{uri}: not found (check the bucket and object name)")
    if isinstance(err, gexc.Forbidden):
        return InputError(f"{uri}: permission denied (the service account needs storage.objects.get)")
    return InputError(f"{uri}: cannot read from GCS: {err}")


def _download_gcs_file(uri: str, dest: Path) -> None:
    from google.api_core import exceptions as gexc

    bucket, key = split_gs_uri(uri)
    try:
        gcs_client().bucket(bucket).blob(key).download_to_filename(str(dest))
    except gexc.GoogleAPICallError as err:
        raise _gcs_error(uri, err) from None


def _download_https_file(uri: str, dest: Path) -> None:
    import requests

    try:
        with requests.get(uri, stream=True, timeout=60) as resp:
            if resp.status_code != 200:
                raise InputError(f"{uri}: HTTP {resp.status_code} {resp.reason}")
            with open(dest, "wb") as out:
                for chunk in resp.iter_content(chunk_size=1 << 20):
                    out.write(chunk)
    except requests.RequestException as err:
        raise InputError(f"{uri}: cannot download: {err.__class__.__name__}") from None


def local_copy(uri: str, workdir: Path) -> Path:
    """Return a local file holding `uri` (downloaded into `workdir` when remote)."""
    if uri == SAMPLE_URI:
        return SAMPLE_PATH
    scheme = urlparse(uri).scheme
    if scheme in ("gs", "http", "https"):
        name = Path(urlparse(uri).path).name or "download"
        dest = Path(workdir) / name
        if scheme == "gs":
            _download_gcs_file(uri, dest)
        else:
            _download_https_file(uri, dest)
        return dest
    path = Path(uri[len("file://") :] if uri.startswith("file://") else uri)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a data file")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: permission denied")
    return path


def download_gcs_directory(uri: str, dest: Path) -> list[str]:
    """Copy every object under a gs:// prefix into `dest`; returns the relative names."""
    from google.api_core import exceptions as gexc

    bucket_name, prefix = split_gs_uri(uri.rstrip("/") + "/")
    names: list[str] = []
    try:
        client = gcs_client()
        for blob in client.list_blobs(bucket_name, prefix=prefix):
            rel = blob.name[len(prefix) :]
            if not rel or rel.endswith("/"):
                continue
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            blob.download_to_filename(str(target))
            names.append(rel)
    except gexc.GoogleAPICallError as err:
        raise _gcs_error(uri, err) from None
    if not names:
        raise InputError(f"{uri}: no objects under this prefix")
    return sorted(names)


@contextlib.contextmanager
def atomic_directory(final: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary directory beside `final`; it replaces `final` only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        yield tmp
        if final.is_dir():
            shutil.rmtree(final)
        elif final.exists():
            final.unlink()
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `final`; it is renamed onto `final` only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()
