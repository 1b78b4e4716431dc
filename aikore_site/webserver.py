"""daphne, as supervisord runs it: `python -m aikore_site.webserver <daphne arguments>`.

One change to daphne's server: a finished request is forgotten as soon as it is done. Stock
daphne keeps every request's protocol object, ASGI scope, task and coroutine until a sweep that
runs once a second, so under load a second's worth of requests (1-2 thousand, ~60k objects)
stayed alive, got promoted to the garbage collector's oldest generation and made its passes
take 30-60 ms, during which no request is served (bench/api.py p99). Requests that ended with an
exception, or whose client is still connected, are left to daphne's own sweep, which reports and
times them out as before.
"""

from __future__ import annotations

import asyncio
from functools import partial

from daphne.cli import CommandLineInterface
from daphne.server import Server


class PromptReapingServer(Server):
    def create_application(self, protocol, scope):
        queue = super().create_application(protocol, scope)
        instance = self.connections.get(protocol, {}).get("application_instance")
        if instance is not None:
            instance.add_done_callback(partial(self._reap_if_clean, protocol))
        return queue

    def protocol_disconnected(self, protocol) -> None:
        if protocol not in self.connections:
            return  # reaped already; daphne may report a disconnect twice (websocket rejections)
        super().protocol_disconnected(protocol)
        instance = self.connections.get(protocol, {}).get("application_instance")
        if instance is not None and instance.done():
            self._reap_if_clean(protocol, instance)

    def _reap_if_clean(self, protocol, instance: asyncio.Future) -> None:
        details = self.connections.get(protocol)
        if (details is not None and details.get("disconnected") and details.get("application_instance") is instance
                and not instance.cancelled() and instance.exception() is None):
            del self.connections[protocol]


class WebServerCLI(CommandLineInterface):
    server_class = PromptReapingServer


if __name__ == "__main__":
    WebServerCLI.entrypoint()
