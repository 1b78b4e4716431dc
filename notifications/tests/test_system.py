"""System events from the sampler's samples: low free disk in the data dir, a GPU over its
temperature threshold. Told once when the condition starts (not once per sample), again only after
it cleared with a margin; end to end on a throwaway stack with AIKORE_NOTIFY_URLS, a threshold above
the real free space and a synthetic GPU (AIKORE_FAKE_GPUS)."""

from __future__ import annotations

import os
import signal
import time

import httpx
import psutil
import pytest
from django.conf import settings

from monitoring.sampler import Sampler
from monitoring.signals import sample_taken
from notifications.models import Event
from notifications.system import SystemWatch

GIB = 1024**3


def sample(free: int = 50 * GIB, total: int = 100 * GIB, temps: tuple[float, ...] = (), gpus: bool = True) -> dict:
    return {
        "host": {"disk": {"path": "/data", "free": free, "total": total, "used": total - free}},
        "gpu": {"available": gpus, "gpus": [{"index": i, "name": f"Card {i}", "temperature": t} for i, t in enumerate(temps)]},
    }


@pytest.fixture
def thresholds(settings):
    settings.AIKORE_NOTIFY_DISK_FREE_PERCENT = 10.0
    settings.AIKORE_NOTIFY_DISK_FREE_BYTES = 5 * GIB
    settings.AIKORE_NOTIFY_GPU_TEMP = 85
    return settings


def test_disk_low_once_then_rearms_with_a_margin(thresholds):
    watch = SystemWatch()
    assert watch.check(sample(free=50 * GIB)) == []
    alerts = watch.check(sample(free=9 * GIB))  # 9 % < 10 %
    assert [a.kind for a in alerts] == ["disk_low"]
    assert "9.0 GiB free of 100.0 GiB (9.0 %) in /data" in alerts[0].message
    assert "10 % or 5.0 GiB" in alerts[0].message
    assert watch.check(sample(free=8 * GIB)) == []  # still low: nothing new
    assert watch.check(sample(free=int(10.5 * GIB))) == []  # above 10 %, within the margin: not re-armed
    assert watch.check(sample(free=9 * GIB)) == []
    assert watch.check(sample(free=12 * GIB)) == []  # cleared with margin: re-armed
    assert [a.kind for a in watch.check(sample(free=9 * GIB))] == ["disk_low"]


def test_disk_byte_threshold_and_off(thresholds):
    watch = SystemWatch()
    assert [a.kind for a in watch.check(sample(free=4 * GIB, total=4000 * GIB))] == ["disk_low"]  # 0.1 % and < 5 GiB
    thresholds.AIKORE_NOTIFY_DISK_FREE_PERCENT = 0
    thresholds.AIKORE_NOTIFY_DISK_FREE_BYTES = 0
    assert SystemWatch().check(sample(free=1)) == []


def test_gpu_hot_per_card_with_hysteresis(thresholds):
    watch = SystemWatch()
    assert watch.check(sample(temps=(70, 80))) == []
    alerts = watch.check(sample(temps=(86, 80)))
    assert [(a.kind, a.subject, a.title) for a in alerts] == [("gpu_hot", "gpu:0", "GPU 0 at 86 °C")]
    assert "over the 85 °C" in alerts[0].message
    assert watch.check(sample(temps=(90, 80))) == []
    assert [a.subject for a in watch.check(sample(temps=(84, 88)))] == ["gpu:1"]  # 0 not cool enough to re-arm
    assert watch.check(sample(temps=(86, 88))) == []
    assert watch.check(sample(temps=(79, 88))) == []  # 0 cooled 5 °C below: re-armed
    assert [a.subject for a in watch.check(sample(temps=(85, 88)))] == ["gpu:0"]


def test_bad_or_missing_numbers_are_ignored(thresholds):
    watch = SystemWatch()
    assert watch.check({}) == []
    assert watch.check({"host": {"disk": {"error": "gone"}}, "gpu": {"available": False, "reason": "no driver"}}) == []
    assert watch.check(sample(temps=(None, "hot"))) == []
    assert watch.check(sample(free=1, total=0)) == []
    thresholds.AIKORE_NOTIFY_GPU_TEMP = 0
    assert watch.check(sample(temps=(120,))) == []


@pytest.mark.django_db
def test_the_sampler_signal_records_once_per_condition(thresholds, monkeypatch):
    from notifications import receivers, system

    monkeypatch.setattr(system, "watch", SystemWatch())
    monkeypatch.setattr(receivers, "_dispatch_later", lambda pk: None)
    for _ in range(3):
        sample_taken.send(sender=Sampler, sample=sample(free=1 * GIB, temps=(95,)))
    assert sorted(Event.objects.values_list("kind", "subject")) == [("disk_low", "disk"), ("gpu_hot", "gpu:0")]
    # A new process (web restart) that finds the disk still full doesn't announce it again.
    monkeypatch.setattr(system, "watch", SystemWatch())
    sample_taken.send(sender=Sampler, sample=sample(free=1 * GIB, temps=(95,)))
    assert Event.objects.count() == 2
    # A broken sample never breaks the sampler.
    assert sample_taken.send(sender=Sampler, sample={"host": "nonsense"}) is not None


def _is_daphne(proc: psutil.Process) -> bool:
    try:
        return "aikore_site.webserver" in " ".join(proc.cmdline())
    except psutil.Error:  # gone meanwhile, or a zombie
        return False


def _login(base_url: str, password: str) -> httpx.Client:
    client = httpx.Client(base_url=base_url, timeout=20)
    client.get("/login/")
    token = client.cookies[settings.CSRF_COOKIE_NAME]
    response = client.post("/login/", data={"csrfmiddlewaretoken": token, "username": "admin", "password": password},
                           headers={"Referer": base_url + "/login/"})
    assert response.status_code == 302, response.text[-300:]
    return client


@pytest.mark.stack
@pytest.mark.slow
def test_low_disk_and_hot_gpu_reach_an_env_target(tmp_path, webhook):
    from aikore_site.tests.stacks import throwaway_stack

    env = {"AIKORE_NOTIFY_URLS": webhook.url, "AIKORE_NOTIFY_DISK_FREE_PERCENT": "100", "AIKORE_FAKE_GPUS": "1",
           "AIKORE_NOTIFY_GPU_TEMP": "30", "AIKORE_SAMPLE_INTERVAL": "0.25"}
    with throwaway_stack(tmp_path, "notify-stack", env, admin_password="notify-admin-password",
                         instance_port_range="30501-30550") as stack:
        webhook.wait(lambda h: h.titles("Low disk space") and h.titles("GPU 0 at"), 20, "disk and GPU alerts")
        disk = next(m for m in webhook.messages if "Low disk space" in m["title"])
        assert disk["type"] == "warning" and str(stack.data_dir) in disk["message"]
        gpu = next(m for m in webhook.messages if "GPU 0 at" in m["title"])
        assert "over the 30 °C alert threshold" in gpu["message"] and "synthetic" in gpu["message"]

        # Kill the web process (where the sampler runs): supervisord restarts it, its fresh watch
        # sees the same conditions and stays quiet because they were already told.
        daphne = [p for p in psutil.Process(stack.proc.pid).children(recursive=True) if _is_daphne(p)]
        assert len(daphne) == 1
        os.kill(daphne[0].pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(stack.base_url + "/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "daphne did not come back"
            time.sleep(0.2)
        time.sleep(1.5)  # several samples of the new process
        assert len(webhook.titles("Low disk space")) == 1 and len(webhook.titles("GPU 0 at")) == 1

        client = _login(stack.base_url, stack.admin_password)
        targets = client.get("/api/notifications/targets").json()
        assert [(t["source"], t["url"], t["last_status"]) for t in targets] == [
            ("env", f"json://127.0.0.1:{webhook.port}/…", "sent")]
        events = client.get("/api/notifications/events").json()
        assert sorted(e["kind"] for e in events) == ["disk_low", "gpu_hot"]
        assert all(e["deliveries"][0]["status"] == "sent" for e in events)
