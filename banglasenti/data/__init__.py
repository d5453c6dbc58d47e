"""Data: input tables, cleaning and splitting, token ids, batches and packed rows; the embedded sample."""
