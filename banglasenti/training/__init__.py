"""Training one model: the Trainer, devices and precision, checkpoints, compile cache, curves, smoke runs."""
