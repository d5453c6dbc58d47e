"""upload-model: the export step's model as a new Model Registry version with its test evaluation, the default version
only when it beats the current default (banglasenti/cloud/model_registry.py; wired in by
pipelines/registry_upload.py).
"""

from google_cloud_pipeline_components.types.artifact_types import VertexModel
from kfp.dsl import ClassificationMetrics, Input, Metrics, Model, Output

from banglasenti.runtime.kfp_support import lightweight_component


@lightweight_component
def upload_model(
    model: Input[Model],
    metrics: Input[Metrics],
    lora_confusion: Input[ClassificationMetrics],
    baseline_confusion: Input[ClassificationMetrics],
    display_name: str,
    parent_model: str,
    project: str,
    location: str,
    serving_image: str,
    vertex_model: Output[VertexModel],
):
    """Upload the export step's model as a new registry version with its test evaluation; default only if it wins."""
    from banglasenti.cloud.model_registry import confusion_rows, model_client, register, selected_key
    from banglasenti.models.modeling import MERGED
    from banglasenti.storage.artifacts import require_committed

    require_committed(model.path)  # the export step's directory artifact, read through the /gcs/ mount
    selected, key = selected_key(dict(model.metadata))
    classes, confusion = confusion_rows(dict((lora_confusion if selected == "lora" else baseline_confusion).metadata))
    result = register(
        model_client(location),
        project=project,
        location=location,
        parent_model=parent_model,
        display_name=display_name,
        artifact_uri=f"{model.uri.rstrip('/')}/{MERGED}",
        serving_image=serving_image,
        selected=selected,
        classes=classes,
        confusion=confusion,
        macro_f1=float(metrics.metadata[key]),
        accuracy=float(metrics.metadata[f"{selected}_test_accuracy"]),
        labels={"source": "banglasenti-pipeline", "selected": selected},
    )
    vertex_model.uri = f"https://{location}-aiplatform.googleapis.com/v1/{result['resourceName']}"
    vertex_model.metadata.update(result)
    print(
        f"registered {result['resourceName']} ({selected}, test macro-F1 {result['test_macro_f1']:.4f}); default "
        f"version: {'this one' if result['is_default_version'] else result['champion_version']}",
        flush=True,
    )
