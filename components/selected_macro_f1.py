"""selected-macro-f1: the test macro-F1 of the model the export step chose, the parameter that gates the Model Registry
upload (pipelines/registry_upload.py).
"""

from kfp.dsl import Input, Metrics, Model

from banglasenti.runtime.kfp_support import lightweight_component


@lightweight_component
def selected_macro_f1(metrics: Input[Metrics], model: Input[Model]) -> float:
    """Test macro-F1 of the model the export step chose, as a parameter that dsl.If can test."""
    from banglasenti.cloud.model_registry import selected_key
    from banglasenti.storage.artifacts import InputError

    _, key = selected_key(dict(model.metadata))
    if key not in metrics.metadata:
        raise InputError(f"metric {key!r} not found in the evaluate step's metrics; have {sorted(metrics.metadata)}")
    return float(metrics.metadata[key])
