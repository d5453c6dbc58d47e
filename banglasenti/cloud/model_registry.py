"""Vertex AI Model Registry: each run's exported model becomes a new version of one registry model, with its test
evaluation imported beside it, and the default version only when it beats the current default (champion/challenger).

Calls, in order (ModelService, through its GAPIC client):
    ListModels (display name) or the configured parent -> GetModel (the default version) -> ListModelEvaluations
    (the champion's stored test macro-F1) -> UploadModel (new version, not default) -> ImportModelEvaluation +
    BatchImportModelEvaluationSlices (one slice per class) -> MergeVersionAliases(["default"]) if the challenger wins.
Making the new version default last means a default version always has its evaluation in the registry.

`pipelines/registry_upload.py` wires the steps into the vertex target; they run in the CPU image with the pipeline
job's service account. The served model is the export's `merged/` directory, run by the serving image
(containers/serve.Dockerfile), which follows Vertex AI's custom-container contract on the port and routes below.
"""

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

from banglasenti.storage.artifacts import InputError

SERVE_PORT = 8080


HEALTH_ROUTE = "/health"


PREDICT_ROUTE = "/predict"


DEFAULT_ALIAS = "default"


CLASSIFICATION_SCHEMA = "gs://google-cloud-aiplatform/schema/modelevaluation/classification_metrics_1.0.0.yaml"


EVALUATION_NAME = "test split"


class RegistryError(InputError):
    """The registry refused a call or is not in a state this step can add a version to (named in the message)."""


def model_client(location: str, api_endpoint: str | None = None):
    """A ModelServiceClient for `location` (or a loopback stand-in at `api_endpoint`: REST, no credentials)."""
    from google.cloud import aiplatform_v1

    if api_endpoint:
        from google.auth.credentials import AnonymousCredentials

        return aiplatform_v1.ModelServiceClient(
            client_options={"api_endpoint": api_endpoint}, transport="rest", credentials=AnonymousCredentials()
        )
    return aiplatform_v1.ModelServiceClient(client_options={"api_endpoint": f"{location}-aiplatform.googleapis.com"})


def find_parent_model(client, project: str, location: str, display_name: str) -> str | None:
    """The registry model named `display_name`, or None; RegistryError when several share the name."""
    parent = f"projects/{project}/locations/{location}"
    names = [m.name for m in client.list_models(request={"parent": parent, "filter": f'display_name="{display_name}"'})]
    if len(names) > 1:
        raise RegistryError(
            f"{len(names)} registry models are named {display_name!r} ({', '.join(names)}): set "
            "registry.parent_model to the one that gets the new versions"
        )
    return names[0] if names else None


def stored_macro_f1(evaluation) -> float | None:
    """The top-1 macro-F1 of a classification ModelEvaluation (as `evaluation_request` writes it), else None."""
    metrics = dict(evaluation.metrics or {})
    for entry in metrics.get("confidenceMetrics", []):
        if entry.get("maxPredictions") == 1 and "f1ScoreMacro" in entry:
            return float(entry["f1ScoreMacro"])
    return None


class Champion(NamedTuple):
    version: str  # the parent's default version, as models/ID@VERSION
    macro_f1: float | None  # its newest stored test macro-F1 (None: no evaluation)


def champion(client, parent: str) -> Champion:
    """The default version of `parent` and its newest stored test macro-F1."""
    default = client.get_model(name=parent)  # without @version: the default version
    version = f"{parent}@{default.version_id}"
    scored = [(e.create_time, stored_macro_f1(e)) for e in client.list_model_evaluations(parent=version)]
    scored = [s for s in scored if s[1] is not None]
    return Champion(version, max(scored, key=lambda s: s[0])[1] if scored else None)


def challenger_wins(macro_f1: float, current: Champion | None) -> bool:
    """The new version becomes default when there is no default yet, no stored score, or it scores strictly higher."""
    return current is None or current.macro_f1 is None or macro_f1 > current.macro_f1


def container_spec(serving_image: str) -> dict[str, Any]:
    """The serving container as the registry records it: Vertex AI passes the routes and port as AIP_* variables."""
    return {
        "image_uri": serving_image,
        "predict_route": PREDICT_ROUTE,
        "health_route": HEALTH_ROUTE,
        "ports": [{"container_port": SERVE_PORT}],
    }


def upload_version(
    client,
    project: str,
    location: str,
    parent: str | None,
    display_name: str,
    artifact_uri: str,
    serving_image: str,
    description: str,
    labels: dict[str, str],
) -> str:
    """Upload `artifact_uri` as a new version of `parent` (not made default) or as a new model; returns
    models/ID@VERSION."""
    from google.cloud import aiplatform_v1

    model = aiplatform_v1.Model(
        display_name=display_name,
        description=description,
        artifact_uri=artifact_uri,
        container_spec=container_spec(serving_image),
        labels=labels,
        version_description=description,
    )
    request = aiplatform_v1.UploadModelRequest(
        parent=f"projects/{project}/locations/{location}", model=model, parent_model=parent or ""
    )
    response = client.upload_model(request=request).result()
    return f"{response.model}@{response.model_version_id}"


def per_class(confusion: list[list[int]]) -> list[dict[str, float]]:
    """Precision, recall and F1 of each class from a confusion matrix (rows: true, columns: predicted)."""
    rows = []
    for i, row in enumerate(confusion):
        predicted = sum(r[i] for r in confusion)
        precision = row[i] / predicted if predicted else 0.0
        recall = row[i] / sum(row) if sum(row) else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append({"precision": precision, "recall": recall, "f1Score": f1})
    return rows


def evaluation_request(
    classes: list[str], confusion: list[list[int]], macro_f1: float, accuracy: float, metadata: dict[str, Any]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A ModelEvaluation (classification metrics schema: top-1 scores and the confusion matrix) and one slice per
    class with its precision, recall and F1, as the REST API takes them."""
    top1 = {
        "confidenceThreshold": 0.0,
        "maxPredictions": 1,
        "f1ScoreMacro": macro_f1,
        "f1ScoreMicro": accuracy,
        "precision": accuracy,
        "recall": accuracy,
        "f1Score": accuracy,
    }
    specs = [{"id": str(i), "displayName": c} for i, c in enumerate(classes)]
    evaluation = {
        "displayName": EVALUATION_NAME,
        "metricsSchemaUri": CLASSIFICATION_SCHEMA,
        "metrics": {"confidenceMetrics": [top1], "confusionMatrix": {"annotationSpecs": specs, "rows": confusion}},
        "metadata": metadata,
    }
    slices = [
        {
            "slice": {"dimension": "annotationSpec", "value": c},
            "metricsSchemaUri": CLASSIFICATION_SCHEMA,
            "metrics": {"confidenceMetrics": [{"confidenceThreshold": 0.0, "maxPredictions": 1, **scores}]},
        }
        for c, scores in zip(classes, per_class(confusion))
    ]
    return evaluation, slices


def import_evaluation(client, version: str, evaluation: dict[str, Any], slices: list[dict[str, Any]]) -> str:
    """Import the evaluation of `version` (models/ID@VERSION) and its slices; returns the evaluation's name."""
    from google.cloud import aiplatform_v1
    from google.protobuf import json_format

    message = aiplatform_v1.ModelEvaluation()
    json_format.ParseDict(evaluation, aiplatform_v1.ModelEvaluation.pb(message))
    imported = client.import_model_evaluation(parent=version, model_evaluation=message)
    batch = []
    for s in slices:
        one = aiplatform_v1.ModelEvaluationSlice()
        json_format.ParseDict(s, aiplatform_v1.ModelEvaluationSlice.pb(one))
        batch.append(one)
    client.batch_import_model_evaluation_slices(parent=imported.name, model_evaluation_slices=batch)
    return imported.name


@contextmanager
def registry_errors(location: str) -> Iterator[None]:
    """A refused Model Registry call as a one-line RegistryError."""
    from google.api_core.exceptions import GoogleAPICallError

    try:
        yield
    except GoogleAPICallError as err:
        message = re.sub(r"^(GET|POST|PATCH|PUT|DELETE) \S+: ", "", err.message or "")  # the REST transport's prefix
        raise RegistryError(f"Model Registry ({location}): {err.code} {message}") from err


def register(
    client,
    *,
    project: str,
    location: str,
    parent_model: str,
    display_name: str,
    artifact_uri: str,
    serving_image: str,
    selected: str,
    classes: list[str],
    confusion: list[list[int]],
    macro_f1: float,
    accuracy: float,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Add the exported model as a version of the registry model, import its evaluation, and make it the default
    version when it beats the current one. Returns what was done (the step's VertexModel metadata); a refused call
    is a one-line RegistryError."""
    with registry_errors(location):
        parent = parent_model or find_parent_model(client, project, location, display_name)
        current = champion(client, parent) if parent else None
        wins = challenger_wins(macro_f1, current)
        description = f"{selected} model; test macro-F1 {macro_f1:.4f}"
        version = upload_version(
            client, project, location, parent, display_name, artifact_uri, serving_image, description, labels or {}
        )
        evaluation, slices = evaluation_request(
            classes, confusion, macro_f1, accuracy, {"selected": selected, "test_macro_f1": macro_f1}
        )
        evaluation_name = import_evaluation(client, version, evaluation, slices)
        if wins and current is not None:  # a new model's first version is its default already
            client.merge_version_aliases(name=version, version_aliases=[DEFAULT_ALIAS])
        model_name, version_id = version.split("@")
        result = {
            "resourceName": version,
            "model": model_name,
            "version_id": version_id,
            "artifact_uri": artifact_uri,
            "selected": selected,
            "test_macro_f1": macro_f1,
            "is_default_version": wins,
            "champion_version": current.version if current else "",
            "evaluation": evaluation_name,
        }
        if current is not None and current.macro_f1 is not None:
            result["champion_test_macro_f1"] = current.macro_f1
        return result


def confusion_rows(metadata: dict[str, Any]) -> tuple[list[str], list[list[int]]]:
    """Classes and rows of a KFP ClassificationMetrics confusion matrix (`log_confusion_matrix`'s layout)."""
    matrix = metadata.get("confusionMatrix")
    if not matrix:
        raise InputError(f"no confusionMatrix in the evaluate step's confusion artifact; have {sorted(metadata)}")
    classes = [spec["displayName"] for spec in matrix["annotationSpecs"]]
    return classes, [[int(v) for v in r["row"]] for r in matrix["rows"]]


def selected_key(model_metadata: dict[str, Any], metric: str = "test_macro_f1") -> tuple[str, str]:
    """Which model the export chose (its `selected` metadata, "lora" when absent) and that model's metric key."""
    selected = str(model_metadata.get("selected") or "lora")
    if selected not in ("lora", "baseline"):
        raise InputError(f"export metadata selected={selected!r}: expected lora or baseline")
    return selected, f"{selected}_{metric}"
