"""The blueprint lint (instances/blueprintlint.py) on every blueprint of the repository, what it catches,
and the stock catalogue's facts as the API gives them. Blueprints the tests write are linted too
(conftest.py: _lint_custom_blueprints)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.test import Client

from instances import blueprintlint, blueprints

REPO = Path(__file__).resolve().parents[2]
FILES = sorted([*(REPO / "blueprints").glob("*.sh"), *(REPO / "instances" / "tests" / "blueprints").glob("*.sh")])
STOCK_APPS = sorted(bp.id for bp in (blueprints.load_blueprint(p, custom=False) for p in (REPO / "blueprints").glob("*.sh"))
                    if bp.kind == "app" and bp.installs)


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_every_blueprint_in_the_repository_passes(path: Path) -> None:
    assert blueprintlint.lint_file(path) == []


GOOD = """#!/usr/bin/env bash
# aikore.name: Lint sample
# aikore.ready: http /
set -euo pipefail
rm -rf -- "$AIKORE_APP_DIR/build" "${AIKORE_ENV_DIR}/cache"
rm -f -- /tmp/one-file
exec python3 -m http.server "$WEBUI_PORT" --bind 127.0.0.1
"""


@pytest.mark.parametrize(("line", "found"), [
    ('eval "$AIKORE_LAUNCH_ARGS"', "eval runs text as code"),
    ('cmd=(ls); x=1 && eval "${cmd[@]}"', "eval runs text as code"),
    ("exec app --host 0.0.0.0", "listens on every interface"),
    ('export GRADIO_SERVER_NAME="0.0.0.0"', "listens on every interface"),
    ("exec app --listen --port \"$WEBUI_PORT\"", "listens on every interface"),
    ("exec app --port 1 --listen", "listens on every interface"),
    ("exec app --host '::'", "listens on every interface"),
    ("exec app --host [::]", "listens on every interface"),
    ("exec app --host '*' --port 1", "listens on every interface"),
    ("rm -rf /", "recursive rm outside"),
    ('rm -rf "$HOME/models"', "recursive rm outside"),
    ('rm -r -f -- "$AIKORE_APP_DIR/../other"', "recursive rm outside"),
    ('rm --recursive "$AIKORE_MODELS_DIR"', "recursive rm outside"),
    ('cd /; rm -fr "$INSTANCE_OUTPUT_DIR"', "recursive rm outside"),
    ("# aikore.colour: red", "unknown key aikore.colour"),
    ("# aikore.vram: lots", "aikore.vram: 'lots'"),
    ("# aikore.homepage: javascript:alert(1)", "aikore.homepage"),
    ("if true; then", "bash -n"),
    ("echo $WEBUI_PORT", "shellcheck"),  # SC2086: unquoted
])
def test_the_lint_finds(line: str, found: str) -> None:
    assert blueprintlint.lint_text(GOOD) == []
    problems = blueprintlint.lint_text(GOOD.replace("set -euo pipefail\n", f"set -euo pipefail\n{line}\n"))
    assert any(found in p for p in problems), problems


def test_comments_and_reasons_are_not_code() -> None:
    text = GOOD.replace("exec python3", "python3") + ("# eval, 0.0.0.0, --listen and rm -rf / in a comment are fine\n"
                   'echo "#"  # neither is this: rm -rf /\n'
                   'rm -rf -- "$CACHE"  # aikore-lint: allow rm (a folder this script made)\n'
                   "printf '%s' \"${#AIKORE_ARGS[@]}\"\n")
    assert blueprintlint.lint_text(text) == []
    assert blueprintlint.rule_problems('rm -rf -- "$CACHE"  # aikore-lint: allow eval (wrong rule)\n')


def test_stock_apps_state_what_the_catalogue_shows() -> None:
    """Each stock app: a known category, VRAM, home page, downloads, a pinned ref, an HTTP readiness
    check with its own timeout; never the generic defaults."""
    assert len(STOCK_APPS) >= 12, STOCK_APPS
    for bp_id in STOCK_APPS:
        bp = blueprints.get_blueprint(bp_id)
        assert bp.problems == () and not bp.custom, (bp_id, bp.problems)
        assert bp.category in blueprints.CATEGORIES and bp.vram and bp.vram_gb is not None, bp_id
        assert bp.homepage.startswith("https://github.com/") and bp.downloads and bp.description, bp_id
        assert bp.git_ref, f"{bp_id}: no pinned ref"  # a tag, a commit, or a PyPI version
        assert bp.python_version or not bp.torch, bp_id
        # A desktop program has no page: it is ready when its window is (aikore.ready: window).
        assert bp.ready == ("window" if bp.desktop_program else "http"), bp_id
        assert bp.ready_timeout and bp.ready_timeout >= 300, bp_id
        text = bp.read_script()
        assert "aikore_launch_args" in text and '"${AIKORE_ARGS[@]}"' in text or bp_id == "fluxgym", bp_id
        assert re.search(r"^aikore_exec ", text, re.M), f"{bp_id}: launches through aikore_exec"
        if bp.requires:  # tools besides Python are checked in the install, with a message
            assert re.search(r"aikore_require_(node|dotnet|commands)|ldconfig -p", text), bp_id


@pytest.mark.django_db
def test_the_api_gives_the_catalogue_facts(alice) -> None:
    client = Client()
    client.force_login(alice)
    apps = {b["id"]: b for b in client.get("/api/blueprints?kind=app").json()}
    comfy = apps["comfyui"]
    assert (comfy["name"], comfy["category"], comfy["proxy_mode"]) == ("ComfyUI", "Image", "strip")
    assert comfy["vram"].startswith("8 GB") and comfy["vram_gb"] == 8.0
    assert comfy["homepage"] == "https://github.com/Comfy-Org/ComfyUI" and comfy["downloads"]
    assert apps["ai-toolkit"]["requires"].startswith("Node.js") and apps["ai-toolkit"]["proxy_mode"] == "origin"
    assert apps["demo-webui"]["vram"] == "none" and apps["demo-webui"]["vram_gb"] == 0.0
    assert set(apps) >= set(STOCK_APPS)


def test_header_values_are_checked(tmp_path) -> None:
    path = tmp_path / "x.sh"
    path.write_text("# aikore.category: IMAGE\n# aikore.vram: 12 GB (8 GB with --lowvram)\n"
                    "# aikore.homepage: https://example.org/app\n# aikore.downloads: ~2 GB at first start\n")
    bp = blueprints.load_blueprint(path, custom=True)
    assert (bp.category, bp.vram, bp.vram_gb, bp.homepage, bp.problems) == (
        "Image", "12 GB (8 GB with --lowvram)", 12.0, "https://example.org/app", ())
    path.write_text("# aikore.vram: a lot\n# aikore.homepage: ftp://x\n# aikore.description: " + "x" * 600 + "\n")
    bp = blueprints.load_blueprint(path, custom=True)
    assert (bp.vram, bp.vram_gb, bp.homepage, bp.description) == ("", None, "", "") and len(bp.problems) == 3


@pytest.mark.django_db
def test_the_lint_command(tmp_path, settings) -> None:
    from io import StringIO

    from django.core.management import CommandError, call_command

    out = StringIO()
    call_command("lint_blueprints", "comfyui", "demo-webui", stdout=out)
    assert "comfyui: ok" in out.getvalue() and "demo-webui: ok" in out.getvalue()
    settings.CUSTOM_BLUEPRINTS_DIR = tmp_path
    (tmp_path / "bad-one.sh").write_text("# aikore.ready: none\neval \"$AIKORE_LAUNCH_ARGS\"\n")
    out = StringIO()
    with pytest.raises(CommandError, match="1 of 1 blueprints have problems"):
        call_command("lint_blueprints", "bad-one", stdout=out)
    assert "line 2: eval runs text as code" in out.getvalue()
    with pytest.raises(CommandError, match="Unknown blueprint"):
        call_command("lint_blueprints", "nope")


def test_the_readme_lists_every_stock_app() -> None:
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("## Apps"):readme.index("## Ports and origins")]
    for bp_id in STOCK_APPS:
        bp = blueprints.get_blueprint(bp_id)
        row = next((line for line in table.splitlines() if f"(`{bp_id}`" in line), "")
        assert row, f"README's apps table has no row for {bp_id}"
        assert bp.vram.split(" (")[0] in row, f"{bp_id}: the README's GPU memory differs from the blueprint's"
        assert bp.category.lower() in row, bp_id
