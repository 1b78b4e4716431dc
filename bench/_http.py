"""A raw keep-alive HTTP/1.1 load generator for the benchmarks.

Why not httpx: on this 2-core machine the client shares the CPU with the server it measures, and
httpx spends ~1.2 ms of CPU per request (more than the Django views under test), so its own
queueing showed up as server latency. This client writes a prepared request and reads the
response with one `readuntil` and one `readexactly` (~0.1 ms).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from _stack import percentile

Opener = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


def tcp(port: int, host: str = "127.0.0.1") -> Opener:
    return lambda: asyncio.open_connection(host, port)


def unix(path: str) -> Opener:
    return lambda: asyncio.open_unix_connection(path)


def get_request(path: str, headers: dict[str, str] | None = None, host: str = "127.0.0.1") -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}"] + [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@dataclass
class Load:
    latencies_ms: list[float]
    seconds: float

    @property
    def rps(self) -> float:
        return len(self.latencies_ms) / self.seconds

    def line(self, label: str, width: int = 44) -> str:
        return (f"  {label:<{width}} {self.rps:7.0f} req/s  p50 {statistics.median(self.latencies_ms):6.2f} ms  "
                f"p99 {percentile(self.latencies_ms, 99):6.2f} ms")


def merged(loads: list[Load]) -> Load:
    return Load([v for x in loads for v in x.latencies_ms], sum(x.seconds for x in loads))


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Read one HTTP/1.1 response (Content-Length or chunked); return its status and body."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    if "content-length" in headers:
        return status, await reader.readexactly(int(headers["content-length"]))
    body = b""
    if headers.get("transfer-encoding") == "chunked":
        while True:
            size = int((await reader.readline()).strip(), 16)
            body += (await reader.readexactly(size + 2))[:-2]
            if size == 0:
                break
    return status, body


async def _load(opener: Opener, request: bytes, concurrency: int, *, seconds: float = 0.0,
                total: int = 0, pace: float = 0.0) -> Load:
    """Keep-alive requests from `concurrency` connections, for `seconds` or `total` requests.

    With `pace` (seconds), each connection sends one request every `pace` (an open, polling
    load: dashboards and scripts); without it, the next as soon as the last one answered (a closed
    loop: the server's saturation throughput, where latency is mostly queueing)."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds if seconds else float("inf")
    remaining = total or -1

    async def client(index: int) -> None:
        nonlocal remaining
        reader, writer = await opener()
        next_at = time.perf_counter() + pace * index / concurrency  # spread the clients out
        try:
            while remaining != 0 and time.perf_counter() < deadline:
                remaining -= 1
                if pace:
                    await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                    next_at += pace
                t0 = time.perf_counter()
                writer.write(request)
                try:
                    status, body = await read_response(reader)
                except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError) as exc:
                    if getattr(exc, "partial", b""):
                        raise
                    # nginx closes a client connection after keepalive_requests (1000): reconnect,
                    # as a browser would, and count the reconnect in this request's time.
                    writer.close()
                    reader, writer = await opener()
                    writer.write(request)
                    status, body = await read_response(reader)
                latencies.append((time.perf_counter() - t0) * 1000)
                if status != 200:
                    raise SystemExit(f"{request.split(b' ')[1].decode()}: HTTP {status} {body[:200]!r}")
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(concurrency)))
    return Load(latencies, time.perf_counter() - started)


def load(opener: Opener, request: bytes, concurrency: int, *, seconds: float = 0.0, total: int = 0,
         pace: float = 0.0) -> Load:
    return asyncio.run(_load(opener, request, concurrency, seconds=seconds, total=total, pace=pace))
