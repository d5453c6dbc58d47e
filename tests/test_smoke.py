"""The smoke pipeline: its submission through the Vertex AI REST stand-in, and its diagnostics report."""

import pytest

from banglasenti.training.smoke_run import markdown
from tests.test_submit import SA, TPU, bucket, run_main  # noqa: F401 - fixtures


def test_smoke_submission_is_a_short_custom_job_on_the_training_machine(standin, bucket, capfd):  # noqa: F811
    code, out, err = run_main(
        capfd, "--smoke", "--service-account", SA, "--param", "smoke_steps=20", "--api-endpoint", standin.url
    )
    assert code == 0, err
    [create] = standin.created_jobs()
    job = create.body
    assert job["displayName"] == "banglasenti-lora-vs-full-smoke"
    assert job["runtimeConfig"]["parameterValues"] == {"smoke_steps": 20}
    spec = job["pipelineSpec"]
    tasks = spec["root"]["dag"]["tasks"]
    assert {"prepare", "base-model", "tokenize", "smoke"} <= set(tasks)
    assert not {"train-lora", "train-baseline", "evaluate"} & set(tasks)
    assert tasks["smoke"].get("cachingOptions", {}).get("enableCache", False) is False  # it measures this run
    assert tasks["prepare"]["cachingOptions"] == {"enableCache": True}
    assert set(spec["root"]["inputDefinitions"]["parameters"]) == {
        "data_uri",
        "data_seed",
        "model_name",
        "seed",
        "smoke_steps",
    }
    [pool] = spec["components"]["comp-smoke"]["inputDefinitions"]["parameters"]["worker_pool_specs"]["defaultValue"]
    assert pool["machine_spec"] == {"machine_type": "cloud-tpu", "accelerator_type": "TPU_V3", "accelerator_count": 8}
    container = pool["container_spec"]
    assert container["image_uri"] == TPU
    assert {"name": "PJRT_DEVICE", "value": "TPU"} in container["env"]
    assert "smoke_step(" in " ".join(container["command"] + container.get("args", []))
    assert "submitted: " in out


@pytest.mark.parametrize("cache", ["--cache", "--no-cache"])
def test_cache_flags_leave_the_smoke_step_uncached(standin, bucket, capfd, cache):  # noqa: F811
    """The SDK's enable_caching rewrites every task; submit.py sets caching itself and keeps smoke fresh."""
    code, _, err = run_main(capfd, "--smoke", "--service-account", SA, cache, "--api-endpoint", standin.url)
    assert code == 0, err
    [create] = standin.created_jobs()
    tasks = create.body["pipelineSpec"]["root"]["dag"]["tasks"]
    assert tasks["smoke"]["cachingOptions"] == {"enableCache": False}
    assert tasks["prepare"]["cachingOptions"] == {"enableCache": cache == "--cache"}


def test_smoke_does_not_take_a_template(standin, capfd, tmp_path):  # noqa: F811
    code, _, err = run_main(capfd, "--smoke", "--template", str(tmp_path / "t.yaml"), "--api-endpoint", standin.url)
    assert code == 2 and "--smoke compiles the smoke pipeline now" in err
    assert standin.requests == []


def test_smoke_report_names_what_to_check():
    run = {
        "device_kind": "xla",
        "device_type": "TPU",
        "device_count": 8,
        "mesh": {"shape": [8], "axis_names": ["data"], "device_ids": list(range(8))},
        "batch": {"input_ids_shape": [256, 32], "input_ids_sharding": "{devices=[8,1]0,1,2,3,4,5,6,7}"},
        "parameter_dtypes": {"float32": 10},
        "optimizer_state_dtypes": {"float32": 20},
        "trainable_bf16_exact_share": 0.0,
        "bf16_environment": {"XLA_USE_BF16": "", "XLA_DOWNCAST_BF16": ""},
        "graphs_compiled": 5,
        "compile_seconds": 61.5,
        "persistent_cache": {"hits": 0, "misses": 5, "loads": 0, "deserialize_failures": 0},
        "step_seconds": {"first": 40.0, "median_after_first": 0.05},
        "steps": 50,
        "final_train_loss": 1.0986,
    }
    text = markdown({"steps": 50, "compile_cache": "/gcs/b/root/xla-compile-cache/tpu", "runs": {"lora": run}})
    assert "| device | xla TPU x8 |" in text
    assert "`{devices=[8,1]0,1,2,3,4,5,6,7}`" in text
    assert "| persistent cache hits / misses / found, not loadable | 0 / 5 / 0 |" in text
    assert "| XLA_USE_BF16 / XLA_DOWNCAST_BF16 | unset/unset |" in text
    assert "| median later step (s) | 0.05 |" in text
    assert "| compile time (s) | 61.5 |" in text


@pytest.mark.parametrize("steps", [0, -3])
def test_smoke_refuses_a_step_count_below_one(steps, fast_cfg, tmp_path):
    from banglasenti.training.smoke_run import run_smoke

    with pytest.raises(ValueError, match="steps must be positive"):
        run_smoke(fast_cfg, tmp_path, tmp_path, tmp_path, steps)
