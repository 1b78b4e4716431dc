"""Events enter through the instance_event signal (and the sampler's sample_taken): recorded once,
coalesced so a crash loop is one message per state change, matched to targets per kind and per
instance; the receiver never raises into the lifecycle."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import transaction

from instances.models import Instance
from instances.signals import instance_event
from notifications import service
from notifications.models import Delivery, Event, EventKind, Target

pytestmark = pytest.mark.django_db


@pytest.fixture
def inst() -> Instance:
    (Path(settings.CUSTOM_BLUEPRINTS_DIR) / "notify-bp.sh").write_text("# aikore.ready: none\nexec sleep 100\n")
    return Instance.objects.create_instance(name="Notify Me", blueprint="notify-bp")


def send(instance: Instance, kind: str, **details: object) -> None:
    instance_event.send(sender=Instance, instance=instance, kind=kind, **details)


def latest() -> Event:
    return Event.objects.order_by("-pk").first()


def test_each_instance_kind_is_recorded_with_its_details(inst):
    send(inst, "crashed", exit_code=3, attempt=1, limit=5, delay=1.0)
    event = latest()
    assert (event.kind, event.level, event.instance_id, event.subject) == ("crashed", "warning", inst.pk, f"instance:{inst.pk}")
    assert event.title == "AiKore: Notify Me crashed; restarting (attempt 1/5)"
    assert "code 3" in event.message and event.details["attempt"] == 1

    send(inst, "failed", exit_code=3, reason="Crashed 6 times in a row; last exit code 3. Last output:\nboom",
         log_tail="line 1\nTraceback: boom\n")
    event = latest()
    assert event.title == "AiKore: Notify Me failed" and event.level == "failure"
    assert "Crashed 6 times" in event.message and "Last exit code: 3" in event.message
    assert "Traceback: boom" in event.message

    send(inst, "finished", exit_code=0)
    assert latest().title == "AiKore: Notify Me finished" and latest().level == "success"

    send(inst, "install_finished")
    assert latest().title == "AiKore: Notify Me installed"

    send(inst, "install_failed", step="pip install torch", reason="No matching distribution", log_tail="ERROR: x\n")
    event = latest()
    assert event.title == "AiKore: Notify Me: install failed at step pip install torch"
    assert "No matching distribution" in event.message and "ERROR: x" in event.message

    send(inst, "stuck_starting", timeout=30, log_tail="still loading\n")
    event = latest()
    assert event.title == "AiKore: Notify Me is stuck starting" and "30 s" in event.message
    assert "still loading" in event.message


def test_log_tail_is_bounded(inst):
    send(inst, "failed", exit_code=1, reason="x", log_tail="\n".join(f"line {i}" for i in range(5000)))
    message = latest().message
    assert "line 4999" in message and "line 4979" not in message and len(message) < 2000


def test_crash_loop_is_one_story(inst):
    send(inst, "crashed", exit_code=3, attempt=1, limit=3, delay=1)
    first = latest()
    for attempt in (2, 3):
        send(inst, "crashed", exit_code=3, attempt=attempt, limit=3, delay=2 ** (attempt - 1))
        assert latest().suppressed_by_id == first.pk
    send(inst, "failed", exit_code=3, reason="Crashed 4 times", log_tail="")
    assert latest().suppressed_by_id is None
    assert first.suppressed_by_id is None
    # Once the story moved on (it failed), the next crash is news again.
    send(inst, "crashed", exit_code=3, attempt=1, limit=3, delay=1)
    assert latest().suppressed_by_id is None


def test_crash_reminder_after_the_repeat_window(inst, settings):
    settings.AIKORE_NOTIFY_REPEAT_SECONDS = 60
    send(inst, "crashed", exit_code=3, attempt=1, limit=100, delay=1)
    first = latest()
    Event.objects.filter(pk=first.pk).update(created_at=first.created_at - timedelta(seconds=61))
    send(inst, "crashed", exit_code=3, attempt=40, limit=100, delay=60)
    assert latest().suppressed_by_id is None  # still crashing an hour later: say so again


def test_other_instances_have_their_own_story(inst):
    other = Instance.objects.create_instance(name="Other One", blueprint="notify-bp")
    send(inst, "crashed", exit_code=3, attempt=1, limit=3, delay=1)
    send(other, "crashed", exit_code=3, attempt=1, limit=3, delay=1)
    assert latest().suppressed_by_id is None


def test_stuck_then_failed_is_told_once(inst):
    send(inst, "stuck_starting", timeout=30)
    stuck = latest()
    send(inst, "failed", exit_code=None, reason="Not ready after 30 s", log_tail="")
    assert latest().suppressed_by_id == stuck.pk


def make_target(name: str, kinds: list[str] | None = None, enabled: bool = True) -> Target:
    return service.create_target(name, f"json://127.0.0.1:9/{name}", enabled, kinds)


def test_targets_match_per_kind_per_instance_and_coalescing(inst):
    everything = make_target("everything")
    only_failed = make_target("only-failed", ["failed"])
    make_target("off", enabled=False)
    only_stuck = make_target("only-stuck", ["stuck_starting"])

    send(inst, "finished", exit_code=0)
    assert {t.name for t in service.matching_targets(latest())} == {"everything"}

    send(inst, "stuck_starting", timeout=5)
    assert {t.name for t in service.matching_targets(latest())} == {"everything", "only-stuck"}
    # The "failed" it causes goes only to the targets that were not told about the stuck start.
    send(inst, "failed", exit_code=None, reason="Not ready after 5 s", log_tail="")
    assert {t.name for t in service.matching_targets(latest())} == {"only-failed"}

    # Per instance: this instance doesn't send "finished" any more; other kinds still go.
    assert service.set_instance_kinds(inst.pk, ["crashed", "failed", "install_failed"]) == [
        "crashed", "failed", "install_failed"]
    send(inst, "finished", exit_code=0)
    assert service.matching_targets(latest()) == []
    send(inst, "install_failed", step="x", reason="y")
    assert {t.pk for t in service.matching_targets(latest())} == {everything.pk}
    assert only_failed.pk and only_stuck.pk

    deliveries = service.create_deliveries(latest())
    assert [d.target_id for d in deliveries] == [everything.pk]
    assert service.create_deliveries(latest()) == []  # never twice


def test_system_events_ignore_instance_preferences(inst):
    make_target("everything")
    service.set_instance_kinds(inst.pk, [])
    event = service.record_event(kind=EventKind.DISK_LOW, subject="disk", title="Low disk", level="warning")
    assert [t.name for t in service.matching_targets(event)] == ["everything"]


def test_receiver_never_raises(inst, caplog):
    count = Event.objects.count()
    send(inst, "no-such-kind")
    send(None, "failed", exit_code=1)  # no instance at all: recorded, no crash
    instance_event.send(sender=Instance, instance=inst, kind="finished", exit_code=object())  # not JSON
    assert Event.objects.count() == count + 2

    # Inside the sender's transaction, a failing insert rolls back only its own savepoint.
    with transaction.atomic():
        Instance.objects.filter(pk=inst.pk).update(launch_args="kept")
        send(inst, "failed", exit_code=1, reason="x" * 10, log_tail=None, details_that_break=_Unserialisable())
        inst.refresh_from_db()
    assert inst.launch_args == "kept"
    assert "notification for failed event of <Instance: Notify Me> not recorded" in caplog.text


class _Unserialisable:
    def __str__(self) -> str:
        raise RuntimeError("cannot be shown")


def test_enqueue_waits_for_the_senders_commit(inst, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        send(inst, "finished", exit_code=0)
    assert len(callbacks) == 1  # the dispatch job is enqueued after commit, not before


def test_prune_keeps_the_newest(inst, monkeypatch):
    monkeypatch.setattr(Event, "KEEP", 5)
    for _ in range(8):
        send(inst, "finished", exit_code=0)
    target = make_target("t")
    newest = latest()
    Delivery.objects.create(event=newest, target=target)
    assert service.prune_events() == 3
    assert Event.objects.count() == 5 and Event.objects.filter(pk=newest.pk).exists()
    assert service.prune_events() == 0


def test_deleting_an_instance_keeps_its_history(inst):
    send(inst, "finished", exit_code=0)
    event = latest()
    inst.delete_everything()
    event.refresh_from_db()
    assert event.instance_id is None and event.instance_name == "Notify Me"


def test_per_target_rate_limit(settings):
    """Messages over AIKORE_NOTIFY_RATE_LIMIT a minute to one target wait (Huey requeues them)."""
    import uuid

    from huey.exceptions import RateLimitExceeded

    from notifications.tasks import deliver_notification

    settings.AIKORE_NOTIFY_RATE_LIMIT = 2
    target_id = uuid.uuid4().int % 10**12  # a counter no other test touches
    deliver_notification.call_local(10**12, target_id)  # nothing to deliver: still counts
    deliver_notification.call_local(10**12, target_id)
    with pytest.raises(RateLimitExceeded):
        deliver_notification.call_local(10**12, target_id)
