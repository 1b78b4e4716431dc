"""Prometheus exposition of the sampler's latest sample (host, GPUs, instances) and of each
instance's status, for /metrics. Rendered from the sample the sampler already took, so a scrape
costs no extra sampling. Label names avoid ``instance``, which Prometheus sets to the target."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from instances.models import InstanceStatus


def _gauge(name: str, doc: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


def _add(metric: GaugeMetricFamily, labels: list[str], value: float | int | None) -> None:
    if value is not None:
        metric.add_metric(labels, float(value))


def _host_metrics(host: dict) -> Iterator[Metric]:
    cpu = host.get("cpu") or {}
    m = _gauge("aikore_host_cpu_percent", "Host CPU utilisation, all cores (0-100).")
    _add(m, [], cpu.get("percent"))
    yield m
    m = _gauge("aikore_host_cpu_core_percent", "Host CPU utilisation per core (0-100).", ["core"])
    for core, value in enumerate(cpu.get("per_core") or []):
        _add(m, [str(core)], value)
    yield m
    m = _gauge("aikore_host_cpu_count", "Logical CPUs.")
    _add(m, [], cpu.get("count"))
    yield m
    m = _gauge("aikore_host_load", "Load average.", ["period"])
    for period, value in zip(("1m", "5m", "15m"), host.get("load") or [], strict=False):
        _add(m, [period], value)
    yield m
    for key, doc in (("memory", "RAM"), ("swap", "Swap")):
        section = host.get(key) or {}
        m = _gauge(f"aikore_host_{key}_bytes", f"{doc} in bytes.", ["kind"])
        for kind in ("total", "used", "available"):
            _add(m, [kind], section.get(kind))
        yield m
    disk = host.get("disk") or {}
    m = _gauge("aikore_host_disk_bytes", "Disk holding the data dir, in bytes.", ["path", "kind"])
    for kind in ("total", "used", "free"):
        _add(m, [str(disk.get("path", "")), kind], disk.get(kind))
    yield m
    net = host.get("network") or {}
    m = _gauge("aikore_host_network_bytes_per_second", "Network throughput, all interfaces.", ["direction"])
    _add(m, ["rx"], net.get("rx_rate"))
    _add(m, ["tx"], net.get("tx_rate"))
    yield m


_GPU_GAUGES = (
    ("utilization_gpu", "aikore_gpu_utilization_percent", "GPU utilisation (0-100)."),
    ("utilization_memory", "aikore_gpu_memory_utilization_percent", "Memory controller utilisation (0-100)."),
    ("memory_used", "aikore_gpu_memory_used_bytes", "VRAM used, bytes."),
    ("memory_total", "aikore_gpu_memory_total_bytes", "VRAM total, bytes."),
    ("temperature", "aikore_gpu_temperature_celsius", "GPU temperature."),
    ("power_draw", "aikore_gpu_power_watts", "Power draw."),
    ("power_limit", "aikore_gpu_power_limit_watts", "Enforced power limit."),
    ("fan_speed", "aikore_gpu_fan_percent", "Fan speed (0-100)."),
)


def _gpu_metrics(gpu: dict) -> Iterator[Metric]:
    m = _gauge("aikore_gpu_available", "1 when NVML answers and reports at least one GPU.")
    m.add_metric([], 1.0 if gpu.get("available") else 0.0)
    yield m
    gpus = gpu.get("gpus") or []
    for key, name, doc in _GPU_GAUGES:
        m = _gauge(name, doc, ["gpu", "name", "uuid"])
        for g in gpus:
            _add(m, [str(g["index"]), g.get("name") or "", g.get("uuid") or ""], g.get(key))
        yield m
    m = _gauge("aikore_gpu_clock_mhz", "Current clocks.", ["gpu", "name", "uuid", "clock"])
    for g in gpus:
        for clock, value in (g.get("clocks") or {}).items():
            _add(m, [str(g["index"]), g.get("name") or "", g.get("uuid") or "", clock], value)
    yield m


def _instance_metrics(usage: dict, instances: list[dict]) -> Iterator[Metric]:
    statuses = [s.value for s in InstanceStatus]
    m = _gauge("aikore_instance_status", "1 for the instance's current status, 0 for the others.",
               ["instance_id", "name", "slug", "status"])
    up = _gauge("aikore_instance_running", "1 when the instance is running (ready).", ["instance_id", "name", "slug"])
    for inst in instances:
        labels = [str(inst["id"]), inst["name"], inst["slug"]]
        for status in statuses:
            m.add_metric([*labels, status], 1.0 if inst["status"] == status else 0.0)
        up.add_metric(labels, 1.0 if inst["status"] == InstanceStatus.RUNNING else 0.0)
    yield m
    yield up
    by_id = {str(inst["id"]): inst for inst in instances}
    for key, name, doc in (
        ("cpu_percent", "aikore_instance_cpu_percent", "CPU of the instance's process tree (100 = one core)."),
        ("rss", "aikore_instance_memory_rss_bytes", "Resident memory of the instance's process tree."),
        ("vram", "aikore_instance_vram_bytes", "VRAM used by the instance's processes."),
        ("processes", "aikore_instance_processes", "Processes in the instance's tree."),
    ):
        m = _gauge(name, doc, ["instance_id", "name", "slug"])
        for iid, info in usage.items():
            inst = by_id.get(iid)
            if inst is not None:
                _add(m, [iid, inst["name"], inst["slug"]], info.get(key))
        yield m


class _SampleCollector:
    def __init__(self, sample: dict, instances: list[dict]) -> None:
        self.sample = sample
        self.instances = instances

    def collect(self) -> Iterator[Metric]:
        m = _gauge("aikore_sample_timestamp_seconds", "When the exposed sample was taken (Unix time).")
        m.add_metric([], float(self.sample.get("ts") or 0))
        yield m
        yield from _host_metrics(self.sample.get("host") or {})
        yield from _gpu_metrics(self.sample.get("gpu") or {})
        yield from _instance_metrics(self.sample.get("instances") or {}, self.instances)


def render_prometheus(sample: dict, instances: list[dict]) -> bytes:
    """The text exposition format of `sample` and `instances` ([{"id", "name", "slug", "status"}])."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SampleCollector(sample, instances))
    return generate_latest(registry)
