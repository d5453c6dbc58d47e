"""Models: the base model a run starts from, classifiers built on it, logits of a split."""
