"""/metrics: Prometheus text from the sampler's sample, behind a session or a Bearer token."""

from __future__ import annotations

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from accounts.models import ApiToken
from instances.models import Instance
from monitoring.collectors import MIB, InstanceRef, SyntheticGpu, SyntheticGpuSource
from monitoring.metrics import render_prometheus
from monitoring.sampler import Sampler
from monitoring.tests.helpers import process_tree


def parse(text: bytes | str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value}"""
    if isinstance(text, bytes):
        text = text.decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_host_gpu_and_instance_gauges(tmp_path):
    with process_tree("sleep 60 & wait", children=1) as root:
        gpus = SyntheticGpuSource([
            SyntheticGpu(name="Synth A", uuid="GPU-a", utilization=55, memory_used=1000 * MIB,
                         processes=[(root.pid, 600 * MIB)]),
            SyntheticGpu(name="Synth B", uuid="GPU-b", fan_speed=None),
        ])
        sampler = Sampler(1.0, 60, tmp_path, instance_source=lambda: [InstanceRef(3, root.pid)], gpu_source=gpus)
        sampler.sample()
        sample = sampler.sample()
    instances = [{"id": 3, "name": "Comfy \"main\"", "slug": "comfy-main", "status": "running"},
                 {"id": 4, "name": "Idle", "slug": "idle", "status": "stopped"}]
    metrics = parse(render_prometheus(sample, instances))

    assert metrics[("aikore_host_cpu_count", ())] == sample["host"]["cpu"]["count"]
    assert metrics[("aikore_host_memory_bytes", (("kind", "total"),))] == sample["host"]["memory"]["total"]
    assert ("aikore_host_cpu_core_percent", (("core", "0"),)) in metrics
    assert ("aikore_host_load", (("period", "15m"),)) in metrics
    assert metrics[("aikore_gpu_available", ())] == 1
    a = (("gpu", "0"), ("name", "Synth A"), ("uuid", "GPU-a"))
    b = (("gpu", "1"), ("name", "Synth B"), ("uuid", "GPU-b"))
    assert metrics[("aikore_gpu_utilization_percent", a)] == 55
    assert metrics[("aikore_gpu_memory_used_bytes", a)] == 1000 * MIB
    assert metrics[("aikore_gpu_power_watts", a)] == 50.0
    assert metrics[("aikore_gpu_clock_mhz", (("clock", "graphics"), *a))] == 1500
    assert ("aikore_gpu_fan_percent", b) not in metrics  # not reported by that card: absent, not 0
    # Instance status as a state set, resources for running ones; names are escaped properly.
    main = (("instance_id", "3"), ("name", 'Comfy "main"'), ("slug", "comfy-main"))
    assert metrics[("aikore_instance_status", (*main, ("status", "running")))] == 1
    assert metrics[("aikore_instance_status", (*main, ("status", "stopped")))] == 0
    assert metrics[("aikore_instance_running", main)] == 1
    assert metrics[("aikore_instance_running", (("instance_id", "4"), ("name", "Idle"), ("slug", "idle")))] == 0
    assert metrics[("aikore_instance_vram_bytes", main)] == 600 * MIB
    assert metrics[("aikore_instance_memory_rss_bytes", main)] > 0
    assert metrics[("aikore_instance_processes", main)] == 2
    assert metrics[("aikore_sample_timestamp_seconds", ())] == pytest.approx(sample["ts"])


def test_no_gpu_is_exposed_as_unavailable(tmp_path):
    gpus = SyntheticGpuSource()
    gpus.init_error = 12  # NVML_ERROR_LIBRARY_NOT_FOUND
    sample = Sampler(1.0, 60, tmp_path, instance_source=list, gpu_source=gpus).sample()
    metrics = parse(render_prometheus(sample, []))
    assert metrics[("aikore_gpu_available", ())] == 0
    assert not [key for key in metrics if key[0].startswith("aikore_gpu_") and key[0] != "aikore_gpu_available"]


@pytest.mark.django_db
def test_metrics_view_needs_a_session_or_a_token(alice):
    Instance.objects.create_instance(name="Exported", blueprint="demo-webui")
    assert Client().get("/metrics").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer not-a-token").status_code == 401

    _, raw = ApiToken.issue(alice, "prometheus")
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    metrics = parse(response.content)
    assert ("aikore_host_cpu_percent", ()) in metrics
    assert ("aikore_gpu_available", ()) in metrics
    status = [k for k, v in metrics.items() if k[0] == "aikore_instance_status" and v == 1]
    assert [dict(labels)["status"] for _, labels in status] == ["stopped"]

    session = Client()
    session.force_login(alice)
    assert session.get("/metrics").status_code == 200
