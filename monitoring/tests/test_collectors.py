"""Collectors against the real host (psutil, real processes) and a synthetic NVML source."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time

import psutil
import pynvml

from monitoring.collectors import (
    MIB,
    GpuCollector,
    HostCollector,
    InstanceRef,
    ProcessTreeCollector,
    SyntheticGpu,
    SyntheticGpuSource,
    attribute_vram,
)
from monitoring.tests.helpers import process_tree

UNUSED_PID = 2**22 + 12345  # above Linux's pid_max limit (2**22): never a local process


def two_gpus(processes: list[tuple[int, int | None]] | None = None) -> SyntheticGpuSource:
    return SyntheticGpuSource([
        SyntheticGpu(name="RTX Synthetic 4090", uuid="GPU-a", utilization=87, memory_used=20_000 * MIB,
                     memory_total=24_564 * MIB, temperature=71, power_usage_mw=312_456, power_limit_mw=450_000,
                     fan_speed=64, processes=processes or []),
        SyntheticGpu(name="RTX Synthetic 3060", uuid="GPU-b", fan_speed=None, clocks={}),
    ])


# --- host ---------------------------------------------------------------------------------------


def test_host_collector_reports_cpu_memory_disk_network(tmp_path):
    host = HostCollector(tmp_path)
    host.collect()
    sample = host.collect()
    assert sample["cpu"]["count"] == psutil.cpu_count()
    assert len(sample["cpu"]["per_core"]) == psutil.cpu_count()
    assert 0 <= sample["cpu"]["percent"] <= 100
    assert len(sample["load"]) == 3
    memory = sample["memory"]
    assert memory["total"] == psutil.virtual_memory().total
    assert 0 < memory["used"] <= memory["total"]
    assert sample["disk"]["path"] == str(tmp_path)
    assert sample["disk"]["total"] == psutil.disk_usage(str(tmp_path)).total
    # The second reading has rates (the first has nothing to compare with).
    assert sample["network"]["rx_rate"] is not None and sample["network"]["rx_rate"] >= 0
    assert set(sample["swap"]) == {"total", "used", "percent"}


def test_host_collector_reports_a_missing_disk_path_instead_of_failing(tmp_path):
    sample = HostCollector(tmp_path / "gone").collect()
    assert "error" in sample["disk"]
    assert sample["memory"]["total"] > 0


# --- GPUs ---------------------------------------------------------------------------------------


def test_real_nvml_source_is_the_default_and_imports_without_a_driver():
    # A fresh interpreter: importing the collectors must not need a GPU or a driver.
    code = ("import monitoring.collectors as c; g = c.GpuCollector(); r = g.collect(); "
            "assert isinstance(g.source, c.NvmlSource); print(r['available'], r['reason'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    available, _, reason = out.stdout.strip().partition(" ")
    assert available == "True" or reason  # no GPU here: it says why


def test_no_driver_is_a_normal_state_and_not_retried_in_a_hot_loop():
    source = SyntheticGpuSource()
    source.init_error = pynvml.NVML_ERROR_LIBRARY_NOT_FOUND
    gpus = GpuCollector(source, retry_seconds=3600)
    for _ in range(50):
        section = gpus.collect()
    assert section == {"available": False, "reason": "NVIDIA driver library (libnvidia-ml) not found",
                       "driver": None, "gpus": []}
    assert source.init_calls == 1


def test_several_gpus_with_all_fields_in_display_units():
    source = two_gpus()
    section = GpuCollector(source).collect()
    assert section["available"] is True
    assert section["driver"] == "550.00-synthetic"
    first, second = section["gpus"]
    assert (first["index"], first["name"], first["uuid"]) == (0, "RTX Synthetic 4090", "GPU-a")
    assert first["utilization_gpu"] == 87
    assert (first["memory_used"], first["memory_total"]) == (20_000 * MIB, 24_564 * MIB)
    assert first["temperature"] == 71
    assert (first["power_draw"], first["power_limit"]) == (312.5, 450.0)  # watts
    assert first["fan_speed"] == 64
    assert first["clocks"] == {"graphics": 1500, "sm": 1500, "memory": 9000}
    # A card that doesn't report some fields keeps the others.
    assert second["index"] == 1
    assert second["fan_speed"] is None
    assert second["clocks"] == {"graphics": None, "sm": None, "memory": None}
    assert second["memory_total"] == 24 * 1024 * MIB


def test_handles_are_opened_once_and_kept():
    source = two_gpus()
    gpus = GpuCollector(source)
    handles = None
    for _ in range(5):
        gpus.collect()
        handles = handles or list(gpus.handles)
        assert gpus.handles == handles
    assert source.init_calls == 1


def test_driver_error_mid_run_marks_gpus_unavailable_then_recovers():
    source = two_gpus()
    gpus = GpuCollector(source, retry_seconds=3600)
    assert gpus.collect()["available"] is True
    source.error = pynvml.NVML_ERROR_GPU_IS_LOST
    lost = gpus.collect()
    assert lost["available"] is False
    assert "GPU is lost" in lost["reason"]
    assert lost["gpus"] == []
    source.error = None
    for _ in range(20):  # within the retry period: no re-initialisation attempts
        assert gpus.collect()["available"] is False
    assert source.init_calls == 1
    gpus.retry_seconds = 0
    gpus._next_try = 0  # the retry period has passed
    back = gpus.collect()
    assert back["available"] is True and len(back["gpus"]) == 2
    assert source.init_calls == 2


def test_a_machine_with_nvml_but_no_gpu():
    section = GpuCollector(SyntheticGpuSource([])).collect()
    assert section["available"] is False
    assert section["reason"] == "NVML found no GPU"


# --- instances ----------------------------------------------------------------------------------


def test_process_tree_cpu_and_rss_cover_the_whole_tree():
    # A shell running a busy child and a sleeping grandchild in its own session (setsid).
    script = "sh -c 'while :; do :; done' & setsid sleep 60 & wait"
    trees = ProcessTreeCollector()
    with process_tree(script, children=2) as root:
        tree = [root, *root.children(recursive=True)]
        ref = InstanceRef(id=7, pid=root.pid, create_time=root.create_time())
        trees.collect([ref])
        busy = next(p for p in tree[1:] if p.name() == "sh")
        before = sum(busy.cpu_times()[:2])
        while sum(busy.cpu_times()[:2]) - before < 0.2:  # let the busy child burn some CPU
            pass
        usage = trees.collect([ref])[7]
        root_rss = root.memory_info().rss  # bash waiting: steady
    assert usage["pid"] == root.pid
    assert usage["processes"] == 3
    assert sorted(usage["pids"]) == sorted(p.pid for p in tree)
    assert usage["cpu_percent"] > 0
    assert usage["rss"] > root_rss  # the children's memory is counted too


def test_a_recycled_pid_is_not_counted_as_the_instance():
    trees = ProcessTreeCollector()
    with process_tree("sleep 60 & wait", children=1) as root:
        wrong = InstanceRef(id=1, pid=root.pid, create_time=root.create_time() - 1000)
        right = InstanceRef(id=2, pid=root.pid, create_time=root.create_time())
        usage = trees.collect([wrong, right])
    assert set(usage) == {2}


def test_a_gone_instance_process_is_skipped_and_forgotten():
    trees = ProcessTreeCollector()
    with process_tree("sleep 60 & wait", children=1) as root:
        ref = InstanceRef(id=3, pid=root.pid)
        assert 3 in trees.collect([ref])
    assert trees.collect([ref]) == {}
    assert root.pid not in trees._procs


def test_vram_is_matched_to_instance_process_trees():
    trees = ProcessTreeCollector()
    with process_tree("sleep 60 & wait", children=1) as first, process_tree("sleep 60 & wait", children=1) as second:
        child = first.children()[0].pid
        refs = [InstanceRef(1, first.pid), InstanceRef(2, second.pid)]
        usage = trees.collect(refs)
        source = two_gpus(processes=[(child, 3000 * MIB), (second.pid, 1000 * MIB)])
        source.gpus[1].processes = [(first.pid, 500 * MIB), (psutil.Process().pid, 100 * MIB)]
        section = GpuCollector(source).collect()
        attribute_vram(section, usage, refs)
    assert section["pid_match"] == "pids"
    assert usage[1]["vram"] == 3500 * MIB
    assert usage[2]["vram"] == 1000 * MIB
    assert [p["instance_id"] for p in section["gpus"][1]["processes"]] == [1, None]


def test_host_pids_in_a_container_fall_back_to_one_instance_per_gpu():
    trees = ProcessTreeCollector()
    with process_tree("sleep 60 & wait", children=1) as first, process_tree("sleep 60 & wait", children=1) as second:
        refs = [InstanceRef(1, first.pid, gpu_ids="0"), InstanceRef(2, second.pid, gpu_ids="0,1")]
        usage = trees.collect(refs)
        source = two_gpus(processes=[(UNUSED_PID, 3000 * MIB)])
        source.gpus[1].processes = [(UNUSED_PID + 1, 700 * MIB), (UNUSED_PID + 2, None)]
        section = GpuCollector(source).collect()
        attribute_vram(section, usage, refs)
    assert section["pid_match"] == "unavailable"
    # GPU 0 is shared by both instances: not attributable. GPU 1 is only instance 2's.
    assert (usage[1]["vram"], usage[1]["vram_source"]) == (None, None)
    assert (usage[2]["vram"], usage[2]["vram_source"]) == (700 * MIB, "gpu")


def test_no_gpu_leaves_vram_unknown():
    trees = ProcessTreeCollector()
    with process_tree("sleep 60 & wait", children=1) as root:
        refs = [InstanceRef(1, root.pid)]
        usage = trees.collect(refs)
    section = {"available": False, "reason": "none", "gpus": []}
    attribute_vram(section, usage, refs)
    assert usage[1]["vram"] is None


def test_processes_that_left_the_tree_are_counted_by_their_marker():
    # A double fork: the sleeper's parent exits, so it is no longer in the main process's tree; it
    # carries the instance's marker (as every process the launcher starts does).
    from aikore_site.procs import INSTANCE_VAR, instance_marker

    env = {**os.environ, INSTANCE_VAR: instance_marker("collector-test", 9)}
    proc = subprocess.Popen(["bash", "-c", "(sleep 60 &); exec sleep 60"], env=env, start_new_session=True)
    try:
        root = psutil.Process(proc.pid)
        escaped = None
        for _ in range(500):
            escaped = next((p for p in psutil.process_iter() if p.pid != root.pid and p.ppid() != root.pid
                            and p.name() == "sleep" and _marked(p, "collector-test:9")), None)
            if escaped is not None and root.name() == "sleep":
                break
            time.sleep(0.01)
        assert escaped is not None
        ref = InstanceRef(id=9, pid=root.pid, create_time=root.create_time())
        tree_only = ProcessTreeCollector().collect([ref])[9]
        usage = ProcessTreeCollector("collector-test").collect([ref])[9]
        other_stack = ProcessTreeCollector("another-stack").collect([ref])[9]
    finally:
        for p in (escaped, psutil.Process(proc.pid)):
            if p is not None:
                with contextlib.suppress(psutil.Error):
                    p.kill()
        proc.wait(5)
    assert tree_only["pids"] == [root.pid]
    assert sorted(usage["pids"]) == sorted([root.pid, escaped.pid])
    assert usage["rss"] > tree_only["rss"]
    assert other_stack["pids"] == [root.pid]


def _marked(proc: psutil.Process, marker: str) -> bool:
    try:
        return proc.environ().get("AIKORE_INSTANCE") == marker
    except psutil.Error:
        return False
