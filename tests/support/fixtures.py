"""Fixtures that several test files use, loaded for every test by tests/conftest.py (`pytest_plugins`)."""

from collections.abc import Iterator

import pytest

from tests.support.vertex_standin import VertexStandIn, running


@pytest.fixture
def standin() -> Iterator[VertexStandIn]:
    """The Vertex AI REST stand-in (tests/support/vertex_standin.py), served on loopback for one test."""
    with running() as state:
        yield state
