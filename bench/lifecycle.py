"""Start latency of the demo blueprint through AiKore vs launching the same script directly.

Prints median and p95 of: request -> process running (the launcher's start time in /proc),
request -> status `running`, and port answering -> status `running` (readiness detection), next to
the same script started with subprocess.Popen in the same run. Targets: AiKore's added overhead
< 50 ms median to process start; readiness detected < 100 ms after the port answers.

    .venv/bin/python bench/lifecycle.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import threading
import time

from _stack import percentile, port_answers, running_stack

CLK_TCK = os.sysconf("SC_CLK_TCK")


def boottime() -> float:
    """Seconds since boot on the clock /proc/<pid>/stat start times use (psutil's create_time()
    adds the boot time, which /proc/stat only gives in whole seconds: up to 1 s off)."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def started_at(pid: int) -> float:
    """When the process started, in boottime() seconds (10 ms resolution: USER_HZ ticks)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return int(fields[19]) / CLK_TCK


def watch_port(port: int, out: dict, stop: threading.Event) -> None:
    while not stop.is_set():
        if port_answers(port):
            out["answered"] = time.time()
            return
        time.sleep(0.002)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()

    with running_stack():

        from instances.models import Instance, InstanceStatus

        instance = Instance.objects.create_instance(name="Bench Demo", blueprint="demo-webui")
        to_proc, to_running, detect = [], [], []
        for _ in range(args.runs):
            instance.refresh_from_db()
            port_seen: dict = {}
            stop = threading.Event()
            if instance.port:
                threading.Thread(target=watch_port, args=(instance.port, port_seen, stop), daemon=True).start()
            t0, b0 = time.time(), boottime()
            instance.start()
            while True:
                instance.refresh_from_db()
                if instance.status == InstanceStatus.RUNNING:
                    t_running = time.time()
                    break
                if instance.status == InstanceStatus.FAILED:
                    raise SystemExit(f"failed: {instance.error_message}")
                time.sleep(0.002)
            stop.set()
            to_proc.append((started_at(instance.pid) - b0) * 1000)
            to_running.append((t_running - t0) * 1000)
            if "answered" in port_seen:
                detect.append(max(0.0, (t_running - port_seen["answered"]) * 1000))
            instance.stop()
            while instance.status != InstanceStatus.STOPPED:
                time.sleep(0.01)
                instance.refresh_from_db()

        # Baseline: the same launch.sh with the same environment, started directly.
        env = {**os.environ, **instance.environment()}
        base_proc, base_ready = [], []
        for _ in range(args.runs):
            t0, b0 = time.time(), boottime()
            proc = subprocess.Popen(["bash", str(instance.script_path)], cwd=instance.directory, env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            created = started_at(proc.pid)
            while not port_answers(instance.port):
                time.sleep(0.002)
            base_ready.append((time.time() - t0) * 1000)
            base_proc.append((created - b0) * 1000)
            proc.terminate()
            proc.wait(10)

    def row(label: str, values: list[float]) -> str:
        return f"{label:<44} median {statistics.median(values):8.1f} ms   p95 {percentile(values, 95):8.1f} ms"

    print(f"demo-webui, {args.runs} runs each (process start times from /proc have 10 ms resolution)")
    print(row("AiKore: start request -> process running", to_proc))
    print(row("direct subprocess: Popen -> process running", base_proc))
    print(row("AiKore: start request -> status running", to_running))
    print(row("direct: Popen -> port answering", base_ready))
    print(row("AiKore: port answering -> status running", detect) if detect else "no readiness samples")
    overhead = statistics.median(to_proc) - statistics.median(base_proc)
    print(f"added overhead to process start (median): {overhead:.1f} ms  (target < 50 ms)")
    print(f"to-running ratio AiKore/direct (median): {statistics.median(to_running) / statistics.median(base_ready):.2f}")
    if detect:
        print(f"readiness detection (median / p95): {statistics.median(detect):.1f} / {percentile(detect, 95):.1f} ms "
              "(target < 100 ms)")


if __name__ == "__main__":
    main()
