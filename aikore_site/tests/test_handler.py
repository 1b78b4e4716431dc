"""The web process's HTTP path: OneHopASGIHandler (Django in one thread hop per request) and
PromptReapingServer (daphne forgetting finished requests at once), driven through real ASGI
calls with this module as the URLconf."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import weakref

import pytest
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from aikore_site.handler import OneHopASGIHandler
from aikore_site.webserver import PromptReapingServer

seen: dict[str, object] = {}


def hello(request: HttpRequest) -> HttpResponse:
    seen["thread"] = threading.current_thread().name
    seen["request"] = weakref.ref(request)
    return HttpResponse("hello")


@csrf_exempt
def echo(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"{request.method} {len(request.body)}")


def slow(request: HttpRequest) -> HttpResponse:
    time.sleep(0.5)
    return HttpResponse("slow")


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("secret detail")


def stream(request: HttpRequest) -> StreamingHttpResponse:
    response = StreamingHttpResponse(f"part {i};" for i in range(3))
    response._resource_closers.append(lambda: seen.__setitem__("stream_closed", True))
    return response


urlpatterns = [path("hello", hello), path("echo", echo), path("slow", slow), path("boom", boom),
               path("stream", stream)]


@pytest.fixture
def handler(settings) -> OneHopASGIHandler:
    settings.ROOT_URLCONF = __name__
    settings.ALLOWED_HOSTS = ["testserver"]
    seen.clear()
    return OneHopASGIHandler(threads=2)


async def call(handler: OneHopASGIHandler, url: str, method: str = "GET", body: bytes = b"") -> tuple[int, bytes, list]:
    scope = {"type": "http", "method": method, "path": url, "raw_path": url.encode(), "query_string": b"",
             "root_path": "", "headers": [(b"host", b"testserver"), (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 1), "server": ("testserver", 80), "scheme": "http", "http_version": "1.1",
             "asgi": {"version": "3.0"}}
    chunks = [{"type": "http.request", "body": body[:10], "more_body": True},
              {"type": "http.request", "body": body[10:], "more_body": False}]
    sent: list = []

    async def receive() -> dict:
        if chunks:
            return chunks.pop(0)
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    await handler(scope, receive, send)
    status = sent[0]["status"]
    return status, b"".join(m.get("body", b"") for m in sent[1:]), sent


def test_serves_in_a_pool_thread_and_frees_the_request_without_the_collector(handler, db):
    gc.disable()  # the request must go by reference counting alone
    try:
        status, body, _ = asyncio.run(call(handler, "/hello"))
    finally:
        gc.enable()
    assert (status, body) == (200, b"hello")
    assert str(seen["thread"]).startswith("http")
    assert seen["request"]() is None


def test_request_body_arrives_whole(handler, db):
    status, body, _ = asyncio.run(call(handler, "/echo", "POST", b"x" * 100_000))
    assert (status, body) == (200, b"POST 100000")


@pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume synchronous iterators")
def test_streaming_response_is_sent_in_parts_then_closed(handler, db):
    status, body, sent = asyncio.run(call(handler, "/stream"))
    assert (status, body) == (200, b"part 0;part 1;part 2;")
    assert sent[-1] == {"type": "http.response.body"} and len(sent) > 3
    assert seen["stream_closed"] is True


def test_view_exception_is_a_plain_500(handler, db):
    status, body, _ = asyncio.run(call(handler, "/boom"))
    assert status == 500
    assert b"secret detail" not in body and b"Traceback" not in body


def test_unknown_path_is_404(handler, db):
    assert asyncio.run(call(handler, "/nope"))[0] == 404


def test_a_slow_request_does_not_hold_up_a_quick_one(handler, db):
    async def both() -> list[str]:
        done: list[str] = []

        async def one(url: str) -> None:
            await call(handler, url)
            done.append(url)

        await asyncio.gather(one("/slow"), one("/hello"))
        return done

    assert asyncio.run(both()) == ["/hello", "/slow"]


def test_websocket_scope_is_refused(handler):
    with pytest.raises(ValueError, match="websocket"):
        asyncio.run(handler({"type": "websocket"}, None, None))


# PromptReapingServer: the bookkeeping of daphne's own Server class, with a stand-in protocol.

class Protocol:
    """What daphne's server keys its connection table on."""


def run_request(app, disconnect_first: bool) -> tuple[PromptReapingServer, Protocol]:
    server = PromptReapingServer(app, endpoints=["unix:unused.sock"])  # never listened on
    server.connections = {}  # as Server.run() starts it
    protocol = Protocol()

    async def go() -> None:
        server.protocol_connected(protocol)
        server.create_application(protocol, {"type": "http"})
        if disconnect_first:
            server.protocol_disconnected(protocol)
        await asyncio.sleep(0.05)
        if not disconnect_first:
            server.protocol_disconnected(protocol)
        await asyncio.sleep(0)

    asyncio.run(go())
    return server, protocol


async def finishes(scope, receive, send) -> None:
    return None


async def fails(scope, receive, send) -> None:
    raise RuntimeError("reported by daphne's sweep")


@pytest.mark.parametrize("disconnect_first", [True, False])
def test_finished_request_is_forgotten_at_once(disconnect_first):
    server, protocol = run_request(finishes, disconnect_first)
    assert protocol not in server.connections


def test_failed_request_is_left_for_daphnes_sweep_to_report():
    server, protocol = run_request(fails, disconnect_first=True)
    assert server.connections[protocol]["application_instance"].exception() is not None


def test_connected_client_is_kept():
    server = PromptReapingServer(finishes, endpoints=["unix:unused.sock"])
    server.connections = {}
    protocol = Protocol()

    async def go() -> None:
        server.protocol_connected(protocol)
        server.create_application(protocol, {"type": "http"})
        await asyncio.sleep(0.05)

    asyncio.run(go())
    assert protocol in server.connections
