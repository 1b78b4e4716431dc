"""Apprise URLs: AIKORE_NOTIFY_URLS fails loudly on garbage, and secrets are never shown back."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from aikore_site.settings import env_apprise_urls
from notifications.apprise_urls import mask_url, split_urls, validate_url


def test_split_on_commas_and_spaces():
    assert split_urls(" json://a.example/x, ntfy://topic\n\tdiscord://1/2 ,, ") == [
        "json://a.example/x", "ntfy://topic", "discord://1/2"]


@pytest.mark.parametrize("url", ["json://127.0.0.1:8080/", "ntfy://my-topic", "mailto://u:p@gmail.com",
                                 "discord://123/abc", "JSON://host.example.org/hook"])
def test_valid_urls(url):
    assert validate_url(url) is None


@pytest.mark.parametrize("url,fragment", [
    ("", "required"), (None, "required"), (42, "required"),
    ("not a url", "spaces"), ("example.org/hook", "scheme://"), ("http://example.org/", "Apprise cannot use"),
    ("json://", "Apprise cannot use"), ("nosuchservice://x", "Apprise cannot use"),
    ("json://h/\x00", "control"), ("json://h/" + "a" * 3000, "at most"),
])
def test_invalid_urls_get_a_message(url, fragment):
    problem = validate_url(url)
    assert problem and fragment in problem


@pytest.mark.parametrize("url,masked", [
    ("json://127.0.0.1:8080/secret/path?token=x", "json://127.0.0.1:8080/…"),
    ("json://user:password@hooks.example.org/x", "json://hooks.example.org/…"),
    ("jsons://[::1]:9/x", "jsons://[::1]:9/…"),
    ("tgram://123456789:AAbbCCdd/4242", "tgram://…"),
    ("discord://1234/webhooktoken", "discord://…"),
    ("ntfy://secret-topic", "ntfy://…"),
    ("mailto://me:pw@gmail.com", "mailto://gmail.com/…"),
    ("garbage", "…"),
])
def test_mask_keeps_only_scheme_and_host(url, masked):
    assert mask_url(url) == masked
    for secret in ("password", "token", "AAbb", "webhooktoken", "secret-topic", "pw"):
        if secret in url:
            assert secret not in mask_url(url)


def test_settings_helper_fails_loudly_without_leaking(monkeypatch):
    monkeypatch.setenv("AIKORE_NOTIFY_URLS", "json://127.0.0.1:1/, ntfy://topic")
    assert env_apprise_urls("AIKORE_NOTIFY_URLS") == ["json://127.0.0.1:1/", "ntfy://topic"]
    monkeypatch.setenv("AIKORE_NOTIFY_URLS", "json://127.0.0.1:1/ nosuch://s3cr3t-token")
    with pytest.raises(ImproperlyConfigured) as err:
        env_apprise_urls("AIKORE_NOTIFY_URLS")
    assert "AIKORE_NOTIFY_URLS" in str(err.value) and "nosuch://" in str(err.value)
    assert "s3cr3t" not in str(err.value)
    monkeypatch.setenv("AIKORE_NOTIFY_URLS", "   ")
    assert env_apprise_urls("AIKORE_NOTIFY_URLS") == []


def test_delivery_errors_lose_what_the_masked_url_hides() -> None:
    from notifications.apprise_urls import scrub_secrets

    url = "tgram://123456789:AAH-bot_token_secret/987654321"
    error = ("HTTPSConnectionPool(host='api.telegram.org', port=443): Max retries exceeded with url: "
             "/bot123456789:AAH-bot_token_secret/sendMessage?chat_id=987654321")
    scrubbed = scrub_secrets(error, url)
    assert "AAH-bot_token_secret" not in scrubbed and "987654321" not in scrubbed
    assert "api.telegram.org" in scrubbed and "Max retries exceeded" in scrubbed
    shown = scrub_secrets("Connection error to 127.0.0.1:9 (hunter2-password)",
                          "json://user:hunter2-password@127.0.0.1:9/hook-path-secret")
    assert shown == "Connection error to 127.0.0.1:9 (…)"  # the host stays, as mask_url shows it
    assert scrub_secrets("", url) == "" and scrub_secrets("no secret here", url) == "no secret here"
