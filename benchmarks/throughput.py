"""Training throughput: the original project's settings against ours, side by side in one run.

    python benchmarks/throughput.py [--examples 128] [--batch-size 16] [--repeats 3] [--json results.json]

(a) original: every text padded to 256 tokens, fp32, batches in random order;
(b) buckets: each text padded to the smallest bucket (32/64/128), batches grouped by length;
(c) packed: batches of batch-size texts packed into rows of 128 tokens, at most `--slots` texts a row, as the
    train component forms them over an epoch of all the texts (banglasenti/data/packing.py: epoch_units,
    train_rows_for), every batch in the epoch's fixed number of rows (as on XLA); the first examples/batch-size
    batches are timed;
(b) and (c) in fp32 on the CPU and bf16 autocast on CUDA (a GPU measurement: the TPU's precision path is not what
this times); each for full fine-tuning and for LoRA, at the same batch size in texts, through the train
component's own code: the model built by banglasenti.training.runner.build_model (the base loaded, LoRA wrapped with the
default config), batches formed by its collators (BucketCollator, PackedCollator), and each optimizer step taken
by its Trainer (banglasenti.training.trainer: training_step with its loss and autocast, then gradient clipping, the
optimizer and the schedule of banglasenti.training.runner.training_arguments: PyTorch's fused AdamW on CPU and CUDA), on
the real xlm-roberta-base architecture
(random initialisation, built offline: 12 layers, hidden 768, vocab 250,002) and real text lengths: the texts
of ../shared/data/banglasenti/val.csv when present, else the project's sample, tokenized with a SentencePiece
Unigram model trained on them. Every configuration runs the same examples in a fresh process (so peak memory
is its own), `--repeats` times round-robin (every configuration once, then again), so that load from other
processes on the machine falls on all of them alike; the report gives medians and the load average seen. The
matrix-multiply peak of the machine is measured in the same run. FLOPs are counted by torch.utils.flop_counter
on one step per batch shape.

`--lengths-from earlier.json` replays the token lengths recorded by an earlier run (on another machine, say),
so both machines time the same batches without the data.
"""

from __future__ import annotations

import argparse
import bisect
import dataclasses
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal, cast

from banglasenti.models.backbone import XLMR_CONVENTIONS
from banglasenti.storage.artifacts import SAMPLE_PATH

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data" / "banglasenti" / "val.csv"
SAMPLE_DATA = SAMPLE_PATH
ORIGINAL_LENGTH = 256
NUM_LABELS = 3
PACKED_ROW = 128

# The architecture of FacebookAI/xlm-roberta-base (its config.json), built without the Hub.
XLMR_BASE: dict[str, Any] = dict(
    XLMR_CONVENTIONS,
    vocab_size=250002,
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
)
# A few-MB stand-in with the same code path, for tests of this script.
XLMR_TINY = dict(
    XLMR_BASE, vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128
)


# --------------------------------------------------------------------------- lengths and batches


def token_lengths(csv_path: Path, vocab_size: int) -> list[int]:
    """Token counts (with <s> and </s>) of every text, by a Unigram model trained on the texts themselves."""
    import io

    import pandas as pd
    import sentencepiece as spm

    texts = pd.read_csv(csv_path)["text"].dropna().astype(str).tolist()
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=proto,
        vocab_size=vocab_size,
        model_type="unigram",
        hard_vocab_limit=False,
        character_coverage=1.0,
        num_threads=1,
        minloglevel=2,
    )
    sp = spm.SentencePieceProcessor(model_proto=proto.getvalue())
    return [len(ids) + 2 for ids in sp.encode(texts)]


def bucket_for(length: int, buckets: list[int]) -> int:
    """The smallest bucket >= length (longer texts are truncated to the last bucket)."""
    return buckets[min(bisect.bisect_left(buckets, length), len(buckets) - 1)]


def original_batches(lengths: list[int], batch_size: int, seed: int) -> list[dict[str, Any]]:
    """Random order, every row padded to 256."""
    order = list(range(len(lengths)))
    random.Random(seed).shuffle(order)
    return [
        {"width": ORIGINAL_LENGTH, "rows": [min(lengths[i], ORIGINAL_LENGTH) for i in order[k : k + batch_size]]}
        for k in range(0, len(order), batch_size)
    ]


def bucketed_batches(lengths: list[int], batch_size: int, buckets: list[int], seed: int) -> list[dict[str, Any]]:
    """Grouped by length (as the Trainer's length-grouped sampler does within a mega-batch), each batch
    padded to the bucket of its longest row, batches in random order."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches = []
    for k in range(0, len(order), batch_size):
        rows = [min(lengths[i], buckets[-1]) for i in order[k : k + batch_size]]
        batches.append({"width": bucket_for(max(rows), buckets), "rows": rows})
    random.Random(seed).shuffle(batches)
    return batches


def packed_batches(lengths: list[int], batch_size: int, slots: int, seed: int, count: int) -> list[dict[str, Any]]:
    """The first `count` of the train component's packed batches of an epoch over all `lengths` (seed `seed`):
    batch_size texts each, in the fixed number of rows that holds every batch of the epoch."""
    sys.path.insert(0, str(ROOT))
    from banglasenti.data.packing import epoch_order, epoch_units, train_rows_for

    clipped = [min(n, PACKED_ROW) for n in lengths]
    rows = train_rows_for(clipped, batch_size, PACKED_ROW, slots, seed, 1)
    units = epoch_units(epoch_order(len(clipped), seed, 0), clipped, batch_size, PACKED_ROW, slots, rows) or []
    return [
        {"packed": [[clipped[i] for i in row] for row in unit], "width": PACKED_ROW, "slots": slots, "rows": rows}
        for unit in units[:count]
    ]


def batch_texts(spec: dict[str, Any]) -> int:
    return sum(len(r) for r in spec["packed"]) if "packed" in spec else len(spec["rows"])


def batch_real_tokens(spec: dict[str, Any]) -> int:
    return sum(sum(r) for r in spec["packed"]) if "packed" in spec else sum(spec["rows"])


def padding_efficiency(batches: list[dict[str, Any]], batch_size: int) -> float:
    """Real tokens over the tokens computed (padded batches are topped up to batch_size rows)."""
    computed = sum(b["width"] * (b["rows"] if "packed" in b else batch_size) for b in batches)
    return sum(batch_real_tokens(b) for b in batches) / computed


# --------------------------------------------------------------------------- one configuration (a worker)


def pick_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def save_random_base(arch: dict[str, Any], seed: int, path: str) -> None:
    """The architecture with random weights, saved as a base-model artifact is (config.json, safetensors)."""
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaForMaskedLM

    torch.manual_seed(seed)
    XLMRobertaForMaskedLM(XLMRobertaConfig(**arch)).save_pretrained(path, safe_serialization=True)


def project_trainer(job: dict[str, Any], device: str, output_dir: str) -> Any:
    """The train component's model and Trainer for this configuration: the base loaded and (lora) wrapped by
    banglasenti.training.runner.build_model, the project's Trainer class with its arguments (optimizer, learning rate,
    schedule, weight decay, gradient clipping: banglasenti.training.runner.training_arguments) and its optimizer."""
    import torch

    from banglasenti.config.schema import Config
    from banglasenti.data.packing import PackedRows
    from banglasenti.training.device import DeviceKind, Placement, Precision
    from banglasenti.training.runner import build_model, training_arguments
    from banglasenti.training.trainer import SentimentTrainer

    cfg = Config()
    mode: Literal["lora", "baseline"] = "lora" if job["mode"] == "lora" else "baseline"
    torch.manual_seed(job["seed"])  # LoRA's initialisation
    model = build_model(mode, job["base_dir"], cfg)
    placement = Placement(
        kind=cast(DeviceKind, device),  # pick_device's answer
        devices=1,
        precision=cast(Precision, job["precision"]),  # the --precision choices
        per_device_batch=job["batch_size"],
        per_device_eval_batch=job["batch_size"],
    )
    packed = [spec for spec in job["batches"] if "packed" in spec]
    packing = PackedRows(PACKED_ROW, packed[0]["slots"], packed[0]["rows"], packed[0]["rows"]) if packed else None
    # The train component's arguments; no evaluation or checkpoints, which happen between steps.
    args = dataclasses.replace(
        training_arguments(mode, cfg, output_dir, placement),
        eval_strategy="no",
        save_strategy="no",
        load_best_model_at_end=False,
        use_cpu=device == "cpu",
    )
    trainer = SentimentTrainer(
        model=model, args=args, placement=placement, pad_token_id=XLMR_BASE["pad_token_id"], packing=packing
    )
    trainer.create_optimizer_and_scheduler(num_training_steps=2 * len(job["batches"]))  # warm-up steps too
    trainer.current_gradient_accumulation_steps = args.gradient_accumulation_steps  # the loop sets it per step
    return trainer


def random_text(n: int, vocab: int, rng) -> list[int]:
    """`n` tokens: <s>, random pieces, </s>."""
    import torch

    middle = torch.randint(3, vocab, (max(n - 2, 0),), generator=rng).tolist()
    return [XLMR_BASE["bos_token_id"], *middle, XLMR_BASE["eos_token_id"]][:n]


def make_batch(spec: dict[str, Any], batch_size: int, vocab: int, device: str, rng):
    """Random token ids at the given real lengths, collated by the project's collators: padded rows to the batch
    width (a short batch topped up with filler rows, as on XLA), or packed rows."""
    import torch

    from banglasenti.data.collation import BucketCollator
    from banglasenti.data.packing import PackedCollator

    pad = XLMR_BASE["pad_token_id"]
    if "packed" in spec:
        records = [
            {
                "texts": [random_text(n, vocab, rng) for n in row],
                "labels": torch.randint(0, NUM_LABELS, (len(row),), generator=rng).tolist(),
                "index": list(range(len(row))),
            }
            for row in spec["packed"]
        ]
        batch = PackedCollator(pad, spec["width"], spec["slots"], spec["rows"])(records)
    else:
        features = []
        for n in spec["rows"]:
            ids = random_text(n, vocab, rng)
            features.append(
                {
                    "input_ids": ids + [pad] * (spec["width"] - n),
                    "attention_mask": [1] * n + [0] * (spec["width"] - n),
                    "label": int(torch.randint(0, NUM_LABELS, (1,), generator=rng)),
                }
            )
        batch = BucketCollator(pad, batch_size)(features)
    return {key: value.to(device) for key, value in batch.items()}


def run_config(job: dict[str, Any], output_dir: str) -> dict[str, Any]:
    """Time one (setting, mode) on every batch once, after one untimed step per batch shape."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    device = pick_device(job["device"])
    arch = XLMR_TINY if job["arch"] == "tiny" else XLMR_BASE
    trainer = project_trainer(job, device, output_dir)
    model, optimizer, args = trainer.model, trainer.optimizer, trainer.args
    params = [p for p in model.parameters() if p.requires_grad]
    rng = torch.Generator().manual_seed(job["seed"])
    batches = [make_batch(spec, job["batch_size"], arch["vocab_size"], device, rng) for spec in job["batches"]]

    def step(batch) -> None:
        """The work of one of the Trainer loop's optimizer steps, without the loop's bookkeeping and host syncs:
        its training_step (the loss, under its autocast in bf16, and backward), gradient clipping, the optimizer
        and the schedule."""
        trainer.training_step(model, batch)
        trainer.accelerator.clip_grad_norm_(params, args.max_grad_norm)
        optimizer.step()
        trainer.lr_scheduler.step()
        model.zero_grad()

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    flops_by_shape: dict[tuple[int, ...], int] = {}
    for batch in batches:  # warm-up: one step per shape, FLOPs counted there
        shape = tuple(batch["input_ids"].shape)
        if shape not in flops_by_shape:
            counter = FlopCounterMode(display=False)
            with counter:
                step(batch)
            flops_by_shape[shape] = counter.get_total_flops()
    sync()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for batch in batches:
        step(batch)
    sync()
    seconds = time.perf_counter() - start
    examples = sum(batch_texts(spec) for spec in job["batches"])
    real_tokens = sum(batch_real_tokens(spec) for spec in job["batches"])
    padded_tokens = sum(b["input_ids"].numel() for b in batches)
    flops = sum(flops_by_shape[tuple(b["input_ids"].shape)] for b in batches)
    optim = getattr(args.optim, "value", args.optim)
    peak = (
        torch.cuda.max_memory_allocated()
        if device == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    return {
        "setting": job["setting"],
        "mode": job["mode"],
        "precision": job["precision"],
        "examples": examples,
        "batches": len(batches),
        "seconds": seconds,
        "examples_per_s": examples / seconds,
        "tokens_per_s": real_tokens / seconds,
        "padded_tokens_per_s": padded_tokens / seconds,
        "padding_efficiency": real_tokens / padded_tokens,
        "flops_per_example": flops / examples,
        "achieved_flops_per_s": flops / seconds,
        "peak_memory_bytes": int(peak),
        "peak_memory_kind": "cuda_max_allocated" if device == "cuda" else "max_rss",
        "trainable_parameters": sum(p.numel() for p in params),
        "device": str(args.device),
        "optimizer": f"{type(optimizer).__name__} ({optim}, lr {args.learning_rate:g}, clip {args.max_grad_norm:g})",
    }


def matmul_peak(device: str, precision: str, size: int, repeats: int = 5) -> float:
    """The best FLOP/s of a square matrix product at the given precision."""
    import torch

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(repeats + 1):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        (a @ b).sum().item()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def worker(job_path: str) -> None:
    sys.path.insert(0, str(ROOT))  # the project's collators, LoRA wrapping and packed forward
    job = json.loads(Path(job_path).read_text())
    if job["kind"] == "base":
        save_random_base(XLMR_TINY if job["arch"] == "tiny" else XLMR_BASE, job["seed"], job["path"])
        result: dict[str, Any] = {"base_dir": job["path"]}
    elif job["kind"] == "peak":
        device = pick_device(job["device"])
        result = {
            "precision": job["precision"],
            "matmul_flops_per_s": matmul_peak(device, job["precision"], job["size"]),
        }
    else:
        with tempfile.TemporaryDirectory(prefix="banglasenti-benchmark-") as output_dir:  # the Trainer's: unused
            result = run_config(job, output_dir)
    print("RESULT " + json.dumps(result), flush=True)


def in_subprocess(job: dict[str, Any]) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(job, f)
    try:
        done = subprocess.run(
            [sys.executable, __file__, "--worker", f.name], capture_output=True, text=True, check=False
        )
    finally:
        os.unlink(f.name)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise SystemExit(f"benchmark worker failed ({job.get('setting', job['kind'])}):\n{done.stderr[-3000:]}")
    result = json.loads(lines[-1][len("RESULT ") :])
    result["load_average_1min_after"] = os.getloadavg()[0]
    print(
        "RESULT " + json.dumps({k: v for k, v in result.items() if not isinstance(v, list)}),
        file=sys.stderr,
        flush=True,
    )
    return result


# --------------------------------------------------------------------------- the run


def machine_facts(device: str) -> dict[str, Any]:
    import torch

    facts = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "device": device,
    }
    if device == "cuda":
        facts["gpu"] = torch.cuda.get_device_name(0)
    return facts


def median_result(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One configuration's repetitions: the median of every timing, the rest from the first."""
    import statistics

    timed = ("seconds", "examples_per_s", "tokens_per_s", "padded_tokens_per_s", "achieved_flops_per_s")
    return {
        **runs[0],
        **{key: statistics.median(r[key] for r in runs) for key in timed},
        "peak_memory_bytes": max(r["peak_memory_bytes"] for r in runs),
        "repetitions": len(runs),
    }


def speedup(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> dict[str, Any]:
    """Examples/s of a over b: the ratio of the medians, and per repetition (where both ran)."""
    import statistics

    med = statistics.median(r["examples_per_s"] for r in a) / statistics.median(r["examples_per_s"] for r in b)
    return {"of_medians": med, "per_repetition": [x["examples_per_s"] / y["examples_per_s"] for x, y in zip(a, b)]}


def render_table(report: dict[str, Any]) -> str:
    head = (
        f"{'setting':<9} {'mode':<5} {'prec':<5} {'ex/s':>8} {'tok/s':>9} {'pad eff':>7} {'GFLOP/ex':>8} "
        f"{'TFLOP/s':>8} {'% peak':>6} {'peak MB':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in report["results"]:
        lines.append(
            f"{r['setting']:<9} {r['mode']:<5} {r['precision']:<5} {r['examples_per_s']:>8.2f} "
            f"{r['tokens_per_s']:>9.0f} {r['padding_efficiency']:>7.3f} {r['flops_per_example'] / 1e9:>8.2f} "
            f"{r['achieved_flops_per_s'] / 1e12:>8.3f} {100 * r['share_of_matmul_peak']:>6.1f} "
            f"{r['peak_memory_bytes'] / 2**20:>8.0f}"
        )
    lines.append("")
    for name, by_mode in report["speedups_examples_per_s"].items():
        for mode, ratio in by_mode.items():
            lines.append(
                f"{name}, examples/s, {mode}: {ratio['of_medians']:.2f}x "
                f"(per repetition: {', '.join(f'{x:.2f}' for x in ratio['per_repetition'])})"
            )
    lines.append(f"1-minute load average after each worker: {report['load_average']}")
    for precision, peak in report["matmul_peak_flops_per_s"].items():
        lines.append(f"matmul peak ({precision}): {peak / 1e12:.3f} TFLOP/s")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="csv with a text column (default: shared val.csv, else sample)")
    parser.add_argument("--lengths-from", type=Path, help="replay the token lengths of an earlier --json report")
    parser.add_argument("--examples", type=int, default=128, help="examples timed per configuration")
    parser.add_argument("--batch-size", type=int, default=16, help="texts a batch")
    parser.add_argument(
        "--slots", type=int, default=16, help="most texts a packed row of 128 tokens (tokenize.pack_slots)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="round-robin repetitions of every configuration")
    parser.add_argument("--original-repeats", type=int, help="repetitions of the (slow) original (default: all)")
    parser.add_argument("--settings", default="original,buckets,packed", help="which settings to time")
    parser.add_argument("--buckets", default="32,64,128", help="our bucket lengths, comma-separated")
    parser.add_argument("--modes", default="full,lora", help="full and/or lora")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--precision", choices=["fp32", "bf16"], help="ours (default: bf16 on CUDA, else fp32)")
    parser.add_argument("--arch", default="base", choices=["base", "tiny"], help="xlm-roberta-base, or a tiny one")
    parser.add_argument("--matmul-size", type=int, default=4096)
    parser.add_argument("--tokenizer-vocab", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def time_configurations(
    args: argparse.Namespace,
    modes: list[str],
    settings: dict[str, Any],
    original_repeats: int,
    base_job: dict[str, Any],
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Every (setting, mode) `args.repeats` times, round-robin, so that load from elsewhere falls on every
    configuration alike; each run in a fresh process."""
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for repetition in range(args.repeats):
        for mode in modes:
            for setting, (prec, batches) in settings.items():
                if setting == "original" and repetition >= original_repeats:
                    continue
                print(
                    f"[{repetition + 1}/{args.repeats}] timing {setting} / {mode} ({len(batches)} batches) ...",
                    file=sys.stderr,
                    flush=True,
                )
                runs.setdefault((setting, mode), []).append(
                    in_subprocess({**base_job, "setting": setting, "mode": mode, "precision": prec, "batches": batches})
                )
    return runs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        worker(args.worker)
        return 0
    modes = [m for m in args.modes.split(",") if m]
    if not modes or set(modes) - {"full", "lora"}:
        raise SystemExit(f"--modes: expected full and/or lora, got {args.modes!r}")
    buckets = sorted(int(b) for b in args.buckets.split(","))
    device = pick_device(args.device)
    precision = args.precision or ("bf16" if device == "cuda" else "fp32")

    if args.lengths_from:
        source = json.loads(args.lengths_from.read_text())["lengths"]
        data_name, all_lengths = source["data"], source["values"]
    else:
        data = args.data or (SHARED_DATA if SHARED_DATA.exists() else SAMPLE_DATA)
        data_name, all_lengths = data.name, token_lengths(data, args.tokenizer_vocab)
    lengths = random.Random(args.seed).sample(all_lengths, min(args.examples, len(all_lengths)))
    every = {
        "original": lambda: ("fp32", original_batches(lengths, args.batch_size, args.seed)),
        "buckets": lambda: (precision, bucketed_batches(lengths, args.batch_size, buckets, args.seed)),
        "packed": lambda: (
            precision,
            packed_batches(all_lengths, args.batch_size, args.slots, args.seed, len(lengths) // args.batch_size),
        ),
    }
    chosen = [name for name in args.settings.split(",") if name]
    if not chosen or set(chosen) - set(every):
        raise SystemExit(f"--settings: expected some of {sorted(every)}, got {args.settings!r}")
    settings = {name: every[name]() for name in chosen}
    original_repeats = args.repeats if args.original_repeats is None else args.original_repeats
    with tempfile.TemporaryDirectory(prefix="banglasenti-benchmark-base-") as base_root:
        base_dir = in_subprocess(
            {"kind": "base", "arch": args.arch, "seed": args.seed, "path": str(Path(base_root) / "model")}
        )["base_dir"]
        runs = time_configurations(
            args,
            modes,
            settings,
            original_repeats,
            {
                "kind": "train",
                "device": device,
                "arch": args.arch,
                "batch_size": args.batch_size,
                "seed": args.seed,
                "base_dir": base_dir,
            },
        )
    peaks = {
        prec: in_subprocess({"kind": "peak", "device": device, "precision": prec, "size": args.matmul_size})[
            "matmul_flops_per_s"
        ]
        for prec in sorted({"fp32", precision})
    }
    results = [median_result(rs) for rs in runs.values()]
    for r in results:
        r["share_of_matmul_peak"] = r["achieved_flops_per_s"] / peaks[r["precision"]]
    pairs = [
        (a, b)
        for a, b in (("buckets", "original"), ("packed", "original"), ("packed", "buckets"))
        if a in settings and b in settings
    ]
    report = {
        "machine": machine_facts(device),
        "arch": args.arch,
        "batch_size": args.batch_size,
        "buckets": buckets,
        "examples": len(lengths),
        "lengths": {"data": data_name, "values": all_lengths if not args.lengths_from else source["values"]},
        "length_summary": {
            "median": sorted(lengths)[len(lengths) // 2],
            "max": max(lengths),
            "share_over_128": sum(n > 128 for n in lengths) / len(lengths),
        },
        "matmul_peak_flops_per_s": peaks,
        "repeats": args.repeats,
        "original_repeats": original_repeats,
        "slots": args.slots,
        "results": results,
        "repetitions": {f"{s}/{m}": [r["examples_per_s"] for r in rs] for (s, m), rs in runs.items()},
        "load_average": [round(r["load_average_1min_after"], 2) for rs in runs.values() for r in rs],
        "speedups_examples_per_s": {
            f"{a} / {b}": {m: speedup(runs[a, m], runs[b, m]) for m in modes} for a, b in pairs
        },
    }
    print(render_table(report))
    if args.json:
        tmp = args.json.with_suffix(args.json.suffix + ".tmp")
        tmp.write_text(json.dumps(report, indent=2))
        tmp.replace(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
