"""The DAG: compiled spec contents, and whole local runs (live, and loaded back from the compiled YAML)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from banglasenti.config.parameters import (
    MAIN,
    PARAMETER_KEYS,
    PARAMETERS,
    SMOKE,
    SWEEP,
    parameters_reference,
    pipeline_parameters,
)
from banglasenti.config.schema import CONFIG_DIR, Config, config_from_json, load_config
from pipelines import submit
from pipelines.compile import compile_pipeline
from pipelines.pipeline import TASKS, build_pipeline
from pipelines.smoke_pipeline import build_smoke_pipeline
from pipelines.sweep_pipeline import build_sweep_pipeline
from tests.conftest import FAST_OVERRIDES

ROOT = Path(__file__).resolve().parent.parent
EDGES = {
    "importer": set(),
    "prepare": {"importer"},
    "base-model": {"prepare"},
    "tokenize": {"prepare", "base-model"},
    "train-lora": {"base-model", "tokenize"},
    "train-baseline": {"base-model", "tokenize"},
    "evaluate": {"prepare", "base-model", "tokenize", "train-lora", "train-baseline"},
    "export-model": {"prepare", "base-model", "train-lora", "train-baseline", "evaluate"},
}
FAST = [f"{key}={value}" for key, value in FAST_OVERRIDES.items()]


def load_spec(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.mark.component
@pytest.mark.parametrize("target", ["local", "vertex"])
def test_compiled_spec_has_every_task_and_edge(tmp_path, target):
    spec = load_spec(compile_pipeline(CONFIG_DIR / "banglasenti.yaml", tmp_path / "p.yaml", target))
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {"importer", *TASKS}
    for name, task in tasks.items():
        upstream = set(task.get("dependentTasks", []))
        for inp in task.get("inputs", {}).get("artifacts", {}).values():
            upstream.add(inp["taskOutputArtifact"]["producerTask"])
        assert upstream == EDGES[name], name


@pytest.mark.component
def test_pipeline_parameters_default_to_the_config(tmp_path):
    cfg = load_config(CONFIG_DIR / "banglasenti.yaml", {"data.seed": 7})
    spec = load_spec(compile_pipeline(CONFIG_DIR / "banglasenti.yaml", tmp_path / "p.yaml", "vertex", ["data.seed=7"]))
    params = {k: v.get("defaultValue") for k, v in spec["root"]["inputDefinitions"]["parameters"].items()}
    assert params == {
        "data_uri": cfg.data.uri,
        "data_seed": 7,
        "model_name": cfg.model.name,
        "lora_r": cfg.lora.r,
        "lora_alpha": cfg.lora.alpha,
        "lora_target_modules": cfg.lora.target_modules,
        "lora_learning_rate": cfg.train.lora_learning_rate,
        "baseline_learning_rate": cfg.train.baseline_learning_rate,
        "epochs": cfg.train.epochs,
        "batch_size": cfg.train.batch_size,
        "seed": cfg.train.seed,
    }
    tasks = spec["root"]["dag"]["tasks"]
    embedded = tasks["prepare"]["inputs"]["parameters"]["config_json"]
    assert json.loads(embedded["runtimeValue"]["constant"]) == json.loads(cfg.to_json())
    # The split takes data_seed (data.seed of the YAML), the training takes seed (train.seed).
    assert tasks["prepare"]["inputs"]["parameters"]["seed"] == {"componentInputParameter": "data_seed"}
    for step in ("train-lora", "train-baseline"):
        assert tasks[step]["inputs"]["parameters"]["seed"] == {"componentInputParameter": "seed"}


KFP_TYPES = {str: "STRING", int: "NUMBER_INTEGER", float: "NUMBER_DOUBLE", list: "LIST"}


@pytest.mark.component
@pytest.mark.parametrize(
    ("pipeline", "build"), [(MAIN, build_pipeline), (SWEEP, build_sweep_pipeline), (SMOKE, build_smoke_pipeline)]
)
@pytest.mark.parametrize("target", ["local", "vertex"])
def test_every_pipeline_signature_is_the_parameter_table(tmp_path, pipeline, build, target):
    from kfp import compiler

    cfg = load_config(CONFIG_DIR / "banglasenti.yaml", {"data.seed": 3, "train.seed": 5, "sweep.r": [2]})
    compiler.Compiler().compile(build(cfg, target), package_path=str(tmp_path / "p.yaml"))
    declared = load_spec(tmp_path / "p.yaml")["root"]["inputDefinitions"]["parameters"]
    table = pipeline_parameters(pipeline)
    assert list(declared) == sorted(p.name for p in table)
    for p in table:
        assert declared[p.name] == {
            "defaultValue": p.default(cfg),
            "isOptional": True,
            "parameterType": KFP_TYPES[p.kind],
        }, p.name


def test_the_parameter_table_names_real_config_keys():
    cfg = load_config(CONFIG_DIR / "banglasenti.yaml", {"data.seed": 3, "train.seed": 5})
    for p in PARAMETERS:
        for key in p.keys:  # a key the schema does not have is rejected; the default is the config's own value
            assert config_from_json(cfg.to_json(), {key: p.default(cfg)}) == cfg, key
    assert {p.name for p in PARAMETERS if not p.keys} == {"sweep_grid", "smoke_steps"}
    assert PARAMETER_KEYS["seed"] == ("train.seed",) and PARAMETER_KEYS["data_seed"] == ("data.seed",)
    assert submit.PARAMETER_KEYS is PARAMETER_KEYS


def test_configuration_doc_lists_the_parameter_table():
    doc = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert parameters_reference() in doc


@pytest.mark.parametrize(
    ("component", "given", "expected"),
    [
        (
            "train_lora",
            {
                "lora_r": 4,
                "lora_alpha": 8,
                "lora_target_modules": ["query"],
                "learning_rate": 1e-3,
                "epochs": 2,
                "batch_size": 8,
                "seed": 9,
            },
            {
                "lora.r": 4,
                "lora.alpha": 8,
                "lora.target_modules": ["query"],
                "train.lora_learning_rate": 1e-3,
                "train.epochs": 2,
                "train.batch_size": 8,
                "train.seed": 9,
            },
        ),
        (
            "train_baseline",
            {"learning_rate": 1e-5, "epochs": 2, "batch_size": 8, "seed": 9},
            {"train.baseline_learning_rate": 1e-5, "train.epochs": 2, "train.batch_size": 8, "train.seed": 9},
        ),
    ],
)
def test_training_components_turn_their_parameters_into_the_tables_keys(monkeypatch, component, given, expected):
    from components import train

    seen = {}
    monkeypatch.setattr(train, "train_step", lambda mode, cfg, *a: seen.update(cfg=cfg))
    getattr(train, component).python_func(
        config_json=Config().to_json(), base_model=None, tokenized=None, model=None, metrics=None, **given
    )
    got = seen["cfg"].model_dump()
    assert {key: got[key.split(".")[0]][key.split(".")[1]] for key in expected} == expected
    untouched = {section for section in got if not any(key.startswith(f"{section}.") for key in expected)}
    assert {s: got[s] for s in untouched} == {s: v for s, v in Config().model_dump().items() if s in untouched}


def test_prepare_splits_with_its_own_seed(tmp_path):
    """data.seed reaches the split through the prepare component's seed (the data_seed parameter); train.seed
    does not."""
    import pandas as pd
    from kfp import dsl

    from components.prepare import prepare

    cfg = load_config(CONFIG_DIR / "local.yaml", {"data.seed": 1, "train.seed": 99})

    def split(seed: int) -> dict:
        out = {name: dsl.Dataset(uri=str(tmp_path / str(seed) / name)) for name in ("train", "val", "test")}
        prepare.python_func(
            config_json=cfg.to_json(),
            data_uri=cfg.data.uri,
            seed=seed,
            report=dsl.Markdown(uri=str(tmp_path / str(seed) / "report")),
            **out,
        )
        return out

    first, again = split(11), split(12)
    assert (first["train"].metadata["seed"], again["train"].metadata["seed"]) == (11, 12)
    assert set(pd.read_parquet(first["test"].path)["text"]) != set(pd.read_parquet(again["test"].path)["text"])


@pytest.mark.component
def test_vertex_target_uses_the_configured_images_without_pip_installs(tmp_path):
    cfg = load_config(CONFIG_DIR / "banglasenti.yaml")
    spec = load_spec(compile_pipeline(CONFIG_DIR / "banglasenti.yaml", tmp_path / "p.yaml", "vertex"))
    executors = spec["deploymentSpec"]["executors"]
    images = {
        name.removeprefix("exec-"): ex["container"]["image"] for name, ex in executors.items() if "container" in ex
    }  # the importer has no container of ours
    cpu_steps = ("prepare", "base-model", "tokenize", "evaluate", "export-model")
    assert {name: images[name] for name in cpu_steps} == dict.fromkeys(cpu_steps, cfg.pipeline.cpu_image)
    for step in ("train-lora", "train-baseline"):  # custom jobs: the image is in the job's worker pool
        pools = spec["components"][f"comp-{step}"]["inputDefinitions"]["parameters"]["worker_pool_specs"]
        assert [pool["container_spec"]["image_uri"] for pool in pools["defaultValue"]] == [cfg.pipeline.train_image]
        assert "pip install" not in " ".join(pools["defaultValue"][0]["container_spec"]["command"])
    for ex in executors.values():
        assert "pip install" not in " ".join(ex.get("container", {}).get("command", []))


@pytest.mark.component
def test_compile_command_writes_a_spec(tmp_path):
    out = tmp_path / "pipeline.yaml"
    run = subprocess.run(
        [sys.executable, str(ROOT / "pipelines" / "compile.py"), "--output", str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert load_spec(out)["pipelineInfo"]["name"] == "banglasenti-lora-vs-full"
    bad = subprocess.run(
        [sys.executable, str(ROOT / "pipelines" / "compile.py"), "--set", "lora.r=0", "--output", str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert bad.returncode == 2 and "lora.r" in bad.stderr


def executor_metrics(run_dir: Path) -> dict:
    output = json.loads((run_dir / "evaluate" / "executor_output.json").read_text())
    return output["artifacts"]["metrics"]["artifacts"][0]["metadata"]


@pytest.mark.slow
def test_main_job_runs_the_whole_dag_offline(tmp_path):
    """`python pipelines/run_local.py` on configs/local.yaml, as the README runs it, with every step under
    Cloud Storage FUSE semantics (renaming a non-empty directory under the pipeline root fails, as on Vertex AI)."""
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "pipelines" / "run_local.py"),
            "--pipeline-root",
            str(tmp_path),
            "--gcsfuse-semantics",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"},
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert f"gcsfuse semantics under {tmp_path.resolve()}" in run.stdout
    run_dir = Path(re.search(r"Run finished in \d+ s: (\S+)", run.stdout).group(1))
    for task, output in [
        ("prepare", "train"),
        ("base-model", "model"),
        ("tokenize", "tokenized"),
        ("train-lora", "model"),
        ("train-baseline", "model"),
        ("evaluate", "report"),
        ("evaluate", "html_report"),
        ("export-model", "model"),
    ]:
        assert (run_dir / task / output).exists(), (task, output)
    # the terminal: a line per step with what it did; kfp's whole log in the file it names
    for line in (
        "prepare: ",
        "base-model: pre-trained ",
        "tokenize: tokenized to max_length",
        "train-lora: lora: ",
        "train-baseline: baseline: ",
        "evaluate: test macro-F1: lora ",
        "export-model: exported ",
    ):
        assert f"\n{line}" in run.stdout, line
    assert "executor_input" not in run.stdout
    log = Path(re.search(r"kfp's whole log: (\S+)", run.stdout).group(1)).read_text(encoding="utf-8")
    assert "Task 'importer' finished with status SUCCESS" in re.sub(r"\x1b\[\d+m", "", log)  # a lineage node
    page = re.search(r"HTML report: file://(\S+)", run.stdout).group(1)
    assert page.endswith("/evaluate/report.html")
    assert Path(page).read_bytes() == (run_dir / "evaluate" / "html_report").read_bytes()
    metrics = executor_metrics(run_dir)
    for model in ("lora", "baseline"):
        assert metrics[f"{model}_test_macro_f1"] > metrics["majority_class_test_macro_f1"] + 0.1
        assert metrics[f"{model}_collapsed"] == 0.0
    report = Path(re.search(r"Comparison report: (\S+)", run.stdout).group(1)).read_text(encoding="utf-8")
    assert "| lora |" in report and "| baseline |" in report


@pytest.mark.slow
def test_compiled_yaml_loads_back_and_runs_locally_on_gcs_data(tmp_path, gcs_emulator, gcsfuse_semantics):
    """A saved template run with `data_uri=gs://...` (the GCS emulator): the raw data is imported at run time,
    and data_seed (not seed) splits it."""
    from kfp import components, local

    from banglasenti.storage.artifacts import gcs_client

    client = gcs_client()
    bucket = client.lookup_bucket("raw-data-bucket") or client.create_bucket("raw-data-bucket")
    bucket.blob("banglasenti/sample.csv").upload_from_filename(
        str(ROOT / "banglasenti" / "data" / "bangla_sentiment_sample.csv")
    )
    path = compile_pipeline(CONFIG_DIR / "local.yaml", tmp_path / "local.yaml", "local", FAST)
    pipeline = components.load_component_from_file(str(path))
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "runs"))
    uri = "gs://raw-data-bucket/banglasenti/sample.csv"
    task = pipeline(epochs=1, lora_r=4, seed=7, data_seed=11, data_uri=uri)
    assert Path(task.outputs["report"].path).read_text(encoding="utf-8").startswith("# LoRA vs full fine-tuning")
    run_dir = next((tmp_path / "runs").iterdir())
    lora_meta = json.loads((run_dir / "train-lora" / "executor_output.json").read_text())
    model_meta = lora_meta["artifacts"]["model"]["artifacts"][0]["metadata"]
    assert model_meta["lora"]["r"] == 4 and model_meta["epochs_run"] == 1 and model_meta["seed"] == 7
    assert model_meta["split_seed"] == 11 and model_meta["source_uri"] == uri


@pytest.mark.component
def test_main_job_reports_a_failing_step_in_one_line(tmp_path):
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "pipelines" / "run_local.py"),
            "--pipeline-root",
            str(tmp_path),
            "--set",
            f"data.uri={tmp_path / 'missing.csv'}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert run.returncode == 1
    assert "missing.csv: no such file" in run.stdout
    assert run.stderr.strip().splitlines()[-1].startswith("error: Pipeline")
    assert not list(tmp_path.glob("*/prepare/train"))
