"""API latency: GET /api/instances with 50 instances under 20 concurrent clients, against daphne
serving a trivial Django view (/_aikore/ping) in the same run. Target: p99 < 50 ms on 2 cores.

Two load shapes, both straight at daphne's unix socket (keep-alive, raw client: bench/_http.py):
- closed loop: each of the 20 clients sends its next request as soon as the last one answered.
  This is the server's saturation throughput; latency there is mostly queueing (about
  clients / throughput), so it is the demanding reading of "20 concurrent clients".
- paced: each client sends one request every --pace ms, like dashboards and scripts polling.

Also printed: the same closed loop through nginx (what a user on the AiKore port sees), and with
another connection committing writes faster than requests arrive, so that the list and token
reads, which are cached until the database changes (aikore_site/dbcache.py), are rebuilt on
(nearly) every request: the cost without the cache, plus a busy writer.

    .venv/bin/python bench/api.py [--requests 4000] [--concurrency 20] [--pace 500]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterator
from statistics import median

from _http import Load, get_request, load, read_response, tcp, unix
from _stack import percentile, running_stack, write_blueprint


@contextlib.contextmanager
def writing_elsewhere(db_path: str, every: float) -> Iterator[list[int]]:
    """Commit an UPDATE every `every` seconds from another connection, in a thread."""
    stop, count = threading.Event(), [0]

    def writer() -> None:
        db = sqlite3.connect(db_path, timeout=20, isolation_level=None)
        while not stop.wait(every):
            db.execute("UPDATE instances_instance SET restart_count = restart_count + 1 WHERE id = "
                       "(SELECT MIN(id) FROM instances_instance)")
            count[0] += 1
        db.close()

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        yield count
    finally:
        stop.set()
        thread.join()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--pace", type=float, default=500.0, help="ms between a paced client's requests")
    args = parser.parse_args()
    pace = args.pace / 1000
    n, c = args.requests, args.concurrency
    with running_stack():
        from django.conf import settings
        from django.contrib.auth import get_user_model

        from accounts.models import ApiToken
        from instances.models import Instance

        write_blueprint("bench-bp", "# aikore.ready: none\nexec sleep 600\n")
        for i in range(50):
            Instance.objects.create_instance(name=f"bench {i:02d}", blueprint="bench-bp", gpu_ids="0")
        user = get_user_model().objects.get(username="admin")
        _token, raw = ApiToken.issue(user, "bench")
        auth = {"Authorization": f"Bearer {raw}"}
        daphne = unix(str(settings.DAPHNE_SOCKET))
        nginx = tcp(settings.AIKORE_PORT)
        ping, api = get_request("/_aikore/ping"), get_request("/api/instances", auth)

        async def check() -> int:
            reader, writer = await daphne()
            writer.write(api)
            status, body = await read_response(reader)
            writer.close()
            assert status == 200, (status, body[:200])
            return len(json.loads(body))

        assert asyncio.run(check()) == 50
        load(daphne, ping, c, total=500)  # warm-up: threads, connections, caches
        load(daphne, api, c, total=500)
        closed = {"ping": load(daphne, ping, c, total=n), "api": load(daphne, api, c, total=n)}
        paced_n = min(n, 1000)
        paced = {"ping": load(daphne, ping, c, total=paced_n, pace=pace),
                 "api": load(daphne, api, c, total=paced_n, pace=pace)}
        one = get_request(f"/api/instances/{Instance.objects.order_by('id').first().pk}", auth)
        general = load(daphne, one, c, total=n // 2)
        with writing_elsewhere(settings.DATABASES["default"]["NAME"], every=0.0002) as writes:
            churn = load(daphne, api, c, total=n // 2)
        via_nginx = load(nginx, get_request("/api/instances", auth, host=f"127.0.0.1:{settings.AIKORE_PORT}"),
                         c, total=n)

    def ratios(api_load: Load, base: Load) -> str:
        return (f"  ratio api/trivial: p50 {median(api_load.latencies_ms) / median(base.latencies_ms):.2f}x, "
                f"p99 {percentile(api_load.latencies_ms, 99) / percentile(base.latencies_ms, 99):.2f}x, "
                f"throughput {api_load.rps / base.rps:.2f}x")

    print(f"closed loop: {n} requests, {c} concurrent keep-alive clients, daphne over its unix socket")
    print(closed["ping"].line("trivial Django view (/_aikore/ping)"))
    print(closed["api"].line("GET /api/instances (50 instances)"))
    print(ratios(closed["api"], closed["ping"]))
    print(f"paced: {paced_n} requests, {c} clients x one request per {args.pace:g} ms ({c / pace:.0f} req/s offered)")
    print(paced["ping"].line("trivial Django view (/_aikore/ping)"))
    print(paced["api"].line("GET /api/instances (50 instances)"))
    print(ratios(paced["api"], paced["ping"]))
    print("closed loop on the general pool (AIKORE_HTTP_THREADS threads; the list and auth checks have their own):")
    print(general.line("GET /api/instances/<id> (uncached)"))
    print(f"closed loop while another connection commits {writes[0] / churn.seconds:.0f} writes/s "
          f"({churn.rps:.0f} requests/s: cached reads rebuilt on {min(1.0, writes[0] / len(churn.latencies_ms)):.0%} "
          "of requests at most):")
    print(churn.line("GET /api/instances (50 instances)"))
    print(f"closed loop through nginx on the AiKore port ({c} clients):")
    print(via_nginx.line("GET /api/instances (50 instances)"))
    met = {k: percentile(v["api"].latencies_ms, 99) < 50 for k, v in (("closed loop", closed), ("paced", paced))}
    print("target p99 < 50 ms: " + ", ".join(f"{k} {'met' if ok else 'NOT met'}" for k, ok in met.items()))


if __name__ == "__main__":
    main()
