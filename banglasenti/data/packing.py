"""Packing: several short texts share one row of fixed length, each attending only to itself.

A row holds at most `slots` texts and `row_length` tokens. Each text keeps its own positions (XLM-R's
`padding_idx + 1, padding_idx + 2, ...`, as if it were alone), the attention mask is block-diagonal by segment
(padding tokens form a segment of their own, so that no query row is fully masked), and the classifier reads
each text's `<s>` token, gathered per slot. Logits and labels are per slot (`rows * slots`); empty slots are
labelled IGNORED_LABEL, which the loss and the metrics skip. Every batch has the same shape, so XLA compiles one
graph per phase.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from banglasenti.data.collation import IGNORED_LABEL  # empty slots are labelled as filler rows are


def pack_rows(lengths: Sequence[int], row_length: int, slots: int) -> list[list[int]]:
    """Indices of the texts in each row: best-fit decreasing (the longest text first, into the fullest row that
    still holds it and has a free slot). Deterministic; at most `slots` texts and `row_length` tokens per row."""
    if slots < 1 or row_length < 1:
        raise ValueError(f"slots and row_length must be positive, got {slots} and {row_length}")
    rows: list[list[int]] = []
    room: list[int] = []
    open_rows: list[list[int]] = [[] for _ in range(row_length + 1)]  # room left -> rows with a free slot
    for i in sorted(range(len(lengths)), key=lambda k: (-lengths[k], k)):
        n = int(lengths[i])
        if not 0 < n <= row_length:
            raise ValueError(f"text {i} has {n} tokens: packing needs 1 to {row_length}")
        row = next((open_rows[r].pop() for r in range(n, row_length + 1) if open_rows[r]), None)
        if row is None:
            row = len(rows)
            rows.append([])
            room.append(row_length)
        rows[row].append(i)
        room[row] -= n
        if len(rows[row]) < slots and room[row] > 0:
            open_rows[room[row]].append(row)
    return [sorted(r) for r in rows]


def rows_per_batch(texts: int, slots: int) -> int:
    """Rows that hold a batch of `texts` text slots."""
    return math.ceil(texts / slots)


def packed_records(
    input_ids: Sequence[Sequence[int]], lengths: Sequence[int], labels: Sequence[int], row_length: int, slots: int
) -> list[dict[str, Any]]:
    """One record per row: the texts' real tokens (`texts`), their labels, their input positions (`index`) and
    the row's length (one for all: the length-grouped sampler then shuffles rows at random)."""
    return [
        {
            "texts": [list(map(int, input_ids[i][: int(lengths[i])])) for i in row],
            "labels": [int(labels[i]) for i in row],
            "index": list(row),
            "length": row_length,
        }
        for row in pack_rows(lengths, row_length, slots)
    ]


def packing_efficiency(lengths: Sequence[int], row_length: int, slots: int, batch_texts: int) -> dict[str, Any]:
    """Rows, filled slots and the share of real tokens, batches topped up to whole batches of rows."""
    rows = pack_rows(lengths, row_length, slots)
    per_batch = rows_per_batch(batch_texts, slots)
    padded_rows = math.ceil(len(rows) / per_batch) * per_batch if rows else 0
    return {
        "rows": len(rows),
        "slots_filled": round(len(lengths) / max(len(rows) * slots, 1), 4),
        "padding_efficiency": round(sum(map(int, lengths)) / max(padded_rows * row_length, 1), 4),
    }


def epoch_units(
    order: Sequence[int],
    lengths: Sequence[int],
    per_device: int,
    row_length: int,
    slots: int,
    rows: int,
    window: int = 64,
) -> list[list[list[int]]] | None:
    """An epoch's texts in units of exactly `per_device` texts (the epoch's last unit: the rest), each packed into
    at most `rows` rows by `pack_rows` (lists of text indices); None where that fails.

    The texts come in `order`, `window` units at a time. Within a window the longest text goes first, each into the
    unit with the most tokens left per free place before it reaches its share of the window's tokens (a unit holding
    a long text is completed with short ones); a unit that still needs more than `rows` rows swaps one of its texts
    for a shorter one of another unit. Full units keep the order of their first text; the short one comes last."""
    import numpy as np

    position = {i: k for k, i in enumerate(order)}
    units: list[list[list[int]]] = []
    for start in range(0, len(order), window * per_device):
        chunk = list(order[start : start + window * per_device])
        count = math.ceil(len(chunk) / per_device)
        places = np.full(count, per_device)
        places[-1] = len(chunk) - (count - 1) * per_device
        target = places * (sum(int(lengths[i]) for i in chunk) / len(chunk))  # each unit's share of the tokens
        if target.max() > rows * row_length:
            return None  # even a unit of average texts needs more rows
        tokens = np.zeros(count)
        members: list[list[int]] = [[] for _ in range(count)]
        for i in sorted(chunk, key=lambda k: (-int(lengths[k]), position[k])):
            u = int(np.argmax(np.where(places > 0, (target - tokens) / np.maximum(places, 1), -np.inf)))
            members[u].append(i)
            tokens[u] += int(lengths[i])
            places[u] -= 1
        if not even_out(members, lengths, row_length, slots, rows):
            return None
        short = members.pop() if len(members[-1]) < per_device else None
        members.sort(key=lambda m: min(map(position.__getitem__, m)))
        units.extend(
            [[unit[k] for k in row] for row in pack_rows([lengths[i] for i in unit], row_length, slots)]
            for unit in members + ([short] if short else [])
        )
    return units


def even_out(members: list[list[int]], lengths: Sequence[int], row_length: int, slots: int, rows: int) -> bool:
    """Swap texts between units until each packs into `rows` rows: a unit that needs more gives its longest text
    possible for the shortest one of another unit that keeps both within `rows`. False if a unit stays over."""

    def fits(unit: list[int]) -> bool:
        return len(pack_rows([lengths[i] for i in unit], row_length, slots)) <= rows

    for u, unit in enumerate(members):
        if fits(unit):
            continue
        swapped = False
        for a in sorted(range(len(unit)), key=lambda k: -int(lengths[unit[k]])):
            for v, other in enumerate(members):
                for b in sorted(range(len(other)), key=lambda k: int(lengths[other[k]])):
                    if v == u or int(lengths[other[b]]) >= int(lengths[unit[a]]):
                        break
                    unit[a], other[b] = other[b], unit[a]
                    if fits(unit) and fits(other):
                        swapped = True
                        break
                    unit[a], other[b] = other[b], unit[a]
                if swapped:
                    break
            if swapped:
                break
        if not swapped:
            return False
    return True


def fill_batches(units: Sequence[Sequence[Sequence[int]]], devices: int, rows: int) -> list[list[tuple[int, int]]]:
    """Batches of `devices` consecutive units: lists of (text, row), row `device * rows + r`."""
    if any(len(unit) > rows for unit in units):
        raise ValueError(f"a unit needs {max(map(len, units))} rows, more than the run's {rows}")
    return [
        [
            (i, device * rows + r)
            for device, unit in enumerate(units[b : b + devices])
            for r, row in enumerate(unit)
            for i in row
        ]
        for b in range(0, len(units), devices)
    ]


def epoch_order(count: int, seed: int, epoch: int) -> list[int]:
    """The texts' shuffled order in an epoch: depends only on (seed, epoch), like the bucketed sampler's."""
    import torch

    return torch.randperm(count, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).tolist()


def train_rows_for(lengths: Sequence[int], per_device: int, row_length: int, slots: int, seed: int, epochs: int) -> int:
    """Rows per device of every training batch: the fewest (from ceil(per_device / slots)) into which
    `epoch_units` packs every unit of each of the run's `epochs` epochs; `per_device` rows always do."""
    orders = [epoch_order(len(lengths), seed, epoch) for epoch in range(epochs)]
    rows = rows_per_batch(per_device, slots)
    while rows < per_device and any(
        epoch_units(o, lengths, per_device, row_length, slots, rows) is None for o in orders
    ):
        rows += 1
    return rows


@dataclass(frozen=True)
class PackedRows:
    """Packed batches: row length, text slots per row, and the rows of a training and an evaluation batch (all
    devices)."""

    row_length: int
    slots: int
    train_rows: int
    eval_rows: int


class PackedTexts:
    """A tokenized split's texts for packed training batches; item (text, row): the text, its label and its row."""

    def __init__(self, input_ids: Sequence[Sequence[int]], lengths: Sequence[int], labels: Sequence[int]):
        self.tokens = [list(map(int, ids[: int(n)])) for ids, n in zip(input_ids, lengths)]
        self.lengths = [int(n) for n in lengths]
        self.labels = [int(y) for y in labels]

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        i, row = key
        return {"tokens": self.tokens[i], "label": self.labels[i], "index": i, "row": row}


class PackedBatchSampler:
    """Per epoch, the texts in the order of `sampler` (epoch-seeded, with set_epoch) as units of `per_device`
    texts (`epoch_units`), `devices` units a batch: every batch but the last holds `per_device * devices` texts,
    in `rows` rows per device. Batches are lists of (text, row) keys of a PackedTexts."""

    def __init__(
        self, sampler, lengths: Sequence[int], per_device: int, devices: int, rows: int, row_length: int, slots: int
    ):
        self.sampler = sampler  # accelerate forwards set_epoch to batch_sampler.sampler (also when resuming)
        self.lengths, self.per_device, self.devices = list(lengths), per_device, devices
        self.rows, self.row_length, self.slots = rows, row_length, slots
        self.batch_size, self.drop_last = per_device * devices, False

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose order the next iteration forms (for callers that set it on the batch sampler)."""
        self.sampler.set_epoch(epoch)

    def __iter__(self):
        units = epoch_units(list(self.sampler), self.lengths, self.per_device, self.row_length, self.slots, self.rows)
        if units is None:
            raise RuntimeError(f"this epoch's texts do not pack into {self.rows} rows per device and batch")
        return iter(fill_batches(units, self.devices, self.rows))


class EpochShuffle:
    """0..count-1 in the order of `epoch_order` for the epoch set by set_epoch."""

    def __init__(self, count: int, seed: int):
        self.count, self.seed, self.epoch = count, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.count

    def __iter__(self):
        return iter(epoch_order(self.count, self.seed, self.epoch))


class PackedCollator:
    """Rows of packed texts into one batch: input_ids, segment_ids (1..slots; 0 for padding), position_ids,
    cls_index (the offset of each slot's `<s>`, 0 when empty) and labels per slot (IGNORED_LABEL when empty);
    with `with_index`, the texts' input positions per slot (-1 when empty).

    With `rows`, a short batch is topped up with empty rows, so that XLA sees one batch shape.
    """

    def __init__(
        self, pad_token_id: int, row_length: int, slots: int, rows: int | None = None, with_index: bool = False
    ):
        self.pad_token_id = pad_token_id
        self.row_length = row_length
        self.slots = slots
        self.rows = rows
        self.with_index = with_index

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        if features and "row" in features[0]:  # texts of a PackedTexts, each with its row
            features = texts_into_rows(features)
        rows, width, slots = max(len(features), self.rows or 0), self.row_length, self.slots
        ids = torch.full((rows, width), self.pad_token_id, dtype=torch.long)
        segments = torch.zeros((rows, width), dtype=torch.long)
        positions = torch.full((rows, width), self.pad_token_id, dtype=torch.long)  # padding_idx for padding
        cls_index = torch.zeros((rows, slots), dtype=torch.long)
        labels = torch.full((rows * slots,), IGNORED_LABEL, dtype=torch.long)
        index = torch.full((rows * slots,), -1, dtype=torch.long)
        for r, feature in enumerate(features):
            if len(feature["texts"]) > slots:
                raise ValueError(f"a row holds {len(feature['texts'])} texts, more than {slots} slots")
            offset = 0
            for k, tokens in enumerate(feature["texts"]):
                n = len(tokens)
                if offset + n > width:
                    raise ValueError(f"a row holds {offset + n} tokens, more than {width}")
                ids[r, offset : offset + n] = torch.as_tensor(tokens, dtype=torch.long)
                segments[r, offset : offset + n] = k + 1
                # RoBERTa's create_position_ids_from_input_ids for this text alone
                positions[r, offset : offset + n] = torch.arange(self.pad_token_id + 1, self.pad_token_id + 1 + n)
                cls_index[r, k] = offset
                labels[r * slots + k] = int(feature["labels"][k])
                index[r * slots + k] = int(feature["index"][k])
                offset += n
        batch = {
            "input_ids": ids,
            "segment_ids": segments,
            "position_ids": positions,
            "cls_index": cls_index,
            "labels": labels,
        }
        if self.with_index:
            batch["index"] = index
        return batch


def texts_into_rows(features: list[dict[str, Any]]) -> list[dict[str, list]]:
    """Row records (texts, labels, index) from texts carrying their row; rows without texts stay empty."""
    rows: list[dict[str, list]] = [
        {"texts": [], "labels": [], "index": []} for _ in range(max(f["row"] for f in features) + 1)
    ]
    for f in features:
        row = rows[f["row"]]
        row["texts"].append(f["tokens"])
        row["labels"].append(f["label"])
        row["index"].append(f["index"])
    return rows


def block_diagonal_mask(segment_ids, attn_implementation: str | None):
    """(rows, 1, L, L) mask: a token attends to the tokens of its own segment. Boolean (True = attend) for SDPA
    implementations; additive float for eager attention."""
    import torch

    same = segment_ids[:, None, :, None] == segment_ids[:, None, None, :]
    if attn_implementation == "eager":
        return torch.zeros(same.shape, dtype=torch.float32, device=same.device).masked_fill(
            ~same, torch.finfo(torch.float32).min
        )
    return same


def classifier_of(model):
    """The sequence classifier under a PEFT wrapper, and its head module (PEFT's modules_to_save wrapper)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not hasattr(inner, "classifier"):
        raise TypeError(f"{type(inner).__name__} has no classifier head to read the <s> tokens with")
    return inner, inner.classifier


@contextlib.contextmanager
def head_reads_slots(head, cls_index):
    """While open, the head sees each slot's `<s>` state ((rows * slots, 1, hidden)) instead of each row's first."""
    import torch

    def gather(module, args, kwargs):
        features = args[0]
        hidden = features.shape[-1]
        picked = torch.gather(features, 1, cls_index.unsqueeze(-1).expand(-1, -1, hidden))
        return (picked.reshape(-1, 1, hidden), *args[1:]), kwargs

    handle = head.register_forward_pre_hook(gather, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


def packed_forward(model, batch: dict[str, Any]):
    """Logits per slot ((rows * slots, classes)) and, with labels, the mean cross-entropy over the filled slots.
    The model is called as a whole (PEFT adapters included), with the block-diagonal mask and per-text positions."""
    import torch
    from transformers.modeling_outputs import SequenceClassifierOutput

    from banglasenti.runtime.private_api import private
    from banglasenti.training.device import replicated

    inner, head = classifier_of(model)
    attention = private(inner.config, "_attn_implementation", "transformers.configuration_utils:PretrainedConfig")
    mask = block_diagonal_mask(batch["segment_ids"], attention)
    with head_reads_slots(head, batch["cls_index"]):
        logits = model(input_ids=batch["input_ids"], attention_mask=mask, position_ids=batch["position_ids"]).logits
    logits = replicated(logits)  # SPMD: evaluation reads the logits back every batch
    loss = None
    if batch.get("labels") is not None:
        loss = torch.nn.functional.cross_entropy(logits.float(), batch["labels"], ignore_index=IGNORED_LABEL)
    return SequenceClassifierOutput(loss=loss, logits=logits)


def packed_logits(
    model,
    input_ids: Sequence[Sequence[int]],
    lengths: Sequence[int],
    batch_texts: int,
    pad_token_id: int,
    row_length: int,
    slots: int,
):
    """Logits of every text, in input order (numpy, float32): texts packed into rows, `batch_texts` slots a batch."""
    import numpy as np
    import torch

    records = packed_records(input_ids, lengths, [0] * len(lengths), row_length, slots)
    collate = PackedCollator(pad_token_id, row_length, slots, with_index=True)
    per_batch = rows_per_batch(batch_texts, slots)
    out: np.ndarray | None = None
    with torch.inference_mode():
        for start in range(0, len(records), per_batch):
            batch = collate(records[start : start + per_batch])
            index = batch.pop("index")
            batch.pop("labels")
            logits = packed_forward(model, batch).logits.float().numpy()
            if out is None:
                out = np.zeros((len(lengths), logits.shape[-1]), dtype=np.float32)
            filled = index.numpy() >= 0
            out[index.numpy()[filled]] = logits[filled]
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def load_packed_split(tokenized_dir, name: str, row_length: int, slots: int):
    """A tokenized split packed into rows, as a datasets.Dataset (texts, labels, index per row)."""
    from pathlib import Path

    import datasets

    from banglasenti.storage.artifacts import read_parquet

    frame = read_parquet(Path(tokenized_dir) / f"{name}.parquet", ["input_ids", "label", "num_tokens"])
    records = packed_records(
        frame["input_ids"].tolist(), frame["num_tokens"].tolist(), frame["label"].tolist(), row_length, slots
    )
    return datasets.Dataset.from_list(records)


def load_packed_texts(tokenized_dir, name: str) -> PackedTexts:
    """A tokenized split's texts for packed training batches."""
    from pathlib import Path

    from banglasenti.storage.artifacts import read_parquet

    frame = read_parquet(Path(tokenized_dir) / f"{name}.parquet", ["input_ids", "label", "num_tokens"])
    return PackedTexts(frame["input_ids"].tolist(), frame["num_tokens"].tolist(), frame["label"].tolist())
