"""Bad input is refused with a clear message, through the model, the CLI and the API alike."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError

from instances.models import Conflict, Instance

pytestmark = pytest.mark.django_db

BAD_NAMES = ["../x", "a;b", "line\nbreak", "x" * 300, "", "   ", "..", "a/b", "quote'd", 'dq"x', "nul\x00x",
             "$(reboot)", "`id`", "semi;colon", "{bad}", "tab\tx"]


@pytest.fixture
def bp(tmp_path: Path) -> str:
    path = Path(settings.CUSTOM_BLUEPRINTS_DIR) / "unit-bp.sh"
    path.write_text("# aikore.name: Unit\n# aikore.ready: none\nexec sleep 100\n")
    return "unit-bp"


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_are_refused(bp, name):
    with pytest.raises(ValidationError) as exc:
        Instance.objects.create_instance(name=name, blueprint=bp)
    assert "name" in exc.value.message_dict
    assert not list(Path(settings.INSTANCES_DIR).glob("*x*"))
    assert Instance.objects.count() == 0


def test_duplicate_names_and_slugs_conflict(bp):
    Instance.objects.create_instance(name="My UI", blueprint=bp)
    for name in ("My UI", "my ui", "My-UI", "my_ui"):
        with pytest.raises(Conflict):
            Instance.objects.create_instance(name=name, blueprint=bp)
    assert Instance.objects.count() == 1


def test_unknown_blueprint(bp):
    for blueprint in ("nope", "../etc/passwd", "", "a;b"):
        with pytest.raises(ValidationError) as exc:
            Instance.objects.create_instance(name="X", blueprint=blueprint)
        assert "blueprint" in exc.value.message_dict
        assert "Unknown blueprint" in exc.value.message_dict["blueprint"][0]


@pytest.mark.parametrize("gpus", ["0,abc", "-1", "1,1", "999", "0;1", "0,,1", "x"])
def test_bad_gpu_ids(bp, gpus):
    with pytest.raises(ValidationError) as exc:
        Instance.objects.create_instance(name="G", blueprint=bp, gpu_ids=gpus)
    assert "gpu_ids" in exc.value.message_dict


def test_gpu_ids_normalised(bp):
    instance = Instance.objects.create_instance(name="G", blueprint=bp, gpu_ids=" 1, 0 ")
    assert instance.gpu_ids == "1,0"
    assert instance.environment()["CUDA_VISIBLE_DEVICES"] == "1,0"
    assert "CUDA_VISIBLE_DEVICES" not in Instance.objects.create_instance(name="H", blueprint=bp).environment()


@pytest.mark.parametrize("port", [80, 1, 65536, 19000, -5])
def test_port_outside_range(bp, port):
    with pytest.raises(ValidationError) as exc:
        Instance.objects.create_instance(name="P", blueprint=bp, port=port)
    assert "outside" in exc.value.message_dict["port"][0]


@pytest.mark.parametrize("path", ["../up", "/abs", "a/../b", "a\nb", "x" * 300])
def test_output_path_stays_inside(bp, path):
    with pytest.raises(ValidationError):
        Instance.objects.create_instance(name="O", blueprint=bp, output_path=path)


def test_create_copies_blueprint_as_launch_sh(bp):
    instance = Instance.objects.create_instance(name="Copy Me", blueprint=bp)
    assert instance.slug == "copy-me"
    assert instance.script_path == Path(settings.INSTANCES_DIR) / "copy-me" / "launch.sh"
    assert "exec sleep 100" in instance.script_path.read_text()
    env = instance.environment()
    assert env["SUBFOLDER"] == "/instance/copy-me/"
    assert env["INSTANCE_CONF_DIR"] == str(instance.directory)


def test_cli_create_list_and_errors(bp):
    out = io.StringIO()
    call_command("instances", "create", "--name", "Cli One", "--blueprint", bp, "--gpus", "0", stdout=out)
    assert "Created instance 'Cli One'" in out.getvalue()
    out = io.StringIO()
    call_command("instances", "list", "--json", stdout=out)
    rows = json.loads(out.getvalue())
    assert rows[0]["name"] == "Cli One" and rows[0]["gpu_ids"] == "0" and rows[0]["status"] == "stopped"
    assert {"id", "name", "slug", "base_blueprint", "status", "pid", "port", "gpu_ids", "autostart"} <= rows[0].keys()
    with pytest.raises(CommandError, match="Unknown blueprint 'missing'"):
        call_command("instances", "create", "--name", "Two", "--blueprint", "missing")
    with pytest.raises(CommandError, match="name: "):
        call_command("instances", "create", "--name", "../x", "--blueprint", bp)
    with pytest.raises(CommandError, match="No instance named 'ghost'"):
        call_command("instances", "start", "ghost")
    with pytest.raises(CommandError, match="gpu_ids"):
        call_command("instances", "create", "--name", "Three", "--blueprint", bp, "--gpus", "0,abc")
