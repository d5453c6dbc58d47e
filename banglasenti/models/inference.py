"""Logits of a tokenized split in its order, in batches: bucketed, or texts packed into rows."""

from __future__ import annotations

import numpy as np


def predict_logits(model, dataset, batch_size: int, pad_token_id: int, packing=None) -> np.ndarray:
    """Logits for every example of a tokenized split, in order; with a TokenizeConfig whose `packing` is on,
    the texts are packed into rows (`batch_size` text slots a batch)."""
    import torch

    from banglasenti.data.collation import BucketCollator

    if packing is not None and packing.packing:
        from banglasenti.data.packing import packed_logits

        lengths = [int(np.sum(mask)) for mask in dataset["attention_mask"]]
        return packed_logits(
            model, dataset["input_ids"], lengths, batch_size, pad_token_id, packing.max_length, packing.pack_slots
        )

    collate = BucketCollator(pad_token_id)
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(dataset), batch_size):
            batch = collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
            batch.pop("labels")
            outputs.append(model(**batch).logits.float())
    return torch.cat(outputs).numpy()
