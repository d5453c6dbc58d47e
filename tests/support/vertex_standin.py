"""A stand-in for the Vertex AI REST API on loopback: it records each request and answers the calls that
pipelines/submit.py makes (CreatePipelineJob, GetPipelineJob, the Experiments calls on the metadata store) and
Service Usage's services:batchGet that `submit.py --check` asks.

Answers follow the REST API's JSON shapes. Request bodies are read as the service reads them: parsed into Vertex
AI's own protobuf messages (`google.cloud.aiplatform_v1`, through `json_format.ParseDict` with unknown fields
refused), the pipeline spec into KFP's `PipelineSpec`, so a misspelt field is a 400 INVALID_ARGUMENT naming it.
The worker pools of every custom job in the spec are checked here too, although Vertex AI reads them only when
the job starts: google-cloud-pipeline-components' launcher (container/v1/custom_job/remote_runner.py) hands the
job spec to the GAPIC client as a dict, whose proto-plus conversion refuses unknown fields and camelCase keys;
both conversions are applied, so the run's failure at its training step becomes a failure at submission here.

It also keeps a Model Registry (ModelService: models:upload as a long-running operation with the operation's GET,
ListModels by display name, GetModel of the default or a given version, MergeVersionAliases, ImportModelEvaluation,
ListModelEvaluations, BatchImportModelEvaluationSlices) and JobService's batch prediction jobs (create, get).
Semantics reproduced: a model's first version is its default; a later version becomes default only when its
`versionAliases` hold "default" (what the SDK's `is_default_version` sends) or when "default" is merged onto it;
an alias names one version of a model at a time; an evaluation's metrics must fit its metrics schema (the fields of
classification_metrics_1.0.0.yaml, REST reference `SchemaModelevaluationMetricsClassificationEvaluationMetrics`);
a model served by a custom container supports only dedicated resources, so a batch prediction job of it needs a
machine type (REST reference, BatchPredictionJob.dedicatedResources). Evaluation names carry no version
(projects/P/locations/L/models/ID/evaluations/E). What it lacks here: filters other than display_name="...",
paging, the schema's numeric ranges, copying artifacts, running predictions (a batch job succeeds at its first GET
with an empty output directory).

`fail` makes the next call of a route fail with a google.rpc.Status error body, as the real service does for
quota, permission and validation errors. What it lacks: IAM, quotas, capacity, running anything.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

PARENT = r"/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
STORE = PARENT + r"/metadataStores/default"
MODEL = PARENT + r"/models/(?P<model>[^/:@]+)(?:@(?P<version>[^/:]+))?"
# The REST client polls a long-running operation under /ui/ (the first http rule of GetOperation that matches).
OPERATION = r"/(?:v1|ui)/(?P<operation>projects/[^/]+/locations/[^/]+/(?:models/[^/:@]+/)?operations/[^/:]+)"
HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
}
CLASSIFICATION_SCHEMA = "gs://google-cloud-aiplatform/schema/modelevaluation/classification_metrics_1.0.0.yaml"
# Fields of the classification metrics schema (REST reference: SchemaModelevaluationMetrics...).
CLASSIFICATION_FIELDS = frozenset({"auPrc", "auRoc", "logLoss", "confidenceMetrics", "confusionMatrix"})
CONFIDENCE_FIELDS = frozenset(
    {
        "confidenceThreshold",
        "maxPredictions",
        "recall",
        "precision",
        "falsePositiveRate",
        "f1Score",
        "f1ScoreMicro",
        "f1ScoreMacro",
        "recallAt1",
        "precisionAt1",
        "falsePositiveRateAt1",
        "f1ScoreAt1",
        "truePositiveCount",
        "falsePositiveCount",
        "falseNegativeCount",
        "trueNegativeCount",
        "confusionMatrix",
    }
)
CONFUSION_FIELDS = frozenset({"annotationSpecs", "rows"})
ALIAS = re.compile(r"[a-z][a-zA-Z0-9-]{0,126}[a-z0-9]")
# What Vertex AI records for a model served by a custom container.
CUSTOM_CONTAINER_FORMATS = {
    "supportedDeploymentResourcesTypes": ["DEDICATED_RESOURCES"],
    "supportedInputStorageFormats": ["jsonl", "bigquery", "csv", "tf-record", "tf-record-gzip", "file-list"],
    "supportedOutputStorageFormats": ["jsonl", "bigquery"],
}
NOW = "2026-01-01T00:00:00Z"
PROJECT_NUMBER = "123456789012"
ENABLED_APIS = frozenset(
    {
        "aiplatform.googleapis.com",
        "storage.googleapis.com",
        "artifactregistry.googleapis.com",
        "cloudresourcemanager.googleapis.com",
        "cloudbuild.googleapis.com",
    }
)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: dict[str, Any]


class Invalid(ValueError):
    """A request body the service would refuse (400 INVALID_ARGUMENT)."""


class NotFound(KeyError):
    """A resource the request names that does not exist (404 NOT_FOUND); a KeyError to callers of `version`."""


def parse_message(message_class, data: Any, where: str) -> None:
    """Parse `data` into `message_class` (a proto-plus or protobuf class) as the service does; Invalid if it cannot."""
    import proto
    from google.protobuf import json_format

    message = message_class()
    if isinstance(message, proto.Message):  # proto-plus: its protobuf message
        message = message_class.pb(message)
    try:
        json_format.ParseDict(data, message, ignore_unknown_fields=False)
    except json_format.ParseError as err:
        raise Invalid(f"Invalid JSON payload received at {where}: {str(err).splitlines()[0]}") from None


def custom_job_pools(spec: dict) -> list[tuple[str, Any]]:
    """(where, pool) of each worker pool in the spec: custom job components' defaults and tasks' constant inputs."""
    pools = []
    components = spec.get("components", {})
    for name, component in components.items():
        param = component.get("inputDefinitions", {}).get("parameters", {}).get("worker_pool_specs", {})
        pools += [(f"{name}.worker_pool_specs[{i}]", p) for i, p in enumerate(param.get("defaultValue") or [])]
    dags = {"root": spec.get("root", {}), **components}
    for dag_name, holder in dags.items():
        for task_name, task in holder.get("dag", {}).get("tasks", {}).items():
            param = task.get("inputs", {}).get("parameters", {}).get("worker_pool_specs", {})
            constant = param.get("runtimeValue", {}).get("constant") or []
            pools += [(f"{dag_name}.tasks[{task_name}].worker_pool_specs[{i}]", p) for i, p in enumerate(constant)]
    return pools


def _integral(value: Any) -> Any:
    """`value` as the launcher's json.loads reads it: the spec's numbers are Struct doubles, which the pipeline's
    (Go) backend writes without a fraction when integral, so 100.0 arrives as the int 100."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def check_pipeline_job(body: dict) -> None:
    """The CreatePipelineJob body as Vertex AI parses it, and every custom job's worker pools as the launcher does."""
    from google.cloud import aiplatform_v1
    from kfp.pipeline_spec import pipeline_spec_pb2

    parse_message(aiplatform_v1.PipelineJob, body, "pipeline_job")
    spec = body.get("pipelineSpec", {})
    parse_message(pipeline_spec_pb2.PipelineSpec, spec, "pipeline_job.pipeline_spec")
    for where, pool in custom_job_pools(spec):
        parse_message(aiplatform_v1.WorkerPoolSpec, pool, where)
        try:
            aiplatform_v1.WorkerPoolSpec(_integral(pool))  # the launcher's dict -> proto-plus conversion
        except (ValueError, TypeError, KeyError) as err:
            raise Invalid(f"custom job payload at {where}: {err}") from None


def check_classification_metrics(metrics: Any, where: str) -> None:
    """Metrics as the classification metrics schema has them: known fields only, a square confusion matrix."""
    if not isinstance(metrics, dict):
        raise Invalid(f"{where}: metrics must be an object")
    if unknown := set(metrics) - CLASSIFICATION_FIELDS:
        raise Invalid(f"{where}: fields not in the classification metrics schema: {sorted(unknown)}")
    matrices = [(f"{where}.confusionMatrix", metrics.get("confusionMatrix"))]
    for i, entry in enumerate(metrics.get("confidenceMetrics", [])):
        if unknown := set(entry) - CONFIDENCE_FIELDS:
            raise Invalid(f"{where}.confidenceMetrics[{i}]: unknown fields {sorted(unknown)}")
        matrices.append((f"{where}.confidenceMetrics[{i}].confusionMatrix", entry.get("confusionMatrix")))
    for at, matrix in matrices:
        if matrix is None:
            continue
        if unknown := set(matrix) - CONFUSION_FIELDS:
            raise Invalid(f"{at}: unknown fields {sorted(unknown)}")
        size = len(matrix.get("annotationSpecs", []))
        rows = matrix.get("rows", [])
        if len(rows) != size or any(not isinstance(r, list) or len(r) != size for r in rows):
            raise Invalid(f"{at}: rows must be a {size}x{size} list of lists (one per annotation spec)")


def check_evaluation(evaluation: dict, where: str) -> None:
    if evaluation.get("metricsSchemaUri") != CLASSIFICATION_SCHEMA:
        raise Invalid(
            f"{where}.metrics_schema_uri: the stand-in knows only {CLASSIFICATION_SCHEMA}, got "
            f"{evaluation.get('metricsSchemaUri')!r}"
        )
    check_classification_metrics(evaluation.get("metrics"), f"{where}.metrics")


@dataclass
class VertexStandIn:
    """State of the stand-in: what it received and what it answers."""

    requests: list[Request] = field(default_factory=list)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    contexts: dict[str, dict[str, Any]] = field(default_factory=dict)
    # States a job reports on successive GetPipelineJob calls (the last one repeats).
    states: list[str] = field(default_factory=lambda: ["PIPELINE_STATE_RUNNING", "PIPELINE_STATE_SUCCEEDED"])
    # Route name -> (google.rpc status, message) for that route's next call: create_job, get_job, create_context,
    # get_context, add_context_children, batch_get_services.
    fail: dict[str, tuple[str, str]] = field(default_factory=dict)
    enabled_apis: set[str] = field(default_factory=lambda: set(ENABLED_APIS))
    url: str = ""
    # Model Registry: model name -> {version id -> the version's Model resource}; evaluations by version name.
    models: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    evaluations: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    slices: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    operations: dict[str, dict[str, Any]] = field(default_factory=dict)
    batch_jobs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def created_jobs(self) -> list[Request]:
        return [r for r in self.requests if r.method == "POST" and r.path.endswith("/pipelineJobs")]

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: dict) -> tuple[int, dict]:
        self.requests.append(Request(method, path, query, body))
        routes = [
            ("create_job", "POST", PARENT + r"/pipelineJobs", self._create_job),
            ("get_job", "GET", PARENT + r"/pipelineJobs/(?P<job>[^/:]+)", self._get_job),
            ("get_store", "GET", STORE, lambda m, q, b: (200, {"name": path.removeprefix("/v1/")})),
            ("create_context", "POST", STORE + r"/contexts", self._create_context),
            ("get_context", "GET", STORE + r"/contexts/(?P<context>[^/:]+)", self._get_context),
            (
                "add_context_children",
                "POST",
                STORE + r"/contexts/(?P<context>[^/:]+):addContextChildren",
                self._add_context_children,
            ),
            (
                "batch_get_services",
                "GET",
                r"/v1/projects/(?P<project>[^/]+)/services:batchGet",
                self._batch_get_services,
            ),
            ("upload_model", "POST", PARENT + r"/models:upload", self._upload_model),
            ("get_operation", "GET", OPERATION, self._get_operation),
            ("list_models", "GET", PARENT + r"/models", self._list_models),
            ("get_model", "GET", MODEL, self._get_model),
            ("merge_version_aliases", "POST", MODEL + r":mergeVersionAliases", self._merge_version_aliases),
            ("import_evaluation", "POST", MODEL + r"/evaluations:import", self._import_evaluation),
            ("list_evaluations", "GET", MODEL + r"/evaluations", self._list_evaluations),
            (
                "import_slices",
                "POST",
                MODEL + r"/evaluations/(?P<evaluation>[^/:]+)/slices:batchImport",
                self._import_slices,
            ),
            (
                "create_batch_prediction_job",
                "POST",
                PARENT + r"/batchPredictionJobs",
                self._create_batch_prediction_job,
            ),
            (
                "get_batch_prediction_job",
                "GET",
                PARENT + r"/batchPredictionJobs/(?P<job>[^/:]+)",
                self._get_batch_prediction_job,
            ),
        ]
        for name, verb, pattern, answer in routes:
            if method == verb and (m := re.fullmatch(pattern, path)):
                if name in self.fail:
                    return _error(*self.fail.pop(name))
                try:
                    return answer(m, query, body)
                except Invalid as err:
                    return _error("INVALID_ARGUMENT", str(err))
                except NotFound as err:
                    return _error("NOT_FOUND", str(err.args[0]))
        return _error("UNIMPLEMENTED", f"the stand-in does not serve {method} {path}", 501)

    def _get_job(self, m: re.Match, query: dict, body: dict) -> tuple[int, dict]:
        job = self.jobs.get(m["job"])
        if job is None:
            return _error("NOT_FOUND", f"PipelineJob {m['job']} not found")
        polls = job.pop("_polls", 0)
        job["state"] = self.states[min(polls, len(self.states) - 1)]
        job["_polls"] = polls + 1
        # Once running, the service has made the run's context in the metadata store (Experiments use it).
        store = f"projects/{m['project']}/locations/{m['location']}/metadataStores/default"
        job["jobDetail"] = {
            "pipelineRunContext": {"name": f"{store}/contexts/{m['job']}", "schemaTitle": "system.PipelineRun"}
        }
        return 200, {k: v for k, v in job.items() if k != "_polls"}

    def _create_context(self, m: re.Match, query: dict, body: dict) -> tuple[int, dict]:
        from google.cloud import aiplatform_v1

        parse_message(aiplatform_v1.Context, body, "context")
        name = (
            f"projects/{m['project']}/locations/{m['location']}/metadataStores/default/contexts/{query['contextId'][0]}"
        )
        self.contexts[name] = {**body, "name": name}
        return 200, self.contexts[name]

    def _get_context(self, m: re.Match, query: dict, body: dict) -> tuple[int, dict]:
        name = f"projects/{m['project']}/locations/{m['location']}/metadataStores/default/contexts/{m['context']}"
        if name in self.contexts:
            return 200, self.contexts[name]
        return _error("NOT_FOUND", f"Context {name} not found")

    def _add_context_children(self, m: re.Match, query: dict, body: dict) -> tuple[int, dict]:
        from google.cloud import aiplatform_v1

        parse_message(aiplatform_v1.AddContextChildrenRequest, body, "add_context_children_request")
        return 200, {}

    def _create_job(self, m: re.Match, query: dict[str, list[str]], body: dict) -> tuple[int, dict]:
        check_pipeline_job(body)
        job_id = query.get("pipelineJobId", ["job"])[0]
        name = f"projects/{m['project']}/locations/{m['location']}/pipelineJobs/{job_id}"
        job = {**body, "name": name, "state": "PIPELINE_STATE_PENDING", "createTime": "2026-01-01T00:00:00Z"}
        self.jobs[job_id] = job
        return 200, job

    def _batch_get_services(self, m: re.Match, query: dict[str, list[str]], body: dict) -> tuple[int, dict]:
        services = []
        for name in query.get("names", []):
            api = name.rsplit("/", 1)[-1]
            parent = f"projects/{PROJECT_NUMBER}"  # the service answers with the project's number
            services.append(
                {
                    "name": f"{parent}/services/{api}",
                    "parent": parent,
                    "state": "ENABLED" if api in self.enabled_apis else "DISABLED",
                }
            )
        return 200, {"services": services}

    # Model Registry -------------------------------------------------------------------------------------------

    def calls(self, route_path_suffix: str, method: str = "POST") -> list[Request]:
        """The requests received whose path ends with `route_path_suffix` (e.g. "/models:upload")."""
        return [r for r in self.requests if r.method == method and r.path.endswith(route_path_suffix)]

    def version(self, model: str, version: str | None = None) -> dict[str, Any]:
        """A version of `model` (a resource name) by id or alias (none: the default); KeyError when there is none."""
        versions = self.models.get(model)
        if versions is None:
            raise NotFound(f"Model {model} not found")
        alias = version or "default"
        for v in versions.values():
            if v["versionId"] == alias or alias in v["versionAliases"]:
                return v
        raise NotFound(f"Model {model}@{version} not found")

    def default_version(self, model: str) -> str:
        return self.version(model)["versionId"]

    def _model(self, m: re.Match) -> tuple[str, dict[str, Any]]:
        name = f"projects/{m['project']}/locations/{m['location']}/models/{m['model']}"
        return name, self.version(name, m["version"])

    def _upload_model(self, m: re.Match, query: dict, body: dict) -> tuple[int, dict]:
        from google.cloud import aiplatform_v1

        parse_message(aiplatform_v1.UploadModelRequest, body, "upload_model_request")
        model = dict(body.get("model", {}))
        if not model.get("displayName"):
            raise Invalid("model.display_name is required")
        if not model.get("containerSpec", {}).get("imageUri"):
            raise Invalid("model.container_spec.image_uri is required for a model not trained by Vertex AI")
        for alias in model.get("versionAliases", []):
            if not ALIAS.fullmatch(alias):
                raise Invalid(f"model.version_aliases: {alias!r} does not match {ALIAS.pattern}")
        parent = f"projects/{m['project']}/locations/{m['location']}"
        if parent_model := body.get("parentModel", ""):
            if not re.fullmatch(re.escape(parent) + r"/models/[^/@]+", parent_model):
                raise Invalid(f"parent_model {parent_model!r} is not a model of {parent} (no @version)")
            if parent_model not in self.models:
                return _error("NOT_FOUND", f"Model {parent_model} not found")
            name, versions = parent_model, self.models[parent_model]
        else:
            name = f"{parent}/models/{1000 + len(self.models)}"
            versions = self.models.setdefault(name, {})
        version_id = str(len(versions) + 1)
        aliases = list(dict.fromkeys(model.get("versionAliases", [])))
        if not versions and "default" not in aliases:
            aliases.insert(0, "default")  # a model's first version is its default
        if "default" in aliases:
            for other in versions.values():
                other["versionAliases"] = [a for a in other["versionAliases"] if a != "default"]
        versions[version_id] = {
            **model,
            **CUSTOM_CONTAINER_FORMATS,
            "name": name,
            "versionId": version_id,
            "versionAliases": aliases,
            "createTime": NOW,
            "versionCreateTime": NOW,
            "versionUpdateTime": NOW,
        }
        op = f"{name}/operations/{len(self.operations) + 1}"
        self.operations[op] = {
            "name": op,
            "done": True,
            "response": {
                "@type": "type.googleapis.com/google.cloud.aiplatform.v1.UploadModelResponse",
                "model": name,
                "modelVersionId": version_id,
            },
        }
        return 200, {
            "name": op,
            "metadata": {"@type": "type.googleapis.com/google.cloud.aiplatform.v1.UploadModelOperationMetadata"},
        }

    def _get_operation(self, m: re.Match, query: dict, body: dict) -> tuple[int, dict]:
        name = m["operation"]
        if name not in self.operations:
            return _error("NOT_FOUND", f"Operation {name} not found")
        return 200, self.operations[name]

    def _list_models(self, m: re.Match, query: dict, body: dict) -> tuple[int, dict]:
        text = query.get("filter", [""])[0]
        wanted = re.fullmatch(r'display_name="([^"]*)"', text)
        if text and not wanted:
            raise Invalid(f'the stand-in filters only on display_name="...", got {text!r}')
        parent = f"projects/{m['project']}/locations/{m['location']}/models/"
        found = [self.version(name) for name in self.models if name.startswith(parent)]
        return 200, {"models": [v for v in found if not wanted or v["displayName"] == wanted[1]]}

    def _get_model(self, m: re.Match, query: dict, body: dict) -> tuple[int, dict]:
        return 200, self._model(m)[1]

    def _merge_version_aliases(self, m: re.Match, query: dict, body: dict) -> tuple[int, dict]:
        from google.cloud import aiplatform_v1

        parse_message(aiplatform_v1.MergeVersionAliasesRequest, body, "merge_version_aliases_request")
        name, target = self._model(m)
        for alias in body.get("versionAliases", []):
            bare = alias.removeprefix("-")
            if not ALIAS.fullmatch(bare):
                raise Invalid(f"version_aliases: {alias!r} does not match [-]{ALIAS.pattern}")
            if alias.startswith("-"):
                if bare == "default":
                    return _error(
                        "FAILED_PRECONDITION", "the default alias cannot be removed; move it to another version instead"
                    )
                target["versionAliases"] = [a for a in target["versionAliases"] if a != bare]
                continue
            for other in self.models[name].values():  # an alias names one version at a time
                other["versionAliases"] = [a for a in other["versionAliases"] if a != bare]
            target["versionAliases"].append(bare)
        return 200, target

    def _import_evaluation(self, m: re.Match, query: dict, body: dict) -> tuple[int, dict]:
        from google.cloud import aiplatform_v1

        parse_message(aiplatform_v1.ImportModelEvaluationRequest, body, "import_model_evaluation_request")
        name, target = self._model(m)
        evaluation = dict(body.get("modelEvaluation", {}))
        check_evaluation(evaluation, "model_evaluation")
        key = f"{name}@{target['versionId']}"
        all_count = sum(len(v) for v in self.evaluations.values())
        stored = {**evaluation, "name": f"{name}/evaluations/{all_count + 1}", "createTime": NOW}
        self.evaluations.setdefault(key, []).append(stored)
        return 200, stored

    def _list_evaluations(self, m: re.Match, query: dict, body: dict) -> tuple[int, dict]:
        name, target = self._model(m)
        return 200, {"modelEvaluations": self.evaluations.get(f"{name}@{target['versionId']}", [])}

    def _import_slices(self, m: re.Match, query: dict, body: dict) -> tuple[int, dict]:
        from google.cloud import aiplatform_v1

        parse_message(
            aiplatform_v1.BatchImportModelEvaluationSlicesRequest, body, "batch_import_model_evaluation_slices_request"
        )
        evaluation_name = (
            f"projects/{m['project']}/locations/{m['location']}/models/{m['model']}/evaluations/{m['evaluation']}"
        )
        evaluation = next((e for es in self.evaluations.values() for e in es if e["name"] == evaluation_name), None)
        if evaluation is None:
            return _error("NOT_FOUND", f"ModelEvaluation {evaluation_name} not found")
        specs = evaluation["metrics"].get("confusionMatrix", {}).get("annotationSpecs", [])
        classes = [s["displayName"] for s in specs]
        names = []
        for i, one in enumerate(body.get("modelEvaluationSlices", [])):
            check_evaluation(one, f"model_evaluation_slices[{i}]")
            spec = one.get("slice", {})
            if spec.get("dimension") == "annotationSpec" and spec.get("value") not in classes:
                raise Invalid(
                    f"model_evaluation_slices[{i}].slice.value {spec.get('value')!r} is not an annotation "
                    f"spec of the evaluation ({classes})"
                )
            stored = {**one, "name": f"{evaluation_name}/slices/{len(self.slices.get(evaluation_name, [])) + 1}"}
            self.slices.setdefault(evaluation_name, []).append(stored)
            names.append(stored["name"])
        return 200, {"importedModelEvaluationSlices": names}

    # Batch prediction ------------------------------------------------------------------------------------------

    def _create_batch_prediction_job(self, m: re.Match, query: dict, body: dict) -> tuple[int, dict]:
        from google.cloud import aiplatform_v1

        parse_message(aiplatform_v1.BatchPredictionJob, body, "batch_prediction_job")
        if not body.get("displayName"):
            raise Invalid("batch_prediction_job.display_name is required")
        model_name, _, version = body.get("model", "").partition("@")
        model = self.version(model_name, version or None)
        source, out = body.get("inputConfig", {}), body.get("outputConfig", {})
        if source.get("instancesFormat") not in model["supportedInputStorageFormats"]:
            raise Invalid(
                f"input_config.instances_format {source.get('instancesFormat')!r} is not one of the model's "
                f"{model['supportedInputStorageFormats']}"
            )
        uris = source.get("gcsSource", {}).get("uris", [])
        if not uris or not all(u.startswith("gs://") for u in uris):
            raise Invalid(f"input_config.gcs_source.uris must be gs:// URIs, got {uris}")
        if out.get("predictionsFormat") not in model["supportedOutputStorageFormats"]:
            raise Invalid(
                f"output_config.predictions_format {out.get('predictionsFormat')!r} is not one of the "
                f"model's {model['supportedOutputStorageFormats']}"
            )
        prefix = out.get("gcsDestination", {}).get("outputUriPrefix", "")
        if not prefix.startswith("gs://"):
            raise Invalid(f"output_config.gcs_destination.output_uri_prefix must be gs://, got {prefix!r}")
        if "AUTOMATIC_RESOURCES" not in model["supportedDeploymentResourcesTypes"] and not body.get(
            "dedicatedResources", {}
        ).get("machineSpec", {}).get("machineType"):
            raise Invalid(
                "dedicated_resources.machine_spec.machine_type is required: the model does not support "
                "automatic resources"
            )
        job_id = str(len(self.batch_jobs) + 1)
        name = f"projects/{m['project']}/locations/{m['location']}/batchPredictionJobs/{job_id}"
        self.batch_jobs[job_id] = {**body, "name": name, "state": "JOB_STATE_PENDING", "createTime": NOW}
        return 200, self.batch_jobs[job_id]

    def _get_batch_prediction_job(self, m: re.Match, query: dict, body: dict) -> tuple[int, dict]:
        job = self.batch_jobs.get(m["job"])
        if job is None:
            return _error("NOT_FOUND", f"BatchPredictionJob {m['job']} not found")
        prefix = job["outputConfig"]["gcsDestination"]["outputUriPrefix"].rstrip("/")
        job["state"] = "JOB_STATE_SUCCEEDED"
        job["outputInfo"] = {"gcsOutputDirectory": f"{prefix}/prediction-{job['displayName']}-{NOW}"}
        return 200, job


def _error(status: str, message: str, code: int | None = None) -> tuple[int, dict]:
    code = code or HTTP_STATUS[status]
    return code, {"error": {"code": code, "message": message, "status": status}}


def serve(standin: VertexStandIn) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Serve `standin` on a free loopback port; its `url` is set to http://127.0.0.1:PORT."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            parsed = urlparse(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else {}
            except ValueError as err:
                code, payload = _error("INVALID_ARGUMENT", f"Invalid JSON payload received. {err}")
            else:
                code, payload = standin.handle(self.command, unquote(parsed.path), parse_qs(parsed.query), body)
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_DELETE = _answer

        def log_message(self, *args) -> None:  # keep test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    standin.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    return server, thread


@contextlib.contextmanager
def running() -> Iterator[VertexStandIn]:
    """A stand-in served on loopback for the duration of the block."""
    state = VertexStandIn()
    server, thread = serve(state)
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
