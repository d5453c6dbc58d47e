"""What the vertex target adds to the DAG: custom training jobs, machine settings, retries, caching, raw-data import.

train-lora and train-baseline become Vertex AI custom jobs through google-cloud-pipeline-components'
`create_custom_training_job_from_component` (machine profile `vertex.train.machine`, TPU v3-8 by default).
A profile with a TPU topology (v5e) gets its worker pool specs passed to the job, since the wrapper has no
topology argument. The other steps run in the CPU image with `vertex.cpu_steps` limits.

A job's output and checkpoint directory holds no per-run value (the step cache keys on resolved inputs): it is
named by a hash of the compiled config values that decide the training result (`training_key`), and the job
keeps its checkpoints in a sub-location keyed by its run-time identity (banglasenti/training/checkpoints.py), so an
identical resubmission hits the cache and a resubmission after a failure resumes.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from kfp import dsl

from banglasenti.config.schema import Config
from banglasenti.storage.lineage import step_environment
from banglasenti.training.checkpoints import SHARED_CHECKPOINT_ENV

# gcpc resolves these at run time to the PipelineJob's service account and network.
PIPELINE_SERVICE_ACCOUNT = "{{$.pipeline_service_account}}"
PIPELINE_NETWORK = "{{$.pipeline_network}}"
TRAIN_BACKOFF = {"backoff_duration": "300s", "backoff_factor": 2.0, "backoff_max_duration": "3600s"}
CPU_BACKOFF = {"backoff_duration": "60s", "backoff_factor": 2.0, "backoff_max_duration": "1800s"}


def custom_job_component(component, cfg: Config, env: dict[str, str], timeout: str | None = None):
    """`component` as a Vertex AI custom training job with the configured machine profile and job settings."""
    try:
        from google_cloud_pipeline_components.v1.custom_job import create_custom_training_job_from_component
    except ImportError as err:
        raise ImportError(
            f"the vertex target needs google-cloud-pipeline-components ({err}): "
            "`make setup`, or pip install -e '.[vertex]'"
        ) from None

    job, profile = cfg.vertex.train, cfg.vertex.train.profile
    name = component.component_spec.name
    accelerator = (
        {"accelerator_type": profile.accelerator_type, "accelerator_count": profile.accelerator_count}
        if profile.accelerator_type
        else {}
    )
    return create_custom_training_job_from_component(
        component,
        display_name=f"{cfg.pipeline.name}-{name}",
        machine_type=profile.machine_type,
        **accelerator,
        boot_disk_type=job.boot_disk_type,
        boot_disk_size_gb=job.boot_disk_size_gb,
        timeout=timeout or job.timeout,
        restart_job_on_worker_restart=job.restart_job_on_worker_restart,
        service_account=cfg.vertex.service_account or PIPELINE_SERVICE_ACCOUNT,
        network=cfg.vertex.network or PIPELINE_NETWORK,
        reserved_ip_ranges=list(cfg.vertex.reserved_ip_ranges),
        tensorboard=job.tensorboard,
        enable_web_access=job.enable_web_access,
        labels={**cfg.vertex.labels, "step": name},
        env=[
            {"name": key, "value": value} for key, value in {**profile.env, **env, SHARED_CHECKPOINT_ENV: "1"}.items()
        ],
        strategy=job.strategy,
        max_wait_duration=job.max_wait_duration,
    )


def default_worker_pool_specs(job_component) -> list[dict[str, Any]]:
    """The worker pool specs the wrapper compiled into a custom job component."""
    return job_component.component_spec.inputs["worker_pool_specs"].default


def training_key(cfg: Config) -> str:
    """Hash of the compiled values that decide a training result: data, model, tokenization, LoRA and training
    settings, the training image and machine. Run parameters and input content are checked at run time."""
    decisive = {
        **cfg.model_dump(mode="json", include={"data", "model", "tokenize", "lora", "train"}),
        "train_image": cfg.pipeline.train_image,
        "machine": cfg.vertex.train.profile.model_dump(mode="json"),
    }
    return hashlib.sha256(json.dumps(decisive, sort_keys=True).encode()).hexdigest()[:16]


def output_directory(cfg: Config, job_name: str) -> str:
    """The custom job's base output directory: the same for every run of the same compiled config.

    Vertex AI sets AIP_MODEL_DIR, AIP_CHECKPOINT_DIR and AIP_TENSORBOARD_LOG_DIR beneath it.
    """
    root = cfg.vertex.train.base_output_directory.rstrip("/") or dsl.PIPELINE_ROOT_PLACEHOLDER
    return f"{root}/training/{job_name}/{training_key(cfg)}"


def job_arguments(job_component, cfg: Config, job_name: str) -> dict[str, Any]:
    """Per-task custom job inputs: the job's output (and checkpoint) directory, and a TPU topology if any."""
    args: dict[str, Any] = {"base_output_directory": output_directory(cfg, job_name)}
    topology = cfg.vertex.train.profile.tpu_topology
    if topology:
        specs = [dict(spec) for spec in default_worker_pool_specs(job_component)]
        for spec in specs:
            spec["machine_spec"] = {**spec["machine_spec"], "tpu_topology": topology}
        args["worker_pool_specs"] = specs
    return args


def configure_task(cfg: Config, commit: str, task, kind: str) -> None:
    """Settings of one task by kind: `cpu` (a step in the CPU image: machine size, lineage environment,
    retries), `train` (a custom job: retries; its machine and environment are in the job), `smoke` (a custom job,
    never retried) or `importer`; caching for all."""
    if kind == "cpu":
        steps = cfg.vertex.cpu_steps
        task.set_cpu_limit(steps.cpu_limit).set_memory_limit(steps.memory_limit)
        for key, value in step_environment(cfg.pipeline.cpu_image, commit).items():
            task.set_env_variable(key, value)
        if steps.retries:
            task.set_retry(steps.retries, **CPU_BACKOFF)
    elif kind == "train":
        if cfg.vertex.train.retries:
            task.set_retry(cfg.vertex.train.retries, **TRAIN_BACKOFF)
    elif kind not in ("smoke", "importer"):  # the smoke job is never retried: a failure is its finding
        raise ValueError(f"task kind must be cpu, train, smoke or importer, got {kind!r}")
    task.set_caching_options(cfg.vertex.enable_caching)


def import_raw_data(cfg: Config, data_uri):
    """The run's raw data (whatever its URI) as a Dataset node of the lineage graph (a URI is imported once)."""
    return dsl.importer(
        artifact_uri=data_uri,
        artifact_class=dsl.Dataset,
        reimport=False,
        metadata={
            "role": "raw data",
            "format": cfg.data.format,
            "text_column": cfg.data.text_column,
            "label_column": cfg.data.label_column,
        },
    )
