"""Django's ASGI handler, serving each HTTP request with one thread hop instead of a dozen.

Django's stock ASGIHandler runs our (sync) middleware and views in async mode: every
`process_request`/`process_response` of every middleware, the view, the `request_started` and
`request_finished` signals each become their own `sync_to_async` call, and each request gets a new
executor thread (`ThreadSensitiveContext`). On a small VM one such hop costs ~100 µs plus a GIL
hand-off, so a trivial view topped out near 230 req/s and `GET /api/instances` near 85 req/s
(bench/api.py).

This handler keeps Django's request parsing and response sending, but builds the *sync* middleware
chain (as under WSGI) and runs request_started → middleware → view → response close in one call on
a small pool of long-lived threads — exactly what a threaded WSGI server does, so the usual
one-thread-per-request guarantees (DB connection, transactions) hold. Streaming responses are
closed after their body is sent, as Django does.
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


class OneHopASGIHandler(ASGIHandler):
    def __init__(self, threads: int | None = None) -> None:
        base.BaseHandler.__init__(self)  # not ASGIHandler.__init__: that builds the async chain
        self.load_middleware(is_async=False)
        self._executor = ThreadPoolExecutor(threads or settings.AIKORE_HTTP_THREADS, thread_name_prefix="http")

    async def __call__(self, scope: dict, receive, send) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        await self.handle(scope, receive, send)

    def _in_thread(self, func):
        return sync_to_async(func, thread_sensitive=False, executor=self._executor)

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
        try:
            response = await self._in_thread(self._serve)(scope, body_file)
            try:
                await self.send_response(response, send)
            except (asyncio.CancelledError, OSError):
                pass  # client went away mid-response
            finally:
                if response.streaming:
                    await self._in_thread(response.close)()
        finally:
            body_file.close()
