"""The DAG factory and its scripts: compile, run_local."""
