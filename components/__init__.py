"""banglasenti-pipeline steps: prepare, base_model, tokenization, train, evaluate (plus shared modules)."""
