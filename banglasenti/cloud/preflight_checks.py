"""Checks of a Vertex AI submission that need no run: what `pipelines/submit.py --check` (and `--dry-run`) report.

Each finding is one line: `error` blocks the submission (the run would fail or be refused), `warning` lets it go
ahead (it works, but costs more or runs with broader rights than needed), `not checked` says that a service
could not be asked (no credentials, unreachable, no permission to read it).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from banglasenti.config.schema import Config
from banglasenti.runtime.kfp_support import LOCAL_IMAGE
from banglasenti.storage.artifacts import split_gs_uri

# Regions that offer an accelerator to Vertex AI custom training, by MachineSpec.accelerator_type. Source: "Vertex
# AI locations", accelerators for custom training, https://cloud.google.com/vertex-ai/docs/general/locations ; the
# Cloud TPU zones page agrees for TPU v3 (v3-8 in us-central1-a/-b and europe-west4-a only):
# https://cloud.google.com/tpu/docs/regions-zones . Accelerators not listed here are not checked.
CUSTOM_TRAINING_REGIONS: dict[str, frozenset[str]] = {
    "TPU_V3": frozenset({"us-central1", "europe-west4"}),
}
LOCATIONS_SOURCE = "https://cloud.google.com/vertex-ai/docs/general/locations"
# Cloud Storage locations spanning several regions (https://cloud.google.com/storage/docs/locations): the
# multi-regions by region-name prefix, the predefined dual-regions by their regions.
MULTI_REGIONS = {"US": "us-", "EU": "europe-", "ASIA": "asia-"}
DUAL_REGIONS = {
    "NAM4": ("us-central1", "us-east1"),
    "EUR4": ("europe-north1", "europe-west4"),
    "ASIA1": ("asia-northeast1", "asia-northeast2"),
}
# APIs a run calls: pipelines and jobs, artifacts, image pulls, and the SDK's look-up of the bucket's project.
REQUIRED_APIS = (
    "aiplatform.googleapis.com",
    "storage.googleapis.com",
    "artifactregistry.googleapis.com",
    "cloudresourcemanager.googleapis.com",
)
SERVICEUSAGE_ENDPOINT = "https://serviceusage.googleapis.com"
_NAME = r"[a-z][a-z0-9-]{4,28}[a-z0-9]"  # a service account id or project id: 6-30 characters
SERVICE_ACCOUNT = re.compile(
    rf"^(?:{_NAME}@{_NAME}(?:\.[a-z0-9.-]*[a-z0-9])?\.iam\.gserviceaccount\.com"
    rf"|\d+-compute@developer\.gserviceaccount\.com|{_NAME}@appspot\.gserviceaccount\.com)$"
)
ERROR, WARNING, NOT_CHECKED = "error", "warning", "not checked"


@dataclass(frozen=True)
class Finding:
    level: str  # ERROR, WARNING or NOT_CHECKED
    check: str
    message: str

    def line(self) -> str:
        return f"{self.level}: {self.check}: {self.message}"


def worker_pools(spec: dict) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, worker pool spec) of every custom job in a compiled spec: component defaults and task inputs."""
    for name, component in spec.get("components", {}).items():
        param = component.get("inputDefinitions", {}).get("parameters", {}).get("worker_pool_specs", {})
        for i, pool in enumerate(param.get("defaultValue") or []):
            yield f"{name} worker_pool_specs[{i}]", pool
    dags = [("root", spec.get("root", {}).get("dag", {}))]
    dags += [(name, c["dag"]) for name, c in spec.get("components", {}).items() if "dag" in c]
    for dag_name, dag in dags:
        for task_name, task in dag.get("tasks", {}).items():
            param = task.get("inputs", {}).get("parameters", {}).get("worker_pool_specs", {})
            for i, pool in enumerate(param.get("runtimeValue", {}).get("constant") or []):
                yield f"task {task_name} ({dag_name}) worker_pool_specs[{i}]", pool


def step_images(spec: dict) -> set[str]:
    """Every image a step or custom job of the spec runs, and the serving image the registry step records."""
    images = {
        e["container"]["image"]
        for e in spec.get("deploymentSpec", {}).get("executors", {}).values()
        if "image" in e.get("container", {})
    }
    dags = [spec.get("root", {}).get("dag", {})] + [c["dag"] for c in spec.get("components", {}).values() if "dag" in c]
    params = [t.get("inputs", {}).get("parameters", {}) for dag in dags for t in dag.get("tasks", {}).values()]
    serving = {p.get("serving_image", {}).get("runtimeValue", {}).get("constant") for p in params}
    return (
        images
        | {p.get("container_spec", {}).get("image_uri", "") for _, p in worker_pools(spec)}
        | {i for i in serving if isinstance(i, str)} - {""}
    )


def image_findings(spec: dict) -> list[Finding]:
    """Images still set to a placeholder of configs/banglasenti.yaml or to the local runner's label."""
    return [
        Finding(
            ERROR,
            "image",
            f"{image!r} is a placeholder: set pipeline.cpu_image and pipeline.train_image "
            "(with registry.upload also pipeline.serve_image) to the images you built (docs/containers.md), "
            "e.g. --set pipeline.cpu_image=REGION-docker.pkg.dev/PROJECT_ID/banglasenti/cpu:TAG",
        )
        for image in sorted(step_images(spec))
        if "/my-project/" in image or image.endswith(":COMMIT_SHA") or image == LOCAL_IMAGE
    ]


def region_findings(spec: dict, region: str) -> list[Finding]:
    """A worker pool asking for an accelerator that the region does not offer to custom training."""
    findings, seen = [], set()
    for _, pool in worker_pools(spec):
        accelerator = pool.get("machine_spec", {}).get("accelerator_type", "")
        if not accelerator or accelerator in seen:
            continue
        seen.add(accelerator)
        regions = CUSTOM_TRAINING_REGIONS.get(accelerator)
        if regions is None:
            findings.append(
                Finding(NOT_CHECKED, "region", f"no list of regions kept for {accelerator}; see {LOCATIONS_SOURCE}")
            )
        elif region not in regions:
            findings.append(
                Finding(
                    ERROR,
                    "region",
                    f"{region} does not offer {accelerator} to Vertex AI custom "
                    f"training (offered in {', '.join(sorted(regions))}; {LOCATIONS_SOURCE}): pass "
                    "--region with a bucket there, or --set vertex.train.machine=... for another "
                    "machine",
                )
            )
    return findings


def service_account_findings(account: str) -> list[Finding]:
    if not account:
        return [
            Finding(
                WARNING,
                "service account",
                "none set: the run and its jobs use the Compute Engine default "
                "service account; pass --service-account (docs/vertex.md#iam)",
            )
        ]
    if "@gcp-sa-" in account:
        return [
            Finding(
                ERROR,
                "service account",
                f"{account!r} is a Google-managed service agent, which a run "
                "cannot act as: pass a service account of your project",
            )
        ]
    if not SERVICE_ACCOUNT.match(account):
        return [
            Finding(
                ERROR,
                "service account",
                f"{account!r} is not a service account email: expected "
                "NAME@PROJECT_ID.iam.gserviceaccount.com (NAME: 6-30 lowercase letters, digits or -)",
            )
        ]
    return []


def spec_findings(spec: dict, cfg: Config) -> list[Finding]:
    """What the compiled spec and the config show, without calling anything."""
    return [
        *image_findings(spec),
        *region_findings(spec, cfg.vertex.region),
        *service_account_findings(cfg.vertex.service_account),
    ]


def location_finding(bucket: str, location: str, data_locations: list[str], region: str) -> Finding | None:
    """A warning when a bucket's location does not hold the run's region (cross-region reads and writes)."""
    loc = location.lower()
    regions = {d.lower() for d in data_locations} or set(DUAL_REGIONS.get(location.upper(), ()))
    if loc == region or region in regions:
        return None
    prefix = MULTI_REGIONS.get(location.upper())
    if prefix and region.startswith(prefix):
        return None
    where = f"multi-region {location}" if prefix else location
    return Finding(
        WARNING,
        "bucket",
        f"gs://{bucket} is in {where}, the run in {region}: every artifact and "
        f"checkpoint crosses regions (slower, and billed as network transfer); use a bucket in {region}",
    )


def bucket_findings(uris: list[str], region: str, client=None) -> list[Finding]:
    """Each distinct bucket of `uris` exists, is readable, and is located in (or spans) the run's region."""
    from google.api_core import exceptions as gexc
    from google.api_core.retry import Retry
    from google.auth import exceptions as auth_exc

    findings = []
    for name in dict.fromkeys(split_gs_uri(uri)[0] for uri in uris if uri.startswith("gs://")):
        try:
            if client is None:
                from banglasenti.storage.artifacts import gcs_client

                client = gcs_client()
            bucket = client.get_bucket(name, timeout=20, retry=Retry(timeout=30))
        except gexc.NotFound:
            findings.append(
                Finding(
                    ERROR,
                    "bucket",
                    f"gs://{name} not found: create it in the run's region: "
                    f"gcloud storage buckets create gs://{name} --location={region}",
                )
            )
            continue
        except gexc.Forbidden:
            findings.append(
                Finding(
                    ERROR,
                    "bucket",
                    f"permission denied on gs://{name}: the caller needs "
                    "storage.buckets.get on it (roles/storage.admin)",
                )
            )
            continue
        except auth_exc.GoogleAuthError as err:
            findings.append(
                Finding(
                    NOT_CHECKED,
                    "bucket",
                    f"gs://{name}: no usable credentials "
                    f"({_first_sentence(err)}): gcloud auth application-default login",
                )
            )
            continue
        except (gexc.GoogleAPIError, OSError) as err:
            findings.append(
                Finding(NOT_CHECKED, "bucket", f"gs://{name}: Cloud Storage not reachable ({_first_sentence(err)})")
            )
            continue
        finding = location_finding(name, bucket.location or "", list(bucket.data_locations or []), region)
        if finding:
            findings.append(finding)
    return findings


def api_findings(project: str, endpoint: str | None = None, timeout: float = 15.0) -> list[Finding]:
    """APIs of REQUIRED_APIS that Service Usage reports disabled in `project`; `not checked` if it cannot be asked."""
    import requests
    from google.auth import exceptions as auth_exc

    endpoint = (endpoint or SERVICEUSAGE_ENDPOINT).rstrip("/")
    names = [f"projects/{project}/services/{api}" for api in REQUIRED_APIS]
    try:
        session = _session(endpoint)
        answer = session.get(
            f"{endpoint}/v1/projects/{project}/services:batchGet", params={"names": names}, timeout=timeout
        )
    except auth_exc.GoogleAuthError as err:
        return [
            Finding(
                NOT_CHECKED,
                "apis",
                f"no usable credentials for Service Usage ({_first_sentence(err)}): "
                "gcloud auth application-default login",
            )
        ]
    except requests.RequestException as err:
        return [Finding(NOT_CHECKED, "apis", f"Service Usage not reachable at {endpoint} ({err.__class__.__name__})")]
    if answer.status_code == 403:
        return [
            Finding(
                NOT_CHECKED,
                "apis",
                "Service Usage refused to list the project's APIs (403): the caller "
                "needs serviceusage.services.get (roles/serviceusage.serviceUsageViewer)",
            )
        ]
    if answer.status_code != 200:
        return [Finding(NOT_CHECKED, "apis", f"Service Usage answered {answer.status_code}")]
    try:
        states = {s["name"].rsplit("/", 1)[-1]: s.get("state", "") for s in answer.json().get("services", [])}
    except (ValueError, KeyError, AttributeError, TypeError):
        return [Finding(NOT_CHECKED, "apis", "Service Usage gave an answer that is not a service list")]
    disabled = [api for api in REQUIRED_APIS if states.get(api) != "ENABLED"]
    if not disabled:
        return []
    return [
        Finding(
            ERROR,
            "apis",
            f"not enabled in project {project}: {', '.join(disabled)}: "
            f"gcloud services enable {' '.join(disabled)} --project={project}",
        )
    ]


def is_loopback_http(endpoint: str | None) -> bool:
    """True for an http:// endpoint on this machine (a stand-in), which gets anonymous credentials."""
    if not endpoint or not endpoint.startswith("http://"):
        return False
    host = urlparse(endpoint).hostname or ""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _first_sentence(err: BaseException) -> str:
    return str(err).splitlines()[0].split(". ")[0].rstrip(".") if str(err) else err.__class__.__name__


def _session(endpoint: str):  # -> google.auth.transport.requests.AuthorizedSession
    """Anonymous for an http:// loopback stand-in, else Application Default Credentials."""
    import google.auth
    from google.auth.credentials import AnonymousCredentials
    from google.auth.transport.requests import AuthorizedSession

    if is_loopback_http(endpoint):
        return AuthorizedSession(AnonymousCredentials())
    credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    return AuthorizedSession(credentials)


def report(findings: list[Finding], stream) -> int:
    """Print one line per finding and a summary; 2 if any finding blocks the submission, else 0."""
    for finding in findings:
        print(finding.line(), file=stream)
    counts = {level: sum(f.level == level for f in findings) for level in (ERROR, WARNING, NOT_CHECKED)}
    summary = ", ".join(f"{n} {'blocking' if level == ERROR else level}" for level, n in counts.items() if n)
    print(f"check: {summary or 'no problem found'}", file=stream, flush=True)
    return 2 if counts[ERROR] else 0
