"""What the sampler reads: the host (psutil), the GPUs (NVML) and each instance's process tree.

Each collector keeps what must persist between samples (psutil's CPU counters, NVML handles,
network counters), so one call per sample is cheap. Collectors return plain JSON-ready dicts; the
shape is what ``static/aikore/monitor.js`` and ``monitoring.metrics`` read.

GPU access goes through a small source interface (``GpuSource``) with the NVML calls the collector
needs. ``NvmlSource`` (nvidia-ml-py) is the default and imports cleanly without a driver;
``SyntheticGpuSource`` stands in for it in tests (several GPUs, processes, a driver error mid-run).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psutil
import pynvml

from aikore_site import procs

log = logging.getLogger(__name__)

MIB = 1024 * 1024


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(float(value), digits)


# --- host ---------------------------------------------------------------------------------------


class HostCollector:
    """CPU (total and per core), load, RAM and swap, disk usage of one path, network rates."""

    def __init__(self, disk_path: Path | str) -> None:
        self.disk_path = str(disk_path)
        self.cpu_count = psutil.cpu_count() or 1
        # psutil's cpu_percent(interval=None) compares with the previous call: prime it, so the
        # first real sample measures the time since start-up instead of returning 0.
        psutil.cpu_percent(percpu=True)
        self._net_last: tuple[float, int, int] | None = None

    def collect(self) -> dict:
        per_core = psutil.cpu_percent(percpu=True)
        memory = psutil.virtual_memory()
        swap = psutil.swap_memory()
        try:
            load = [round(x, 2) for x in os.getloadavg()]
        except OSError:
            load = None
        return {
            "cpu": {
                "percent": _round(sum(per_core) / len(per_core)) if per_core else None,
                "per_core": [_round(x) for x in per_core],
                "count": self.cpu_count,
            },
            "load": load,
            "memory": {"total": memory.total, "used": memory.total - memory.available,
                       "available": memory.available, "percent": _round(memory.percent)},
            "swap": {"total": swap.total, "used": swap.used, "percent": _round(swap.percent)},
            "disk": self._disk(),
            "network": self._network(),
        }

    def _disk(self) -> dict:
        try:
            usage = psutil.disk_usage(self.disk_path)
        except OSError as exc:
            return {"path": self.disk_path, "error": str(exc)}
        return {"path": self.disk_path, "total": usage.total, "used": usage.used, "free": usage.free,
                "percent": _round(usage.percent)}

    def _network(self) -> dict:
        counters = psutil.net_io_counters()
        now = time.monotonic()
        if counters is None:
            return {"rx_bytes": None, "tx_bytes": None, "rx_rate": None, "tx_rate": None}
        rx_rate = tx_rate = None
        if self._net_last is not None:
            then, rx, tx = self._net_last
            elapsed = now - then
            if elapsed > 0:
                # Counters can go backwards when an interface disappears: clamp rather than go negative.
                rx_rate = _round(max(0, counters.bytes_recv - rx) / elapsed, 0)
                tx_rate = _round(max(0, counters.bytes_sent - tx) / elapsed, 0)
        self._net_last = (now, counters.bytes_recv, counters.bytes_sent)
        return {"rx_bytes": counters.bytes_recv, "tx_bytes": counters.bytes_sent,
                "rx_rate": rx_rate, "tx_rate": tx_rate}


# --- GPUs ---------------------------------------------------------------------------------------


class GpuSource(Protocol):
    """The NVML calls the GPU collector makes. Errors are ``pynvml.NVMLError`` (subclasses), as
    the real library raises them; values are in NVML's units (bytes, mW, °C, %, MHz)."""

    def init(self) -> None: ...
    def shutdown(self) -> None: ...
    def driver_version(self) -> str: ...
    def cuda_driver_version(self) -> int: ...  # e.g. 12080 for CUDA 12.8
    def device_count(self) -> int: ...
    def handle(self, index: int) -> Any: ...
    def name(self, handle: Any) -> str: ...
    def uuid(self, handle: Any) -> str: ...
    def utilization(self, handle: Any) -> tuple[int, int]: ...  # (gpu %, memory controller %)
    def memory(self, handle: Any) -> tuple[int, int]: ...  # (used, total) bytes
    def temperature(self, handle: Any) -> int: ...
    def power_usage(self, handle: Any) -> int: ...  # mW
    def power_limit(self, handle: Any) -> int: ...  # mW
    def fan_speed(self, handle: Any) -> int: ...  # %
    def clock(self, handle: Any, kind: int) -> int: ...  # MHz; kind = pynvml.NVML_CLOCK_*
    def processes(self, handle: Any) -> list[tuple[int, int | None]]: ...  # [(pid, used bytes)]


class NvmlSource:
    """The real NVML through nvidia-ml-py. Importing pynvml needs no driver; nvmlInit() without one
    raises NVMLError_LibraryNotFound in under a millisecond."""

    def init(self) -> None:
        pynvml.nvmlInit()

    def shutdown(self) -> None:
        pynvml.nvmlShutdown()

    def driver_version(self) -> str:
        version = pynvml.nvmlSystemGetDriverVersion()
        return version.decode() if isinstance(version, bytes) else str(version)

    def cuda_driver_version(self) -> int:
        return int(pynvml.nvmlSystemGetCudaDriverVersion())

    def device_count(self) -> int:
        return int(pynvml.nvmlDeviceGetCount())

    def handle(self, index: int) -> Any:
        return pynvml.nvmlDeviceGetHandleByIndex(index)

    def name(self, handle: Any) -> str:
        name = pynvml.nvmlDeviceGetName(handle)
        return name.decode() if isinstance(name, bytes) else str(name)

    def uuid(self, handle: Any) -> str:
        uuid = pynvml.nvmlDeviceGetUUID(handle)
        return uuid.decode() if isinstance(uuid, bytes) else str(uuid)

    def utilization(self, handle: Any) -> tuple[int, int]:
        rates = pynvml.nvmlDeviceGetUtilizationRates(handle)
        return int(rates.gpu), int(rates.memory)

    def memory(self, handle: Any) -> tuple[int, int]:
        info = pynvml.nvmlDeviceGetMemoryInfo(handle)
        return int(info.used), int(info.total)

    def temperature(self, handle: Any) -> int:
        return int(pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU))

    def power_usage(self, handle: Any) -> int:
        return int(pynvml.nvmlDeviceGetPowerUsage(handle))

    def power_limit(self, handle: Any) -> int:
        return int(pynvml.nvmlDeviceGetEnforcedPowerLimit(handle))

    def fan_speed(self, handle: Any) -> int:
        return int(pynvml.nvmlDeviceGetFanSpeed(handle))

    def clock(self, handle: Any, kind: int) -> int:
        return int(pynvml.nvmlDeviceGetClockInfo(handle, kind))

    def processes(self, handle: Any) -> list[tuple[int, int | None]]:
        found: dict[int, int | None] = {}
        for getter in (pynvml.nvmlDeviceGetComputeRunningProcesses, pynvml.nvmlDeviceGetGraphicsRunningProcesses):
            try:
                procs = getter(handle)
            except pynvml.NVMLError_NotSupported:
                continue
            for proc in procs:
                used = proc.usedGpuMemory
                # NVML reports "not available" (e.g. under WDDM or without permission) as None.
                used = int(used) if isinstance(used, int) else None
                previous = found.get(proc.pid)
                found[proc.pid] = used if previous is None else previous + (used or 0)
        return list(found.items())


@dataclass
class SyntheticGpu:
    name: str = "Synthetic GPU"
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"
    utilization: int = 0
    memory_utilization: int = 0
    memory_used: int = 0
    memory_total: int = 24 * 1024 * MIB
    temperature: int = 40
    power_usage_mw: int = 50_000
    power_limit_mw: int = 300_000
    fan_speed: int | None = 30  # None: NVML_ERROR_NOT_SUPPORTED (passively cooled cards)
    clocks: dict[int, int] = field(default_factory=lambda: {pynvml.NVML_CLOCK_GRAPHICS: 1500,
                                                            pynvml.NVML_CLOCK_SM: 1500,
                                                            pynvml.NVML_CLOCK_MEM: 9000})
    processes: list[tuple[int, int | None]] = field(default_factory=list)


class SyntheticGpuSource:
    """An NVML stand-in for machines without a GPU (tests, demos). Set ``error`` to an NVML error
    code to make every call fail as a lost driver would; ``init_error`` to fail at init."""

    def __init__(self, gpus: Iterable[SyntheticGpu] = (), driver: str = "550.00-synthetic",
                 cuda_version: int | None = None) -> None:
        self.gpus = list(gpus)
        self.driver = driver
        # NVML's encoding (12080 = CUDA 12.8); None: the call is not supported, as with no CUDA
        # driver. Demo GPUs leave it None so `auto` picks CPU wheels on a machine without a GPU.
        self.cuda_version = cuda_version
        self.error: int | None = None
        self.init_error: int | None = None
        self.init_calls = 0
        self.initialised = False

    def _check(self) -> None:
        if self.error is not None:
            raise pynvml.NVMLError(self.error)
        if not self.initialised:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)

    def init(self) -> None:
        self.init_calls += 1
        if self.init_error is not None:
            raise pynvml.NVMLError(self.init_error)
        self.initialised = True

    def shutdown(self) -> None:
        self.initialised = False

    def driver_version(self) -> str:
        self._check()
        return self.driver

    def cuda_driver_version(self) -> int:
        self._check()
        if self.cuda_version is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return self.cuda_version

    def device_count(self) -> int:
        self._check()
        return len(self.gpus)

    def handle(self, index: int) -> Any:
        self._check()
        return self.gpus[index]

    def name(self, handle: SyntheticGpu) -> str:
        self._check()
        return handle.name

    def uuid(self, handle: SyntheticGpu) -> str:
        self._check()
        return handle.uuid

    def utilization(self, handle: SyntheticGpu) -> tuple[int, int]:
        self._check()
        return handle.utilization, handle.memory_utilization

    def memory(self, handle: SyntheticGpu) -> tuple[int, int]:
        self._check()
        return handle.memory_used, handle.memory_total

    def temperature(self, handle: SyntheticGpu) -> int:
        self._check()
        return handle.temperature

    def power_usage(self, handle: SyntheticGpu) -> int:
        self._check()
        return handle.power_usage_mw

    def power_limit(self, handle: SyntheticGpu) -> int:
        self._check()
        return handle.power_limit_mw

    def fan_speed(self, handle: SyntheticGpu) -> int:
        self._check()
        if handle.fan_speed is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return handle.fan_speed

    def clock(self, handle: SyntheticGpu, kind: int) -> int:
        self._check()
        if kind not in handle.clocks:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return handle.clocks[kind]

    def processes(self, handle: SyntheticGpu) -> list[tuple[int, int | None]]:
        self._check()
        return list(handle.processes)


class DemoGpuSource(SyntheticGpuSource):
    """AIKORE_FAKE_GPUS=N: N synthetic cards whose load drifts slowly, so the GPU panels, the
    form's GPU checkboxes and /metrics can be seen and tested on a machine without a GPU. Nothing
    but the settings chooses it; the real NVML source stays the default."""

    def __init__(self, count: int) -> None:
        names = ("NVIDIA GeForce RTX 4090 (synthetic)", "NVIDIA RTX A6000 (synthetic)")
        super().__init__([
            SyntheticGpu(name=names[i % len(names)], uuid=f"GPU-5e1f0000-0000-0000-0000-{i:012d}",
                         memory_total=(24 + 24 * (i % 2)) * 1024 * MIB)
            for i in range(count)
        ])

    def _drift(self, gpu: SyntheticGpu, index: int) -> None:
        phase = time.time() / 20 + index
        load = 0.5 + 0.45 * math.sin(phase)
        gpu.utilization = int(100 * load)
        gpu.memory_utilization = int(60 * load)
        gpu.memory_used = int(gpu.memory_total * (0.2 + 0.5 * load))
        gpu.temperature = int(38 + 40 * load)
        gpu.power_usage_mw = int(gpu.power_limit_mw * (0.1 + 0.8 * load))

    def utilization(self, handle: SyntheticGpu) -> tuple[int, int]:
        self._drift(handle, self.gpus.index(handle))
        return super().utilization(handle)


def default_gpu_source() -> GpuSource:
    """The GPU source of this process: real NVML, or demo GPUs when AIKORE_FAKE_GPUS is set."""
    from django.conf import settings

    count = getattr(settings, "AIKORE_FAKE_GPUS", 0)
    return DemoGpuSource(count) if count else NvmlSource()


# Per-field errors that mean "this card doesn't report that": the field is null, the GPU stays up.
_FIELD_ERRORS = {
    pynvml.NVML_ERROR_NOT_SUPPORTED,
    pynvml.NVML_ERROR_NO_PERMISSION,
    pynvml.NVML_ERROR_NO_DATA,
    pynvml.NVML_ERROR_NOT_FOUND,
}
_CLOCKS = {"graphics": pynvml.NVML_CLOCK_GRAPHICS, "sm": pynvml.NVML_CLOCK_SM, "memory": pynvml.NVML_CLOCK_MEM}


def _nvml_reason(exc: Exception) -> str:
    if isinstance(exc, pynvml.NVMLError_LibraryNotFound):
        return "NVIDIA driver library (libnvidia-ml) not found"
    if isinstance(exc, pynvml.NVMLError_DriverNotLoaded):
        return "NVIDIA driver not loaded"
    if isinstance(exc, pynvml.NVMLError_NoPermission):
        return "no permission to access the NVIDIA driver"
    return f"NVML error: {exc}"


class GpuCollector:
    """Per-GPU readings through a GpuSource. NVML is initialised once and its handles kept; when
    that fails (no GPU, no driver: a normal state) or the driver fails mid-run, the section says
    why and NVML is retried at most every ``retry_seconds``, never in a hot loop."""

    def __init__(self, source: GpuSource | None = None, retry_seconds: float = 60.0) -> None:
        self.source: GpuSource = source if source is not None else default_gpu_source()
        self.retry_seconds = retry_seconds
        self.handles: list[Any] = []
        self.static: list[dict] = []  # name/uuid/index per GPU: read once, they don't change
        self.driver: str | None = None
        self.reason: str | None = "not initialised yet"
        self.ready = False
        self._next_try = 0.0

    def _open(self) -> None:
        now = time.monotonic()
        if self.ready or now < self._next_try:
            return
        self._next_try = now + self.retry_seconds
        try:
            self.source.init()
        except Exception as exc:  # NVMLError or an OSError from loading the library
            self.reason = _nvml_reason(exc)
            log.info("GPU monitoring unavailable: %s (retry in %.0f s)", self.reason, self.retry_seconds)
            return
        try:
            self.driver = self.source.driver_version()
            count = self.source.device_count()
            self.handles = [self.source.handle(i) for i in range(count)]
            self.static = [{"index": i, "name": self.source.name(h), "uuid": self._field(self.source.uuid, h)}
                           for i, h in enumerate(self.handles)]
        except Exception as exc:
            self._fail(exc)
            return
        self.ready = True
        self.reason = None if count else "NVML found no GPU"

    def _fail(self, exc: Exception) -> None:
        self.reason = _nvml_reason(exc)
        log.warning("GPU monitoring stopped: %s (retry in %.0f s)", self.reason, self.retry_seconds)
        self.ready = False
        self.handles, self.static = [], []
        self._next_try = time.monotonic() + self.retry_seconds
        try:
            self.source.shutdown()
        except Exception:  # already broken: nothing more to release
            pass

    @staticmethod
    def _field(getter: Any, *args: Any) -> Any:
        try:
            return getter(*args)
        except pynvml.NVMLError as exc:
            if exc.value in _FIELD_ERRORS:
                return None
            raise

    def collect(self) -> dict:
        """{"available", "reason", "driver", "gpus": [...]}: each GPU's readings and its processes
        as [(pid, bytes)] under "processes" (matched to instances by the caller)."""
        self._open()
        if not self.ready:
            return {"available": False, "reason": self.reason, "driver": None, "gpus": []}
        gpus = []
        try:
            for static, handle in zip(self.static, self.handles, strict=True):
                gpus.append(self._read(static, handle))
        except Exception as exc:  # driver gone, GPU fallen off the bus, ...: report, retry later
            self._fail(exc)
            return {"available": False, "reason": self.reason, "driver": None, "gpus": []}
        return {"available": bool(gpus), "reason": self.reason, "driver": self.driver, "gpus": gpus}

    def _read(self, static: dict, handle: Any) -> dict:
        field = self._field
        src = self.source
        utilization = field(src.utilization, handle) or (None, None)
        used, total = field(src.memory, handle) or (None, None)
        power = field(src.power_usage, handle)
        limit = field(src.power_limit, handle)
        processes = field(src.processes, handle) or []
        return {
            **static,
            "utilization_gpu": utilization[0],
            "utilization_memory": utilization[1],
            "memory_used": used,
            "memory_total": total,
            "temperature": field(src.temperature, handle),
            "power_draw": None if power is None else round(power / 1000, 1),
            "power_limit": None if limit is None else round(limit / 1000, 1),
            "fan_speed": field(src.fan_speed, handle),
            "clocks": {name: field(src.clock, handle, kind) for name, kind in _CLOCKS.items()},
            "processes": [{"pid": pid, "memory_used": mem} for pid, mem in processes],
        }


# --- instances ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class InstanceRef:
    """What the sampler needs to know of a running instance."""

    id: int
    pid: int
    create_time: float | None = None  # the recorded psutil create_time of pid (guards PID reuse)
    gpu_ids: str = ""


def _proc_children(pid: int) -> list[int] | None:
    """Direct children from /proc/<pid>/task/*/children (Linux, CONFIG_PROC_CHILDREN): about 30 µs,
    against about 1 ms for psutil's children(), which scans the whole process table. None when the
    kernel doesn't provide it."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return []
    except OSError:
        return None
    children: list[int] = []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as fh:
                children.extend(int(x) for x in fh.read().split())
        except FileNotFoundError:
            if tid == str(pid) and not os.path.exists(f"/proc/{pid}/task/{tid}"):
                return []  # the process went away
            if tid == str(pid):
                return None  # no children file: kernel without CONFIG_PROC_CHILDREN
        except OSError:
            continue
    return children


# How often the sampler looks for an instance's processes outside its main process's tree (a
# double fork, setsid, a daemon) by their marker: a pass over every process's environment (about
# 5 µs a process), too dear for every sample. Cgroup members, when instances get cgroups, are read
# at every sample (one small file each).
MARKER_SCAN_SECONDS = 10.0


class ProcessTreeCollector:
    """CPU % and RSS of each instance's processes: its main process's tree, plus what escaped it,
    found as lifecycle.instance_processes() finds them (the instance's marker and cgroup,
    aikore_site/procs.py). psutil.Process objects are kept between samples (keyed by pid and
    create time), so cpu_percent() compares with the previous sample and a recycled PID is never
    mistaken for the old process."""

    def __init__(self, stack_id: str | None = None, cgroup_of: Any = None) -> None:
        self._procs: dict[int, psutil.Process] = {}
        self._proc_children_works = True
        self._stack_id = stack_id  # None: look at the main process's tree only
        self._cgroup_of = cgroup_of  # instance id -> its cgroup directory or None
        self._marked: dict[int, list[tuple[int, float]]] = {}
        self._scanned_at = -math.inf

    def _escaped(self, instance_id: int) -> list[tuple[int, float | None]]:
        """(pid, create time or None) of the instance's marked or cgroup processes, tree or not.
        A cgroup's list is the kernel's of this moment: no create time needed against recycling."""
        found: list[tuple[int, float | None]] = list(self._marked.get(instance_id, ()))
        path = self._cgroup_of(instance_id) if self._cgroup_of is not None else None
        if path is not None:
            found.extend((pid, None) for pid in procs.cgroup_pids(path))
        return found

    def _scan_markers(self) -> None:
        if self._stack_id is None or time.monotonic() - self._scanned_at < MARKER_SCAN_SECONDS:
            return
        self._scanned_at = time.monotonic()
        marked: dict[int, list[tuple[int, float]]] = {}
        try:
            # Where the apps run as a user of their own, supervisord scans for AiKore's processes
            # (procs.use_helper): it may be away for a moment. The last scan's findings stand.
            matches = procs.scan(self._stack_id)
        except Exception as exc:
            log.debug("marker scan failed: %s", exc)
            return
        for match in matches:
            if match.instance is not None:
                with contextlib.suppress(psutil.Error):
                    marked.setdefault(match.instance, []).append((match.proc.pid, match.proc.create_time()))
        self._marked = marked

    def _process(self, pid: int, create_time: float | None = None) -> psutil.Process | None:
        proc = self._procs.get(pid)
        if proc is not None:
            if proc.is_running():  # compares create_time: False for a recycled PID
                return proc
            del self._procs[pid]
        try:
            proc = psutil.Process(pid)
        except psutil.Error:
            return None
        if create_time is not None and abs(proc.create_time() - create_time) > 0.01:
            return None  # the instance's process is gone and its PID was reused
        proc.cpu_percent()  # start its CPU counter: the first reading would be meaningless
        self._procs[pid] = proc
        return proc

    def _tree(self, root: psutil.Process) -> list[psutil.Process]:
        if self._proc_children_works:
            pids, todo, seen = [], [root.pid], {root.pid}
            while todo:
                pid = todo.pop()
                pids.append(pid)
                children = _proc_children(pid)
                if children is None:
                    self._proc_children_works = False
                    break
                for child in children:
                    if child not in seen:
                        seen.add(child)
                        todo.append(child)
            else:
                procs = [root]
                for pid in pids[1:]:
                    proc = self._process(pid)
                    if proc is not None:
                        procs.append(proc)
                return procs
        try:
            children = root.children(recursive=True)
        except psutil.Error:
            return [root]
        return [root, *(self._process(c.pid) or c for c in children)]

    def collect(self, instances: Iterable[InstanceRef]) -> dict[int, dict]:
        """{instance id: {"pid", "cpu_percent", "rss", "processes", "pids"}} for instances alive."""
        result: dict[int, dict] = {}
        live: set[int] = set()
        self._scan_markers()
        for ref in instances:
            root = self._process(ref.pid, ref.create_time)
            if root is None:
                continue
            cpu = 0.0
            rss = 0
            pids = []
            members = self._tree(root)
            in_tree = {proc.pid for proc in members}
            for pid, created in self._escaped(ref.id):
                if pid not in in_tree:
                    proc = self._process(pid, created)
                    if proc is not None:
                        in_tree.add(pid)
                        members.append(proc)
            for proc in members:
                try:
                    with proc.oneshot():
                        cpu += proc.cpu_percent()
                        rss += proc.memory_info().rss
                except psutil.Error:
                    continue
                pids.append(proc.pid)
            live.update(pids)
            result[ref.id] = {"pid": ref.pid, "cpu_percent": round(cpu, 1), "rss": rss,
                              "processes": len(pids), "pids": pids}
        # Forget processes no instance owns any more (bounded cache).
        for pid in [p for p in self._procs if p not in live]:
            del self._procs[pid]
        return result


def attribute_vram(gpu: dict, usage: dict[int, dict], refs: Iterable[InstanceRef]) -> None:
    """Add "vram" (bytes) to each instance's usage from the GPUs' process lists, and say how.

    NVML lists GPU processes by PID. When AiKore shares the PID namespace of the GPU's processes
    (bare metal, or a container with ``pid: host``) those PIDs are matched against each instance's
    process tree. Inside a container with its own PID namespace NVML reports host PIDs, which match
    nothing here: then a GPU's process memory is given to an instance only when it is the one
    running instance assigned to that GPU, and ``gpu["pid_match"]`` says "unavailable".
    """
    refs = list(refs)
    for info in usage.values():
        info["vram"] = None
        info["vram_source"] = None
    if not gpu.get("available"):
        gpu["pid_match"] = None
        return
    owner = {pid: iid for iid, info in usage.items() for pid in info["pids"]}
    nvml_pids = [p["pid"] for g in gpu["gpus"] for p in g["processes"]]
    # A PID we can't see at all comes from another PID namespace (NVML talks host PIDs).
    foreign = [pid for pid in nvml_pids if pid not in owner and not psutil.pid_exists(pid)]
    gpu["pid_match"] = "unavailable" if foreign else "pids"
    for g in gpu["gpus"]:
        for proc in g["processes"]:
            iid = owner.get(proc["pid"])
            proc["instance_id"] = iid
            if iid is not None:
                info = usage[iid]
                info["vram"] = (info["vram"] or 0) + (proc["memory_used"] or 0)
                info["vram_source"] = "pids"
    if not foreign:
        for info in usage.values():
            if info["vram"] is None:
                info["vram"] = 0
                info["vram_source"] = "pids"
        return
    # Fallback without PID matching: one running instance per GPU gets that GPU's process memory.
    running = [r for r in refs if r.id in usage]
    for g in gpu["gpus"]:
        on_gpu = [r for r in running if not r.gpu_ids or str(g["index"]) in r.gpu_ids.split(",")]
        if len(on_gpu) == 1 and usage[on_gpu[0].id]["vram_source"] != "pids":
            info = usage[on_gpu[0].id]
            info["vram"] = (info["vram"] or 0) + sum(p["memory_used"] or 0 for p in g["processes"])
            info["vram_source"] = "gpu"
