"""The rendered nginx config, checked by the real `nginx -t`, and the install path that keeps the
last good config. Everything here writes to a temporary nginx dir: no running nginx is touched."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError

from instances.models import Instance, InstanceStatus
from proxy import nginx
from proxy.render import (
    UnsafeValue,
    config_generation,
    listen_address,
    render_nginx_config,
    safe_port,
    safe_slug,
    template_source,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def nginx_dir(settings, tmp_path: Path) -> Path:
    settings.NGINX_DIR = tmp_path / "nginx"
    settings.AIKORE_PUBLIC_PORT_RANGE = (29401, 29450)
    return settings.NGINX_DIR


def running(name: str, port: int, public_port: int | None = None) -> Instance:
    instance = Instance.objects.create_instance(name=name, blueprint="demo-webui")
    Instance.objects.filter(pk=instance.pk).update(want_running=True, status=InstanceStatus.RUNNING,
                                                   port=port, public_port=public_port)
    instance.refresh_from_db()
    return instance


def test_config_for_instances_passes_nginx_t(nginx_dir: Path) -> None:
    running("Alpha", 29011, 29401)
    running("beta 2", 29012)
    Instance.objects.create_instance(name="Stopped one", blueprint="demo-webui")
    result = nginx.regenerate(reload=False)
    assert result.ok and result.changed and not result.reloaded, result.error
    text = (nginx_dir / "nginx.conf").read_text()
    control, apps, *public = text.split("    server {")[1:]
    # The control plane serves no instance: its /instance/ only points at the apps port.
    assert "aikore_instance_" not in control and "auth_request" not in control
    assert "rewrite ^ /_aikore/to-apps break;" in control
    assert "frame-ancestors 'self'" in control
    # The apps port serves both, each behind the app-origin gate.
    assert "location /instance/alpha/ {" in apps and "location /instance/beta-2/ {" in apps
    assert "proxy_pass http://aikore_instance_alpha$aikore_rest;" in apps
    assert apps.count("auth_request /_aikore/auth;") == 3  # /instance/ (status page), alpha, beta-2
    assert 'proxy_set_header X-AiKore-Origin "apps";' in apps
    assert "server 127.0.0.1:29011;" in text and "server 127.0.0.1:29012;" in text
    assert "stopped-one" not in text
    # One public server, for the instance that has a public port in range: root and prefix.
    assert len(public) == 1 and "listen 127.0.0.1:29401;" in public[0]
    assert 'proxy_set_header X-AiKore-Origin "port:29401";' in public[0]
    assert "location /instance/alpha/ {" in public[0] and "proxy_pass http://aikore_instance_alpha$request_uri;" in public[0]
    # No body-size limit on any app path; the control plane keeps its own.
    assert set(re.findall(r"client_max_body_size (\S+);", apps + public[0])) == {"0"}
    # AiKore's cookies and tokens are cut out of every request to an app.
    assert text.count("proxy_set_header Cookie $aikore_app_cookies;") == 4
    assert text.count("proxy_set_header Authorization $aikore_app_authorization;") == 4
    assert "nginx.conf.new" not in {p.name for p in nginx_dir.iterdir()}
    assert json.loads((nginx_dir / "status.json").read_text())["ok"] is True


def test_proxy_modes_and_allowed_origins(nginx_dir: Path, settings) -> None:
    blueprints = Path(settings.CUSTOM_BLUEPRINTS_DIR)
    for mode in ("keep", "origin"):
        (blueprints / f"render-{mode}.sh").write_text(f"#!/bin/sh\n# aikore.proxy: {mode}\nexec true\n")
    kept = Instance.objects.create_instance(name="Kept", blueprint="render-keep",
                                            allowed_origins="https://a.example.com, http://10.0.0.5:8080")
    own = Instance.objects.create_instance(name="Own", blueprint="render-origin")
    lonely = Instance.objects.create_instance(name="Lonely", blueprint="render-origin")
    for instance, port, public_port in ((kept, 29011, None), (own, 29012, 29402), (lonely, 29013, None)):
        Instance.objects.filter(pk=instance.pk).update(want_running=True, status=InstanceStatus.RUNNING,
                                                       port=port, public_port=public_port)
    result = nginx.regenerate(reload=False)
    assert result.ok, result.error
    text = (nginx_dir / "nginx.conf").read_text()
    apps = text.split("    server {")[2]
    assert "proxy_pass http://aikore_instance_kept$request_uri;" in apps
    # An app that needs its own origin is not served under the prefix when it has one...
    assert "location /instance/own/" not in apps and "listen 127.0.0.1:29402;" in text
    # ... and is, when it has none (no public port, no apps domain).
    assert "location /instance/lonely/ {" in apps
    assert '"kept|https://a.example.com" 1;' in text and '"kept|http://10.0.0.5:8080" 1;' in text
    # A value written around the validators never reaches the file.
    Instance.objects.filter(pk=kept.pk).update(allowed_origins='https://x.com"; } server { listen 1; #')
    result = nginx.regenerate(reload=False)
    assert result.ok and "kept" not in (nginx_dir / "nginx.conf").read_text().split("upstream aikore_django")[1]


def test_host_names_under_the_apps_domain(nginx_dir: Path, settings) -> None:
    settings.AIKORE_APPS_DOMAIN = "apps.example.com"
    running("Alpha", 29011)
    result = nginx.regenerate(reload=False)
    assert result.ok, result.error
    text = (nginx_dir / "nginx.conf").read_text()
    assert "server_name alpha.apps.example.com;" in text
    assert 'proxy_set_header X-AiKore-Origin "host:alpha";' in text
    assert r'server_name "~^(?<aikore_host_slug>[a-z0-9-]+)\.apps\.example\.com$";' in text
    settings.AIKORE_APPS_DOMAIN = "apps.example.com; include /etc/passwd"
    with pytest.raises(UnsafeValue):
        render_nginx_config()


def test_unchanged_config_is_not_reinstalled(nginx_dir: Path) -> None:
    running("Alpha", 29011)
    assert nginx.regenerate(reload=False).changed
    again = nginx.regenerate(reload=False)
    assert again.ok and not again.changed


def test_public_port_outside_the_range_is_not_served(nginx_dir: Path, settings) -> None:
    running("Alpha", 29011, 29401)
    settings.AIKORE_PUBLIC_PORT_RANGE = None
    assert "29401" not in render_nginx_config()


@pytest.mark.parametrize("name", [
    "x; } server { listen 80; } #",
    "a\nlocation / { return 200; }",
    "$host",
    "'quoted'",
    'dq"x',
    "back\\slash",
    "{braces}",
])
def test_crafted_names_are_refused(name: str) -> None:
    with pytest.raises(ValidationError):
        Instance.objects.create_instance(name=name, blueprint="demo-webui")


@pytest.mark.parametrize("name", ["dots.and  spaces.", "Mixed -- CASE_x", "9 lives . v2"])
def test_odd_but_valid_names_give_plain_slugs(nginx_dir: Path, name: str) -> None:
    instance = running(name, 29020)
    assert safe_slug(instance.slug) == instance.slug
    result = nginx.regenerate(reload=False)
    assert result.ok, result.error
    assert f"location /instance/{instance.slug}/ {{" in (nginx_dir / "nginx.conf").read_text()


def test_a_slug_that_bypassed_the_validators_is_left_out(nginx_dir: Path) -> None:
    """Defence in depth: a row written around the validators cannot inject a directive."""
    good = running("Good", 29011)
    evil = running("Evil", 29012)
    Instance.objects.filter(pk=evil.pk).update(slug="x/ { return 200; } location /y")
    result = nginx.regenerate(reload=False)
    assert result.ok, result.error
    text = (nginx_dir / "nginx.conf").read_text()
    assert "return 200;" not in text and "location /y" not in text and "29012" not in text
    assert f"location /instance/{good.slug}/ {{" in text


@pytest.mark.parametrize("value", ["", "A", "-x", "a b", "a;b", "a}", "a" * 65, None, 3])
def test_safe_slug_refuses(value: object) -> None:
    with pytest.raises(UnsafeValue):
        safe_slug(value)


@pytest.mark.parametrize("value", [0, 65536, True, "80", None, 8.5])
def test_safe_port_refuses(value: object) -> None:
    with pytest.raises(UnsafeValue):
        safe_port(value)


def test_listen_address() -> None:
    assert listen_address("0.0.0.0", 9000) == "0.0.0.0:9000"
    assert listen_address("::1", 9000) == "[::1]:9000"
    with pytest.raises(UnsafeValue):
        listen_address("1.2.3.4; include /etc/passwd", 9000)


@pytest.mark.parametrize(("bind", "allowed"), [
    ("127.0.0.1", None), ("0.0.0.0", None), ("::", None), ("[::1]", None), ("localhost", None),
    ("192.0.2.10", "192.0.2.10"), ("2001:db8::5", "2001:db8::5"), ("[2001:db8::5]", "2001:db8::5"),
])
def test_health_may_read_the_generation_from_the_bind_address(nginx_dir: Path, settings, bind, allowed) -> None:
    """/api/health asks nginx on the bind address: bound to a LAN address, its connection comes from
    that address (not loopback), which may read /_aikore/generation as loopback may; no one else."""
    settings.AIKORE_BIND = bind
    text = render_nginx_config()
    block = re.search(r"geo \$realip_remote_addr \$aikore_generation_reader \{[^}]*\}", text).group(0)
    readers = re.findall(r"^\s+(\S+) 1;$", block, re.M)
    assert readers == ["127.0.0.0/8", "::1"] + ([allowed] if allowed else []), block
    assert "if ($aikore_generation_reader = 0) {" in text
    assert config_generation(text)  # the generation is still found where health reads it


def test_broken_template_is_rejected_and_the_last_good_config_stays(nginx_dir: Path) -> None:
    running("Alpha", 29011)
    assert nginx.regenerate(reload=False).ok
    good = (nginx_dir / "nginx.conf").read_text()
    running("Beta", 29012)
    broken = template_source().replace("proxy_buffering off;", "proxy_buffering sideways;", 1)
    result = nginx.regenerate(broken, reload=False)
    assert not result.ok and result.changed and not result.reloaded
    assert "proxy_buffering" in result.error and "previous one stays live" in result.error
    assert (nginx_dir / "nginx.conf").read_text() == good
    assert "sideways" in (nginx_dir / "nginx.conf.rejected").read_text()
    status = nginx.last_status()
    assert status is not None and status["ok"] is False and "proxy_buffering" in status["error"]
    # The next good render installs normally.
    fixed = nginx.regenerate(reload=False)
    assert fixed.ok and "location /instance/beta/ {" in (nginx_dir / "nginx.conf").read_text()
    assert nginx.last_status()["ok"] is True


def test_no_master_means_no_signal(nginx_dir: Path) -> None:
    nginx_dir.mkdir(parents=True)
    (nginx_dir / "nginx.pid").write_text("1\n")  # pid 1 is not an nginx master here
    assert nginx.master_pid() is None
    assert nginx.signal_reload() is False
