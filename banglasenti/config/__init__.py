"""The experiment's typed configuration, the run parameters behind it, container image references."""
