"""The event_loop setting: auto takes uvloop where it is installed; asyncio's own loop
still serves every transport when it is chosen."""

import asyncio

import pytest

from conftest import dm
from helpers import people

from syarah import options
from syarah.server import loop_factory, main, run


async def loop_type():
    return type(asyncio.get_running_loop())


def test_auto_and_uvloop_run_on_uvloop_where_it_is_installed():
    uvloop = pytest.importorskip("uvloop")
    for choice in ("auto", "uvloop"):
        factory, name = loop_factory(choice)
        assert name == f"uvloop {uvloop.__version__}"
        assert run(loop_type, choice) is uvloop.Loop


def test_asyncio_runs_on_asyncio_s_own_loop():
    factory, name = loop_factory("asyncio")
    assert name == "asyncio"
    loop = run(loop_type, "asyncio")
    assert loop.__module__.startswith("asyncio") and "uvloop" not in loop.__module__


def test_an_unknown_loop_is_refused_before_anything_starts(capsys):
    assert options.defaults().event_loop == "auto"
    with pytest.raises(ValueError, match="event_loop must be one of auto, uvloop, asyncio"):
        loop_factory("trio")
    assert main(["--event-loop=trio"]) == 2
    assert "event_loop must be one of" in capsys.readouterr().err


async def test_a_server_on_asyncio_s_loop_serves_websocket_and_polling(make_server,
                                                                       clients):
    srv = make_server("sqlite", "--event-loop=asyncio")
    ann, bob = await people(srv, "Ann", "Bob")
    for transports in (("websocket",), ("polling",)):
        a = await clients(ann, transports=transports)
        chat_id = await dm(a, bob)
        reply = await a.call("createMessage", {"chatHeaderId": chat_id, "message": "hi"})
        assert reply["chatMessage"]["message"] == "hi"
        await a.close()
    assert "event loop: asyncio" in srv.log()
