"""Log streaming: latency from a line being written by an instance to its arrival at a websocket
client (through nginx, as a browser gets it), and throughput while the instance prints as fast as
it can, on a throwaway stack.

1. Latency at --rate lines/s (default 1000) for --seconds: each line carries time.time() at its
   write; a websocket client (acknowledging like the dashboard) records arrival. Baseline in the
   same run: a thread tailing the log file directly (1 ms polls), i.e. what supervisord's pipe and
   file cost before AiKore is involved. Target: websocket p99 < 50 ms.
2. Max rate: the instance prints --flood lines ("1\\n", "2\\n", ...) as fast as it can, with small log
   rotation (AIKORE_LOG_MAX_BYTES) so rotations happen under load, and a client attached from the
   start. Reports lines/s written and received, bytes skipped by "dropped" markers, order checks,
   and whether the log files hold every line (target: none lost). Baseline in the same run: the
   same printer writing straight to a file.

    .venv/bin/python bench/streams.py [--rate 1000] [--seconds 10] [--flood 2000000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from _stack import percentile, running_stack, write_blueprint

TICKER = """# aikore.ready: none
exec python3 -u -c '
import sys, time
rate, seconds = (float(x) for x in sys.argv[1:3])
period, start, n = 1.0 / rate, time.time() + 0.5, 0
while n < rate * seconds:
    target = start + n * period
    delay = target - time.time()
    if delay > 0:
        time.sleep(delay)
    sys.stdout.write(f"{n} {time.time():.6f}\\n")
    sys.stdout.flush()
    n += 1
time.sleep(100000)
' $AIKORE_LAUNCH_ARGS
"""

PRINTER = """import sys
count = int(sys.argv[1])
chunk = 10000
for start in range(1, count + 1, chunk):
    sys.stdout.write("".join(f"{n}\\n" for n in range(start, min(start + chunk, count + 1))))
sys.stdout.flush()
"""

FLOOD = f"""# aikore.ready: none
python3 -c '{PRINTER}' $AIKORE_LAUNCH_ARGS
exec sleep 100000
"""


def ws_connect(path: str, cookie: str):
    from django.conf import settings
    from websockets.sync.client import connect

    origin = f"http://127.0.0.1:{settings.AIKORE_PORT}"
    return connect(f"ws://127.0.0.1:{settings.AIKORE_PORT}{path}", origin=origin,
                   additional_headers={"Cookie": cookie}, max_size=None, open_timeout=10)


class LogClient(threading.Thread):
    """Follows one instance's log socket like the dashboard does (acks every message)."""

    def __init__(self, path: str, cookie: str, stop: threading.Event, connections: contextlib.ExitStack) -> None:
        super().__init__(daemon=True)
        self.conn = connections.enter_context(ws_connect(path, cookie))
        self.stop_event = stop
        self.lines: list[tuple[str, float]] = []  # (line, arrival time)
        self.dropped = 0
        self.markers = 0
        self.offset = 0
        self.partial = ""

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                raw = self.conn.recv(timeout=0.2)
            except TimeoutError:
                continue
            except Exception:
                return
            now = time.time()
            msg = json.loads(raw)
            if msg["type"] == "dropped":
                self.dropped += msg["bytes"]
                self.markers += 1
                self.partial = ""
                self.lines.append(("<dropped>", now))
            else:
                text = self.partial + msg["data"]
                *complete, self.partial = text.split("\n")
                self.lines.extend((line, now) for line in complete)
                self.conn.send(json.dumps({"type": "ack", "offset": msg["offset"]}))
            self.offset = msg["offset"]


def tail_file(path: Path, stop: threading.Event, out: list[tuple[str, float]]) -> None:
    """Baseline: the file itself, polled every millisecond (no rotation in this phase)."""
    while not path.exists():
        time.sleep(0.001)
    with open(path) as fh:
        fh.seek(0, 2)
        partial = ""
        while not stop.is_set():
            data = fh.read()
            if not data:
                time.sleep(0.001)
                continue
            now = time.time()
            *complete, partial = (partial + data).split("\n")
            out.extend((line, now) for line in complete)


def latency_ms(lines: list[tuple[str, float]]) -> list[float]:
    result = []
    for line, arrived in lines:
        parts = line.split()
        if len(parts) == 2:
            result.append((arrived - float(parts[1])) * 1000)
    return result


def wait_running(instance) -> None:
    from instances.models import InstanceStatus

    deadline = time.monotonic() + 60
    while instance.status != InstanceStatus.RUNNING:
        if time.monotonic() > deadline:
            raise SystemExit(f"{instance.name} did not start: {instance.error_message}")
        time.sleep(0.02)
        instance.refresh_from_db()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--flood", type=int, default=2_000_000)
    args = parser.parse_args()

    with running_stack(AIKORE_LOG_MAX_BYTES=str(4 * 1024 * 1024), AIKORE_LOG_BACKUPS="10"), \
            contextlib.ExitStack() as connections:
        from django.conf import settings
        from django.contrib.auth import get_user_model
        from django.test import Client

        from instances import logs
        from instances.models import Instance

        client = Client()
        client.force_login(get_user_model().objects.get(username="admin"))
        cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
        write_blueprint("bench-ticker", TICKER)
        write_blueprint("bench-flood", FLOOD)

        # --- 1. latency at a steady rate ---------------------------------------------------------
        ticker = Instance.objects.create_instance(name="Bench Ticker", blueprint="bench-ticker",
                                                  launch_args=f"{args.rate} {args.seconds}")
        stop = threading.Event()
        ws_client = LogClient(f"/ws/instances/{ticker.pk}/logs/?offset=0", cookie, stop, connections)
        ws_client.start()
        file_lines: list[tuple[str, float]] = []
        tail = threading.Thread(target=tail_file, args=(ticker.log_path, stop, file_lines), daemon=True)
        tail.start()
        ticker.start()
        wait_running(ticker)
        expected = int(args.rate * args.seconds)
        deadline = time.monotonic() + args.seconds + 30
        while sum(1 for line, _ in ws_client.lines if len(line.split()) == 2) < expected:
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        stop.set()
        ws_client.join(2)
        ws_lat, file_lat = latency_ms(ws_client.lines), latency_ms(file_lines)
        seqs = [int(line.split()[0]) for line, _ in ws_client.lines if len(line.split()) == 2]
        ticker.stop()

        # --- 2. as fast as it can ------------------------------------------------------------------
        flood = Instance.objects.create_instance(name="Bench Flood", blueprint="bench-flood", launch_args=str(args.flood))
        stop = threading.Event()
        flood_client = LogClient(f"/ws/instances/{flood.pk}/logs/?offset=0", cookie, stop, connections)
        flood_client.start()
        t0 = time.time()
        flood.start()
        expected_bytes = sum(len(f"{n}\n") for n in range(1, args.flood + 1))
        deadline = time.monotonic() + 300
        written_at = None
        while time.monotonic() < deadline:
            end = logs.end_offset(flood.log_path)
            if end >= expected_bytes and written_at is None:
                written_at = time.time()
            if written_at is not None and flood_client.offset >= end:
                break
            time.sleep(0.005)
        received_at = time.time()
        stop.set()
        flood_client.join(2)
        # Every line in the log files, across rotations, read back by offset.
        data, offset = bytearray(), 0
        while True:
            chunk = logs.read(flood.log_path, offset, 4 * 1024 * 1024)
            if not chunk.data:
                break
            data += chunk.data
            offset = chunk.next_offset
        file_ok = data.decode() == "".join(f"{n}\n" for n in range(1, args.flood + 1))
        rotated = len(list(flood.directory.glob("output.log.*")))
        got = [line for line, _ in flood_client.lines]
        in_order = True
        previous = 0
        for line in got:
            if line == "<dropped>":
                previous = None
                continue
            n = int(line)
            if previous is not None and n != previous + 1:
                in_order = False
            previous = n
        flood.stop()

        # Baseline: the same printer straight into a file.
        with tempfile.NamedTemporaryFile("w", suffix=".log") as out:
            b0 = time.time()
            subprocess.run(["python3", "-c", PRINTER, str(args.flood)], stdout=out, check=True)
            direct_s = time.time() - b0

    print(f"1. {args.rate:.0f} lines/s for {args.seconds:.0f} s: websocket client through nginx received "
          f"{len(seqs)}/{expected} lines, in order: {seqs == sorted(seqs) and len(set(seqs)) == len(seqs)}")
    print(f"   write -> websocket client  p50 {percentile(ws_lat, 50):6.1f} ms   p99 {percentile(ws_lat, 99):6.1f} ms"
          f"   max {max(ws_lat):6.1f} ms   (target p99 < 50 ms)")
    print(f"   write -> log file (baseline, 1 ms tail)  p50 {percentile(file_lat, 50):6.1f} ms   "
          f"p99 {percentile(file_lat, 99):6.1f} ms")
    print(f"   AiKore's part (p50/p99 difference): {percentile(ws_lat, 50) - percentile(file_lat, 50):.1f} / "
          f"{percentile(ws_lat, 99) - percentile(file_lat, 99):.1f} ms")
    write_s = (written_at or received_at) - t0
    received = sum(1 for line in got if line != "<dropped>")
    print(f"2. {args.flood} lines ({expected_bytes / 1e6:.1f} MB) as fast as possible, log rotated {rotated} times:")
    print(f"   through supervisord into the log: {args.flood / write_s:10.0f} lines/s  ({write_s:.2f} s incl. start)")
    print(f"   baseline, printer straight to a file: {args.flood / direct_s:10.0f} lines/s  ({direct_s:.2f} s); "
          f"ratio {direct_s / write_s:.2f}")
    print(f"   websocket client: {received} lines received, {received / (received_at - t0):.0f} lines/s, "
          f"{flood_client.markers} dropped markers ({flood_client.dropped / 1e6:.1f} MB skipped), in order "
          f"with no repeat: {in_order}")
    print(f"   log files hold every line, in order: {file_ok}")


if __name__ == "__main__":
    main()
