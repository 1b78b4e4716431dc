"""The instance terminal, on a throwaway stack, through nginx as a browser reaches it.

1. Keystroke echo round trip: a websocket client (acknowledging output like the dashboard's
   xterm.js) types one character at a time at the shell's prompt and times until bash's echo of it
   arrives: browser -> nginx -> daphne -> pty -> tmux client -> tmux server -> bash and back.
   --keys keystrokes, one every --pace seconds. Target: p99 < 20 ms. Also shown: the same over
   daphne's unix socket (no nginx), and the baseline of the same keystrokes into bash on a local
   pty (no tmux, no websocket), measured in the same run.
2. Flood: `cat` of a --mb MB text file in the shell, timed from Enter until the marker echoed
   after it arrives; baseline: `cat` of the same file to a local pty, read to its end; between
   them, the same cat in a tmux server with no client (tmux's own share of the cost). tmux does
   not forward every byte of a flood to a client that is behind: it skips to the current screen,
   so "delivered" says how many bytes reached the client. The web process's RSS is sampled during
   the flood (flow control bounds it).

    .venv/bin/python bench/terminal.py [--keys 300] [--pace 0.02] [--mb 20]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import threading
import time
from pathlib import Path

import psutil
from _stack import percentile, running_stack, write_blueprint

from aikore_site.files import atomic_write

LINE = "the quick brown fox jumps over the lazy dog; 0123456789 {:08d}\n"


class WsTerm:
    """Reads the terminal websocket in a thread, acknowledging like xterm.js; keeps the output."""

    def __init__(self, conn) -> None:
        self.conn = conn
        self.data = bytearray()
        self.received = 0
        self.cond = threading.Condition()
        self.closed = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                message = self.conn.recv()
            except Exception:
                with self.cond:
                    self.closed = True
                    self.cond.notify_all()
                return
            if isinstance(message, bytes):
                self.received += len(message)
                self.conn.send(json.dumps({"type": "ack", "bytes": self.received}))
                with self.cond:
                    self.data += message
                    self.cond.notify_all()

    def send(self, data: bytes) -> None:
        self.conn.send(data)

    def mark(self) -> int:
        with self.cond:
            return len(self.data)

    def wait_for(self, needle: bytes, start: int, timeout: float = 30.0) -> float:
        """Wait until needle appears in the output after position start; return the time seen."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while needle not in self.data[start:]:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.closed:
                    raise SystemExit(f"terminal: {needle!r} did not arrive; tail {bytes(self.data[-300:])!r}")
                self.cond.wait(remaining)
            return time.perf_counter()

    def quiet(self, seconds: float = 0.15) -> None:
        """Until no output came for `seconds`."""
        last = self.mark()
        while True:
            time.sleep(seconds)
            now = self.mark()
            if now == last:
                return
            last = now


class LocalPty(WsTerm):
    """The baseline: a process on a pty of our own, read directly."""

    def __init__(self, argv: list[str], cwd: str) -> None:
        master, slave = os.openpty()
        env = {"PATH": "/usr/bin:/bin", "TERM": "xterm-256color", "LANG": "C.UTF-8", "HOME": os.environ.get("HOME", "/"),
               "PS1": "$ "}
        self.proc = subprocess.Popen(["setsid", "-c", *argv], stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd)
        os.close(slave)
        self.master = master
        self.data = bytearray()
        self.received = 0
        self.cond = threading.Condition()
        self.closed = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                chunk = b""
            with self.cond:
                if not chunk:
                    self.closed = True
                    self.cond.notify_all()
                    return
                self.data += chunk
                self.received += len(chunk)
                self.cond.notify_all()

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        os.close(self.master)


def echo_round_trips(term: WsTerm, keys: int, pace: float) -> list[float]:
    """Type `keys` characters one at a time; clear the line (Ctrl-U) every 40 and let it settle."""
    times: list[float] = []
    letters = b"abcdefghijklmnopqrstuvwxyz"
    term.send(b"\x15")
    term.quiet()
    for n in range(keys):
        if n and n % 40 == 0:
            term.send(b"\x15")
            term.quiet()
        key = letters[n % 26:n % 26 + 1]
        start_at = term.mark()
        sent = time.perf_counter()
        term.send(key)
        times.append((term.wait_for(key, start_at, 10) - sent) * 1000)
        time.sleep(pace)
    term.send(b"\x15")
    term.quiet()  # the line is empty again before anything else types into this shell
    return times


def tmux_alone(flood_file: Path) -> float:
    """The same cat in a tmux server of our own (same config) with no client attached: what tmux's
    own terminal emulation costs, before any client, websocket or browser."""
    from terminals import service

    tmux = service.tmux_binary()
    sock = flood_file.parent / "bench-tmux.sock"
    env = service.client_environment()
    server = subprocess.Popen([tmux, "-D", "-S", str(sock), "-f", str(service.TMUX_CONF)], env=env)
    try:
        def run(*args: str) -> None:
            subprocess.run([tmux, "-N", "-S", str(sock), *args], env=env, check=True, timeout=120)

        deadline = time.monotonic() + 10
        while subprocess.run([tmux, "-N", "-S", str(sock), "list-sessions"], env=env, capture_output=True).returncode:
            if time.monotonic() > deadline:
                raise SystemExit("bench: private tmux server did not start")
            time.sleep(0.01)
        run("new-session", "-d", "-s", "b", "-x", "120", "-y", "40", "--", "bash", "--norc", "-i")
        time.sleep(0.3)
        started = time.perf_counter()
        run("send-keys", "-t", "b", f"cat {flood_file}; {tmux} -S {sock} wait-for -S flood-done", "Enter")
        run("wait-for", "flood-done")
        return time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(10)


def line(label: str, values: list[float]) -> str:
    return (f"  {label:<46} p50 {statistics.median(values):6.2f} ms  p99 {percentile(values, 99):6.2f} ms  "
            f"max {max(values):6.2f} ms  (n={len(values)})")


def sample_rss(pid: int, stop: threading.Event, peak: list[int]) -> None:
    proc = psutil.Process(pid)
    while not stop.is_set():
        peak[0] = max(peak[0], proc.memory_info().rss)
        time.sleep(0.02)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=300)
    parser.add_argument("--pace", type=float, default=0.02)
    parser.add_argument("--mb", type=float, default=20)
    args = parser.parse_args()

    # No instance is started: the range only keeps this stack's ports clear of other runs'.
    with running_stack(AIKORE_INSTANCE_PORT_RANGE="30601-30649") as data_dir, contextlib.ExitStack() as sockets:
        from django.conf import settings
        from django.contrib.auth import get_user_model
        from django.test import Client
        from websockets.sync.client import connect, unix_connect

        from instances.models import Instance

        client = Client()
        client.force_login(get_user_model().objects.get(username="admin"))
        cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
        write_blueprint("bench-quiet", "# aikore.ready: none\nexec sleep 100000\n")
        instance = Instance.objects.create_instance(name="Bench Terminal", blueprint="bench-quiet")
        path = f"/ws/instances/{instance.pk}/terminal/?cols=120&rows=40"
        origin = f"http://127.0.0.1:{settings.AIKORE_PORT}"
        daphne_pid = int(subprocess.run(
            [str(Path(__file__).resolve().parent.parent / ".venv" / "bin" / "supervisorctl"), "-c",
             str(Path(__file__).resolve().parent.parent / "docker" / "supervisord.conf"), "pid", "daphne"],
            capture_output=True, text=True, env={**os.environ, "AIKORE_DATA_DIR": str(data_dir)}).stdout.strip())

        # --- 1. keystroke echo -----------------------------------------------------------------
        via_nginx = WsTerm(sockets.enter_context(connect(
            f"ws://127.0.0.1:{settings.AIKORE_PORT}{path}", origin=origin, additional_headers={"Cookie": cookie},
            max_size=None, open_timeout=15)))
        via_nginx.wait_for(f"({instance.slug})".encode(), 0)
        nginx_times = echo_round_trips(via_nginx, args.keys, args.pace)
        direct = WsTerm(sockets.enter_context(unix_connect(
            str(settings.DAPHNE_SOCKET), uri=f"ws://127.0.0.1{path}", origin=None, max_size=None, open_timeout=15,
            additional_headers={"Cookie": cookie, "Origin": "http://127.0.0.1"})))
        direct.quiet()
        direct_times = echo_round_trips(direct, args.keys, args.pace)
        direct.conn.close()
        local = LocalPty(["bash", "--norc", "-i"], str(instance.directory))
        local.wait_for(b"$ ", 0)
        local_times = echo_round_trips(local, args.keys, args.pace)
        local.close()

        # --- 2. flood --------------------------------------------------------------------------
        text = "".join(LINE.format(n) for n in range(int(args.mb * 1024 * 1024 / len(LINE.format(0)))))
        flood_file = instance.directory / "flood.txt"
        atomic_write(flood_file, text, 0o644)  # as root: AiKore's user's, readable by the apps' user
        size = flood_file.stat().st_size

        local = LocalPty(["cat", str(flood_file)], str(instance.directory))
        started = time.perf_counter()
        local.thread.join()
        local_seconds = time.perf_counter() - started
        local_bytes = local.received
        local.proc.wait()
        os.close(local.master)

        tmux_seconds = tmux_alone(flood_file)

        via_nginx.quiet()
        rss_before = psutil.Process(daphne_pid).memory_info().rss
        peak = [rss_before]
        stop = threading.Event()
        sampler = threading.Thread(target=sample_rss, args=(daphne_pid, stop, peak), daemon=True)
        sampler.start()
        start_at, received_before = via_nginx.mark(), via_nginx.received
        started = time.perf_counter()
        via_nginx.send(b"cat flood.txt; echo END-$((6*7))\r")
        finished = via_nginx.wait_for(b"END-42", start_at, 300)
        term_seconds = finished - started
        if b"the quick brown fox" not in via_nginx.data[start_at:]:
            raise SystemExit(f"bench: the flood never showed; output {bytes(via_nginx.data[start_at:][:500])!r}")
        delivered = via_nginx.received - received_before
        stop.set()
        sampler.join()
        via_nginx.conn.close()

        print(f"terminal echo round trip ({args.keys} keystrokes, one every {args.pace * 1000:g} ms):")
        print(line("browser -> nginx -> daphne -> tmux -> bash", nginx_times))
        print(line("same, straight to daphne's socket (no nginx)", direct_times))
        print(line("baseline: bash on a local pty", local_times))
        p99 = percentile(nginx_times, 99)
        print(f"  target p99 < 20 ms through nginx: {'met' if p99 < 20 else 'NOT met'} ({p99:.2f} ms)")
        print(f"terminal flood: cat of {size / 2**20:.1f} MiB")
        print(f"  local pty (baseline): {local_seconds:6.3f} s  {size / 2**20 / local_seconds:7.1f} MiB/s  "
              f"({local_bytes / 2**20:.1f} MiB read)")
        print(f"  tmux, no client:      {tmux_seconds:6.3f} s  {size / 2**20 / tmux_seconds:7.1f} MiB/s  "
              "(tmux's own terminal emulation of the flood)")
        print(f"  web terminal (nginx): {term_seconds:6.3f} s  {size / 2**20 / term_seconds:7.1f} MiB/s  "
              f"({delivered / 2**20:.2f} MiB delivered to the client; tmux skips what a client can't keep up with)")
        print(f"  ratio, web terminal / local pty throughput: {local_seconds / term_seconds:.2f}")
        print(f"  daphne RSS: {rss_before / 2**20:.1f} MiB before, peak {peak[0] / 2**20:.1f} MiB during the flood "
              f"(+{(peak[0] - rss_before) / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
