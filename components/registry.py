"""Vertex AI Model Registry upload of the merged LoRA model, and the metric read that gates it.

`pipelines/registry.py` wires these into the vertex target under `dsl.If` on the LoRA test macro-F1.
The step image needs google-cloud-aiplatform; the upload runs with the pipeline job's service account.
"""

from typing import Any

from kfp.dsl import Artifact, Input, Metrics, Model, Output

from components.kfp_support import lightweight_component

MERGED_DIR = "merged"  # components.export.MERGED, repeated so this module imports nothing heavy


def upload_to_registry(artifact_uri: str, display_name: str, project: str, location: str, serving_image: str,
                       description: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """Upload a saved model directory (gs://) to the Model Registry; return its resource name and version."""
    from google.cloud import aiplatform

    aiplatform.init(project=project or None, location=location)
    model = aiplatform.Model.upload(display_name=display_name, artifact_uri=artifact_uri,
                                    serving_container_image_uri=serving_image, description=description,
                                    labels=labels or {})
    return {"resourceName": model.resource_name, "version_id": str(getattr(model, "version_id", ""))}


@lightweight_component
def read_metric(metrics: Input[Metrics], key: str) -> float:
    """One scalar of a Metrics artifact, as a parameter that dsl.If can test."""
    if key not in metrics.metadata:
        raise KeyError(f"metric {key!r} not found; have {sorted(metrics.metadata)}")
    return float(metrics.metadata[key])


@lightweight_component
def upload_model(
    model: Input[Model],
    display_name: str,
    project: str,
    location: str,
    serving_image: str,
    macro_f1: float,
    vertex_model: Output[Artifact],
):
    """Upload the export step's merged model to the Vertex AI Model Registry."""
    from components.registry import MERGED_DIR, upload_to_registry
    from components.storage import require_committed

    require_committed(model.path)  # the export step's directory artifact, read through the /gcs/ mount
    uri = f"{model.uri.rstrip('/')}/{MERGED_DIR}"
    result = upload_to_registry(uri, display_name, project, location, serving_image,
                                f"LoRA-merged XLM-R Bengali sentiment classifier; test macro-F1 {macro_f1:.4f}",
                                {"source": "banglasenti-pipeline"})
    vertex_model.uri = f"https://{location}-aiplatform.googleapis.com/v1/{result['resourceName']}"
    vertex_model.metadata.update({**result, "artifact_uri": uri, "test_macro_f1": macro_f1})
