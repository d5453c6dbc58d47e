"""Typed experiment configuration: one strict schema, one YAML file per experiment.

Unknown keys and bad values are rejected with the dotted key named, before any work starts.
`--set key=value` overrides use the same dotted keys (`train.epochs=3`, `lora.r=8`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from banglasenti.config.image_refs import check_image_ref

CLASS_NAMES: tuple[str, ...] = ("negative", "positive", "neutral")
NUM_CLASSES = len(CLASS_NAMES)
SPLITS: tuple[str, ...] = ("train", "val", "test")
CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"

PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, lt=1)]
Image = Annotated[str, AfterValidator(check_image_ref)]  # an image reference: host/path:tag or ...@sha256:<64 hex>


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TinyModelConfig(_Strict):
    """model.tiny: the small XLM-R built offline (tokenizer and masked-LM pre-training on the train split)."""

    vocab_size: PositiveInt = Field(
        default=4000, description="Target size of the Unigram vocabulary trained on train texts."
    )
    hidden_size: PositiveInt = Field(default=128, description="Hidden size (xlm-roberta-base: 768).")
    num_hidden_layers: PositiveInt = Field(default=2, description="Encoder layers (xlm-roberta-base: 12).")
    num_attention_heads: PositiveInt = Field(default=4, description="Attention heads; must divide hidden_size.")
    intermediate_size: PositiveInt = Field(default=512, description="Feed-forward size (xlm-roberta-base: 3072).")
    pretrain_steps: int = Field(default=400, ge=0, description="Masked-LM pre-training steps on the train texts.")
    pretrain_max_seconds: PositiveFloat = Field(
        default=600.0,
        description="Wall-time cap on masked-LM pre-training (a safety net; steps decide when it is not hit).",
    )
    pretrain_batch_size: PositiveInt = Field(default=32, description="Masked-LM batch size.")
    pretrain_learning_rate: PositiveFloat = Field(default=1e-3, description="Masked-LM peak learning rate.")
    seed: int = Field(default=42, description="Seed of the tiny model's initialisation and masking.")

    @model_validator(mode="after")
    def _check(self) -> TinyModelConfig:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError("num_attention_heads must divide hidden_size")
        return self


class DataConfig(_Strict):
    """data: where the labelled table is, how to read, clean, de-duplicate and split it."""

    uri: str = Field(
        default="sample", description="Raw data: 'sample' (embedded), a local path, https:// URL or gs:// URI."
    )
    format: Literal["auto", "csv", "tsv", "jsonl", "parquet"] = Field(
        default="auto", description="File format; 'auto' reads it from the extension."
    )
    text_column: str = Field(default="text", description="Column holding the text.")
    label_column: str = Field(default="label", description="Column holding the label.")
    label_map: dict[str, int] = Field(
        default_factory=dict,
        description="Raw label -> class id (0 negative, 1 positive, 2 neutral); empty means labels are 0/1/2.",
    )
    train_fraction: PositiveFloat = Field(default=0.8, description="Share of rows in the train split.")
    val_fraction: PositiveFloat = Field(default=0.1, description="Share of rows in the validation split.")
    test_fraction: PositiveFloat = Field(default=0.1, description="Share of rows in the test split.")
    split_method: Literal["stratified", "original"] = Field(
        default="stratified",
        description="'stratified': one seeded stratified 3-way split; 'original': the original project's two "
        "train_test_split calls (test_size 0.2, then 0.5), which ignores the fractions.",
    )
    deduplicate: bool = Field(
        default=True, description="Merge rows with the same cleaned text before splitting (no text in two splits)."
    )
    conflict_rule: Literal["majority", "drop"] = Field(
        default="majority",
        description="For a text seen with different labels: keep the most frequent label (ties dropped), or drop it.",
    )
    drop_non_bengali: bool = Field(
        default=False, description="Drop rows without a single Bengali letter (always reported)."
    )
    seed: int = Field(default=42, description="Seed of the split.")

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        total = self.train_fraction + self.val_fraction + self.test_fraction
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train_fraction + val_fraction + test_fraction must be 1, got {total:g}")
        bad = {k: v for k, v in self.label_map.items() if not 0 <= v < NUM_CLASSES}
        if bad:
            raise ValueError(f"label_map values must be class ids 0..{NUM_CLASSES - 1}, got {bad}")
        return self


class ModelConfig(_Strict):
    """model: the base encoder (a Hub id, a local or gs:// directory, or tiny)."""

    name: str = Field(
        default="tiny",
        description="Base model: a Hugging Face Hub id, a local or gs:// directory, or 'tiny' (built offline).",
    )
    revision: str | None = Field(default=None, description="Hub revision (branch, tag or commit) to pin; None = main.")
    tiny: TinyModelConfig = Field(default_factory=TinyModelConfig, description="Settings of the 'tiny' base.")


class TokenizeConfig(_Strict):
    """tokenize: truncation length, bucket lengths, and packing of short texts into rows."""

    max_length: PositiveInt = Field(default=128, description="Longer texts are truncated to this many tokens.")
    buckets: list[PositiveInt] = Field(
        default_factory=lambda: [32, 64, 128],
        description="Static padded lengths without packing; each text is padded to the smallest bucket that holds it.",
    )
    packing: bool = Field(
        default=True,
        description="Pack several texts into rows of max_length tokens (block-diagonal attention) in training, "
        "evaluation and prediction; false: pad each text to its bucket (docs/performance.md compares them).",
    )
    pack_slots: PositiveInt = Field(
        default=16,
        description="Most texts per packed row. A training batch holds train.batch_size texts in a fixed number "
        "of rows, the fewest that hold every batch of the run (banglasenti/data/packing.py).",
    )

    @model_validator(mode="after")
    def _check(self) -> TokenizeConfig:
        if not self.buckets or sorted(set(self.buckets)) != self.buckets:
            raise ValueError(f"buckets must be strictly increasing, got {self.buckets}")
        if self.buckets[-1] != self.max_length:
            raise ValueError(f"the largest bucket must equal max_length ({self.max_length}), got {self.buckets}")
        return self


class LoraConfig(_Strict):
    """lora: the adapters (rank, scaling, dropout, target modules)."""

    r: PositiveInt = Field(default=16, description="LoRA rank.")
    alpha: PositiveInt = Field(default=32, description="LoRA scaling numerator (scale = alpha / r).")
    dropout: Fraction = Field(default=0.1, description="Dropout on the LoRA input.")
    target_modules: list[str] = Field(
        default_factory=lambda: [
            "query",
            "key",
            "value",
            "attention.output.dense",
            "intermediate.dense",
            "output.dense",
        ],
        min_length=1,
        description="Module name suffixes that get adapters (attention and feed-forward linears), or ['all-linear'].",
    )


class TrainConfig(_Strict):
    """train: optimisation, evaluation, early stopping and checkpoints of both training steps."""

    epochs: PositiveInt = Field(default=10, description="Maximum training epochs.")
    batch_size: PositiveInt = Field(default=32, description="Training batch size per device.")
    eval_batch_size: PositiveInt = Field(default=64, description="Evaluation batch size per device.")
    lora_learning_rate: PositiveFloat = Field(default=3e-4, description="Peak learning rate of LoRA training.")
    baseline_learning_rate: PositiveFloat = Field(default=2e-5, description="Peak learning rate of full fine-tuning.")
    warmup_ratio: Fraction = Field(default=0.06, description="Share of steps with linear warmup.")
    weight_decay: float = Field(default=0.01, ge=0, description="AdamW weight decay.")
    max_grad_norm: PositiveFloat = Field(default=1.0, description="Gradient-norm clipping.")
    early_stopping_patience: int = Field(
        default=3, ge=0, description="Epochs without val macro-F1 gain before stopping; 0 = off."
    )
    seed: int = Field(default=42, description="Seed of initialisation, dropout and shuffling.")
    precision: Literal["auto", "bf16", "fp32"] = Field(
        default="auto",
        description="Training precision; auto = bf16 on TPU (XLA) and bf16-capable GPUs, fp32 on the CPU.",
    )
    checkpoint_steps: int = Field(
        default=100, ge=0, description="Also checkpoint every this many optimizer steps (0: only at epoch ends)."
    )
    checkpoint_dir: str | None = Field(
        default=None,
        description="Checkpoint directory (a gs:// URI is used through the /gcs/ mount); None: $AIP_CHECKPOINT_DIR "
        "on Vertex AI, else beside the output. A rerun resumes from the last intact checkpoint there.",
    )
    max_steps: int = Field(default=0, ge=0, description="Stop after this many optimizer steps (0: run the epochs).")
    compile_cache_dir: str = Field(
        default="auto",
        description="Persistent XLA compilation cache (a gs:// URI is used through the /gcs/ mount); auto: "
        "<pipeline root>/xla-compile-cache on Vertex AI, xla-compile-cache beside the output elsewhere; '': off.",
    )
    tensorboard_dir: str = Field(
        default="", description="Also write TensorBoard curves here (local or gs://), besides $AIP_TENSORBOARD_LOG_DIR."
    )


class PipelineConfig(_Strict):
    """pipeline: names, images and artifact roots of the compiled pipeline."""

    name: str = Field(default="banglasenti-lora-vs-full", description="Pipeline name.")
    local_root: str = Field(default="runs", description="Where the local runner writes artifacts.")
    cpu_image: Image = Field(
        default="python:3.11-slim",
        description="Image of prepare, base-model, tokenize and evaluate on the vertex target.",
    )
    train_image: Image = Field(
        default="python:3.11-slim", description="Image of the two training steps on the vertex target."
    )
    serve_image: Image = Field(
        default="python:3.11-slim",
        description="Serving image of the exported model (containers/serve.Dockerfile): the "
        "registry records it with each uploaded version; batch prediction runs it.",
    )


GCS_URI = r"^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/.*)?$"
DURATION = r"^\d+(\.\d{1,9})?s$"
LABEL = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")


def _gcs_uri_or_empty(value: str) -> str:
    if value and not re.match(GCS_URI, value):
        raise ValueError(f"{value!r} is not a gs://BUCKET/PATH URI")
    return value


OptionalGcsUri = Annotated[str, AfterValidator(_gcs_uri_or_empty)]


class MachineProfile(_Strict):
    """A training machine: accelerator, cores and what the runtime needs to use them."""

    machine_type: str = Field(default=..., min_length=1, description="Compute Engine machine type of the training job.")
    accelerator_type: str = Field(
        default="", description="Vertex AI accelerator type (TPU_V3, NVIDIA_TESLA_A100, ...); empty: none."
    )
    accelerator_count: int = Field(default=0, ge=0, description="Accelerators (TPU cores or chips, GPUs) per machine.")
    tpu_topology: str = Field(
        default="", pattern=r"^(\d+x\d+(x\d+)?)?$", description="TPU slice topology, e.g. 2x2 (v5e)."
    )
    env: dict[str, str] = Field(default_factory=dict, description="Environment variables of the training container.")

    @model_validator(mode="after")
    def _check(self) -> MachineProfile:
        if bool(self.accelerator_type) != bool(self.accelerator_count):
            raise ValueError("accelerator_type and accelerator_count must be set together")
        if self.tpu_topology and self.accelerator_type and not self.accelerator_type.startswith("TPU"):
            raise ValueError(f"tpu_topology is for TPU machines, not {self.accelerator_type}")
        return self


MACHINE_PROFILES: dict[str, dict[str, Any]] = {
    "tpu-v3-8": {
        "machine_type": "cloud-tpu",
        "accelerator_type": "TPU_V3",
        "accelerator_count": 8,
        "env": {"PJRT_DEVICE": "TPU"},
    },
    # TPU v5e: the machine type brings its chips; Vertex AI wants the slice topology instead of an accelerator.
    # v5e-8 has the 8 devices of a v3-8, so the same per-device batch gives the same global batch; v5e-4 halves it.
    "tpu-v5e-8": {"machine_type": "ct5lp-hightpu-8t", "tpu_topology": "2x4", "env": {"PJRT_DEVICE": "TPU"}},
    "tpu-v5e-4": {"machine_type": "ct5lp-hightpu-4t", "tpu_topology": "2x2", "env": {"PJRT_DEVICE": "TPU"}},
    "gpu-a100": {"machine_type": "a2-highgpu-1g", "accelerator_type": "NVIDIA_TESLA_A100", "accelerator_count": 1},
    "cpu": {"machine_type": "n1-standard-16"},
}


class TrainJobConfig(_Strict):
    """vertex.train: the custom job that runs a training step."""

    machine: str = Field(
        default="tpu-v3-8", description="Machine profile of train-lora and train-baseline: a key of profiles."
    )
    profiles: dict[str, MachineProfile] = Field(
        default_factory=lambda: json.loads(json.dumps(MACHINE_PROFILES)),
        validate_default=True,
        description="Named machine profiles: TPU v3-8, TPU v5e-8 (2x4) and v5e-4 (2x2), one A100 GPU, CPU only.",
    )
    boot_disk_type: Literal["pd-ssd", "pd-standard"] = Field(default="pd-ssd", description="Boot disk type.")
    boot_disk_size_gb: int = Field(default=100, ge=100, le=65536, description="Boot disk size in GB.")
    timeout: str = Field(default="86400s", pattern=DURATION, description="Longest run of one training job.")
    smoke_timeout: str = Field(
        default="3600s",
        pattern=DURATION,
        description="Longest run of the smoke job (pipelines/smoke_pipeline.py), which is never retried.",
    )
    strategy: Literal["STANDARD", "SPOT", "FLEX_START"] = Field(
        default="STANDARD", description="Scheduling: on demand, Spot VMs (preemptible) or Flex-start (queued; GPUs)."
    )
    max_wait_duration: str = Field(
        default="86400s", pattern=DURATION, description="FLEX_START: longest wait for capacity."
    )
    restart_job_on_worker_restart: bool = Field(
        default=False, description="Restart the whole job when a worker restarts."
    )
    base_output_directory: OptionalGcsUri = Field(
        default="",
        description="gs:// prefix of the jobs' outputs and checkpoints (AIP_CHECKPOINT_DIR); empty: pipeline root.",
    )
    tensorboard: str = Field(
        default="", description="Vertex AI TensorBoard resource name the jobs are linked to; empty: none."
    )
    enable_web_access: bool = Field(default=False, description="Interactive shell access to the training containers.")
    retries: int = Field(
        default=1,
        ge=0,
        le=5,
        description="Resubmissions of a failed training job (it resumes from its checkpoints); the smoke job: none.",
    )

    @model_validator(mode="after")
    def _check(self) -> TrainJobConfig:
        if self.machine not in self.profiles:
            raise ValueError(f"machine {self.machine!r} is not one of the profiles {sorted(self.profiles)}")
        return self

    @property
    def profile(self) -> MachineProfile:
        return self.profiles[self.machine]


class CpuStepConfig(_Strict):
    """vertex.cpu: machine resources of the CPU steps."""

    cpu_limit: str = Field(
        default="8",
        pattern=r"^\d+(\.\d+)?m?$",
        coerce_numbers_to_str=True,
        description="CPUs of prepare, base-model, tokenize and evaluate.",
    )
    memory_limit: str = Field(default="32G", pattern=r"^\d+(\.\d+)?[KMGT]i?$", description="Memory of those steps.")
    retries: int = Field(
        default=2,
        ge=0,
        le=5,
        description="Retries of those steps (a retry clears and rewrites its uncommitted outputs).",
    )


class VertexConfig(_Strict):
    """vertex: project, region, service account, network and machines of a Vertex AI run."""

    project: str = Field(default="", description="Google Cloud project id (submit.py --project overrides it).")
    region: str = Field(
        default="us-central1", description="Vertex AI region; it must offer the training machine profile."
    )
    staging_bucket: OptionalGcsUri = Field(default="", description="gs:// bucket for staging and uploaded data.")
    pipeline_root: OptionalGcsUri = Field(
        default="", description="gs:// root of pipeline artifacts; empty: <staging_bucket>/pipeline-root."
    )
    service_account: str = Field(
        default="", description="Service account of the run and of its training jobs; empty: the project's default one."
    )
    network: str = Field(default="", description="VPC network to peer with: projects/NUMBER/global/networks/NAME.")
    reserved_ip_ranges: list[str] = Field(default_factory=list, description="Reserved IP ranges of that network.")
    labels: dict[str, str] = Field(
        default_factory=lambda: {"app": "banglasenti"}, description="Labels of the pipeline run and its training jobs."
    )
    enable_caching: bool = Field(
        default=True, description="Reuse the outputs of steps that ran before with the same inputs."
    )
    cpu_steps: CpuStepConfig = Field(default_factory=CpuStepConfig)
    train: TrainJobConfig = Field(default_factory=TrainJobConfig)

    @model_validator(mode="after")
    def _check(self) -> VertexConfig:
        for key, value in self.labels.items():
            if not LABEL.match(key) or not LABEL_VALUE.match(value):
                raise ValueError(
                    f"label {key}={value!r}: keys start with a letter; keys and values use only "
                    "lowercase letters, digits, _ and -, at most 63 characters"
                )
        if self.reserved_ip_ranges and not self.network:
            raise ValueError("reserved_ip_ranges need a network")
        return self

    def effective_pipeline_root(self) -> str:
        """The run's gs:// pipeline root: `pipeline_root`, else <staging bucket>/pipeline-root ("" when neither)."""
        if self.pipeline_root:
            return self.pipeline_root
        return f"{self.staging_bucket.rstrip('/')}/pipeline-root" if self.staging_bucket else ""


class ReferenceConfig(_Strict):
    """reference: the TF-IDF + logistic regression reference model."""

    enabled: bool = Field(default=True, description="Train the TF-IDF + logistic regression reference in evaluate.")
    ngram_min: PositiveInt = Field(default=1, description="Shortest character n-gram (within word boundaries).")
    ngram_max: PositiveInt = Field(default=4, description="Longest character n-gram.")
    max_features: PositiveInt = Field(default=200000, description="Vocabulary cap of the TF-IDF vectorizer.")
    c_values: list[PositiveFloat] = Field(
        default_factory=lambda: [0.3, 1.0, 3.0, 10.0],
        min_length=1,
        description="Inverse regularisation strengths tried; the best by val macro-F1 is kept.",
    )
    seed: int = Field(default=42, description="Seed of the logistic regression solver.")

    @model_validator(mode="after")
    def _check(self) -> ReferenceConfig:
        if self.ngram_min > self.ngram_max:
            raise ValueError("ngram_min must not exceed ngram_max")
        return self


class ReportConfig(_Strict):
    """report: bootstrap intervals and paired tests of the comparison report."""

    bootstrap_samples: PositiveInt = Field(
        default=1000, description="Bootstrap resamples of the test split for intervals."
    )
    confidence: float = Field(default=0.95, gt=0.5, lt=1, description="Level of the bootstrap confidence intervals.")
    seed: int = Field(default=0, description="Seed of the bootstrap resampling.")


class SweepConfig(_Strict):
    """sweep: the LoRA grid of the sweep pipeline."""

    r: list[PositiveInt] = Field(default_factory=lambda: [8, 16], min_length=1, description="LoRA ranks tried.")
    alpha_ratio: list[PositiveFloat] = Field(
        default_factory=lambda: [2.0], min_length=1, description="alpha / r values tried (alpha = ratio x r)."
    )
    target_modules: list[list[str]] = Field(
        default_factory=lambda: [
            ["query", "value"],
            ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"],
        ],
        min_length=1,
        description="Target-module lists tried.",
    )
    parallelism: int = Field(
        default=1,
        ge=0,
        description="Trials trained at once (0 = no limit). 1: with train-baseline, two TPU v3-8 jobs "
        "(16 cores) at a time; raise it with your TPU quota (docs/vertex.md).",
    )

    def grid(self) -> list[dict[str, Any]]:
        """Every (r, alpha, target_modules) combination, as ParallelFor items."""
        return [
            {"r": r, "alpha": max(1, round(ratio * r)), "target_modules": list(targets)}
            for targets in self.target_modules
            for r in self.r
            for ratio in self.alpha_ratio
        ]


class RegistryConfig(_Strict):
    """registry: Model Registry upload, versions and batch prediction."""

    upload: bool = Field(
        default=False,
        description="Vertex target: upload the exported model to the Model Registry as a new "
        "version (the default version only when it beats the current default's test macro-F1).",
    )
    min_macro_f1: Fraction = Field(
        default=0.6, description="Upload only when the exported model's test macro-F1 reaches this."
    )
    display_name: str = Field(
        default="banglasenti",
        pattern=r'^[^"]{1,128}$',
        description='Display name of the registry model (at most 128 characters, no ").',
    )
    parent_model: str = Field(
        default="",
        pattern=r"^(projects/[^/]+/locations/[^/]+/models/[^/@]+)?$",
        description="Registry model that gets the versions (projects/P/locations/L/models/ID); empty: the one named "
        "display_name, created by the first upload.",
    )
    project: str = Field(default="", description="Google Cloud project; empty = the pipeline job's own project.")
    location: str = Field(default="", description="Region of the Model Registry; empty: vertex.region.")
    batch_predict_source: OptionalGcsUri = Field(
        default="",
        description='gs:// JSONL of {"text": ...} lines: a batch prediction job of the new version reads it; '
        "empty: no batch prediction.",
    )
    batch_predict_output: OptionalGcsUri = Field(
        default="", description="gs:// prefix of the batch predictions; empty: <pipeline root>/batch-predictions."
    )
    batch_predict_machine_type: str = Field(
        default="n1-standard-4", min_length=1, description="Machine type of the batch prediction job."
    )
    batch_predict_max_replicas: PositiveInt = Field(default=1, description="Most machines of the batch prediction job.")

    @model_validator(mode="after")
    def _check(self) -> RegistryConfig:
        if self.batch_predict_source and not self.upload:
            raise ValueError("batch_predict_source predicts with the uploaded version: it needs upload: true")
        return self


class ServeBatchingConfig(_Strict):
    """export.batching: how the server gathers requests into batches, recorded in serving.json (unset: the server's
    defaults; the environment's BANGLASENTI_SERVE_* variables win; banglasenti/serving/batching.py)."""

    max_batch_texts: int | None = Field(default=None, ge=1, description="Texts predicted in one call at most.")
    max_wait_ms: float | None = Field(
        default=None, ge=0, allow_inf_nan=False, description="How long a batch may wait for more requests (ms)."
    )
    max_queued_texts: int | None = Field(
        default=None, ge=1, description="Texts waiting at most; beyond it, 503 with Retry-After."
    )


class ExportConfig(_Strict):
    """export: which trained model is served, and its license."""

    select: Literal["best", "lora", "baseline"] = Field(
        default="best",
        description="Model exported, served and registered: the better by validation macro-F1, or this one.",
    )
    license: str = Field(
        default="", description="Licence id in the model card; empty: derived from the training data's licences."
    )
    onnx: bool = Field(
        default=True,
        description="Convert the served model to ONNX (fp32 and int8), check each against PyTorch on the test "
        "split, and serve with ONNX Runtime the first that agrees (banglasenti/serving/onnx_runtime.py); false: "
        "PyTorch.",
    )
    batching: ServeBatchingConfig = Field(default_factory=ServeBatchingConfig)


class Config(_Strict):
    """The whole experiment: every section with its defaults."""

    # What is trained, on what data.
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    tokenize: TokenizeConfig = Field(default_factory=TokenizeConfig)
    lora: LoraConfig = Field(default_factory=LoraConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    # Where it runs.
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    vertex: VertexConfig = Field(default_factory=VertexConfig)
    # What is compared, reported and shipped.
    reference: ReferenceConfig = Field(default_factory=ReferenceConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    sweep: SweepConfig = Field(default_factory=SweepConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)

    def to_json(self) -> str:
        return self.model_dump_json()

    def with_overrides(self, overrides: dict[str, Any]) -> Config:
        """This config with dotted-key values replaced (`{"train.epochs": 1}`), validated again."""
        return _validate(apply_overrides(self.model_dump(mode="json"), overrides), "override")


def _format_error(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(root)"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    return f"{source}: {key}: {msg}"


def _validate(raw: dict[str, Any], source: str) -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_error(err, source)) from None


def parse_override(item: str) -> tuple[str, Any]:
    """Parse one `key=value` override; the value is read as a YAML scalar or list."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r}: expected key=value")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return key.strip(), parsed


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any], source: str = "override") -> dict[str, Any]:
    """Set dotted keys in a nested dict (copied); unknown sections or keys fail in validation."""
    result = json.loads(json.dumps(raw))
    for dotted, value in overrides.items():
        node = result
        parts = dotted.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{source}: {dotted}: {part} is not a section")
            node = child
        node[parts[-1]] = value
    return result


def load_config(path: str | Path | None = None, overrides: list[str] | dict[str, Any] | None = None) -> Config:
    """Load a YAML config (defaults when None) and apply dotted overrides."""
    raw: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as err:
            raise ConfigError(f"{path}: cannot read config: {err.strerror}") from None
        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {str(err).splitlines()[0]}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: top level must be a mapping of sections")
    pairs = dict(parse_override(o) for o in overrides) if isinstance(overrides, list) else dict(overrides or {})
    return _validate(apply_overrides(raw, pairs, source), source)


def config_from_json(text: str, overrides: dict[str, Any] | None = None) -> Config:
    """Rebuild the config a pipeline was compiled with, then apply run-time parameter values."""
    return _validate(apply_overrides(json.loads(text), overrides or {}), "pipeline config")


def config_reference() -> str:
    """Markdown table of every key with its default and description (docs/configuration.md)."""
    lines = ["| key | default | description |", "|---|---|---|"]

    def walk(model_cls: type[BaseModel], prefix: str) -> None:
        for name, field in model_cls.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, _Strict):
                walk(annotation, f"{prefix}{name}.")
                continue
            default = field.get_default(call_default_factory=True)
            lines.append(f"| `{prefix}{name}` | `{json.dumps(default, ensure_ascii=False)}` | {field.description} |")

    walk(Config, "")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(config_reference(), end="")
