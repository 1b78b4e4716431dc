"""The login throttle in-process: guessing is slowed per account and per address, the owner's
browser (device cookie) keeps getting in, delays are answers (429 + Retry-After) rather than
sleeps, and every attempt is recorded."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.db.models import F
from django.test import Client
from django.utils import timezone

from accounts.models import LoginAttempt

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_hasher(settings) -> None:
    """These tests check hundreds of passwords in-process: a cheap hasher (never in production) keeps
    them fast; the throttle's logic does not depend on it."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

PASSWORD = "alice-password"


def attempt(client: Client, username: str, password: str, address: str = "10.0.0.1"):
    return client.post("/login/", {"username": username, "password": password}, REMOTE_ADDR=address)


def attack(username: str, guesses: int, address: str | None = None) -> None:
    """Wrong passwords (a new browser each, from `address` or a new one each), then every record
    stamped 'now': the delays then run from this moment, however long the guesses took."""
    for n in range(guesses):
        attempt(Client(), username if "{n}" not in username else username.format(n=n), "wrong",
                address or f"10.9.{n // 250}.{n % 250}")
    LoginAttempt.objects.update(at=timezone.now())


def shift(seconds: int) -> None:
    """Time passes: every record moves `seconds` into the past."""
    LoginAttempt.objects.update(at=F("at") - timedelta(seconds=seconds))


def owners_browser() -> Client:
    """alice's own browser: it signed in once before the attack (and so holds a device cookie)."""
    client = Client()
    assert attempt(client, "alice", PASSWORD, "10.0.0.7").status_code == 302
    assert settings.DEVICE_COOKIE_NAME in client.cookies
    client.post("/logout/")
    return client


def test_wrong_passwords_slow_the_account_but_not_the_owners_browser(alice) -> None:
    browser = owners_browser()
    attack("alice", 6, "10.0.0.66")
    # The attacker (and any browser alice never used) must wait, without the password being tried.
    refused = attempt(Client(), "alice", PASSWORD, "10.0.0.99")
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) >= 1
    assert b"Too many failed sign-ins for this account" in refused.content
    # alice's browser is not locked out.
    assert attempt(browser, "alice", PASSWORD, "10.0.0.7").status_code == 302


def test_failures_from_one_address_do_not_lock_the_owner_out_of_it(alice, settings) -> None:
    settings.AIKORE_LOGIN_ADDRESS_FREE_FAILURES = 6  # 20 by default: fewer guesses, the same path
    browser = owners_browser()
    attack("made-up-{n}", settings.AIKORE_LOGIN_ADDRESS_FREE_FAILURES + 2, "10.0.0.1")
    refused = attempt(Client(), "alice", PASSWORD, "10.0.0.1")
    assert refused.status_code == 429 and b"this address" in refused.content
    # Behind one NAT or proxy address, alice's browser still gets in.
    assert attempt(browser, "alice", PASSWORD, "10.0.0.1").status_code == 302


def test_rotating_addresses_do_not_escape_the_account_delay(alice) -> None:
    attack("alice", 8)  # each guess from another address
    assert attempt(Client(), "alice", PASSWORD, "10.1.0.200").status_code == 429
    # Only the attempts allowed to run were failures; the refused one was recorded as delayed.
    results = list(LoginAttempt.objects.filter(username="alice").values_list("result", flat=True))
    assert results.count("delayed") >= 1 and results.count("failure") <= 8


def test_delays_grow_and_then_pass(alice) -> None:
    free = settings.AIKORE_LOGIN_FREE_FAILURES
    for _ in range(free):
        assert attempt(Client(), "alice", "wrong").status_code == 200  # the first few cost nothing
    waits = []
    for _ in range(4):
        LoginAttempt.objects.filter(result="failure").update(at=timezone.now())
        refused = attempt(Client(), "alice", "wrong")
        assert refused.status_code == 429
        waits.append(int(refused["Retry-After"]))
        shift(waits[-1])
        assert attempt(Client(), "alice", "wrong").status_code == 200  # tried (and wrong)
    assert waits == [1, 2, 4, 8], waits
    # Once the window has passed, the right password works from anywhere.
    shift(3600)
    assert attempt(Client(), "alice", PASSWORD).status_code == 302


def test_a_device_cookie_that_keeps_failing_is_no_longer_trusted(alice) -> None:
    browser = owners_browser()
    for _ in range(5):
        attempt(browser, "alice", "wrong", "10.0.0.7")
    attack("alice", 6, "10.0.0.66")
    assert attempt(browser, "alice", PASSWORD, "10.0.0.7").status_code == 429


def test_a_forged_or_foreign_device_cookie_counts_for_nothing(alice, bob) -> None:
    bobs = Client()
    assert attempt(bobs, "bob", "bob-password").status_code == 302
    bobs.post("/logout/")
    attack("alice", 6, "10.0.0.66")
    # bob's device cookie is not alice's; a forged one is not signed.
    assert attempt(bobs, "alice", PASSWORD).status_code == 429
    forged = Client()
    forged.cookies[settings.DEVICE_COOKIE_NAME] = '[["alice","0123456789abcdef0123456789abcdef"]]'
    assert attempt(forged, "alice", PASSWORD).status_code == 429


def test_refusals_are_immediate_and_every_attempt_is_recorded(alice) -> None:
    browser = owners_browser()
    attack("alice", 8, "10.0.0.1")
    started = time.monotonic()
    for _ in range(5):
        assert attempt(Client(), "alice", PASSWORD).status_code == 429
    assert time.monotonic() - started < 2.0  # no sleeping in a request thread
    assert attempt(browser, "alice", PASSWORD, "10.0.0.7").status_code == 302
    results = {r: LoginAttempt.objects.filter(result=r).count() for r in ("success", "failure", "delayed")}
    assert results["failure"] >= settings.AIKORE_LOGIN_FREE_FAILURES and results["delayed"] >= 5 and results["success"] >= 2
    row = LoginAttempt.objects.filter(result="delayed").first()
    assert row.username == "alice" and row.address == "10.0.0.1"
    # ... and visible in the admin.
    admin = Client()
    admin.force_login(alice)
    page = admin.get("/admin/accounts/loginattempt/")
    assert page.status_code == 200 and b"delayed" in page.content


def test_user_names_are_compared_without_case(alice) -> None:
    for _ in range(8):
        attempt(Client(), "ALICE", "wrong")
    assert attempt(Client(), "alice", PASSWORD).status_code == 429
