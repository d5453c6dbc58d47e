"""Running pipelines on this machine: the local runners, Cloud Storage FUSE semantics, the run's console."""
