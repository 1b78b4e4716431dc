"""The sampler: sample shape, ring buffer, history, its run loop, and instances read from the DB."""

from __future__ import annotations

import asyncio
import json

import pynvml
import pytest

from instances.models import Instance
from monitoring.collectors import MIB, InstanceRef, SyntheticGpu, SyntheticGpuSource
from monitoring.sampler import Sampler, get_sampler, running_instances
from monitoring.tests.helpers import process_tree


def make_sampler(tmp_path, refs=(), gpus=None, interval=1.0, history=60) -> Sampler:
    return Sampler(interval=interval, history_seconds=history, disk_path=tmp_path,
                   instance_source=lambda: list(refs), gpu_source=gpus or SyntheticGpuSource())


def test_sample_has_the_shape_the_dashboard_reads(tmp_path):
    with process_tree("sleep 60 & wait", children=1) as root:
        gpus = SyntheticGpuSource([SyntheticGpu(name="Synth", processes=[(root.pid, 2048 * MIB)])])
        sampler = make_sampler(tmp_path, [InstanceRef(5, root.pid)], gpus)
        sample = sampler.sample()
    json.dumps(sample)  # goes over websockets as is
    assert isinstance(sample["ts"], float)
    assert sample["seq"] == 1 and sample["interval"] == 1.0
    assert {"cpu", "load", "memory", "swap", "disk", "network"} <= set(sample["host"])
    assert {"percent", "count", "per_core"} <= set(sample["host"]["cpu"])
    assert {"total", "used", "percent"} <= set(sample["host"]["memory"])
    gpu = sample["gpu"]
    assert gpu["available"] is True and gpu["reason"] is None
    assert {"index", "name", "utilization_gpu", "memory_used", "memory_total", "temperature",
            "power_draw", "power_limit", "fan_speed", "clocks"} <= set(gpu["gpus"][0])
    # Instances keyed by id as a string (JSON object keys), as monitor.js looks them up.
    usage = sample["instances"]["5"]
    assert {"cpu_percent", "rss", "vram", "processes", "pid"} <= set(usage)
    assert usage["vram"] == 2048 * MIB
    assert "pids" not in usage


def test_ring_buffer_keeps_the_configured_history_and_no_more(tmp_path):
    sampler = make_sampler(tmp_path, interval=1.0, history=60)
    for _ in range(75):
        sampler.sample()
    history = sampler.history(None)
    assert len(history) == 61
    assert [s["seq"] for s in history] == list(range(15, 76))
    assert sampler.latest() is history[-1]


def test_history_of_the_last_seconds(tmp_path):
    sampler = make_sampler(tmp_path)
    for _ in range(5):
        sampler.sample()
    for second, sample in enumerate(sampler.history(None)):
        sample["ts"] = 1000.0 + second  # one sample per second, whatever the speed of this machine
    assert [s["ts"] for s in sampler.history(2)] == [1002.0, 1003.0, 1004.0]
    assert len(sampler.history(3600)) == 5
    assert sampler.history(0) == [sampler.latest()]


def test_empty_sampler_has_no_latest_sample(tmp_path):
    sampler = make_sampler(tmp_path)
    assert sampler.latest() is None
    assert sampler.history(None) == []


def test_gpu_driver_error_mid_run_does_not_stop_sampling(tmp_path):
    gpus = SyntheticGpuSource([SyntheticGpu(), SyntheticGpu(name="Second")])
    sampler = make_sampler(tmp_path, gpus=gpus)
    assert len(sampler.sample()["gpu"]["gpus"]) == 2
    gpus.error = pynvml.NVML_ERROR_UNKNOWN
    sample = sampler.sample()
    assert sample["gpu"]["available"] is False and sample["gpu"]["reason"]
    assert sample["host"]["memory"]["total"] > 0
    assert sampler.sample()["seq"] == 3


def test_run_pushes_each_sample_and_survives_failures(tmp_path):
    calls = {"source": 0}

    def flaky_source():
        calls["source"] += 1
        if calls["source"] == 2:
            raise RuntimeError("database is locked")
        return []

    sampler = Sampler(interval=0.05, history_seconds=60, disk_path=tmp_path, instance_source=flaky_source,
                      gpu_source=SyntheticGpuSource())
    pushed: list[dict] = []

    async def push(sample: dict) -> None:
        pushed.append(sample)
        if len(pushed) == 1:
            raise ConnectionError("channel layer hiccup")

    async def main() -> None:
        task = asyncio.ensure_future(sampler.run(push))
        while len(pushed) < 4:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(asyncio.wait_for(main(), 30))
    # The failed sample (call 2) was skipped; the failed push didn't stop the loop.
    assert [s["seq"] for s in pushed[:4]] == [1, 2, 3, 4]
    assert pushed == sampler.history(None)[: len(pushed)]


@pytest.mark.django_db
def test_running_instances_come_from_the_database():
    a = Instance.objects.create_instance(name="With Pid", blueprint="demo-webui", gpu_ids="")
    Instance.objects.create_instance(name="Without Pid", blueprint="demo-webui")
    Instance.objects.filter(pk=a.pk).update(pid=4242, pid_create_time=123.5, gpu_ids="0")
    assert running_instances() == [InstanceRef(a.pk, 4242, 123.5, "0")]


def test_one_sampler_per_process(settings):
    sampler = get_sampler()
    assert get_sampler() is sampler
    assert sampler.interval == settings.AIKORE_SAMPLE_INTERVAL
    assert sampler._buffer.maxlen >= settings.AIKORE_HISTORY_SECONDS / settings.AIKORE_SAMPLE_INTERVAL
