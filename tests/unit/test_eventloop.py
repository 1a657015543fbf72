import asyncio

import pytest
import uvloop
from nimbus.common.config import ConfigError
from nimbus.common.eventloop import loop_factory, loop_name, new_uvloop


@pytest.mark.parametrize("raw", [None, "", "uvloop", " UVLoop "])
def test_uvloop_is_the_default(raw):
    env = {} if raw is None else {"NIMBUS_EVENT_LOOP": raw}
    assert loop_factory(env) is new_uvloop


def test_asyncio_is_the_escape_hatch():
    assert loop_factory({"NIMBUS_EVENT_LOOP": "asyncio"}) is None


def test_an_unknown_loop_names_the_variable():
    with pytest.raises(
        ConfigError, match=r"NIMBUS_EVENT_LOOP='trio' must be one of uvloop, asyncio"
    ):
        loop_factory({"NIMBUS_EVENT_LOOP": "trio"})


def test_loop_names():
    for factory, name in (
        (new_uvloop, "uvloop"),
        (uvloop.new_event_loop, "uvloop"),
        (asyncio.new_event_loop, "asyncio"),
    ):
        loop = factory()
        try:
            assert loop_name(loop) == name
        finally:
            loop.close()
