"""Sampler cost: CPU seconds per sample with N running instances, as a percentage of one core at
1 Hz, against plain psutil sampling of the same things in the same run.

Starts a throwaway stack, starts N instances (each a shell with two child processes: a Python
process and a sleep, like a WebUI and a helper), then times, on this thread's CPU clock:

  - AiKore's sampler (monitoring.sampler.Sampler: DB read of running instances, host, NVML (real,
    or "no driver" here), process trees via /proc children files, cached psutil.Process objects);
  - the same sampler with a synthetic 4-GPU NVML source (what the GPU section costs to build);
  - the baseline: the same host calls plus, per instance, psutil.Process(pid).children(recursive=True)
    and cpu_percent()/memory_info() of each process (the obvious psutil code, no caching).

Target: < 1 % of a core at 1 Hz with 20 instances.

    .venv/bin/python bench/sampler.py [--instances 20] [--samples 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from _stack import running_stack, write_blueprint

SCRIPT = """# aikore.ready: none
python3 -c 'import time
while True: time.sleep(3600)' &
sleep 100000 &
wait
"""


def cpu_per_call(fn, samples: int) -> list[float]:
    """CPU seconds of this thread per call (thread_time: unaffected by other processes' load)."""
    fn()
    costs = []
    for _ in range(samples):
        t0 = time.thread_time()
        fn()
        costs.append(time.thread_time() - t0)
    return costs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instances", type=int, default=20)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()

    with running_stack(AIKORE_LOG_MAX_BYTES="1048576"):
        import psutil
        from django.conf import settings

        from instances.models import Instance, InstanceStatus
        from instances.supervisor import instance_cgroup
        from monitoring import collectors
        from monitoring.collectors import ProcessTreeCollector, SyntheticGpu, SyntheticGpuSource
        from monitoring.sampler import Sampler

        write_blueprint("bench-idle", SCRIPT)
        instances = [Instance.objects.create_instance(name=f"Bench {n}", blueprint="bench-idle")
                     for n in range(args.instances)]
        for instance in instances:
            instance.start()
        deadline = time.monotonic() + 120
        while Instance.objects.filter(status=InstanceStatus.RUNNING).count() < args.instances:
            if time.monotonic() > deadline:
                raise SystemExit("instances did not all start: " + repr(list(Instance.objects.values_list("name", "status", "error_message", "want_running"))))
            time.sleep(0.2)
        time.sleep(1.0)  # let each tree spawn its children
        pids = list(Instance.objects.exclude(pid__isnull=True).values_list("pid", flat=True))

        def trees() -> ProcessTreeCollector:  # as get_sampler() makes it: markers and cgroups too
            return ProcessTreeCollector(settings.AIKORE_STACK_ID, cgroup_of=instance_cgroup)

        ours = Sampler(1.0, 900, settings.AIKORE_DATA_DIR, trees=trees())
        sample = ours.sample()
        processes = sum(i["processes"] for i in sample["instances"].values())
        synthetic = SyntheticGpuSource([SyntheticGpu(name=f"Synth {i}", processes=[(pid, 1 << 30)])
                                        for i, pid in enumerate(pids[:4])])
        ours_gpu = Sampler(1.0, 900, settings.AIKORE_DATA_DIR, gpu_source=synthetic, trees=trees())

        tree_only = ProcessTreeCollector()
        data_dir = str(settings.AIKORE_DATA_DIR)
        refs = list(ours.instance_source())

        def psutil_only() -> dict:
            host = (psutil.cpu_percent(percpu=True), psutil.virtual_memory(), psutil.swap_memory(),
                    psutil.disk_usage(data_dir), psutil.net_io_counters(), os.getloadavg())
            usage = {}
            for pid in pids:
                try:
                    root = psutil.Process(pid)
                    tree = [root, *root.children(recursive=True)]
                except psutil.Error:
                    continue
                cpu = rss = 0.0
                for proc in tree:
                    try:
                        cpu += proc.cpu_percent()
                        rss += proc.memory_info().rss
                    except psutil.Error:
                        pass
                usage[pid] = (cpu, rss)
            return {"host": host, "usage": usage}

        results = {
            "psutil only (baseline)": cpu_per_call(psutil_only, args.samples),
            "AiKore sampler (no GPU here)": cpu_per_call(ours.sample, args.samples),
            "AiKore sampler + 4 synthetic GPUs": cpu_per_call(ours_gpu.sample, args.samples),
            "  of which: DB read of instances": cpu_per_call(lambda: list(ours.instance_source()), args.samples),
            "  of which: host": cpu_per_call(ours.host.collect, args.samples),
            "  of which: process trees": cpu_per_call(lambda: ours.trees.collect(refs), args.samples),
            "  (main process trees only)": cpu_per_call(lambda: tree_only.collect(refs), args.samples),
        }
        # The marker scan (processes that left the tree) runs once every MARKER_SCAN_SECONDS: its
        # cost per sample at 1 Hz is a scan's cost divided by that.
        scan = trees()
        scans = cpu_per_call(lambda: (setattr(scan, "_scanned_at", float("-inf")), scan._scan_markers()),
                             max(10, args.samples // 10))
        results["  marker scan, per 1 Hz sample"] = [c / collectors.MARKER_SCAN_SECONDS for c in scans]

    print(f"{args.instances} running instances, {processes} processes in their trees, "
          f"{psutil.cpu_count()} CPUs, {args.samples} samples each; CPU time of the sampling thread")
    baseline = statistics.median(results["psutil only (baseline)"])
    for label, costs in results.items():
        median = statistics.median(costs)
        print(f"{label:<36} {median * 1000:7.3f} ms CPU/sample   {median * 100:6.3f} % of a core at 1 Hz"
              f"   x{median / baseline:5.2f} baseline")
    ours_median = (statistics.median(results["AiKore sampler (no GPU here)"])
                   + statistics.median(results["  marker scan, per 1 Hz sample"]))
    print(f"target < 1 % of a core at 1 Hz (sampler + its share of the marker scans): "
          f"{'met' if ours_median < 0.01 else 'NOT met'} ({ours_median * 100:.3f} %)")


if __name__ == "__main__":
    main()
