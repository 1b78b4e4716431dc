"""API latency: GET /api/instances with 50 instances under 20 concurrent clients, against daphne
serving a trivial Django view (/_aikore/ping) in the same run. Target: p99 < 50 ms on 2 cores.

Two load shapes: closed loop (each of the 20 clients sends its next request as soon as the last
answers: the server's saturation throughput, where latency is mostly queueing, about
clients / throughput) and paced (each client sends one request every --pace ms, like dashboards
and scripts polling: the latency a user sees when the server is not saturated).

    .venv/bin/python bench/api.py [--requests 2000] [--concurrency 20]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import time

import httpx
from _stack import percentile, running_stack


async def load(path: str, headers: dict, total: int, concurrency: int, socket_path: str,
               pace: float = 0.0) -> tuple[list[float], float]:
    latencies: list[float] = []
    remaining = total

    async def worker(index: int) -> None:
        nonlocal remaining
        transport = httpx.AsyncHTTPTransport(uds=socket_path)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", headers=headers) as client:
            next_at = time.perf_counter() + pace * index / concurrency  # spread the clients out
            while remaining > 0:
                remaining -= 1
                if pace:
                    await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                    next_at += pace
                t0 = time.perf_counter()
                response = await client.get(path)
                latencies.append((time.perf_counter() - t0) * 1000)
                if response.status_code != 200:
                    raise SystemExit(f"{path}: HTTP {response.status_code} {response.text[:200]}")

    start = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return latencies, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--pace", type=float, default=500.0, help="ms between a paced client's requests")
    args = parser.parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    pace = args.pace / 1000
    with running_stack():
        from django.conf import settings
        from django.contrib.auth import get_user_model

        from accounts.models import ApiToken
        from instances.models import Instance

        (settings.CUSTOM_BLUEPRINTS_DIR / "bench-bp.sh").write_text("# aikore.ready: none\nexec sleep 600\n")
        for i in range(50):
            Instance.objects.create_instance(name=f"bench {i:02d}", blueprint="bench-bp", gpu_ids="0")
        user = get_user_model().objects.get(username="admin")
        _token, raw = ApiToken.issue(user, "bench")
        headers = {"Authorization": f"Bearer {raw}"}
        sock = str(settings.DAPHNE_SOCKET)
        asyncio.run(load("/_aikore/ping", {}, 200, args.concurrency, sock))  # warm-up
        asyncio.run(load("/api/instances", headers, 200, args.concurrency, sock))
        base, base_time = asyncio.run(load("/_aikore/ping", {}, args.requests, args.concurrency, sock))
        api, api_time = asyncio.run(load("/api/instances", headers, args.requests, args.concurrency, sock))
        paced_n = min(args.requests, 1000)
        base_p, base_p_time = asyncio.run(load("/_aikore/ping", {}, paced_n, args.concurrency, sock, pace))
        api_p, api_p_time = asyncio.run(load("/api/instances", headers, paced_n, args.concurrency, sock, pace))

    def line(label: str, values: list[float], elapsed: float) -> str:
        return (f"{label:<40} p50 {statistics.median(values):6.1f} ms  p99 {percentile(values, 99):6.1f} ms  "
                f"{len(values) / elapsed:7.0f} req/s")

    print(f"closed loop: {args.requests} requests, {args.concurrency} concurrent clients, daphne over its unix socket")
    print(line("trivial Django view (/_aikore/ping)", base, base_time))
    print(line("GET /api/instances (50 instances)", api, api_time))
    print(f"ratio api/trivial: p50 {statistics.median(api) / statistics.median(base):.2f}x, "
          f"p99 {percentile(api, 99) / percentile(base, 99):.2f}x, "
          f"throughput {(len(api) / api_time) / (len(base) / base_time):.2f}x")
    offered = args.concurrency / pace
    print(f"paced: {paced_n} requests, {args.concurrency} clients x one request per {args.pace:g} ms "
          f"({offered:.0f} req/s offered)")
    print(line("trivial Django view (/_aikore/ping)", base_p, base_p_time))
    print(line("GET /api/instances (50 instances)", api_p, api_p_time))
    print(f"ratio api/trivial (paced): p50 {statistics.median(api_p) / statistics.median(base_p):.2f}x, "
          f"p99 {percentile(api_p, 99) / percentile(base_p, 99):.2f}x")
    print(f"target p99 < 50 ms: closed loop {'met' if percentile(api, 99) < 50 else 'NOT met'}, "
          f"paced {'met' if percentile(api_p, 99) < 50 else 'NOT met'}")


if __name__ == "__main__":
    main()
