"""The admin for notification targets: the secret URL never rendered back, blank keeps it, the
same validation as the API, a "send test" action; events and deliveries read-only."""

from __future__ import annotations

import pytest
from django.test import Client

from notifications import service
from notifications.models import Target

pytestmark = pytest.mark.django_db

SECRET = "json://127.0.0.1:9/admin-secret-path"


@pytest.fixture
def staff(alice) -> Client:
    c = Client()
    c.force_login(alice)
    return c


def post(c: Client, path: str, **data: object):
    return c.post(path, {**data, "_save": "Save"})


def test_add_edit_and_list_never_show_the_url(staff):
    r = post(staff, "/admin/notifications/target/add/", name="Hook", url="http://nope", enabled="on", kinds=["failed"])
    assert r.status_code == 200 and "Apprise cannot use" in r.content.decode()
    r = post(staff, "/admin/notifications/target/add/", name="Hook", url=SECRET, enabled="on", kinds=["failed", "finished"])
    assert r.status_code == 302, r.content.decode()[-2000:]
    target = Target.objects.get()
    assert (target.url, target.kinds) == (SECRET, ["failed", "finished"])

    for page in ("/admin/notifications/target/", f"/admin/notifications/target/{target.pk}/change/"):
        html = staff.get(page).content.decode()
        assert "admin-secret-path" not in html and "json://127.0.0.1:9/…" in html

    # Saved with the URL field left blank: the stored URL stays.
    r = post(staff, f"/admin/notifications/target/{target.pk}/change/", name="Hook 2", url="", enabled="on",
             kinds=["crashed"])
    assert r.status_code == 302
    target.refresh_from_db()
    assert (target.name, target.url, target.kinds) == ("Hook 2", SECRET, ["crashed"])


def test_env_target_url_is_not_editable_nor_deletable(staff, settings):
    settings.AIKORE_NOTIFY_URLS = ["ntfy://env-topic"]
    service.sync_env_targets()
    target = Target.objects.get()
    r = post(staff, f"/admin/notifications/target/{target.pk}/change/", name="x", url="ntfy://other", kinds=["failed"])
    assert r.status_code == 200 and "AIKORE_NOTIFY_URLS" in r.content.decode()
    assert staff.get(f"/admin/notifications/target/{target.pk}/delete/").status_code == 403


def test_send_test_action(staff, webhook):
    target = Target.objects.create(name="Local", url=webhook.url)
    r = staff.post("/admin/notifications/target/", {"action": "send_test", "_selected_action": [target.pk]}, follow=True)
    assert "Local: test sent." in r.content.decode()
    assert webhook.titles() == ["AiKore: test notification"]


def test_history_pages_render(staff):
    event = service.record_event(kind="disk_low", subject="disk", title="Low disk", message="1 GiB free")
    target = Target.objects.create(name="t", url="ntfy://t")
    service.create_deliveries(event)
    for page in ("/admin/notifications/event/", f"/admin/notifications/event/{event.pk}/change/",
                 "/admin/notifications/delivery/", "/admin/notifications/instancepreference/add/"):
        assert staff.get(page).status_code == 200, page
    assert target.deliveries.count() == 1
