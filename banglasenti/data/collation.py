"""Tokenized splits into batches: a split as a datasets.Dataset, and pre-padded bucketed texts stacked into one
batch (packed rows: banglasenti/data/packing.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from banglasenti.storage.artifacts import read_parquet

IGNORED_LABEL = -100  # cross-entropy's ignore_index: filler rows of padded batches


class BucketCollator:
    """Stack pre-padded examples; a batch takes the largest bucket in it (still a bucket length).

    With `batch_size`, a short batch (the last of an epoch) is topped up with filler rows labelled -100, which
    the loss and the metrics ignore, so that XLA sees one batch shape per bucket.
    """

    def __init__(self, pad_token_id: int, batch_size: int | None = None):
        self.pad_token_id = pad_token_id
        self.batch_size = batch_size

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        rows = max(len(features), self.batch_size or 0)
        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((rows, width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((rows, width), dtype=torch.long)
        mask[len(features) :, 0] = 1  # filler rows attend to one pad token
        labels = torch.full((rows,), IGNORED_LABEL, dtype=torch.long)
        for row, feature in enumerate(features):
            n = len(feature["input_ids"])
            ids[row, :n] = torch.as_tensor(feature["input_ids"], dtype=torch.long)
            mask[row, :n] = torch.as_tensor(feature["attention_mask"], dtype=torch.long)
            labels[row] = int(feature["label"])
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def load_tokenized_split(tokenized_dir: str | Path, name: str):
    """A tokenized split as a datasets.Dataset (input_ids, attention_mask, label, length)."""
    import datasets

    frame = read_parquet(Path(tokenized_dir) / f"{name}.parquet", ["input_ids", "attention_mask", "label", "length"])
    return datasets.Dataset.from_pandas(frame, preserve_index=False)
