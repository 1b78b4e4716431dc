"""Chaos figures: time to healthy after each kind of kill, shutdown time, orphans after fast cycles.

Prints, against throwaway stacks (docker/entry.sh under temporary data dirs):
- time to healthy (/api/health "ok" and every instance that should run running, with a new pid where
  its process had to be replaced) after SIGKILL of daphne, the worker, the watcher, nginx's master,
  supervisord (entry.sh starts it again), and supervisord together with entry.sh (a stale process
  tree; then a new start), with --instances instances running (target: the stale tree <= 20 s);
- shutdown time (SIGTERM to entry.sh, until it exits) with --groups instances of which --running
  run, once with apps that take 1 s to exit after SIGTERM and once with apps that ignore it (forced
  SIGKILL at AIKORE_STOP_TIMEOUT); target <= AIKORE_STOP_TIMEOUT + 2 s. Baseline in the same run:
  supervisord's own shutdown of the same layout, the way AiKore used to stop (every group it ever
  created still loaded; SIGTERM to supervisord);
- orphans left after --cycles fast start/stop cycles of a blueprint whose children leave by setsid,
  double fork and both (target 0), found by their command line, not by AiKore's marker.

    .venv/bin/python bench/chaos.py [--instances 10] [--groups 50] [--running 5] [--cycles 100]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import xmlrpc.client
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
from _stack import REPO, free_port
from supervisor.xmlrpc import SupervisorTransport

from aikore_site import procs

STOP_TIMEOUT = 3
PORTS = os.environ.get("AIKORE_BENCH_PORT_RANGE", "21001-21500")  # below the ephemeral range (32768+)
PASSWORD = "bench-chaos-password"
BLUEPRINTS = {
    "server": "# aikore.ready: tcp\nexec python3 -m http.server \"$WEBUI_PORT\" --bind 127.0.0.1\n",
    "idle": "# aikore.ready: none\nexec sleep 100000\n",
    "slowstop": "# aikore.ready: none\ntrap 'sleep 1; exit 0' TERM\nsleep 100000 &\nwait\n",
    "stubborn": "# aikore.ready: none\ntrap '' TERM\nwhile :; do sleep 1; done\n",
    "escaper": ("# aikore.ready: none\nsleep 7777.25 &\nsetsid sleep 7777.25 &\n( sleep 7777.25 & )\n"
                "( setsid sleep 7777.25 & )\nexec sleep 7777.25\n"),
}


class Stack:
    """docker/entry.sh on a temporary data dir, driven from outside: REST API, supervisord's RPC."""

    def __init__(self, root: Path, name: str, port: int | None = None, env: dict[str, str] | None = None) -> None:
        self.extra_env = env or {}
        self.data_dir = root / name
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.client: httpx.Client | None = None
        blueprints = self.data_dir / "custom_blueprints"
        blueprints.mkdir(parents=True, exist_ok=True)
        for bp, text in BLUEPRINTS.items():
            (blueprints / f"{bp}.sh").write_text(text)

    def start(self) -> None:
        env = {**os.environ, "AIKORE_DATA_DIR": str(self.data_dir), "AIKORE_PORT": str(self.port),
               "AIKORE_ADMIN_PASSWORD": PASSWORD, "AIKORE_INSTANCE_PORT_RANGE": PORTS, "AIKORE_PUBLIC_PORT_RANGE": "",
               "AIKORE_STOP_TIMEOUT": str(STOP_TIMEOUT), "AIKORE_HOME": str(REPO),
               "AIKORE_PYTHON": str(REPO / ".venv" / "bin" / "python"), **self.extra_env}
        with open(self.data_dir.parent / f"{self.data_dir.name}.log", "ab") as log:
            self.proc = subprocess.Popen([str(REPO / "docker" / "entry.sh")], stdout=log, stderr=subprocess.STDOUT,
                                         env=env, start_new_session=True)
        wait(lambda: self.health().get("status") == "ok", 120, "the stack to come up")
        # A connection per request: nginx closes idle kept-alive ones at every reload (every start
        # and stop), which would fail a request sent on one at that moment.
        self.client = httpx.Client(base_url=self.base, timeout=30, limits=httpx.Limits(max_keepalive_connections=0))
        self.client.get("/login/")
        response = self.client.post("/login/", data={"csrfmiddlewaretoken": self.client.cookies["aikore_csrftoken"],
                                                     "username": "admin", "password": PASSWORD},
                                    headers={"Referer": self.base + "/login/"})
        assert response.status_code == 302, response.text[-300:]

    @property
    def stack_id(self) -> str:
        return procs.stack_id_for(self.data_dir)

    def api(self, method: str, path: str, body: object = None) -> httpx.Response:
        headers = {"X-CSRFToken": self.client.cookies["aikore_csrftoken"], "Referer": self.base + "/"}
        return self.client.request(method, "/api" + path, json=body, headers=headers)

    def health(self) -> dict:
        try:
            return httpx.get(self.base + "/api/health", timeout=10).json()
        except (httpx.HTTPError, ValueError):
            return {}

    def instances(self) -> list[dict]:
        try:
            response = self.api("GET", "/instances")
            return response.json() if response.status_code == 200 else []
        except httpx.HTTPError:
            return []

    def create_and_start(self, blueprint: str, count: int, prefix: str) -> list[int]:
        ids = []
        for n in range(count):
            response = self.api("POST", "/instances", {"name": f"{prefix} {n}", "blueprint": blueprint})
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])
        for pk in ids:
            assert self.api("POST", f"/instances/{pk}/start").status_code == 202
        wait(lambda: self.running(ids), 180, f"{count} {blueprint} instances running")
        return ids

    def running(self, ids: list[int], not_pids: dict[int, int] | None = None) -> bool:
        rows = {i["id"]: i for i in self.instances()}
        for pk in ids:
            row = rows.get(pk, {})
            if row.get("status") != "running" or not row.get("pid") or not psutil.pid_exists(row["pid"]):
                return False
            if not_pids and row["pid"] == not_pids.get(pk):
                return False
        return True

    def pids(self) -> dict[int, int]:
        return {i["id"]: i["pid"] for i in self.instances()}

    def rpc(self) -> object:
        transport = SupervisorTransport(None, None, f"unix://{self.data_dir}/run/supervisor.sock")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor

    def program(self, name: str) -> psutil.Process:
        return psutil.Process(self.rpc().getProcessInfo(name)["pid"])

    def supervisord(self) -> psutil.Process:
        return psutil.Process(int((self.data_dir / "run" / "supervisord.pid").read_text()))

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(60)
        end_leftovers(self)


def end_leftovers(stack: Stack) -> None:
    """Whatever a measurement left running (a baseline run is stopped the old, leaky way)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if stack.proc:
            os.killpg(stack.proc.pid, signal.SIGKILL)
    leftovers = [m.proc for m in procs.scan(stack.stack_id)] + procs.nginx_processes(stack.data_dir / "nginx")
    procs.terminate(leftovers, 2)
    root = procs.cgroup_root()
    if root is not None:
        procs.remove_cgroup(root / f"aikore-{stack.stack_id}")


def wait(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise SystemExit(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - started


@contextlib.contextmanager
def stack_in(root: Path, name: str, env: dict[str, str] | None = None) -> Iterator[Stack]:
    stack = Stack(root, name, env=env)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


# --- measurements -------------------------------------------------------------------------------


def heal_times(root: Path, count: int) -> None:
    print(f"== time to healthy after SIGKILL, {count} instances running (health ok and every instance running)")
    with stack_in(root, "heal") as stack:
        ids = stack.create_and_start("server", count, "Server")
        for name in ("daphne", "worker", "watcher", "nginx"):
            victim = stack.program(name)
            time.sleep(1)
            started = time.monotonic()
            victim.kill()
            wait(lambda v=victim: not procs.alive(v), 10, f"{name} to die")
            healed = wait(lambda: stack.health().get("status") == "ok" and stack.running(ids), 120, "healthy")
            label = "nginx master" if name == "nginx" else name
            print(f"  {label:<28} {time.monotonic() - started:6.2f} s   (after its death: {healed:.2f} s)")
        before = stack.pids()
        started = time.monotonic()
        stack.supervisord().kill()
        wait(lambda: stack.health().get("status") == "ok" and stack.running(ids, before), 120, "healthy")
        print(f"  {'supervisord (entry.sh restarts it)':<28} {time.monotonic() - started:6.2f} s")

        before = stack.pids()
        supervisord = stack.supervisord()
        stack.proc.kill()
        supervisord.kill()
        stack.proc.wait(10)
        time.sleep(0.5)
        stale = len([m for m in procs.scan(stack.stack_id)])
        started = time.monotonic()
        stack.proc = None
        stack.start()
        wait(lambda: stack.health().get("status") == "ok" and stack.running(ids, before), 120, "healthy")
        elapsed = time.monotonic() - started
        print(f"  {'supervisord + entry.sh':<28} {elapsed:6.2f} s   from the new start, {stale} stale processes "
              f"(target <= 20 s) {'OK' if elapsed <= 20 else 'MISSED'}")


def shutdown_times(root: Path, groups: int, running: int) -> None:
    print(f"== shutdown with {groups} instance groups of which {running} run (AIKORE_STOP_TIMEOUT={STOP_TIMEOUT} s, "
          f"target <= {STOP_TIMEOUT + 2} s)")
    for app, note in (("slowstop", "apps exit 1 s after SIGTERM"), ("stubborn", "apps ignore SIGTERM")):
        for way in ("AiKore (SIGTERM to entry.sh)", "baseline: supervisord's own shutdown"):
            baseline = way.startswith("baseline")
            with stack_in(root, f"shutdown-{app}-{'base' if baseline else 'ours'}") as stack:
                idle = stack.create_and_start("idle", groups - running, "Idle")
                stack.create_and_start(app, running, "Busy")
                for pk in idle:
                    if baseline:  # what AiKore used to do: the group stays loaded in supervisord
                        stack.rpc().stopProcessGroup(f"instance-{pk}", True)
                    else:
                        assert stack.api("POST", f"/instances/{pk}/stop").status_code == 202
                if not baseline:
                    wait(lambda s=stack, n=len(idle): sum(i["status"] == "stopped" for i in s.instances()) == n,
                         120, "the idle instances stopped")
                loaded = len([i for i in stack.rpc().getAllProcessInfo() if i["group"].startswith("instance-")])
                leftovers_of = [m.proc for m in procs.scan(stack.stack_id) if m.instance is not None]
                started = time.monotonic()
                if baseline:
                    supervisord = stack.supervisord()
                    supervisord.terminate()
                    wait(lambda p=supervisord: not procs.alive(p), 600, "supervisord to exit")
                else:
                    os.kill(stack.proc.pid, signal.SIGTERM)
                    stack.proc.wait(600)
                elapsed = time.monotonic() - started
                orphans = len([p for p in leftovers_of if procs.alive(p)])
                verdict = "" if baseline else ("OK" if elapsed <= STOP_TIMEOUT + 2 else "MISSED")
                print(f"  {note:<28} {way:<38} {elapsed:6.2f} s  ({loaded} groups loaded, "
                      f"{orphans} instance processes left) {verdict}")
    print("  (supervisord's own SIGKILL comes AIKORE_STOP_TIMEOUT + 5 s after its SIGTERM: a backstop for "
          "AiKore's own, which is written to the instance log)")


def orphan_count(root: Path, cycles: int) -> None:
    print(f"== orphans after {cycles} fast start/stop cycles (children by setsid, double fork, both; target 0)")
    modes = [("environment markers only (as in the container)", "0")]
    if procs.cgroup_root() is not None:
        modes.append(("markers + a cgroup per instance (root here)", "1"))
    for label, cgroups in modes:
        orphan_run(root, cycles, label, cgroups)


def orphan_run(root: Path, cycles: int, label: str, cgroups: str) -> None:
    with stack_in(root, f"cycles-{cgroups}", {"AIKORE_CGROUPS": cgroups}) as stack:
        ids = []
        for n in range(4):
            response = stack.api("POST", "/instances", {"name": f"Escaper {n}", "blueprint": "escaper"})
            ids.append(response.json()["id"])
        spawned = []
        started = time.monotonic()

        def cycle(pk: int, times: int) -> None:
            for n in range(times):
                assert stack.api("POST", f"/instances/{pk}/start").status_code == 202
                if n % 4:
                    wait(lambda: (stack.api("GET", f"/instances/{pk}").json().get("pid") or 0) > 0, 60, "the spawn")
                    spawned.append(pk)
                assert stack.api("POST", f"/instances/{pk}/stop").status_code == 202
                wait(lambda: stack.api("GET", f"/instances/{pk}").json()["status"] == "stopped", 60, "the stop")

        threads = [threading.Thread(target=cycle, args=(pk, cycles // len(ids))) for pk in ids]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wait(lambda: all(i["status"] == "stopped" and not i["pid"] for i in stack.instances()), 60, "all stopped")
        elapsed = time.monotonic() - started
        time.sleep(1)
        leaked = [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", "7777.25"]]
        print(f"  {label}: {len(leaked)} orphans after {cycles} cycles ({len(spawned)} stopped right after the "
              f"spawn, the rest before it; {elapsed / cycles * 1000:.0f} ms per cycle, 4 at a time) "
              f"{'OK' if not leaked else 'MISSED'}")
        procs.terminate(leaked, 2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--groups", type=int, default=50)
    parser.add_argument("--running", type=int, default=5)
    parser.add_argument("--cycles", type=int, default=100)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="aikore-bench-chaos-"))
    try:
        heal_times(root, args.instances)
        shutdown_times(root, args.groups, args.running)
        orphan_count(root, args.cycles)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
