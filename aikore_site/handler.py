"""Django's ASGI handler, serving each HTTP request with one thread hop instead of a dozen.

Django's stock ASGIHandler runs our (sync) middleware and views in async mode: every
`process_request`/`process_response` of every middleware, the view, the `request_started` and
`request_finished` signals each become their own `sync_to_async` call, and each request gets a new
executor thread (`ThreadSensitiveContext`). On a small VM one such hop costs ~100 µs plus a GIL
hand-off, so a trivial view topped out near 230 req/s and `GET /api/instances` near 85 req/s
(bench/api.py).

This handler keeps Django's request parsing and response sending, but builds the *sync* middleware
chain (as under WSGI) and runs request_started → middleware → view → response close in one call on
a long-lived worker thread, as a threaded WSGI server does: the request's DB connection and
transactions stay on one thread. (Streaming responses, which AiKore does not use, are consumed
and closed after the view returns, as Django does for ASGI.)

Two pools. Short, CPU-bound requests queue more fairly on few threads (bench/api.py p99 rose with
the pool size), but some requests block for seconds (deleting a running instance waits for it to
stop; a write may wait for SQLite's lock). So the hottest reads, which never block — nginx's auth
check for every proxied WebUI request, the instance list dashboards and scripts poll, the ping —
run on a small pool of their own, and a few slow requests can never hold them up.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers import base
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import FileResponse, HttpResponse
from django.urls import set_script_prefix

# (method, path) of requests that are cheap and never block: they get the quick pool.
QUICK_REQUESTS = frozenset({
    ("GET", "/_aikore/app/auth"),
    ("GET", "/_aikore/ping"),
    ("GET", "/api/instances"),
})
QUICK_THREADS = 2


class OneHopASGIHandler(ASGIHandler):
    def __init__(self, threads: int | None = None, quick_threads: int = QUICK_THREADS,
                 quick_requests: frozenset[tuple[str, str]] = QUICK_REQUESTS) -> None:
        base.BaseHandler.__init__(self)  # not ASGIHandler.__init__: that builds the async chain
        self.load_middleware(is_async=False)
        self._pool = ThreadPoolExecutor(threads or settings.AIKORE_HTTP_THREADS, thread_name_prefix="http")
        self._quick_pool = ThreadPoolExecutor(quick_threads, thread_name_prefix="http-quick")
        self._quick_requests = quick_requests

    async def __call__(self, scope: dict, receive, send) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        await self.handle(scope, receive, send)

    def _serve(self, scope: dict, body_file) -> HttpResponse:
        """The whole sync part of one request, in one worker thread."""
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is not None:
            response = self.get_response(request)
        response._handler_class = self.__class__
        if isinstance(response, FileResponse):
            response.block_size = self.chunk_size
        if not response.streaming:
            # The body is in memory already: close now (request_finished, DB connection
            # housekeeping) in this thread rather than in a second hop after sending.
            response.close()
            if request is not None:
                # Middleware leave the request in reference cycles (request.user's closure, the
                # request.auser partial, the messages storage), so every request waited for the
                # cyclic garbage collector, whose passes were the main source of tail latency.
                # Nothing reads the request once the response is closed: break them here, and
                # reference counting frees it at once.
                request.__dict__.clear()
        return response

    async def handle(self, scope: dict, receive, send) -> None:
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        quick = (scope.get("method"), scope.get("path")) in self._quick_requests
        pool = self._quick_pool if quick else self._pool
        serving = asyncio.ensure_future(sync_to_async(self._serve, thread_sensitive=False, executor=pool)(
            scope, body_file))
        # A client that goes away stops waiting work: queued requests are dropped, not served.
        disconnect = asyncio.ensure_future(self.listen_for_disconnect(receive))
        try:
            await asyncio.wait((serving, disconnect), return_when=asyncio.FIRST_COMPLETED)
            if not serving.done():
                serving.cancel()  # a request already running finishes (and closes) in its thread
                return
            response = serving.result()
            try:
                await self.send_response(response, send)
            finally:
                if response.streaming:
                    await sync_to_async(response.close, thread_sensitive=False, executor=pool)()
        finally:
            if disconnect.done():
                disconnect.exception()  # RequestAborted, expected: mark it seen
            disconnect.cancel()
            serving.cancel()
            body_file.close()
