"""nginx in front of the demo WebUI, against the demo WebUI on its own port, in the same run.

Prints: requests/s and p50/p99 latency of GET /echo through the apps origin (auth_request on the
app credential, with nginx's short auth cache as shipped, and with it off so Django answers every
check) and the public port vs direct; the app-auth view's own Django time; websocket echo
round-trip through nginx vs direct; the hand-off's time to first byte (a browser holding only its
control-plane session opens an app: the app origin's sign-in page, the control plane's hand-off
page, the redeem, the app's first byte); time from a start job to the instance answering through
the proxy (and directly); reload time with 50 instances (render, nginx -t, SIGHUP, until the new
location answers). Targets: >= 85 % of direct throughput with the login check, < 1 ms added
websocket round-trip, reload < 100 ms.

    .venv/bin/python bench/proxy.py [--seconds 4] [--concurrency 16] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import statistics
import sys
import time

import httpx
from _http import Load, get_request, merged, tcp
from _http import load as http_load
from _stack import REPO, percentile, running_stack, write_blueprint
from websockets.sync.client import connect

PUBLIC_RANGE = "21501-21560"  # below the ephemeral range (32768+)
BENCH_BLUEPRINT = """#!/usr/bin/env bash
# aikore.name: Demo WebUI (TCP_NODELAY, bench only)
# aikore.description: blueprints/demo_webui.py with Nagle off
# aikore.ready: http /
exec {python} -c 'import runpy, socketserver, sys; socketserver.StreamRequestHandler.disable_nagle_algorithm = True; \
runpy.run_path(sys.argv[1], run_name="__main__")' {demo}
"""


def load(port: int, path: str, cookie: str, seconds: float, concurrency: int) -> Load:
    request = get_request(path, {"Cookie": cookie}, host=f"127.0.0.1:{port}")
    return http_load(tcp(port), request, concurrency, seconds=seconds)


def ws_round_trips(url: str, cookie: str, count: int) -> list[float]:
    with connect(url, additional_headers={"Cookie": cookie}, open_timeout=10) as ws:
        for _ in range(50):  # warm-up
            ws.send("warm")
            ws.recv(timeout=5)
        times = []
        for n in range(count):
            t0 = time.perf_counter()
            ws.send(f"ping {n}")
            ws.recv(timeout=5)
            times.append((time.perf_counter() - t0) * 1000)
    return times


def probe_client(cookie: str) -> httpx.Client:
    """A client that opens a fresh connection per request: a kept-alive one may sit on an nginx
    worker that a reload is retiring, and would see the old config."""
    return httpx.Client(headers={"Cookie": cookie}, timeout=2, limits=httpx.Limits(max_keepalive_connections=0))


def wait_answer(url: str, cookie: str, timeout: float = 60, ok=lambda r: r.status_code == 200,
                client: httpx.Client | None = None) -> float:
    """Poll until `ok`; the moment it answered. Pass a ready client where the client's own set-up
    (tens of ms for httpx) must not count."""
    deadline = time.monotonic() + timeout
    with contextlib.ExitStack() as stack:
        if client is None:
            client = stack.enter_context(probe_client(cookie))
        while time.monotonic() < deadline:
            try:
                if ok(client.get(url)):
                    return time.perf_counter()
            except httpx.HTTPError:
                pass
            time.sleep(0.002)
    raise SystemExit(f"{url} did not answer in {timeout} s")


CODE_RE = re.compile(r'id="aikore-code" type="application/json">([^<]+)<')


def hand_off(client: httpx.Client, main_port: int, origin: str, origin_port: int, next_path: str) -> httpx.Response:
    """What the browser does after the app origin's sign-in page: the control plane's hand-off page
    (its script reads the code), then the redeem on the app origin, which sets the app cookie."""
    page = client.get(f"http://127.0.0.1:{main_port}/_aikore/handoff", params={"to": origin, "next": next_path})
    code = json.loads(CODE_RE.search(page.text).group(1))
    return client.get(f"http://127.0.0.1:{origin_port}/_aikore/redeem", params={"code": code, "next": next_path})


def serve_ok(port: int) -> None:
    """A stand-in app on `port` that answers 200 (for the reload measurement)."""
    import http.server
    import threading

    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=4.0, help="per measurement and round")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ws-count", type=int, default=2000)
    args = parser.parse_args()
    with running_stack(AIKORE_PUBLIC_PORT_RANGE=PUBLIC_RANGE):
        import threading

        from django.conf import settings
        from django.contrib.auth import get_user_model
        from django.core.handlers.base import BaseHandler
        from django.test import Client, RequestFactory

        from instances.models import Instance, InstanceStatus
        from proxy import nginx

        main_port, apps_port = settings.AIKORE_PORT, settings.AIKORE_APPS_PORT
        wait_answer(f"http://127.0.0.1:{main_port}/api/health", "", 60)
        user = get_user_model().objects.get(username="admin")
        django_client = Client()
        django_client.force_login(user)
        session = django_client.cookies[settings.SESSION_COOKIE_NAME].value
        session_cookie = f"{settings.SESSION_COOKIE_NAME}={session}"
        browser = httpx.Client(cookies={settings.SESSION_COOKIE_NAME: session}, timeout=10)
        hand_off(browser, main_port, "apps", apps_port, "/")
        app_secret = browser.cookies[settings.APP_COOKIE_NAME]
        # What a browser sends to an app origin: both cookies (cookies are shared across ports).
        cookie = f"{session_cookie}; {settings.APP_COOKIE_NAME}={app_secret}"

        # --- start job -> answering through the proxy ------------------------------------------
        # The stock demo writes headers and body in two send()s with Nagle on, so a keep-alive
        # client waits ~40 ms for the delayed ACK on every request, direct or proxied alike. The
        # bench runs the same app with TCP_NODELAY so the figures measure the proxy, not that stall.
        write_blueprint("bench-demo", BENCH_BLUEPRINT.format(
            python=shlex.quote(sys.executable), demo=shlex.quote(str(REPO / "blueprints" / "demo_webui.py"))))
        demo = Instance.objects.create_instance(name="bench demo", blueprint="bench-demo")
        seen: dict[str, float] = {}

        def watch_direct() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and "direct" not in seen:
                demo_port = Instance.objects.filter(pk=demo.pk).values_list("port", flat=True).first()
                if demo_port:
                    seen["direct"] = wait_answer(f"http://127.0.0.1:{demo_port}/health", "", 60)
                    return
                time.sleep(0.002)

        watcher = threading.Thread(target=watch_direct, daemon=True)
        t_start = time.perf_counter()
        demo.start()
        watcher.start()
        try:
            t_proxy = wait_answer(f"http://127.0.0.1:{apps_port}/instance/{demo.slug}/health", cookie, 60)
        except SystemExit:
            demo.refresh_from_db()
            print(f"the bench app: {demo.status} {demo.error_message}\n{demo.log_tail(3000)}", file=sys.stderr)
            raise
        watcher.join(60)
        demo.refresh_from_db()
        port, public_port = demo.port, demo.public_port
        prefix = f"/instance/{demo.slug}"
        hand_off(browser, main_port, f"port:{public_port}", public_port, "/")

        # --- HTTP throughput -------------------------------------------------------------------
        load(port, "/echo?n=1", cookie, 1, args.concurrency)  # warm-up
        load(apps_port, f"{prefix}/echo?n=1", cookie, 1, args.concurrency)
        direct, proxied, public, uncached = [], [], [], []
        for _ in range(args.rounds):
            direct.append(load(port, "/echo?n=1", cookie, args.seconds, args.concurrency))
            proxied.append(load(apps_port, f"{prefix}/echo?n=1", cookie, args.seconds, args.concurrency))
            public.append(load(public_port, "/echo?n=1", cookie, args.seconds, args.concurrency))
        cache_seconds = settings.AIKORE_AUTH_CACHE_SECONDS
        settings.AIKORE_AUTH_CACHE_SECONDS = 0  # Django answers every auth_request
        assert nginx.regenerate().ok
        time.sleep(0.3)
        for _ in range(args.rounds):
            uncached.append(load(apps_port, f"{prefix}/echo?n=1", cookie, args.seconds, args.concurrency))
        settings.AIKORE_AUTH_CACHE_SECONDS = cache_seconds
        assert nginx.regenerate().ok
        direct_l, proxied_l, public_l, uncached_l = merged(direct), merged(proxied), merged(public), merged(uncached)

        # The app-auth view's own Django work (middleware, credential lookup, view).
        handler = BaseHandler()
        handler.load_middleware(is_async=False)
        factory = RequestFactory()
        auth_times = []
        for _ in range(2000):
            request = factory.get("/_aikore/app/auth", HTTP_X_AIKORE_ORIGIN="apps", HTTP_COOKIE=cookie)
            t0 = time.perf_counter()
            response = handler.get_response(request)
            auth_times.append((time.perf_counter() - t0) * 1000)
            assert response.status_code == 200, response.status_code

        # --- websocket round-trip ----------------------------------------------------------------
        ws_direct = ws_round_trips(f"ws://127.0.0.1:{port}/ws", cookie, args.ws_count)
        ws_proxy = ws_round_trips(f"ws://127.0.0.1:{apps_port}{prefix}/ws", cookie, args.ws_count)

        # --- the hand-off: opening an app with only the control-plane session ------------------
        handoffs = []
        app_url = f"http://127.0.0.1:{apps_port}{prefix}/echo?n=1"
        for _ in range(50):
            fresh = httpx.Client(cookies={settings.SESSION_COOKIE_NAME: session}, timeout=10)
            fresh.get(f"http://127.0.0.1:{main_port}/_aikore/ping")  # connections open, as in a browser
            fresh.get(f"http://127.0.0.1:{apps_port}/_aikore/origins.js")
            t0 = time.perf_counter()
            signin = fresh.get(app_url)
            assert signin.status_code == 401, signin.status_code
            landed = hand_off(fresh, main_port, "apps", apps_port, f"{prefix}/echo?n=1")
            with fresh.stream("GET", f"http://127.0.0.1:{apps_port}{landed.headers['location']}") as first:
                next(first.iter_raw(1))
                handoffs.append((time.perf_counter() - t0) * 1000)
                assert first.status_code == 200
            fresh.close()
        ws_direct2 = ws_round_trips(f"ws://127.0.0.1:{port}/ws", cookie, args.ws_count)
        ws_direct += ws_direct2

        # --- reload with 50 instances --------------------------------------------------------
        for n in range(50):
            fake = Instance.objects.create_instance(name=f"reload {n:02d}", blueprint="demo-webui")
            Instance.objects.filter(pk=fake.pk).update(want_running=True, status=InstanceStatus.RUNNING,
                                                       port=21400 + n, public_port=21510 + n)
        assert nginx.regenerate().ok
        total, installs = [], []
        prober = probe_client(cookie)
        for n in range(10):
            extra = Instance.objects.create_instance(name=f"reload extra {n}", blueprint="demo-webui")
            serve_ok(21470 + n)
            Instance.objects.filter(pk=extra.pk).update(want_running=True, status=InstanceStatus.RUNNING,
                                                        port=21470 + n)
            url = f"http://127.0.0.1:{apps_port}/instance/{extra.slug}/"
            t0 = time.perf_counter()
            result = nginx.regenerate()
            installs.append(result.duration_ms)
            assert result.ok and result.reloaded, result
            # Before the reload: the status page (503); after: the stand-in app's 200.
            t_served = wait_answer(url, cookie, 10, client=prober)
            total.append((t_served - t0) * 1000)
        prober.close()
        locations = nginx.config_path().read_text().split("listen", 3)[2].count("location /instance/")

    def pct(a: Load, b: Load) -> str:
        return f"{100 * a.rps / b.rps:5.1f} % of direct"

    print(f"proxy benchmark: {args.rounds} rounds x {args.seconds:g} s, {args.concurrency} keep-alive connections, "
          f"GET /echo on the demo WebUI; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end")
    print(direct_l.line("direct to the app's port"))
    print(proxied_l.line(f"apps port /instance/<slug>/ (auth cache {cache_seconds} s)") + "  " + pct(proxied_l, direct_l))
    print(public_l.line(f"nginx public port (auth cache {cache_seconds} s)") + "  " + pct(public_l, direct_l))
    print(uncached_l.line("apps port (Django on every request)") + "  " + pct(uncached_l, direct_l))
    print(f"  app-auth view, Django work in-process: p50 {statistics.median(auth_times) * 1000:.0f} us  "
          f"p99 {percentile(auth_times, 99) * 1000:.0f} us")
    added = statistics.median(ws_proxy) - statistics.median(ws_direct)
    print(f"websocket echo round-trip ({args.ws_count} messages): direct p50 {statistics.median(ws_direct):.3f} ms "
          f"p99 {percentile(ws_direct, 99):.3f} ms; through nginx p50 {statistics.median(ws_proxy):.3f} ms "
          f"p99 {percentile(ws_proxy, 99):.3f} ms; added p50 {added:.3f} ms")
    print(f"hand-off, app URL to the app's first byte (sign-in page, hand-off page, redeem, app; {len(handoffs)} runs): "
          f"p50 {statistics.median(handoffs):.1f} ms  p99 {percentile(handoffs, 99):.1f} ms")
    if "direct" in seen:
        direct_start = f"{(seen['direct'] - t_start) * 1000:.0f} ms"
    else:
        direct_start = "not seen"
    print(f"start job -> answering through the proxy: {(t_proxy - t_start) * 1000:.0f} ms "
          f"(on its own port: {direct_start})")
    print(f"reload with {locations - 1} instance locations (10 runs): regenerate (render + nginx -t + SIGHUP) "
          f"p50 {statistics.median(installs):.1f} ms max {max(installs):.1f} ms; until the new location answers "
          f"p50 {statistics.median(total):.1f} ms max {max(total):.1f} ms")
    ok_rps = proxied_l.rps >= 0.85 * direct_l.rps
    print(f"targets: throughput >= 85 %: {'met' if ok_rps else 'NOT met'}; websocket added < 1 ms: "
          f"{'met' if added < 1 else 'NOT met'}; reload operation < 100 ms: "
          f"{'met' if max(installs) < 100 else 'NOT met'} (the new location answers ~100 ms later: nginx's "
          f"master pauses a fixed 100 ms before retiring old workers)")


if __name__ == "__main__":
    main()
