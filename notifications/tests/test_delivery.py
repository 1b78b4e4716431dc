"""End to end under the live stack: real instances crash or finish under supervisord, the
lifecycle's signal records the event, the Huey worker delivers it through Apprise to a local JSON
webhook started by the test. A crash loop is one "restarting" then one "failed"; an unreachable
target is retried, reported, and disturbs nothing."""

from __future__ import annotations

import time

import pytest

from instances.models import Instance, InstanceStatus
from instances.tests.helpers import custom_blueprint, wait_for, wait_status
from notifications import service
from notifications.models import Delivery, Event
from notifications.tests.helpers import closed_port_url

pytestmark = [pytest.mark.stack, pytest.mark.django_db(transaction=True)]

FINISHER = """# aikore.name: Finisher (test)
# aikore.ready: none
echo "training done"
exit 0
"""


def test_crash_loop_sends_one_restarting_then_one_failed(live, webhook):
    service.create_target("Hook", webhook.url)
    instance = Instance.objects.create_instance(name="Notify Crash", blueprint="crashloop")
    instance.start()
    wait_status(instance, InstanceStatus.FAILED, timeout=40)
    webhook.wait(lambda h: len(h.titles("Notify Crash failed")) == 1, 15, "the failed message")
    time.sleep(1.0)  # nothing else may trickle in after it
    assert webhook.titles("Notify Crash") == [
        "AiKore: Notify Crash crashed; restarting (attempt 1/3)",
        "AiKore: Notify Crash failed",
    ]
    failed = next(m for m in webhook.messages if m["title"].endswith("failed"))
    assert failed["type"] == "failure"
    assert "Crashed 4 times in a row" in failed["message"] and "Last exit code: 3" in failed["message"]
    assert "crashing" in failed["message"]  # the last log lines travel with it

    # The history keeps every crash; only the first of the streak was sent.
    events = list(Event.objects.filter(instance=instance).order_by("pk"))
    assert [e.kind for e in events] == ["crashed", "crashed", "crashed", "failed"]
    assert [e.suppressed_by_id for e in events] == [None, events[0].pk, events[0].pk, None]
    assert Delivery.objects.filter(event__instance=instance, status="sent").count() == 2


def test_clean_exit_is_finished_and_per_instance_mute_holds(live, webhook):
    service.create_target("Hook", webhook.url)
    bp = custom_blueprint("finisher", FINISHER)
    done = Instance.objects.create_instance(name="Notify Done", blueprint=bp)
    quiet = Instance.objects.create_instance(name="Notify Quiet", blueprint=bp)
    service.set_instance_kinds(quiet.pk, ["crashed", "failed"])
    done.start()
    quiet.start()
    wait_status(done, InstanceStatus.STOPPED, timeout=20)
    wait_status(quiet, InstanceStatus.STOPPED, timeout=20)
    webhook.wait(lambda h: h.titles("Notify Done"), 15, "the finished message")
    message = webhook.messages[0]
    assert message["title"] == "AiKore: Notify Done finished" and message["type"] == "success"
    assert "code 0" in message["message"]
    wait_for(lambda: Event.objects.filter(instance=quiet, kind="finished").exists(), 10, "quiet's event")
    time.sleep(0.5)
    assert webhook.titles("Notify Quiet") == []  # recorded in the history, not sent


def test_stuck_starting_is_one_message(live, webhook):
    service.create_target("Hook", webhook.url)
    bp = custom_blueprint("never-ready", "# aikore.ready: tcp\n# aikore.ready_timeout: 2\necho 'loading forever'\nexec sleep 600\n")
    instance = Instance.objects.create_instance(name="Notify Stuck", blueprint=bp)
    instance.start()
    wait_status(instance, InstanceStatus.FAILED, timeout=20)
    webhook.wait(lambda h: h.titles("Notify Stuck"), 15, "the stuck message")
    time.sleep(1.0)
    assert webhook.titles("Notify Stuck") == ["AiKore: Notify Stuck is stuck starting"]
    assert "within 2 s" in webhook.messages[0]["message"] and "loading forever" in webhook.messages[0]["message"]
    # The "failed" it caused is in the history, told already by the message above.
    stuck, failed = Event.objects.filter(instance=instance).order_by("pk")
    assert (stuck.kind, failed.kind, failed.suppressed_by_id) == ("stuck_starting", "failed", stuck.pk)


INSTALLER = """#!/usr/bin/env bash
# aikore.name: Installer (test)
# aikore.kind: test
# aikore.ready: none
# aikore.python: 3.11
set -euo pipefail
source "$AIKORE_HOME/blueprints/functions.sh"

install() {
    aikore_step "building the widgets"
    sleep 0.3
    if [[ -e "$INSTANCE_CONF_DIR/break-install" ]]; then
        echo "ERROR: widget 7 does not fit"
        exit 3
    fi
}
aikore_install install
aikore_exec sleep 600
"""


def test_a_real_install_fails_then_an_install_only_update_is_installed_not_finished(live, webhook):
    """Through the lifecycle, as the blueprint's install runs: a failing step is one
    "install failed"; the update of the stopped instance (an install-only run, which exits 0
    without launching) is one "installed", never a "finished"."""
    service.create_target("Hook", webhook.url)
    instance = Instance.objects.create_instance(name="Notify Install", blueprint=custom_blueprint("installer", INSTALLER))
    (instance.directory / "break-install").touch()
    instance.start()
    wait_status(instance, InstanceStatus.FAILED, timeout=30)
    webhook.wait(lambda h: h.titles("Notify Install"), 15, "the install_failed message")
    message = webhook.messages[0]
    assert message["title"] == "AiKore: Notify Install: install failed at step building the widgets"
    assert message["type"] == "failure" and "widget 7 does not fit" in message["message"]

    (instance.directory / "break-install").unlink()
    generation = instance.generation
    assert instance.update_app()["restarts"] is False  # stopped (failed): installed, stays stopped
    wait_for(lambda: Instance.objects.filter(pk=instance.pk, status=InstanceStatus.STOPPED, want_running=False)
             .exclude(generation=generation).exists(), 30, "the install-only run to end")
    webhook.wait(lambda h: "AiKore: Notify Install installed" in h.titles(), 15, "the install_finished message")
    time.sleep(1.0)  # nothing else may trickle in after it
    assert webhook.titles("Notify Install") == ["AiKore: Notify Install: install failed at step building the widgets",
                                                "AiKore: Notify Install installed"]
    assert [e.kind for e in Event.objects.filter(instance=instance).order_by("pk")] == ["install_failed",
                                                                                      "install_finished"]
    instance.refresh_from_db()
    assert instance.exit_code == 0 and instance.error_message == ""
    assert "install-only run done" in instance.log_tail() and "(finished)" not in instance.log_tail()


def test_unreachable_target_is_retried_and_reported_without_disturbing(live, webhook, django_user_model):
    good = service.create_target("Hook", webhook.url)
    bad = service.create_target("Nowhere", closed_port_url())
    bp = custom_blueprint("finisher", FINISHER)
    instance = Instance.objects.create_instance(name="Notify Retry", blueprint=bp)
    started = time.monotonic()
    instance.start()
    wait_status(instance, InstanceStatus.STOPPED, timeout=20)
    webhook.wait(lambda h: h.titles("Notify Retry"), 15, "the good target's message")
    assert time.monotonic() - started < 10  # the failing target didn't hold the good one up

    def given_up() -> bool:
        return Delivery.objects.filter(target=bad, status="failed").exists()

    wait_for(given_up, 30, "the bad target's delivery to give up")
    delivery = Delivery.objects.get(target=bad)
    assert delivery.attempts == 3  # AIKORE_NOTIFY_RETRIES=2 in tests: first try + 2 retries
    assert "Connection error" in delivery.error
    bad.refresh_from_db()
    good.refresh_from_db()
    assert bad.last_status == "failed" and "Connection error" in bad.last_error
    assert good.last_status == "sent" and Delivery.objects.get(target=good).status == "sent"
    assert webhook.titles("Notify Retry") == ["AiKore: Notify Retry finished"]

    # Reported where the settings page reads it.
    from django.test import Client

    staff = django_user_model.objects.create_superuser("carol", "c@example.org", "carol-password")
    client = Client()
    client.force_login(staff)
    failures = client.get("/api/notifications/deliveries").json()
    assert [(f["target_name"], f["status"], f["attempts"]) for f in failures] == [("Nowhere", "failed", 3)]
    listed = {t["name"]: t for t in client.get("/api/notifications/targets").json()}
    assert listed["Nowhere"]["last_status"] == "failed" and listed["Nowhere"]["failed_deliveries"] == 1

    # Nothing else was disturbed: the instance is as the lifecycle left it, the worker still runs
    # jobs (a start works), and the health check is green.
    instance.refresh_from_db()
    assert instance.status == InstanceStatus.STOPPED and instance.exit_code == 0 and instance.error_message == ""
    instance.start()
    wait_for(lambda: len(webhook.titles("Notify Retry")) == 2, 15, "the second run's message")
    assert live.daphne_client().get("/api/health").json()["worker"] is True


def test_delivery_errors_and_target_names_are_the_admins(live, alice, viewer):
    """The history (API and /ws/notifications/) shows viewers and operators each delivery's status,
    not its target's name or its error: targets are the admin role's (their URLs hold secrets)."""
    from django.test import Client

    from instances.tests.test_websockets import recv_until, session_cookie, ws

    service.create_target("Secret Hook", closed_port_url())
    instance = Instance.objects.create_instance(name="Notify Roles", blueprint=custom_blueprint("finisher", FINISHER))

    def failed_delivery(msg: dict) -> bool:
        return msg.get("type") == "event" and any(d["status"] in ("retrying", "failed")
                                                  for d in msg["event"]["deliveries"])

    with ws("/ws/notifications/", session_cookie(alice)) as admin_ws, \
            ws("/ws/notifications/", session_cookie(viewer)) as viewer_ws:
        instance.start()
        seen_by_admin = recv_until(admin_ws, failed_delivery, 30)["event"]["deliveries"][0]
        seen_by_viewer = recv_until(viewer_ws, failed_delivery, 30)["event"]["deliveries"][0]
    assert seen_by_admin["target_name"] == "Secret Hook" and "Connection error" in seen_by_admin["error"]
    assert seen_by_viewer["target_name"] == "" and seen_by_viewer["error"] == ""
    assert seen_by_viewer["status"] in ("retrying", "failed") and seen_by_viewer["attempts"] >= 1

    for user, sees in ((alice, True), (viewer, False)):
        client = Client()
        client.force_login(user)
        [event] = client.get(f"/api/notifications/events?instance_id={instance.pk}").json()
        [delivery] = event["deliveries"]
        assert (delivery["target_name"] == "Secret Hook") is sees and bool(delivery["error"]) is sees, delivery
