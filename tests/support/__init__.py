"""What several test files share: the stand-ins (the Vertex AI REST API, XLA's CPU backend in a fresh process, the
locally built images), the locks as tests read them, and the fixtures of `fixtures` (a pytest plugin that
tests/conftest.py loads)."""
