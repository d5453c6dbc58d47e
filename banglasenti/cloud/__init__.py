"""Vertex AI services the steps call: the Model Registry."""
