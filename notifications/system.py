"""System events from the monitoring sampler's own samples (no sampling of our own): low free disk
in the data dir and GPUs over a temperature threshold.

An event is raised when a condition starts, not while it lasts: the watch remembers what it last
saw (with a margin before it re-arms, so a value wobbling around a threshold is one message), and
a condition already told within AIKORE_NOTIFY_REPEAT_SECONDS (e.g. before the web process
restarted) is not told again.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from django.conf import settings

from monitoring.collectors import MIB
from notifications.models import EventKind, Level

GPU_REARM_DEGREES = 5
DISK_REARM_FACTOR = 1.1


@dataclass
class Alert:
    kind: str
    subject: str
    title: str
    message: str
    details: dict
    level: str = Level.WARNING


def _size(value: float) -> str:
    gib = value / (1024 * MIB)
    return f"{gib:.1f} GiB" if gib >= 1 else f"{value / MIB:.0f} MiB"


def disk_is_low(free: int, total: int, margin: float = 1.0) -> bool:
    percent = settings.AIKORE_NOTIFY_DISK_FREE_PERCENT
    min_bytes = settings.AIKORE_NOTIFY_DISK_FREE_BYTES
    free_percent = 100.0 * free / total if total else 100.0
    return bool((percent > 0 and free_percent < percent * margin) or (min_bytes > 0 and free < min_bytes * margin))


@dataclass
class SystemWatch:
    disk_low: bool = False
    hot_gpus: set[int] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, sample: dict) -> list[Alert]:
        """The conditions that started with this sample."""
        with self.lock:
            return self._check_disk(sample) + self._check_gpus(sample)

    def _check_disk(self, sample: dict) -> list[Alert]:
        disk = (sample.get("host") or {}).get("disk") or {}
        free, total = disk.get("free"), disk.get("total")
        if not isinstance(free, int) or not isinstance(total, int) or total <= 0:
            return []
        if not self.disk_low:
            if not disk_is_low(free, total):
                return []
            self.disk_low = True
            percent = 100.0 * free / total
            thresholds = []
            if settings.AIKORE_NOTIFY_DISK_FREE_PERCENT > 0:
                thresholds.append(f"{settings.AIKORE_NOTIFY_DISK_FREE_PERCENT:g} %")
            if settings.AIKORE_NOTIFY_DISK_FREE_BYTES > 0:
                thresholds.append(_size(settings.AIKORE_NOTIFY_DISK_FREE_BYTES))
            return [Alert(
                kind=EventKind.DISK_LOW, subject="disk", title="Low disk space in the data dir",
                message=(f"{_size(free)} free of {_size(total)} ({percent:.1f} %) in {disk.get('path', '')}; "
                         f"the alert threshold is {' or '.join(thresholds)}. Instances may fail to write "
                         "outputs, logs or models."),
                details={"path": disk.get("path"), "free": free, "total": total, "free_percent": round(percent, 2)},
            )]
        if not disk_is_low(free, total, DISK_REARM_FACTOR):
            self.disk_low = False
        return []

    def _check_gpus(self, sample: dict) -> list[Alert]:
        threshold = settings.AIKORE_NOTIFY_GPU_TEMP
        gpu = sample.get("gpu") or {}
        if threshold <= 0 or not gpu.get("available"):
            return []
        alerts = []
        for card in gpu.get("gpus") or []:
            index, temp = card.get("index"), card.get("temperature")
            if not isinstance(index, int) or not isinstance(temp, (int, float)):
                continue
            if index not in self.hot_gpus and temp >= threshold:
                self.hot_gpus.add(index)
                alerts.append(Alert(
                    kind=EventKind.GPU_HOT, subject=f"gpu:{index}", title=f"GPU {index} at {temp:g} °C",
                    message=f"{card.get('name') or 'GPU'} (index {index}) is at {temp:g} °C, over the "
                            f"{threshold} °C alert threshold. Check its cooling and load.",
                    details={"index": index, "name": card.get("name"), "temperature": temp, "threshold": threshold},
                ))
            elif index in self.hot_gpus and temp <= threshold - GPU_REARM_DEGREES:
                self.hot_gpus.discard(index)
        return alerts


watch = SystemWatch()  # one per process (the web process's sampler is its only caller)
