"""The web process's HTTP path: OneHopASGIHandler (Django in one thread hop per request) and
PromptReapingServer (daphne forgetting finished requests at once), driven through real ASGI
calls with this module as the URLconf."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
from collections.abc import Iterator

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


release = threading.Event()


def slow(request: HttpRequest) -> HttpResponse:
    """Blocks its thread until the test releases it (a delete waiting for an instance to stop)."""
    seen.setdefault("slow_started", []).append(1)
    release.wait(10)
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
def handler(settings) -> Iterator[OneHopASGIHandler]:
    settings.ROOT_URLCONF = __name__
    settings.ALLOWED_HOSTS = ["testserver"]
    seen.clear()
    release.clear()
    yield OneHopASGIHandler(threads=2, quick_threads=1, quick_requests=frozenset({("GET", "/hello")}))
    release.set()


async def call(handler: OneHopASGIHandler, url: str, method: str = "GET", body: bytes = b"",
               headers: dict[str, str] | None = None,
               gone: asyncio.Event | None = None) -> tuple[int | None, bytes, list]:
    """One request through the handler as daphne makes it; `gone` set = the client disconnects."""
    header_list = [(b"host", b"testserver"), (b"content-length", str(len(body)).encode())]
    header_list += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    scope = {"type": "http", "method": method, "path": url, "raw_path": url.encode(), "query_string": b"",
             "root_path": "", "headers": header_list,
             "client": ("127.0.0.1", 1), "server": ("testserver", 80), "scheme": "http", "http_version": "1.1",
             "asgi": {"version": "3.0"}}
    chunks = [{"type": "http.request", "body": body[:10], "more_body": True},
              {"type": "http.request", "body": body[10:], "more_body": False}]
    sent: list = []
    gone = gone or asyncio.Event()

    async def receive() -> dict:
        if chunks:
            return chunks.pop(0)
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    await handler(scope, receive, send)
    status = sent[0]["status"] if sent else None
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


def test_blocked_pool_does_not_hold_up_the_quick_pool(handler, db):
    """Both general threads blocked (and a third slow request queued): the quick lane answers."""
    async def scenario() -> list[str]:
        done: list[str] = []

        async def one(url: str) -> None:
            await call(handler, url)
            done.append(url)

        slow_ones = [asyncio.ensure_future(one("/slow")) for _ in range(3)]
        await asyncio.wait_for(one("/hello"), 5)
        release.set()
        await asyncio.gather(*slow_ones)
        return done

    assert asyncio.run(scenario()) == ["/hello", "/slow", "/slow", "/slow"]


def test_a_client_that_left_is_not_served(handler, db):
    """A request still queued when its client disconnects is dropped, not run later."""
    async def scenario() -> tuple:
        blockers = [asyncio.ensure_future(call(handler, "/slow")) for _ in range(2)]
        while len(seen.get("slow_started", [])) < 2:
            await asyncio.sleep(0.01)
        gone = asyncio.Event()
        queued = asyncio.ensure_future(call(handler, "/slow", gone=gone))
        await asyncio.sleep(0.05)
        gone.set()
        result = await asyncio.wait_for(queued, 5)
        release.set()
        await asyncio.gather(*blockers)
        await asyncio.sleep(0.1)
        return result

    status, _body, sent = asyncio.run(scenario())
    assert status is None and sent == []
    assert len(seen["slow_started"]) == 2  # the dropped request never reached the view


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


# The project's own pages through the handler: sessions, CSRF, login, messages, the API.

def cookies_from(sent: list) -> dict[str, str]:
    from http.cookies import SimpleCookie

    jar: dict[str, str] = {}
    for name, value in sent[0]["headers"]:
        if name.lower() == b"set-cookie":
            jar.update({k: m.value for k, m in SimpleCookie(value.decode()).items()})
    return jar


@pytest.mark.django_db(transaction=True)  # the pool threads must see the user this test creates
def test_login_session_csrf_and_api_through_the_handler(alice, settings):
    handler = OneHopASGIHandler(threads=2)
    csrf_name, session_name = settings.CSRF_COOKIE_NAME, settings.SESSION_COOKIE_NAME

    async def scenario() -> None:
        status, body, sent = await call(handler, "/")
        assert status == 302  # anonymous: to the login page
        status, body, sent = await call(handler, "/login/")
        assert status == 200 and b"password" in body
        jar = cookies_from(sent)
        form = f"csrfmiddlewaretoken={jar[csrf_name]}&username=alice&password=alice-password".encode()
        cookie = f"{csrf_name}={jar[csrf_name]}"
        form_headers = {"content-type": "application/x-www-form-urlencoded", "cookie": cookie}
        status, _, _ = await call(handler, "/login/", "POST", form.replace(b"csrfmiddlewaretoken=", b"x="),
                                  form_headers)
        assert status == 403  # no CSRF token in the form
        status, _, sent = await call(handler, "/login/", "POST", form, form_headers)
        assert status == 302
        jar.update(cookies_from(sent))
        cookie = f"{csrf_name}={jar[csrf_name]}; {session_name}={jar[session_name]}"
        status, body, _ = await call(handler, "/", headers={"cookie": cookie})
        assert status == 200 and b"alice" in body
        status, body, _ = await call(handler, "/api/instances", headers={"cookie": cookie})  # quick lane
        assert (status, body) == (200, b"[]")
        api_write = {"cookie": cookie, "content-type": "application/json"}
        status, _, _ = await call(handler, "/api/instances", "POST", b'{"name": "x", "blueprint": "y"}', api_write)
        assert status in (401, 403)  # a session write without X-CSRFToken
        status, body, _ = await call(handler, "/api/instances", "POST", b'{"name": "x", "blueprint": "nope"}',
                                     {**api_write, "x-csrftoken": jar[csrf_name]})
        assert status in (404, 422) and b"detail" in body  # past CSRF: the blueprint is unknown

    asyncio.run(scenario())
