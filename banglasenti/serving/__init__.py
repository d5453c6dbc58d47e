"""Serving: the exported model and its card, predictions, the HTTP server of the serving image."""
