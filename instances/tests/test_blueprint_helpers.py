"""The blueprint helpers the stock blueprints use (blueprints/functions.sh, blueprints/node-loopback.cjs),
run by bash and node directly: launch arguments, tool checks, port check, settings defaults, output
links, background helpers, and Node servers kept on the loopback address."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from instances.tests.wheels import git

REPO = Path(__file__).resolve().parents[2]
FUNCTIONS = REPO / "blueprints" / "functions.sh"
FAKE_DOTNET = REPO / "instances" / "tests" / "appfixtures" / "dotnet"


def bash(script: str, tmp_path: Path, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    base = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "AIKORE_HOME": str(REPO),
            "AIKORE_DATA_DIR": str(tmp_path / "data"), "INSTANCE_OUTPUT_DIR": str(tmp_path / "data" / "outputs" / "one"),
            "AIKORE_MODELS_DIR": str(tmp_path / "data" / "models")}
    return subprocess.run(["/bin/bash", "-c", f'set -euo pipefail\nsource "$AIKORE_HOME/blueprints/functions.sh"\n{script}'],
                          env={**base, **(env or {})}, capture_output=True, text=True, timeout=timeout, cwd=tmp_path)


@pytest.mark.parametrize(("typed", "args"), [
    ("", []),
    ("   ", []),
    ("--lowvram", ["--lowvram"]),
    ("--preset 'my preset' --x=\"a b\"  c\\ d", ["--preset", "my preset", "--x=a b", "c d"]),
    ("--e '' x", ["--e", "", "x"]),
    ("$HOME *.sh $(id) `id` ;ls |cat >x", ["$HOME", "*.sh", "$(id)", "`id`", ";ls", "|cat", ">x"]),
    ("--prompt 'it''s' é", ["--prompt", "its", "é"]),
])
def test_launch_arguments_split_like_a_shell_never_evaluated(tmp_path, typed, args):
    (tmp_path / "a.sh").write_text("")  # a glob that would match, were it expanded
    result = bash('aikore_launch_args\nprintf "%s\\0" "${AIKORE_ARGS[@]}"', tmp_path, {"AIKORE_LAUNCH_ARGS": typed})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\0")[:-1] == args if args else result.stdout in ("", "\0")


def test_unbalanced_quotes_fail_with_a_message(tmp_path):
    result = bash("aikore_launch_args", tmp_path, {"AIKORE_LAUNCH_ARGS": "--name 'half"})
    assert result.returncode == 1 and "unbalanced quote" in result.stderr


def fake_program(directory: Path, name: str, output: str) -> None:
    directory.mkdir(exist_ok=True)
    (directory / name).write_text(f"#!/bin/sh\necho '{output}'\n")
    (directory / name).chmod(0o755)


def test_node_check_names_what_to_install(tmp_path):
    result = bash("aikore_require_node 20.9", tmp_path, {"PATH": str(tmp_path / "none")})  # builtins only
    assert result.returncode == 1 and "Node.js is not installed" in result.stderr and "20.9" in result.stderr
    fake_program(tmp_path / "old", "node", "v18.19.0")
    result = bash("aikore_require_node 20.9", tmp_path, {"PATH": f"{tmp_path / 'old'}:/usr/bin:/bin"})
    assert result.returncode == 1 and "Node.js 18.19.0 is too old (>= 20.9 needed)" in result.stderr
    if shutil.which("node") and shutil.which("npm"):  # the real one (Debian's nodejs here)
        result = bash("aikore_require_node 20.9", tmp_path)
        assert result.returncode == 0 and "Node.js 2" in result.stderr, result.stderr


def test_dotnet_check_names_what_to_install(tmp_path):
    result = bash("aikore_require_dotnet 8", tmp_path, {"PATH": str(tmp_path / "none")})
    assert result.returncode == 1 and "install the .NET 8 SDK" in result.stderr
    stand_in = tmp_path / "dotnet-bin"
    stand_in.mkdir()
    shutil.copy(FAKE_DOTNET, stand_in / "dotnet")
    path = f"{stand_in}:{os.environ['PATH']}"
    result = bash("aikore_require_dotnet 8", tmp_path, {"PATH": path, "FIXTURE_DOTNET_SDKS": "6.0.100 7.0.410"})
    assert result.returncode == 1 and "no .NET SDK 8 or newer found" in result.stderr and "6.0.100" in result.stderr
    result = bash("aikore_require_dotnet 8", tmp_path, {"PATH": path, "FIXTURE_DOTNET_SDKS": "6.0.100 8.0.404 10.0.100"})
    assert result.returncode == 0 and ".NET SDK 10.0.100" in result.stderr


def test_missing_programs_are_named(tmp_path):
    result = bash("aikore_require_commands bash surely-not-a-program-x ffmpeg-nope", tmp_path)
    assert result.returncode == 1
    assert "missing programs: surely-not-a-program-x ffmpeg-nope (Debian: apt-get install" in result.stderr


def test_a_taken_port_fails_the_start(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = bash("aikore_port_free", tmp_path, {"WEBUI_PORT": str(port)})
        assert result.returncode == 1 and f"port {port} is already in use" in result.stderr
    assert bash("aikore_port_free", tmp_path, {"WEBUI_PORT": str(port)}).returncode == 0


def test_settings_defaults_never_overwrite_the_users(tmp_path):
    checkout = tmp_path / "app"
    checkout.mkdir()
    git("init", "-q", cwd=checkout)
    config = checkout / "config.json"
    script = f'aikore_json_defaults "{config}" ckpt_dir "/m/checkpoints" "paths[]" "/m/loras" quote \'it"s\''
    result = bash(script, tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(config.read_text()) == {"ckpt_dir": "/m/checkpoints", "paths": ["/m/loras"], "quote": 'it"s'}
    assert git("status", "--porcelain", cwd=checkout) == ""  # a file it made is excluded from git
    config.write_text(json.dumps({"ckpt_dir": "/mine", "other": 1}))
    assert bash(script, tmp_path).returncode == 0
    assert json.loads(config.read_text()) == {"ckpt_dir": "/mine", "other": 1, "paths": ["/m/loras"], "quote": 'it"s'}
    config.write_text("{not json")
    result = bash(script, tmp_path)
    assert result.returncode == 0 and "is not valid JSON" in result.stderr and config.read_text() == "{not json"


def test_output_links(tmp_path):
    checkout = tmp_path / "app"
    checkout.mkdir()
    git("init", "-q", cwd=checkout)
    out_one, out_two = tmp_path / "data" / "outputs" / "one", tmp_path / "data" / "outputs" / "two"
    link = checkout / "outputs"
    result = bash(f'aikore_link_outputs "{link}"', tmp_path)
    assert result.returncode == 0 and link.is_symlink() and link.resolve() == out_one.resolve()
    assert git("status", "--porcelain", cwd=checkout) == ""
    # The instance's output folder changed: AiKore's own link follows it.
    result = bash(f'aikore_link_outputs "{link}"', tmp_path, {"INSTANCE_OUTPUT_DIR": str(out_two)})
    assert result.returncode == 0 and link.resolve() == out_two.resolve()
    # A satellite keeps its parent's link (and says so).
    result = bash(f'aikore_link_outputs "{link}"', tmp_path, {"AIKORE_SATELLITE_OF": "parent"})
    assert link.resolve() == out_two.resolve() and "satellite of parent" in result.stderr
    # A link of the user's, or a folder with files: left alone, with a warning; an empty folder: linked.
    mine = checkout / "mine"
    mine.mkdir()
    (mine / "keep.png").write_text("x")
    result = bash(f'aikore_link_outputs "{mine}"', tmp_path)
    assert result.returncode == 0 and not mine.is_symlink() and "holds files" in result.stderr
    (checkout / "empty").mkdir()
    assert bash(f'aikore_link_outputs "{checkout / "empty"}"', tmp_path).returncode == 0
    assert (checkout / "empty").is_symlink()
    (checkout / "elsewhere").symlink_to(tmp_path)
    result = bash(f'aikore_link_outputs "{checkout / "elsewhere"}"', tmp_path)
    assert (checkout / "elsewhere").resolve() == tmp_path.resolve() and "leaving it as it is" in result.stderr


def test_a_background_helper_and_the_app_end_together(tmp_path):
    """aikore_background + aikore_exec: the first to exit ends the instance and stops the other."""
    env = {"AIKORE_INSTALL_STATUS": str(tmp_path / "install.json")}
    started = time.monotonic()
    result = bash('aikore_background sleep 30\naikore_exec bash -c "exit 7"', tmp_path, env)
    assert result.returncode == 7 and time.monotonic() - started < 10  # the helper did not keep it alive
    assert json.loads((tmp_path / "install.json").read_text()) == {"phase": "launching"}
    result = bash('aikore_background bash -c "sleep 0.2; exit 0"\naikore_exec sleep 30', tmp_path, env)
    assert result.returncode == 1 and "background process" in result.stderr and "exited (status 0)" in result.stderr
    # An install-only run starts neither.
    result = bash('aikore_background sleep 30\naikore_exec sleep 30', tmp_path, {**env, "AIKORE_INSTALL_ONLY": "1"})
    assert result.returncode == 0 and "install-only run" in result.stderr and "background:" not in result.stderr


NODE_SERVERS = """
const http = require('http'); const cluster = require('cluster');
const ports = [];
function done() { if (ports.length === 4) { console.log(JSON.stringify(ports)); process.exit(0); } }
function note(server) { return () => { ports.push(server.address().address); done(); }; }
const a = http.createServer(); a.listen(0, note(a));
const b = http.createServer(); b.listen(0, '0.0.0.0', note(b));
const c = http.createServer(); c.listen({ port: 0, host: '::' }, note(c));
const d = http.createServer(); d.listen({ port: 0, host: '127.0.0.1' }, note(d));
"""


@pytest.mark.skipif(not shutil.which("node"), reason="Node.js is not installed")
def test_node_servers_are_moved_to_the_loopback_address(tmp_path):
    (tmp_path / "servers.js").write_text(NODE_SERVERS)
    sock = tmp_path / "unix.sock"
    (tmp_path / "unix.js").write_text(f"require('net').createServer().listen({str(sock)!r}, () => process.exit(0));\n")
    result = bash('aikore_node_loopback\nnode servers.js\nnode unix.js\nprintf "%s" "$NODE_OPTIONS"', tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert json.loads(lines[0]) == ["127.0.0.1"] * 4
    assert lines[-1] == f'--require "{REPO}/blueprints/node-loopback.cjs"'
    assert "[aikore] node: listen on all interfaces moved to 127.0.0.1" in result.stderr
