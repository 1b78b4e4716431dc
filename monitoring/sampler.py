"""One sampler per server process: it reads the host, the GPUs and the running instances every
AIKORE_SAMPLE_INTERVAL seconds and keeps the last AIKORE_HISTORY_SECONDS of samples in a ring
buffer. Websocket clients get the buffer on connect and each new sample as it is pushed; the API
and /metrics read the latest one. Nothing is sampled per client.

A sample (the shape ``static/aikore/monitor.js`` reads)::

    {"ts": 1718000000.25,                      # time.time() when taken
     "seq": 42,                                # counts samples of this sampler
     "interval": 1.0,
     "host": {"cpu": {"percent", "per_core": [...], "count"}, "load": [1m, 5m, 15m],
              "memory": {"total", "used", "available", "percent"}, "swap": {...},
              "disk": {"path", "total", "used", "free", "percent"},
              "network": {"rx_bytes", "tx_bytes", "rx_rate", "tx_rate"}},
     "gpu": {"available", "reason", "driver", "pid_match",
             "gpus": [{"index", "name", "uuid", "utilization_gpu", "utilization_memory",
                       "memory_used", "memory_total", "temperature", "power_draw", "power_limit",
                       "fan_speed", "clocks": {"graphics", "sm", "memory"},
                       "processes": [{"pid", "memory_used", "instance_id"}]}]},
     "instances": {"<id>": {"pid", "cpu_percent", "rss", "processes", "vram", "vram_source"}}}

Bytes are bytes, power is in watts, temperatures in °C, clocks in MHz, rates in bytes/s.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

from django.conf import settings

from monitoring.collectors import (
    GpuCollector,
    GpuSource,
    HostCollector,
    InstanceRef,
    ProcessTreeCollector,
    attribute_vram,
)
from monitoring.signals import sample_taken

log = logging.getLogger(__name__)

InstanceSource = Callable[[], Iterable[InstanceRef]]


def running_instances() -> list[InstanceRef]:
    """Instances with a recorded process, from the database."""
    from instances.models import Instance

    rows = Instance.objects.exclude(pid__isnull=True).values_list("pk", "pid", "pid_create_time", "gpu_ids")
    return [InstanceRef(pk, pid, ctime, gpu_ids or "") for pk, pid, ctime, gpu_ids in rows]


class Sampler:
    def __init__(
        self,
        interval: float,
        history_seconds: float,
        disk_path: Path | str,
        instance_source: InstanceSource = running_instances,
        gpu_source: GpuSource | None = None,
        gpu_retry_seconds: float = 60.0,
        trees: ProcessTreeCollector | None = None,
    ) -> None:
        self.interval = float(interval)
        self.history_seconds = float(history_seconds)
        self.instance_source = instance_source
        self.host = HostCollector(disk_path)
        self.gpu = GpuCollector(gpu_source, retry_seconds=gpu_retry_seconds)
        self.trees = trees or ProcessTreeCollector()
        self._buffer: deque[dict] = deque(maxlen=math.ceil(self.history_seconds / self.interval) + 1)
        self._lock = threading.Lock()  # sample() may run in the loop's thread pool and a view's thread
        self._seq = 0

    def sample(self) -> dict:
        """Take one sample, keep it in the ring buffer and return it."""
        with self._lock:
            refs = list(self.instance_source())
            ts = time.time()
            host = self.host.collect()
            gpu = self.gpu.collect()
            usage = self.trees.collect(refs)
            attribute_vram(gpu, usage, refs)
            for info in usage.values():
                del info["pids"]  # used to match GPU processes; not worth sending every second
            self._seq += 1
            sample = {
                "ts": round(ts, 3),
                "seq": self._seq,
                "interval": self.interval,
                "host": host,
                "gpu": gpu,
                "instances": {str(iid): info for iid, info in usage.items()},
            }
            self._buffer.append(sample)
            return sample

    def latest(self) -> dict | None:
        with self._lock:
            return self._buffer[-1] if self._buffer else None

    def history(self, seconds: float | None = None) -> list[dict]:
        """The buffered samples, oldest first; with `seconds`, only those of the last `seconds`."""
        with self._lock:
            samples = list(self._buffer)
        if seconds is None or not samples:
            return samples
        cutoff = samples[-1]["ts"] - seconds
        return [s for s in samples if s["ts"] >= cutoff]

    def _sample_in_worker_thread(self) -> dict:
        from django.db import close_old_connections

        try:
            sample = self.sample()
            # send_robust: a receiver's failure is returned to us, not raised; sampling goes on.
            for receiver, error in sample_taken.send_robust(sender=Sampler, sample=sample):
                if isinstance(error, Exception):
                    log.warning("sample_taken receiver %r failed: %r", receiver, error)
            return sample
        finally:
            # Like the end of a request: a broken (or, per CONN_MAX_AGE, too old) connection of
            # this pool thread is dropped here rather than failing the next sample.
            close_old_connections()

    async def run(self, push: Callable[[dict], Awaitable[None]]) -> None:
        """Sample every `interval` seconds on a fixed schedule (no drift), in a worker thread so the
        event loop never waits on /proc or NVML, and hand each sample to `push`. A late tick is
        skipped, not queued, so a stalled machine doesn't get a burst of samples afterwards."""
        next_tick = time.monotonic()
        while True:
            try:
                sample = await asyncio.to_thread(self._sample_in_worker_thread)
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad sample (a DB hiccup, ...) must not end monitoring
                log.exception("sample failed")
            else:
                try:
                    await push(sample)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("pushing a sample failed")
            next_tick += self.interval
            now = time.monotonic()
            if next_tick < now:
                next_tick = now + self.interval - ((now - next_tick) % self.interval)
            await asyncio.sleep(next_tick - now)


_sampler: Sampler | None = None
_sampler_lock = threading.Lock()


def get_sampler() -> Sampler:
    """This process's sampler, created on first use with the settings' interval and history."""
    global _sampler
    if _sampler is None:
        from instances.supervisor import instance_cgroup

        with _sampler_lock:
            if _sampler is None:
                _sampler = Sampler(
                    trees=ProcessTreeCollector(settings.AIKORE_STACK_ID, cgroup_of=instance_cgroup),
                    interval=settings.AIKORE_SAMPLE_INTERVAL,
                    history_seconds=settings.AIKORE_HISTORY_SECONDS,
                    disk_path=settings.AIKORE_DATA_DIR,
                    gpu_retry_seconds=settings.AIKORE_GPU_RETRY_SECONDS,
                )
    return _sampler
