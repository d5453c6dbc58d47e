"""The banglasenti-pipeline library: everything the components, pipelines and commands call."""
