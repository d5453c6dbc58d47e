"""Compile the pipeline (or take a compiled YAML) and submit it to Vertex AI Pipelines.

    python pipelines/submit.py --project my-proj --region us-central1 --staging-bucket gs://my-bucket \\
        --set pipeline.cpu_image=us-central1-docker.pkg.dev/my-proj/banglasenti/cpu:v1 \\
        --set pipeline.train_image=us-central1-docker.pkg.dev/my-proj/banglasenti/tpu:v1 --dry-run
    python pipelines/submit.py ... --upload-data banglasenti.csv --experiment banglasenti --wait
    python pipelines/submit.py --template pipeline.yaml ... --param epochs=5 --param lora_r=8 --no-cache
    python pipelines/submit.py --smoke ...    # first: ~50 steps of each mode on the TPU, with diagnostics

--check reports, one line each, what would stop or slow the run (placeholder images, the bucket's location, a
region without the training accelerator, a malformed service account, disabled APIs) and exits 2 if any of it
blocks; --dry-run prints the complete CreatePipelineJob request, then the same report, and creates nothing
(both only read: the buckets' metadata and the enabled APIs). Flags override the config's
`vertex` section; `--param` overrides pipeline parameters (and the config keys behind them). An http://
loopback `--api-endpoint` (a local stand-in) gets anonymous credentials and the REST transport. API errors
end in one line saying what to do (`--debug` shows the traceback). See docs/vertex.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from banglasenti.cloud import preflight_checks as preflight
from banglasenti.config.parameters import PARAMETER_KEYS  # pipeline parameter -> the config keys it sets
from banglasenti.config.schema import CONFIG_DIR, Config, ConfigError, config_from_json, load_config, parse_override
from banglasenti.runtime.command_line import base_parser, run_cli
from banglasenti.runtime.private_api import private
from banglasenti.storage.artifacts import split_gs_uri

# Flags that set keys of the config's `vertex` section.
FLAG_KEYS = {
    "project": "vertex.project",
    "region": "vertex.region",
    "staging_bucket": "vertex.staging_bucket",
    "pipeline_root": "vertex.pipeline_root",
    "service_account": "vertex.service_account",
    "network": "vertex.network",
}
EXPERIMENT_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,127}$")
DONE_STATES = ("PIPELINE_STATE_SUCCEEDED", "PIPELINE_STATE_FAILED", "PIPELINE_STATE_CANCELLED")


class SubmitError(ValueError):
    """A submission cannot go ahead; the message says why and what to do."""


def parse_pairs(items: list[str], flag: str) -> dict[str, Any]:
    pairs = {}
    for item in items:
        try:
            key, value = parse_override(item)
        except ConfigError:
            raise SubmitError(f"{flag} {item!r}: expected key=value") from None
        pairs[key] = value
    return pairs


def spec_parameters(spec: dict) -> dict[str, str]:
    """Pipeline parameter name -> KFP type, from a compiled spec."""
    params = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    return {name: p.get("parameterType", "STRING") for name, p in params.items()}


def _number(value: str | int, kind: type) -> Any:
    """`value` as an int or float where it reads as one (YAML leaves 5e-4 a string); else unchanged."""
    try:
        return kind(value)
    except ValueError:
        return value


def check_parameters(params: dict[str, Any], spec: dict) -> dict[str, Any]:
    """Type-check `--param` values against the spec, and the config keys behind them against the schema."""
    types = spec_parameters(spec)
    prepare = spec.get("root", {}).get("dag", {}).get("tasks", {}).get("prepare", {})
    embedded = prepare.get("inputs", {}).get("parameters", {}).get("config_json", {}).get("runtimeValue", {})
    checked = {}
    for name, value in params.items():
        kind = types.get(name)
        if kind is None:
            raise SubmitError(f"--param {name}: not a pipeline parameter; choose from {', '.join(sorted(types))}")
        if kind == "STRING":
            value = str(value)
        elif (
            kind in ("NUMBER_DOUBLE", "NUMBER_INTEGER")
            and isinstance(value, (str, int))
            and not isinstance(value, bool)
        ):
            value = _number(value, float if kind == "NUMBER_DOUBLE" else int)
        expected = {"NUMBER_INTEGER": int, "NUMBER_DOUBLE": float, "LIST": list, "BOOLEAN": bool}.get(kind, str)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise SubmitError(f"--param {name}: expected {kind.lower().replace('number_', '')}, got {value!r}")
        try:
            if "constant" in embedded:  # the config the spec was compiled from
                config_from_json(embedded["constant"], dict.fromkeys(PARAMETER_KEYS.get(name, ()), value))
        except ConfigError as err:
            raise SubmitError(f"--param {name}={value!r}: {err}") from None
        checked[name] = value
    return checked


def upload_destination(path: Path, staging_bucket: str) -> str:
    """gs://<staging bucket>/data/<sha256 prefix>/<name>: the same file always lands at the same URI."""
    from banglasenti.storage.artifacts import sha256_file

    if not path.is_file():
        raise SubmitError(f"--upload-data {path}: no such file")
    if not staging_bucket:
        raise SubmitError("--upload-data needs --staging-bucket (or vertex.staging_bucket)")
    return f"{staging_bucket.rstrip('/')}/data/{sha256_file(path)[:16]}/{path.name}"


def upload_data(path: Path, uri: str) -> bool:
    """Upload `path` to `uri` unless it is there already; True if it was uploaded."""
    from google.api_core import exceptions as gexc

    from banglasenti.storage.artifacts import gcs_client

    bucket_name, key = split_gs_uri(uri)
    blob = gcs_client().bucket(bucket_name).blob(key)
    try:
        if blob.exists():
            return False
        blob.upload_from_filename(str(path), if_generation_match=0)  # never replaces an object
    except gexc.PreconditionFailed:
        return False
    except gexc.NotFound:
        raise SubmitError(
            f"gs://{bucket_name}: bucket not found; create it in the run's region: "
            f"gcloud storage buckets create gs://{bucket_name} --location REGION"
        ) from None
    except gexc.Forbidden:
        raise SubmitError(
            f"{uri}: permission denied; the caller needs roles/storage.objectAdmin on gs://{bucket_name}"
        ) from None
    return True


def describe_api_error(err: BaseException | None, cfg: Config) -> str | None:
    """One line for a Google API error (also when wrapped by the SDK), saying what to do; None if not one."""
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc

    while err is not None and not isinstance(err, (gexc.GoogleAPICallError, auth_exc.GoogleAuthError)):
        err = err.__cause__
    if err is None:
        return None
    if isinstance(err, auth_exc.GoogleAuthError):
        return (
            "no usable Google Cloud credentials: run `gcloud auth application-default login` or set "
            f"GOOGLE_APPLICATION_CREDENTIALS ({str(err).splitlines()[0]})"
        )
    v = cfg.vertex
    message = (err.message or str(err)).strip().splitlines()[0]
    message = re.sub(r"^(GET|POST|PATCH|PUT|DELETE) \S+: ", "", message)  # the REST transport's request prefix
    if isinstance(err, gexc.TooManyRequests):
        return (
            f"Vertex AI quota exhausted (429 RESOURCE_EXHAUSTED): {message}. Wait and resubmit, or request more "
            f"quota for {v.region} (console: IAM & Admin > Quotas, service aiplatform.googleapis.com); "
            "docs/vertex.md#quota"
        )
    if isinstance(err, gexc.Forbidden):
        account = v.service_account or "the run's service account"
        return (
            f"permission denied (403 PERMISSION_DENIED): {message}. The caller needs roles/aiplatform.user on "
            f"project {v.project} and roles/iam.serviceAccountUser on {account}; if the Vertex AI API is "
            "disabled: gcloud services enable aiplatform.googleapis.com"
        )
    if isinstance(err, gexc.BadRequest):
        return (
            f"Vertex AI rejected the request (400 INVALID_ARGUMENT): {message}. Fix the flag, --param or "
            "config key it names; --dry-run prints the request"
        )
    if isinstance(err, gexc.NotFound):
        return f"not found (404): {message}. Check --project ({v.project}) and --region ({v.region})"
    if isinstance(err, gexc.Unauthorized):
        return f"not authenticated (401): {message}. Run `gcloud auth application-default login`"
    return f"Vertex AI call failed ({err.code} {err.__class__.__name__}): {message}"


def build_parser() -> argparse.ArgumentParser:
    parser = base_parser(__doc__)
    parser.set_defaults(config=str(CONFIG_DIR / "banglasenti.yaml"))
    add = parser.add_argument
    add("--template", help="a compiled pipeline YAML to submit (default: compile --config now)")
    add("--output", help="also keep the compiled pipeline YAML here")
    add("--project", help="Google Cloud project id (vertex.project)")
    add("--region", help="Vertex AI region (vertex.region)")
    add("--staging-bucket", help="gs:// bucket for staging and uploaded data (vertex.staging_bucket)")
    add("--pipeline-root", help="gs:// root of the run's artifacts (vertex.pipeline_root)")
    add("--service-account", help="service account of the run and its jobs (vertex.service_account)")
    add("--network", help="VPC network to peer with (vertex.network)")
    add(
        "--reserved-ip-range",
        dest="reserved_ip_ranges",
        action="append",
        default=None,
        help="reserved IP range of that network (repeatable)",
    )
    add("--label", dest="labels", action="append", default=[], metavar="KEY=VALUE", help="label of the run")
    add(
        "--param",
        dest="params",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="pipeline parameter value, e.g. --param epochs=5 (repeatable)",
    )
    add(
        "--cache",
        dest="enable_caching",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="reuse (or with --no-cache, never reuse) outputs of earlier runs; default: as compiled",
    )
    add("--experiment", help="Vertex AI Experiments experiment to log the run to")
    add("--display-name", help="display name of the run (default: the pipeline name)")
    add("--job-id", help="id of the run (default: <pipeline name>-<timestamp>)")
    add("--api-endpoint", help="Vertex AI API endpoint: regional or private; http://127.0.0.1:PORT for a stand-in")
    add(
        "--upload-data",
        type=Path,
        metavar="PATH",
        help="upload this data file to the staging bucket first and run on it (sets data_uri)",
    )
    add(
        "--check",
        action="store_true",
        help="report what would stop or slow the run (placeholder images, bucket "
        "location, TPU region, service account, disabled APIs), one line each, and submit nothing; exit 2 if any "
        "blocks",
    )
    add(
        "--serviceusage-endpoint",
        help="Service Usage endpoint that --check asks for the enabled APIs "
        f"(default {preflight.SERVICEUSAGE_ENDPOINT})",
    )
    add(
        "--smoke",
        action="store_true",
        help="submit the smoke pipeline instead (pipelines/smoke_pipeline.py): a short "
        "training of both modes on the training machine with a diagnostics artifact; run it first",
    )
    add("--dry-run", action="store_true", help="print the complete request, run --check, and create nothing")
    add("--wait", action="store_true", help="follow the run until it ends; exit 1 unless it succeeds")
    add("--poll-seconds", type=float, default=30.0, help="seconds between state checks with --wait")
    return parser


def load_submit_config(args: argparse.Namespace, params: dict[str, Any]) -> Config:
    """The config from --config and --set, then the flags, then --param (through the keys behind them)."""
    pairs = parse_pairs(args.overrides, "--set")
    pairs.update({key: getattr(args, flag) for flag, key in FLAG_KEYS.items() if getattr(args, flag) is not None})
    if args.reserved_ip_ranges is not None:
        pairs["vertex.reserved_ip_ranges"] = args.reserved_ip_ranges
    for name, value in params.items():
        pairs.update(dict.fromkeys(PARAMETER_KEYS.get(name, ()), value))
    cfg = load_config(args.config, pairs)
    labels = {**cfg.vertex.labels, **{k: str(v) for k, v in parse_pairs(args.labels, "--label").items()}}
    return load_config(args.config, {**pairs, "vertex.labels": labels})


def compile_spec(cfg: Config, path: Path, smoke: bool = False) -> None:
    from kfp import compiler

    from pipelines.pipeline import build_pipeline
    from pipelines.smoke_pipeline import build_smoke_pipeline

    pipeline = build_smoke_pipeline(cfg, "vertex") if smoke else build_pipeline(cfg, "vertex")
    compiler.Compiler().compile(pipeline, package_path=str(path))


def init_sdk(cfg: Config, api_endpoint: str | None, dry_run: bool, debug: bool = False) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform

    if not debug:  # the SDK's INFO lines repeat what this command prints
        for name in [n for n in logging.root.manager.loggerDict if n.startswith("google.cloud.aiplatform")]:
            logging.getLogger(name).setLevel(logging.WARNING)

    anonymous = dry_run or preflight.is_loopback_http(api_endpoint)
    if api_endpoint and api_endpoint.startswith("http://") and not preflight.is_loopback_http(api_endpoint):
        raise SubmitError(f"--api-endpoint {api_endpoint}: plain http:// is only for a loopback stand-in; use https://")
    aiplatform.init(
        project=cfg.vertex.project,
        location=cfg.vertex.region,
        staging_bucket=cfg.vertex.staging_bucket or None,
        credentials=AnonymousCredentials() if anonymous else None,
        api_endpoint=api_endpoint,
        api_transport="rest" if api_endpoint and "://" in api_endpoint else None,
    )


def create_request(job, cfg: Config) -> dict[str, Any]:
    """The CreatePipelineJobRequest that job.submit() sends, with the run-as account and network it sets."""
    from google.cloud.aiplatform_v1 import CreatePipelineJobRequest, PipelineJob

    # a copy: submit() sets these on the SDK's own resource
    resource = PipelineJob(private(job, "_gca_resource", "google.cloud.aiplatform.pipeline_jobs:PipelineJob"))
    resource.service_account = cfg.vertex.service_account
    resource.network = cfg.vertex.network
    resource.reserved_ip_ranges = list(cfg.vertex.reserved_ip_ranges)
    request = CreatePipelineJobRequest(
        parent=f"projects/{cfg.vertex.project}/locations/{cfg.vertex.region}",
        pipeline_job=resource,
        pipeline_job_id=job.job_id,
    )
    return json.loads(CreatePipelineJobRequest.to_json(request, always_print_fields_with_no_presence=False))


def follow(job, poll_seconds: float) -> int:
    """Print each state change of the run until it ends; 0 if it succeeded."""
    last = None
    try:
        while True:
            state = job.state.name
            if state != last:
                print(f"{time.strftime('%H:%M:%S')} {state}", flush=True)
                last = state
            if state in DONE_STATES:
                break
            time.sleep(poll_seconds)
    except KeyboardInterrupt:
        print(f"stopped following; the run goes on: {job.resource_name}", file=sys.stderr)
        return 130
    if state == "PIPELINE_STATE_SUCCEEDED":
        return 0
    error = job.gca_resource.error.message
    print(f"error: run {job.resource_name} ended {state}" + (f": {error}" if error else ""), file=sys.stderr)
    return 1


def console_link(cfg: Config, job_id: str) -> str:
    return (
        f"https://console.cloud.google.com/vertex-ai/locations/{cfg.vertex.region}/pipelines/runs/{job_id}"
        f"?project={cfg.vertex.project}"
    )


def created_name(job) -> str | None:
    """The run's resource name once Vertex AI has created it, else None."""
    try:
        return job.resource_name
    except RuntimeError:
        return None


def remote_findings(args: argparse.Namespace, cfg: Config, pipeline_root: str) -> list[preflight.Finding]:
    """Bucket and API findings: they ask Cloud Storage and Service Usage, reading only."""
    v = cfg.vertex
    uris = [pipeline_root, v.staging_bucket, v.train.base_output_directory]
    return [
        *preflight.bucket_findings([u for u in uris if u], v.region),
        *preflight.api_findings(v.project, args.serviceusage_endpoint),
    ]


def submit(args: argparse.Namespace) -> int:
    params = parse_pairs(args.params, "--param")
    cfg = load_submit_config(args, params)
    pipeline_root = checked_pipeline_root(args, cfg)
    upload = None
    if args.upload_data:
        upload = {
            "source": str(args.upload_data),
            "destination": upload_destination(args.upload_data, cfg.vertex.staging_bucket),
        }
        params["data_uri"] = upload["destination"]
        cfg = load_submit_config(args, params)
    if args.smoke and args.template:
        raise SubmitError("--smoke compiles the smoke pipeline now; it does not take --template")
    with tempfile.TemporaryDirectory() as tmp:
        template, spec = pipeline_template(args, cfg, Path(tmp))
        params = check_parameters(params, spec)
        findings = preflight.spec_findings(spec, cfg)
        if args.check and not args.dry_run:
            return preflight.report(findings + remote_findings(args, cfg, pipeline_root), sys.stderr)
        if not args.dry_run and print_spec_findings(findings):
            return 2
        job = pipeline_job(args, cfg, template, spec, pipeline_root, params)
    if args.dry_run:
        plan = {"create_pipeline_job": create_request(job, cfg), "experiment": args.experiment, "upload": upload}
        print(json.dumps(plan, indent=2, ensure_ascii=False), flush=True)
        return preflight.report(findings + remote_findings(args, cfg, pipeline_root), sys.stderr)
    if upload:
        uploaded = upload_data(args.upload_data, upload["destination"])
        print(f"{'uploaded' if uploaded else 'already there'}: {upload['destination']}", flush=True)
    bucket_findings = preflight.bucket_findings([pipeline_root], cfg.vertex.region)
    for finding in bucket_findings:
        print(finding.line(), file=sys.stderr, flush=True)
    if any(f.level == preflight.ERROR for f in bucket_findings):
        return 2
    linked = start_run(job, args, cfg)
    print(f"submitted: {job.resource_name}", flush=True)
    print(f"console: {console_link(cfg, job.job_id)}", flush=True)
    if linked:
        print(f"experiment: {args.experiment}", flush=True)
    return follow(job, args.poll_seconds) if args.wait else 0


def checked_pipeline_root(args: argparse.Namespace, cfg: Config) -> str:
    """The run's pipeline root, once the project, the experiment name and the root itself are usable."""
    v = cfg.vertex
    if not v.project:
        raise SubmitError("no project: pass --project or set vertex.project")
    if args.experiment and not EXPERIMENT_NAME.match(args.experiment):
        raise SubmitError(f"--experiment {args.experiment!r}: use lowercase letters, digits and -, at most 128")
    pipeline_root = v.effective_pipeline_root()
    if not pipeline_root:
        raise SubmitError("no pipeline root: pass --pipeline-root or --staging-bucket (gs://...)")
    return pipeline_root


def pipeline_template(args: argparse.Namespace, cfg: Config, tmp: Path) -> tuple[Path, dict]:
    """The compiled pipeline to submit and its spec: --template, else compiled now (into --output, else `tmp`)."""
    template = Path(args.template) if args.template else Path(args.output or tmp / "pipeline.yaml")
    if not args.template:
        compile_spec(cfg, template, smoke=args.smoke)
    try:
        return template, yaml.safe_load(template.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise SubmitError(f"--template {template}: cannot read a compiled pipeline ({err})") from None


def print_spec_findings(findings: list[preflight.Finding]) -> bool:
    """Print the blocking findings (or, when none blocks, all of them); True if any blocks."""
    blocking = [f for f in findings if f.level == preflight.ERROR]
    for finding in blocking or findings:
        print(finding.line(), file=sys.stderr, flush=True)
    return bool(blocking)


def with_caching(spec: dict, enabled: bool) -> dict:
    """`spec` with every task's caching set to `enabled` (--cache/--no-cache), as the SDK's `enable_caching` does,
    except the tasks that measure their own run (pipelines/smoke_pipeline.py UNCACHED_TASKS), which stay uncached."""
    import copy

    from pipelines.smoke_pipeline import UNCACHED_TASKS

    spec = copy.deepcopy(spec)
    dags = [spec.get("root", {}).get("dag", {})]
    dags += [component["dag"] for component in spec.get("components", {}).values() if "dag" in component]
    for dag in dags:
        for name, task in dag.get("tasks", {}).items():
            task["cachingOptions"] = {"enableCache": enabled and name not in UNCACHED_TASKS}
    return spec


def pipeline_job(
    args: argparse.Namespace, cfg: Config, template: Path, spec: dict, pipeline_root: str, params: dict[str, Any]
):
    """The SDK's PipelineJob for the run (nothing sent yet)."""
    init_sdk(cfg, args.api_endpoint, args.dry_run, args.debug)
    from google.cloud import aiplatform

    v = cfg.vertex
    with tempfile.TemporaryDirectory() as tmp:  # the SDK reads the template when the job is made
        if args.enable_caching is not None:  # the SDK's enable_caching would rewrite every task, smoke's too
            template = Path(tmp) / template.name
            template.write_text(yaml.safe_dump(with_caching(spec, args.enable_caching)), encoding="utf-8")
        return aiplatform.PipelineJob(
            display_name=args.display_name or spec.get("pipelineInfo", {}).get("name", cfg.pipeline.name),
            template_path=str(template),
            job_id=args.job_id,
            pipeline_root=pipeline_root,
            parameter_values=params,
            enable_caching=None,
            labels=dict(v.labels),
            project=v.project,
            location=v.region,
        )


def start_run(job, args: argparse.Namespace, cfg: Config) -> bool:
    """Create the run; True if it was linked to --experiment. A run created whose linking failed gets a warning,
    not an error (resubmitting would start a second run)."""
    v = cfg.vertex
    try:
        job.submit(
            service_account=v.service_account or None,
            network=v.network or None,
            reserved_ip_ranges=list(v.reserved_ip_ranges) or None,
            experiment=args.experiment,
        )
    except Exception as err:
        name = created_name(job)
        if name is None or not args.experiment:
            raise  # the run was not created: an error
        cause: BaseException = err
        while cause.__cause__ is not None:  # the service's own message, under the SDK's RuntimeError
            cause = cause.__cause__
        cause_line = (getattr(cause, "message", None) or str(cause) or type(cause).__name__).strip().splitlines()[0]
        print(
            f"warning: run {name} was created and goes on ({console_link(cfg, job.job_id)}), but linking it to "
            f"Vertex AI Experiment {args.experiment!r} failed; do not resubmit (that starts and bills a second "
            f"run). Cause: {cause_line}",
            file=sys.stderr,
            flush=True,
        )
        return False
    return bool(args.experiment)


def describe_failure(err: Exception, args: argparse.Namespace) -> str | None:
    """What to do about a Vertex AI or Cloud Storage API error, worded for the run's config."""
    try:
        cfg = load_submit_config(args, {})
    except Exception:  # noqa: BLE001 - only for wording the message
        cfg = Config()
    return describe_api_error(err, cfg)


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), submit, argv, expected=(SubmitError,), describe=describe_failure)


if __name__ == "__main__":
    raise SystemExit(main())
