"""Optional two-factor sign-in (TOTP, django-otp): a user turns it on from a QR code, the password
alone then no longer signs in, a code from the app does; an admin can remove a lost device."""

from __future__ import annotations

import re
import time

import pytest
from django.test import Client
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import LoginAttempt

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_hasher(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def code(device: TOTPDevice, steps_ahead: int = 0) -> str:
    """What the user's authenticator app shows (a later step: each code is accepted once)."""
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time() + steps_ahead * device.step
    return f"{totp.token():0{device.digits}d}"


def test_turn_on_then_sign_in_with_a_code(bob) -> None:
    client = Client()
    client.force_login(bob)
    page = client.get("/account/two-factor/")
    assert page.status_code == 200 and b"<svg" in page.content  # the QR code, made here (segno)
    secret = re.search(rb'id="two-factor-secret">([A-Z2-7]+)<', page.content).group(1)
    device = TOTPDevice.objects.get(user=bob, confirmed=False)
    assert len(secret) >= 16
    assert b"not right" in client.post("/account/two-factor/", {"code": "000000"}).content
    device.refresh_from_db()
    device.throttling_failure_count = 0  # django-otp's own delay after a wrong code
    device.save()
    assert client.post("/account/two-factor/", {"code": code(device)}).status_code == 302
    assert TOTPDevice.objects.get(user=bob).confirmed
    client.post("/logout/")

    # The password alone no longer signs in: it leads to the second step.
    browser = Client()
    response = browser.post("/login/?next=/admin/", {"username": "bob", "password": "bob-password", "next": "/admin/"})
    assert response.status_code == 302 and response["Location"] == "/login/verify/"
    assert browser.get("/").status_code == 302  # not signed in yet
    wrong = browser.post("/login/verify/", {"code": "123456"})
    assert wrong.status_code in (200, 429) and b"login-errors" in wrong.content
    assert LoginAttempt.objects.filter(username="bob", result="otp_failure").count() == 1
    device = TOTPDevice.objects.get(user=bob)
    device.throttling_failure_count = 0
    device.save()
    done = browser.post("/login/verify/", {"code": code(device, steps_ahead=1)})
    assert done.status_code == 302 and done["Location"] == "/admin/"
    assert browser.get("/").status_code == 200
    assert LoginAttempt.objects.filter(username="bob", result="success").count() == 1


def test_the_second_step_cannot_be_skipped_or_reused(bob) -> None:
    TOTPDevice.objects.create(user=bob, name="phone", confirmed=True)
    assert Client().get("/login/verify/").status_code == 302  # nothing pending: back to the login
    browser = Client()
    browser.post("/login/", {"username": "bob", "password": "bob-password"})
    assert browser.get("/api/instances").status_code == 401
    assert browser.get("/").status_code == 302


def test_an_admin_removes_a_lost_device(alice, bob) -> None:
    TOTPDevice.objects.create(user=bob, name="phone", confirmed=True)
    admin = Client()
    admin.force_login(alice)
    listing = admin.get("/admin/auth/user/")
    assert listing.status_code == 200 and b"two-factor" in listing.content
    admin.post("/admin/auth/user/", {"action": "reset_two_factor", "_selected_action": [bob.pk]})
    assert not TOTPDevice.objects.filter(user=bob).exists()
    response = Client().post("/login/", {"username": "bob", "password": "bob-password"})
    assert response.status_code == 302 and response["Location"] == "/"
