"""What the vertex target adds to the DAG: custom training jobs, machine settings, retries, caching, raw-data import.

train-lora and train-baseline become Vertex AI custom jobs through google-cloud-pipeline-components'
`create_custom_training_job_from_component` (machine profile `vertex.train.machine`, TPU v3-8 by default).
A profile with a TPU topology (v5e) gets its worker pool specs passed to the job, since the wrapper has no
topology argument. The other steps run in the CPU image with `vertex.cpu_steps` limits.
"""

from __future__ import annotations

from typing import Any

from kfp import dsl

from components.config import Config
from components.lineage import step_environment

# gcpc resolves these at run time to the PipelineJob's service account and network.
PIPELINE_SERVICE_ACCOUNT = "{{$.pipeline_service_account}}"
PIPELINE_NETWORK = "{{$.pipeline_network}}"
TRAIN_BACKOFF = {"backoff_duration": "300s", "backoff_factor": 2.0, "backoff_max_duration": "3600s"}
CPU_BACKOFF = {"backoff_duration": "60s", "backoff_factor": 2.0, "backoff_max_duration": "1800s"}


def custom_job_component(component, cfg: Config, env: dict[str, str]):
    """`component` as a Vertex AI custom training job with the configured machine profile and job settings."""
    try:
        from google_cloud_pipeline_components.v1.custom_job import create_custom_training_job_from_component
    except ImportError as err:
        raise ImportError(f"the vertex target needs google-cloud-pipeline-components ({err}): "
                          "pip install -e '.[vertex]'") from None

    job, profile = cfg.vertex.train, cfg.vertex.train.profile
    name = component.component_spec.name
    accelerator = {"accelerator_type": profile.accelerator_type, "accelerator_count": profile.accelerator_count} \
        if profile.accelerator_type else {}
    return create_custom_training_job_from_component(
        component,
        display_name=f"{cfg.pipeline.name}-{name}",
        machine_type=profile.machine_type,
        **accelerator,
        boot_disk_type=job.boot_disk_type,
        boot_disk_size_gb=job.boot_disk_size_gb,
        timeout=job.timeout,
        restart_job_on_worker_restart=job.restart_job_on_worker_restart,
        service_account=cfg.vertex.service_account or PIPELINE_SERVICE_ACCOUNT,
        network=cfg.vertex.network or PIPELINE_NETWORK,
        reserved_ip_ranges=list(cfg.vertex.reserved_ip_ranges),
        tensorboard=job.tensorboard,
        enable_web_access=job.enable_web_access,
        labels={**cfg.vertex.labels, "step": name},
        env=[{"name": key, "value": value} for key, value in {**profile.env, **env}.items()],
        strategy=job.strategy,
        max_wait_duration=job.max_wait_duration,
    )


def default_worker_pool_specs(job_component) -> list[dict[str, Any]]:
    """The worker pool specs the wrapper compiled into a custom job component."""
    return job_component.component_spec.inputs["worker_pool_specs"].default


def job_arguments(job_component, cfg: Config, task_name: str) -> dict[str, Any]:
    """Per-task custom job inputs: the job's output (and checkpoint) directory, and a TPU topology if any.

    Vertex AI sets AIP_MODEL_DIR and AIP_CHECKPOINT_DIR under the base output directory. It is scoped by the
    pipeline job, so a retried task resumes from its own checkpoints and never from another run's.
    """
    root = cfg.vertex.train.base_output_directory.rstrip("/") or dsl.PIPELINE_ROOT_PLACEHOLDER
    args: dict[str, Any] = {"base_output_directory": f"{root}/{dsl.PIPELINE_JOB_ID_PLACEHOLDER}/{task_name}"}
    topology = cfg.vertex.train.profile.tpu_topology
    if topology:
        specs = [dict(spec) for spec in default_worker_pool_specs(job_component)]
        for spec in specs:
            spec["machine_spec"] = {**spec["machine_spec"], "tpu_topology": topology}
        args["worker_pool_specs"] = specs
    return args


def configure_tasks(cfg: Config, commit: str, cpu_tasks, train_tasks) -> None:
    """Machine size, lineage environment, retries and caching of the steps in the CPU image; retries and
    caching of the custom job tasks (their machine and environment are in the jobs themselves)."""
    steps, train = cfg.vertex.cpu_steps, cfg.vertex.train
    for task in cpu_tasks:
        task.set_cpu_limit(steps.cpu_limit).set_memory_limit(steps.memory_limit)
        for key, value in step_environment(cfg.pipeline.cpu_image, commit).items():
            task.set_env_variable(key, value)
        if steps.retries:
            task.set_retry(steps.retries, **CPU_BACKOFF)
    for task in train_tasks:
        if train.retries:
            task.set_retry(train.retries, **TRAIN_BACKOFF)
    for task in (*cpu_tasks, *train_tasks):
        task.set_caching_options(cfg.vertex.enable_caching)


def import_raw_data(cfg: Config, data_uri):
    """The raw data already on GCS as a Dataset node of the lineage graph (the same URI is imported once)."""
    task = dsl.importer(artifact_uri=data_uri, artifact_class=dsl.Dataset, reimport=False,
                        metadata={"role": "raw data", "format": cfg.data.format,
                                  "text_column": cfg.data.text_column, "label_column": cfg.data.label_column})
    task.set_caching_options(cfg.vertex.enable_caching)
    return task
