"""Fixtures of the unit tier (no servers but in-process fakes on loopback sockets)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.fakegateway import GatewayState, serving


@pytest.fixture
def gateway() -> Iterator[tuple[str, GatewayState]]:
    """The fake gateway (REST contract only): its URL and its state."""
    with serving() as gw:
        yield gw
