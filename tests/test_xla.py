"""Training on XLA for real, on its CPU backend with two devices (PJRT_DEVICE=CPU, CPU_NUM_DEVICES=2), taking
the TPU's branches: tests/tpu_branch/ makes accelerate and transformers believe the device is a TPU (accelerate
then sets XLA_USE_BF16 for bf16 mixed precision, and marks a step at every gradient sync). Checked inside the run:
float32 weights and optimizer states on the device, every batch sharded over both devices, one graph executed per
optimizer step, one compiled training graph for packed rows (one per bucket for bucketed batches), no host sync in
the step loop; and on the saved weights: not bf16-rounded, small updates kept. A packed run killed with SIGTERM
resumes sharded, within the graph bound, and ends bit for bit as an uninterrupted one.

These run in the XLA environment (torch 2.9.0 + torch_xla 2.9.0): `make test-xla`, which `make test` runs.
"""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from banglasenti.training.checkpoints import MANIFEST, checkpoint_root
from tests.conftest import FAST_OVERRIDES, ROOT, built_once
from tests.support.xla_process import DEVICES, failure_tail, run_on_xla, xla_env

pytestmark = pytest.mark.xla

EPOCHS = 2
SHARDED = "{devices=[2,1]0,1}"  # dimension 0 split over devices 0 and 1, the other dimension whole
OVERRIDES = {
    **FAST_OVERRIDES,
    "train.epochs": EPOCHS,
    "train.batch_size": 8,
    "train.eval_batch_size": 16,
    # Checkpoints at epoch ends only: a mid-epoch checkpoint is a device-to-host copy in the step loop.
    "train.checkpoint_steps": 0,
}


@pytest.fixture(autouse=True)
def _needs_torch_xla():
    pytest.importorskip("torch_xla", reason="torch_xla is installed in the XLA environment only: make test-xla")


def train_command(mode: str, base_dir, tokenized_dir, out_dir, **overrides) -> list[str]:
    sets = [arg for key, value in {**OVERRIDES, **overrides}.items() for arg in ("--set", f"{key}={value}")]
    return [
        sys.executable,
        "-m",
        "components.train",
        "--mode",
        mode,
        "--config",
        str(ROOT / "configs" / "local.yaml"),
        *sets,
        "--base-model",
        str(base_dir),
        "--tokenized",
        str(tokenized_dir),
        "--output-dir",
        str(out_dir),
    ]


def train_on_xla(mode: str, base_dir, tokenized_dir, out_dir, own_parent: bool = False, **overrides) -> dict:
    """The real train component in a fresh process on XLA's CPU backend (TPU branch); returns its summary.
    `own_parent`: out_dir's parent holds only this run's output, checkpoints and compile cache (then a run that
    XLA's CPU runtime crashes is run once more from nothing: tests/support/xla_process.py)."""
    done = run_on_xla(
        train_command(mode, base_dir, tokenized_dir, out_dir, **overrides),
        xla_env(),
        cwd=ROOT,
        timeout=1800,
        rerun_after_crash=[out_dir.parent] if own_parent else None,
    )
    assert done.returncode == 0, failure_tail(done)
    return json.loads((out_dir / "training_summary.json").read_text())


@pytest.fixture(scope="module")
def xla_trained(base_dir, tokenized_dir, tmp_path_factory):
    """Train `mode` once per test run (pytest-xdist workers share it), on packed rows or bucketed batches:
    (model_dir, summary)."""

    def get(mode: str, packing: bool = True):
        out = (
            built_once(
                tmp_path_factory,
                f"xla-{mode}-{packing}",
                lambda root: train_on_xla(
                    mode, base_dir, tokenized_dir, root / mode, own_parent=True, **{"tokenize.packing": packing}
                ),
            )
            / mode
        )
        return out, json.loads((out / "training_summary.json").read_text())

    return get


def buckets_used(tokenized_dir, split: str) -> int:
    return pd.read_parquet(tokenized_dir / f"{split}.parquet", columns=["length"])["length"].nunique()


def float32_tensors(model_dir) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    tensors: dict[str, np.ndarray] = {}
    for path in sorted(model_dir.glob("*.safetensors")):
        tensors.update({k: v for k, v in load_file(path).items() if v.dtype == np.float32})
    return tensors


def bf16_exact(values: np.ndarray) -> np.ndarray:
    """Float32 values that a bf16 holds exactly (low 16 bits zero): what torch_xla's XLA_USE_BF16 leaves."""
    return (values.view(np.uint32) & 0xFFFF) == 0


# The tests on the packed baseline run usually go out together (make test-xla: --dist loadgroup; pytest-xdist
# does not always keep a group on one worker, so xla_trained shares the run between workers).
BASELINE_RUN = pytest.mark.xdist_group("xla-baseline-run")


@pytest.mark.parametrize(
    ("mode", "packing"), [("lora", False), ("lora", True), pytest.param("baseline", True, marks=BASELINE_RUN)]
)
def test_data_parallel_training_with_static_shapes(mode, packing, xla_trained, tokenized_dir):
    model_dir, summary = xla_trained(mode, packing)

    placement = summary["placement"]
    assert placement["kind"] == "xla" and placement["devices"] == DEVICES
    assert placement["precision"] == "bf16"
    assert placement["global_batch"] == DEVICES * placement["per_device_batch"] == 16

    # bf16 autocast, float32 storage: XLA holds the trainable weights and the optimizer states in f32.
    assert summary["xla_storage_types"] == {"parameters": ["f32"], "optimizer_states": ["f32"]}

    graphs = summary["xla_graphs"]
    assert len(graphs["step_loop_compiles"]) == EPOCHS
    # Every training and evaluation batch's input_ids was split over both devices.
    shardings = summary["xla_batch_shardings"]
    assert shardings["train"] == {SHARDED: sum(graphs["step_loop_steps"])}
    assert list(shardings["eval"]) == [SHARDED]
    # One graph executed per optimizer step: accelerate's per-step mark_step on a TPU adds none.
    assert graphs["step_loop_executions"] == graphs["step_loop_steps"]
    # Training: one graph for packed rows (at most one per bucket for bucketed batches, a bucket can first appear
    # as a batch width in a later epoch) over the whole run, plus the first step's (it creates the optimizer state).
    texts = len(pd.read_parquet(tokenized_dir / "train.parquet", columns=["label"]))
    assert graphs["step_loop_steps"] == [-(-texts // placement["global_batch"])] * EPOCHS
    if packing:
        assert graphs["step_loop_compiles"][0] in (1, 2) and graphs["step_loop_compiles"][1:] == [0] * (EPOCHS - 1)
        assert summary["packing"]["train_rows_per_batch"] < placement["global_batch"]
    else:
        assert 1 <= sum(graphs["step_loop_compiles"]) <= buckets_used(tokenized_dir, "train") + 1
    # Evaluation batches are the same every epoch: the evaluations after the first compile nothing.
    assert graphs["after_loop_compiles"][1:] == [0] * (len(graphs["after_loop_compiles"]) - 1)
    assert graphs["step_loop_host_transfers"] == [0] * EPOCHS

    losses = [row["train_loss"] for row in summary["history"]]
    assert losses[-1] < losses[0], losses

    # The saved float32 weights are not bf16-rounded (XLA_USE_BF16 left every one of them bf16-exact).
    weights = float32_tensors(model_dir)
    values = np.concatenate([w.ravel() for w in weights.values()])
    assert bf16_exact(values).mean() < 0.01, f"{bf16_exact(values).sum()} of {values.size} values are bf16-exact"


@BASELINE_RUN
def test_small_updates_survive(xla_trained, base_dir):
    """LayerNorm gains near 1 move by at most about the learning rate per step, less than half a bf16 spacing
    there: stored as bf16 they would never move from bf16(base); in float32 they do."""
    import torch

    model_dir, summary = xla_trained("baseline")
    assert 3 * summary["learning_rate"] < 2.0**-9  # Adam's step (<~3 lr) under half the bf16 spacing in [0.5, 1)
    trained, base = float32_tensors(model_dir), float32_tensors(base_dir)
    gains = [k for k in trained if "LayerNorm.weight" in k]
    assert gains
    before = np.concatenate([base[k].ravel() for k in gains])
    after = np.concatenate([trained[k].ravel() for k in gains])
    assert (np.abs(before) >= 0.5).all()
    rounded = torch.from_numpy(before).to(torch.bfloat16).float().numpy()
    moved = after != rounded
    assert moved.mean() > 0.9, f"only {moved.sum()} of {moved.size} LayerNorm gains left bf16(base)"


@BASELINE_RUN
def test_killed_training_resumes_sharded_within_the_graph_bound(xla_trained, base_dir, tokenized_dir, tmp_path):
    """SIGTERM mid-epoch, run again: the resumed epoch's batches stay sharded (accelerate's skip_first_batches
    rebuilds the loader), the graph bound holds in the resumed process, and it ends with the uninterrupted run's
    curves and weights."""
    every = 10  # 555 rows / global batch 16 = 35 steps per epoch: the signal lands mid-epoch
    reference_dir, reference = xla_trained("baseline")
    out = tmp_path / "baseline"
    packed = {"train.checkpoint_steps": every, "tokenize.packing": True}
    cmd = train_command("baseline", base_dir, tokenized_dir, out, **packed)
    ckpt = checkpoint_root(None, out, "baseline")

    proc = subprocess.Popen(cmd, cwd=ROOT, env=xla_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 1200
    while not (ckpt / f"checkpoint-{every}" / MANIFEST).exists() and proc.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=1200)
    assert proc.returncode == 2, err[-4000:]
    assert err.strip().splitlines()[-1].startswith("error: stopped by SIGTERM at step ")

    resumed = train_on_xla("baseline", base_dir, tokenized_dir, out, **packed)
    steps_per_epoch = reference["xla_graphs"]["step_loop_steps"][0]
    start = resumed["resumed_from_step"]
    assert start > every and start % steps_per_epoch, f"resumed at step {start}: not mid-epoch"

    graphs = resumed["xla_graphs"]
    assert sum(graphs["step_loop_steps"]) == EPOCHS * steps_per_epoch - start
    assert resumed["xla_batch_shardings"]["train"] == {SHARDED: sum(graphs["step_loop_steps"])}
    # The training graph (packed rows: one shape; plus the first step's after the optimizer state is loaded) and
    # the one small graph of the rendezvous in a mid-epoch checkpoint save (transformers' save_tpu_checkpoint).
    assert sum(graphs["step_loop_compiles"]) <= 1 + 1 + 1
    assert resumed["xla_storage_types"] == {"parameters": ["f32"], "optimizer_states": ["f32"]}

    # Bit for bit, dropout included (the device RNG is seeded per step: checkpoints.seed_xla_rng).
    assert len(resumed["history"]) == EPOCHS
    assert resumed["history"] == reference["history"]
    want, got = float32_tensors(reference_dir), float32_tensors(out)
    assert sorted(got) == sorted(want)
    differing = [k for k in want if not np.array_equal(got[k], want[k])]
    assert not differing, f"{len(differing)} of {len(want)} tensors differ from the uninterrupted run's"


PACKED_VS_ALONE = """
import json, sys
import numpy as np, pandas as pd, torch, torch_xla
from banglasenti.config.schema import load_config
from banglasenti.data.packing import PackedCollator, packed_forward, packed_records
from banglasenti.training.runner import build_model

base_dir, tokenized_dir = sys.argv[1:3]
cfg = load_config("configs/local.yaml")  # its LoRA settings; the model is the base in base_dir
device = torch_xla.device()
frame = pd.read_parquet(f"{tokenized_dir}/test.parquet", columns=["input_ids", "num_tokens"])[:10]
texts = [list(ids[:n]) for ids, n in zip(frame["input_ids"], frame["num_tokens"])]
records = packed_records(texts, [len(t) for t in texts], [0] * len(texts), 128, 8)
batch = PackedCollator(1, 128, 8, rows=len(records) + 1, with_index=True)(records)
index = batch.pop("index").numpy()
result = {}
for mode in ("baseline", "lora"):
    torch.manual_seed(0)
    model = build_model(mode, base_dir, cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)  # LoRA's B starts at zero: make the adapters change the output
    model = model.to(device).eval()
    with torch.no_grad():
        packed = packed_forward(model, {k: v.to(device) for k, v in batch.items()}).logits.cpu().numpy()
        alone = np.concatenate([model(input_ids=torch.tensor([t], device=device)).logits.cpu().numpy()
                                for t in texts])
    got = np.zeros_like(alone)
    got[index[index >= 0]] = packed[index >= 0]
    result[mode] = {"max_abs_diff": float(np.abs(got - alone).max()), "rows": len(records),
                    "scale": float(np.abs(alone).max())}
print("RESULT " + json.dumps(result))
"""


def test_packed_rows_give_each_texts_logits_on_xla(base_dir, tokenized_dir):
    """On XLA's CPU backend, a packed batch (two rows of texts and an empty filler row) gives the logits of each
    text run alone, for the base model and with LoRA adapters."""
    done = run_on_xla(
        [sys.executable, "-c", PACKED_VS_ALONE, str(base_dir), str(tokenized_dir)],
        xla_env(tpu_branch=False),
        cwd=ROOT,
        timeout=900,
        rerun_after_crash=[],
    )  # writes nothing
    assert done.returncode == 0, failure_tail(done)
    results = json.loads(done.stdout.split("RESULT ")[-1])
    assert set(results) == {"baseline", "lora"}
    for mode, result in results.items():
        assert result["rows"] >= 2 and result["scale"] > 0.01, mode
        assert result["max_abs_diff"] < 1e-4, (mode, result)


def test_evaluation_scores_every_val_text_once_past_the_loaders_prefetch(base_dir, prepared_dir, fast_cfg, tmp_path):
    """Bucketed: 33 evaluation batches (1 mod 8) of 2 texts, the last one short: torch_xla's device loader takes the
    last batch from accelerate's loader while about 8 are still to be evaluated, and from then on accelerate's
    `gather_for_metrics` would cut each to the split's remainder. Packed: batches of rows holding rows x slots
    texts, which that cut counts in rows. Every val text is scored once, at every evaluation."""
    from banglasenti.data.tokenized_splits import run_tokenize

    global_eval_batch = DEVICES  # train.eval_batch_size 1 per device
    texts = 32 * global_eval_batch + 1
    splits = tmp_path / "prepared"
    splits.mkdir()
    for name in ("train", "test"):
        (splits / f"{name}.parquet").symlink_to(prepared_dir / f"{name}.parquet")
    val = pd.read_parquet(prepared_dir / "val.parquet")
    pd.concat([val] * (texts // len(val) + 1), ignore_index=True).head(texts).to_parquet(splits / "val.parquet")
    tokenized = tmp_path / "tokenized"
    paths = {name: str(splits / f"{name}.parquet") for name in ("train", "val", "test")}
    run_tokenize(fast_cfg, paths, str(base_dir), str(tokenized))
    for packing in (False, True):
        summary = train_on_xla(
            "lora",
            base_dir,
            tokenized,
            tmp_path / f"run-{packing}" / "lora",
            own_parent=True,
            **{"tokenize.packing": packing, "train.eval_batch_size": 1, "train.epochs": 1, "train.max_steps": 2},
        )
        assert summary["val_texts"] == texts and summary["val_texts_scored"] == texts, (packing, summary)
        assert [row["val_texts_scored"] for row in summary["history"]] == [texts], packing
        if not packing:
            assert summary["placement"]["global_eval_batch"] == global_eval_batch


# The short checks last: the trainings above start first (make test-xla hands tests out in this order).
def test_tpu_branch_mode_takes_accelerates_tpu_branch():
    """The mode's premise: with the hook, accelerate's bf16 mixed precision sets XLA_USE_BF16 as on a TPU."""
    script = (
        "import os; from accelerate import Accelerator; Accelerator(mixed_precision='bf16'); "
        "print(os.environ.get('XLA_USE_BF16'))"
    )
    answers = []
    for tpu_branch in (True, False):
        done = subprocess.run(
            [sys.executable, "-c", script],
            cwd=ROOT,
            env=xla_env(tpu_branch),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-4000:]
        answers.append(done.stdout.strip().splitlines()[-1])
    assert answers == ["1", "None"]


def test_training_refuses_bf16_storage(base_dir, tokenized_dir, tmp_path):
    """The training command on XLA stops at once, in one line, with nothing written (XLA_DOWNCAST_BF16 too:
    tests/test_device.py)."""
    done = subprocess.run(
        train_command("lora", base_dir, tokenized_dir, tmp_path / "out"),
        cwd=ROOT,
        env=xla_env(XLA_USE_BF16="1"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: RuntimeError: ") and "XLA_USE_BF16=1 is set" in last, last
    assert not (tmp_path / "out").exists()


def test_shard_batches_refuses_an_unsharded_loader_under_spmd():
    script = (
        "import torch; from banglasenti.training.device import prepare_placement, shard_batches\n"
        "prepare_placement(8, 16)\n"
        "try:\n    shard_batches(torch.utils.data.DataLoader(list(range(4))))\n"
        "except TypeError as err:\n    print('refused:', err)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=xla_env(), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "refused: cannot shard the batches of a DataLoader under SPMD" in done.stdout
