"""cached_until_db_changes(): a cached read must never outlive a write, whoever wrote it."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.test import Client

from accounts.models import ApiToken
from aikore_site.dbcache import cached_until_db_changes
from instances.models import Instance

pytestmark = pytest.mark.django_db(transaction=True)  # a wrapping test transaction disables the cache


@pytest.fixture
def counted():
    calls: list[int] = []

    @cached_until_db_changes
    def names() -> list[str]:
        calls.append(1)
        return sorted(Instance.objects.values_list("name", flat=True))

    return names, calls


@contextlib.contextmanager
def other_connection() -> Iterator[sqlite3.Connection]:
    """A second connection to the same file, in autocommit: each statement is committed."""
    db = sqlite3.connect(settings.DATABASES["default"]["NAME"], timeout=20, isolation_level=None)
    try:
        yield db
    finally:
        db.close()


def make(name: str) -> Instance:
    return Instance.objects.create(name=name, slug=name, base_blueprint="x")


def test_reads_are_cached_until_this_connection_writes(counted):
    names, calls = counted
    assert names() == [] and names() == []
    assert len(calls) == 1
    make("a")
    assert names() == ["a"]
    Instance.objects.filter(name="a").update(autostart=True)  # a write that changes no listed value
    names()
    assert len(calls) == 3


def test_commit_by_another_connection_ends_the_cache(counted):
    names, calls = counted
    make("a")
    assert names() == ["a"]
    with other_connection() as db:
        db.execute("UPDATE instances_instance SET name = 'renamed elsewhere'")
    assert names() == ["renamed elsewhere"]


def test_commit_by_another_process_ends_the_cache(counted):
    names, calls = counted
    make("a")
    assert names() == ["a"]
    code = ("import sqlite3, sys; db = sqlite3.connect(sys.argv[1], timeout=20); "
            "db.execute(\"DELETE FROM instances_instance\"); db.commit()")
    subprocess.run([sys.executable, "-c", code, str(settings.DATABASES["default"]["NAME"])], check=True)
    assert names() == []


def test_commit_by_another_thread_ends_the_cache(counted):
    names, calls = counted
    assert names() == []

    def write() -> None:
        make("from a thread")
        connection.close()

    thread = threading.Thread(target=write)
    thread.start()
    thread.join()
    assert names() == ["from a thread"]


def test_each_thread_has_its_own_cache(counted):
    names, calls = counted
    names()
    seen = []

    def read() -> None:
        seen.append(names())
        connection.close()

    thread = threading.Thread(target=read)
    thread.start()
    thread.join()
    assert seen == [[]] and len(calls) == 2


def test_nothing_is_cached_inside_a_transaction(counted):
    names, calls = counted
    with transaction.atomic():
        names()
        names()
    assert len(calls) == 2


def test_reconnecting_ends_the_cache(counted):
    names, calls = counted
    names()
    connection.close()
    names()
    assert len(calls) == 2


def test_api_list_and_token_see_writes_from_elsewhere_at_once(alice, django_assert_num_queries):
    """The two cached reads behind GET /api/instances: a revoked token is refused on the very next
    request, and a status written by another process shows on the very next list."""
    _token, raw = ApiToken.issue(alice, "script")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
    c = Client()
    make("one")
    assert c.get("/api/instances", **auth).status_code == 200  # records last_used_at: a write
    assert [i["status"] for i in c.get("/api/instances", **auth).json()] == ["stopped"]  # fills
    with django_assert_num_queries(2):  # the two stamps (PRAGMA data_version): both reads cached
        assert c.get("/api/instances", **auth).status_code == 200
    with other_connection() as db:
        db.execute("UPDATE instances_instance SET status = 'running'")
    assert [i["status"] for i in c.get("/api/instances", **auth).json()] == ["running"]
    with other_connection() as db:
        db.execute("UPDATE accounts_apitoken SET revoked_at = '2026-01-01 00:00:00'")
    assert c.get("/api/instances", **auth).status_code == 401


def test_deactivated_user_token_refused_at_once(alice):
    _token, raw = ApiToken.issue(alice, "script")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
    c = Client()
    assert c.get("/api/instances", **auth).status_code == 200  # records last_used_at: a write
    assert c.get("/api/instances", **auth).status_code == 200  # fills the cache
    with other_connection() as db:
        db.execute("UPDATE auth_user SET is_active = 0")
    assert c.get("/api/instances", **auth).status_code == 401


def test_each_request_gets_its_own_user_object(alice):
    """The cached token is shared; the user object a request may scribble on is not."""
    _token, raw = ApiToken.issue(alice, "script")
    from accounts.auth import user_from_token

    user_from_token(raw)  # records last_used_at
    first, second = user_from_token(raw), user_from_token(raw)
    assert first == second and first is not second
    first.scribbled = True
    assert not hasattr(user_from_token(raw), "scribbled")
