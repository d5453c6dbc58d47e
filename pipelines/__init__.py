"""Pipelines: their definitions and the commands people run.

Definitions: pipeline.py (the DAG factory and the main pipeline), vertex.py (what the vertex target adds),
sweep_pipeline.py, smoke_pipeline.py, registry_upload.py. Commands (`python pipelines/<name>.py --help`):
compile, submit, preflight, run_local, sweep.
"""
