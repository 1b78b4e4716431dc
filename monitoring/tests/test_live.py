"""The sampler inside the live daphne: a running instance shows up in /api/system/stats and
/metrics with its process tree's resources; a stopped one leaves them."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from accounts.models import ApiToken
from instances.models import Instance, InstanceStatus
from instances.tests.helpers import custom_blueprint, wait_for, wait_status

pytestmark = [pytest.mark.stack, pytest.mark.django_db(transaction=True)]


def test_running_instance_in_stats_and_metrics(live, alice):
    _, raw = ApiToken.issue(alice, "monitoring-test")
    bp = custom_blueprint("tree", "# aikore.ready: none\nsleep 1000 &\nsleep 1000 &\nwait\n")
    instance = Instance.objects.create_instance(name="Sampled", blueprint=bp)
    instance.start()
    wait_status(instance, InstanceStatus.RUNNING)
    key = str(instance.pk)
    with live.daphne_client(headers={"Authorization": f"Bearer {raw}"}) as http:
        def sampled() -> dict | None:
            latest = http.get("/api/system/stats").json()["latest"]
            usage = latest["instances"].get(key)
            return usage if usage and usage["processes"] == 3 else None

        wait_for(lambda: sampled() is not None, what="the instance in a sample")
        usage = sampled()
        assert usage["pid"] == instance.pid and usage["rss"] > 0
        metrics = {(s.name, s.labels.get("instance_id")): s.value
                   for family in text_string_to_metric_families(http.get("/metrics").text) for s in family.samples}
        assert metrics[("aikore_instance_processes", key)] == 3
        assert metrics[("aikore_instance_running", key)] == 1
        assert ("aikore_host_cpu_percent", None) in metrics

        instance.stop()
        wait_status(instance, InstanceStatus.STOPPED)
        wait_for(lambda: key not in http.get("/api/system/stats").json()["latest"]["instances"],
                 what="the stopped instance to leave the samples")
        history = http.get("/api/system/stats?history=600").json()["history"]
        assert any(key in s["instances"] for s in history)  # still in the ring buffer's past
