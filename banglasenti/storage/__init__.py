"""Artifacts on disk and in GCS: atomic files, committed directories, manifests, lineage metadata."""
