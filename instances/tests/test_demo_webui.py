"""The demo WebUI, the stock shell helpers and the test blueprints, exercised directly (no Django,
no database, no live stack)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

REPO = Path(__file__).resolve().parents[2]
BLUEPRINTS = REPO / "blueprints"
TEST_BLUEPRINTS = Path(__file__).resolve().parent / "blueprints"
DEMO = BLUEPRINTS / "demo_webui.py"
FUNCTIONS = BLUEPRINTS / "functions.sh"
SUBFOLDER = "/instance/x/"
SCRIPTS = sorted([FUNCTIONS, BLUEPRINTS / "demo-webui.sh", BLUEPRINTS / "99-test-logs.sh",
                  *TEST_BLUEPRINTS.glob("*.sh")])
HEADER_RE = re.compile(r"^#\s*aikore\.([a-z_]+)\s*:\s*(.*?)\s*$")


# --- helpers ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class Running:
    """A child process whose stdout (with stderr) is collected line by line in a thread."""

    proc: subprocess.Popen
    port: int
    lines: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def collect(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)


def start(argv: list[str], env: dict[str, str], port: int, cwd: Path | None = None) -> Running:
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    running = Running(proc, port)
    threading.Thread(target=running.collect, daemon=True).start()
    return running


def wait_serving(running: Running, timeout: float = 10) -> None:
    def ready() -> bool:
        if running.proc.poll() is not None:
            raise AssertionError(f"exited with {running.proc.returncode}: {running.lines}")
        return port_open(running.port)

    wait_until(ready, timeout, f"port {running.port}")


def demo_env(port: int, tmp: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "CUDA_VISIBLE_DEVICES"}
    env.update({
        "WEBUI_PORT": str(port), "INSTANCE_NAME": "Demo <x>", "INSTANCE_SLUG": "x",
        "INSTANCE_CONF_DIR": str(tmp), "INSTANCE_OUTPUT_DIR": str(tmp / "out"),
        "AIKORE_MODELS_DIR": str(tmp / "models"), "SUBFOLDER": SUBFOLDER, "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "BLUEPRINT_ID": "demo-webui", "AIKORE_LAUNCH_ARGS": "", "PYTHONUNBUFFERED": "1",
        "AIKORE_HOME": str(REPO), "AIKORE_PYTHON": sys.executable,
    })
    env.update(extra)
    return env


def run_bash(script: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `script` under strict mode with functions.sh sourced."""
    body = f'set -euo pipefail\nsource "{FUNCTIONS}"\n{script}'
    return subprocess.run(["bash", "-c", body], check=False, env={**os.environ, **(env or {})}, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("demo")
    port = free_port()
    running = start([sys.executable, str(DEMO)], demo_env(port, tmp), port, cwd=tmp)
    wait_serving(running)
    yield running
    running.stop()


# --- scripts --------------------------------------------------------------------------------------


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shell_script_syntax_and_mode(script: Path) -> None:
    result = subprocess.run(["bash", "-n", str(script)], check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert os.access(script, os.X_OK), f"{script} is not executable"


@pytest.mark.parametrize("script", [p for p in SCRIPTS if p != FUNCTIONS], ids=lambda p: p.name)
def test_blueprint_headers(script: Path) -> None:
    meta = dict(m.groups() for line in script.read_text().splitlines()[:100] if (m := HEADER_RE.match(line)))
    assert meta.get("name") and meta.get("description")
    assert meta["ready"].split()[0] in {"http", "tcp", "none"}


def test_demo_blueprint_header() -> None:
    head = (BLUEPRINTS / "demo-webui.sh").read_text().splitlines()[1:8]
    assert head == [
        "# aikore.name: Demo WebUI",
        "# aikore.category: Tools",
        ("# aikore.description: Tiny built-in web app (HTML page, websocket echo, SSE clock) for trying AiKore"
         " without a GPU."),
        "# aikore.vram: none",
        "# aikore.downloads: nothing",
        "# aikore.ready: http /",
        "# aikore.ready_timeout: 60",
    ]


# --- the demo WebUI ---------------------------------------------------------------------------------


def test_page(demo: Running) -> None:
    response = httpx.get(demo.url + "/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert re.search(r"<title>[^<]*AiKore Demo WebUI", page)
    assert "Demo &lt;x&gt;" in page and SUBFOLDER in page and "(unset" in page
    # No absolute URLs to the app's own routes: it must work behind a prefix.
    assert not re.search(r"""(href|src)=["']/""", page)
    assert '"events"' in page and '"ws"' in page and "location.pathname" in page


def test_env(demo: Running, tmp_path_factory: pytest.TempPathFactory) -> None:
    data = httpx.get(demo.url + "/env").json()
    assert data["WEBUI_PORT"] == str(demo.port)
    assert data["INSTANCE_NAME"] == "Demo <x>"
    assert data["SUBFOLDER"] == SUBFOLDER
    assert data["CUDA_VISIBLE_DEVICES"] is None
    assert data["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert data["BLUEPRINT_ID"] == "demo-webui"
    assert data["PYTHONUNBUFFERED"] == "1"
    assert data["cwd"] == data["INSTANCE_CONF_DIR"]
    expected = {"WEBUI_PORT", "INSTANCE_NAME", "INSTANCE_SLUG", "INSTANCE_CONF_DIR", "INSTANCE_OUTPUT_DIR",
                "AIKORE_MODELS_DIR", "SUBFOLDER", "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "BLUEPRINT_ID",
                "AIKORE_LAUNCH_ARGS", "PYTHONUNBUFFERED", "cwd"}
    assert set(data) == expected


def test_small_routes(demo: Running) -> None:
    assert httpx.get(demo.url + "/health").text == "ok"
    assert httpx.get(demo.url + "/echo", params={"n": "42"}).text == "42"
    assert httpx.get(demo.url + "/nope").status_code == 404
    assert httpx.head(demo.url + "/health").status_code == 200
    # A proxy that does not strip the prefix still reaches the app.
    assert httpx.get(demo.url + SUBFOLDER + "health").text == "ok"


def test_keep_alive(demo: Running) -> None:
    with httpx.Client(base_url=demo.url) as client:
        for n in range(20):
            assert client.get("/echo", params={"n": n}).text == str(n)


def test_events(demo: Running) -> None:
    started = time.monotonic()
    with httpx.stream("GET", demo.url + "/events", params={"count": 2}, timeout=10) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        body = "".join(response.iter_text())
    events = [chunk for chunk in body.split("\n\n") if chunk]
    assert len(events) == 2, body
    for n, event in enumerate(events, 1):
        assert re.fullmatch(rf"data: {n} \d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+\+00:00", event), event
    assert time.monotonic() - started < 3


def test_events_bad_count(demo: Running) -> None:
    assert httpx.get(demo.url + "/events", params={"count": "x"}).status_code == 400


@pytest.mark.parametrize("size", [5, 300, 70_000])
def test_websocket_echo(demo: Running, size: int) -> None:
    text = ("héllo " * size)[:size]
    with connect(f"ws://127.0.0.1:{demo.port}/ws", open_timeout=5) as ws:
        ws.send(text)
        assert ws.recv(timeout=5) == text
        ws.send(b"\x00\x01binary")
        assert ws.recv(timeout=5) == b"\x00\x01binary"
        ws.ping(b"p").wait(5)
        ws.send(["frag", "mented"])
        assert ws.recv(timeout=5) == "fragmented"


def test_websocket_rejects_plain_get(demo: Running) -> None:
    assert httpx.get(demo.url + "/ws").status_code == 400


def test_one_log_line_per_request(demo: Running) -> None:
    marker = f"marker{time.monotonic_ns()}"
    httpx.get(demo.url + "/env", params={"m": marker})
    httpx.get(demo.url + "/missing", params={"m": marker})
    with connect(f"ws://127.0.0.1:{demo.port}/ws?m={marker}") as ws:
        ws.send("x")
        ws.recv(timeout=5)
    wait_until(lambda: sum(marker in line for line in demo.lines) >= 3, 5, "log lines")
    time.sleep(0.2)
    assert [line for line in demo.lines if marker in line] == [
        f"GET /env?m={marker} 200", f"GET /missing?m={marker} 404", f"GET /ws?m={marker} 101",
    ]


def test_sigterm_exits_cleanly(tmp_path: Path) -> None:
    port = free_port()
    running = start([sys.executable, str(DEMO)], demo_env(port, tmp_path), port, cwd=tmp_path)
    try:
        wait_serving(running)
        # An open SSE stream and websocket must not hold up the exit.
        with httpx.stream("GET", running.url + "/events", timeout=10) as response:
            next(response.iter_lines())
            with connect(f"ws://127.0.0.1:{port}/ws"):
                running.proc.send_signal(signal.SIGTERM)
                assert running.proc.wait(2) == 0
    finally:
        running.stop()


def test_blueprint_script_execs_the_demo(tmp_path: Path) -> None:
    """demo-webui.sh keeps its PID (exec) and passes AIKORE_LAUNCH_ARGS through."""
    port = free_port()
    env = demo_env(port, tmp_path, AIKORE_LAUNCH_ARGS="--host 127.0.0.1  --unknown-flag", CUDA_VISIBLE_DEVICES="0,1")
    running = start(["bash", str(BLUEPRINTS / "demo-webui.sh")], env, port, cwd=tmp_path)
    try:
        wait_serving(running)
        assert httpx.get(running.url + "/env").json()["CUDA_VISIBLE_DEVICES"] == "0,1"
        cmdline = Path(f"/proc/{running.proc.pid}/cmdline").read_bytes().split(b"\0")
        assert str(DEMO).encode() in cmdline
        wait_until(lambda: any("ignoring unknown arguments: --unknown-flag" in x for x in running.lines), 5, "log")
        assert any(line.startswith("[aikore] exec: ") for line in running.lines)
        running.proc.send_signal(signal.SIGTERM)
        assert running.proc.wait(2) == 0
    finally:
        running.stop()


# --- functions.sh -----------------------------------------------------------------------------------


def test_log_and_output_dir(tmp_path: Path) -> None:
    out = tmp_path / "outputs" / "my ui"
    result = run_bash('aikore_log "hello  world"; d="$(aikore_output_dir)"; echo "got:$d"',
                      env={"INSTANCE_OUTPUT_DIR": str(out)})
    assert result.returncode == 0, result.stderr
    assert result.stderr == "[aikore] hello  world\n"
    assert result.stdout == f"got:{out}\n"
    assert out.is_dir()


def test_output_dir_requires_variable() -> None:
    env = {k: v for k, v in os.environ.items() if k != "INSTANCE_OUTPUT_DIR"}
    script = f'set -euo pipefail; source "{FUNCTIONS}"; aikore_output_dir; echo no'
    result = subprocess.run(["bash", "-c", script], check=False, env=env, capture_output=True, text=True)
    assert result.returncode != 0 and "INSTANCE_OUTPUT_DIR" in result.stderr and "no" not in result.stdout


def test_link_models_fresh_and_idempotent(tmp_path: Path) -> None:
    models, dest = tmp_path / "models", tmp_path / "app" / "models" / "checkpoints"
    env = {"AIKORE_MODELS_DIR": str(models)}
    for _ in range(2):
        result = run_bash(f'aikore_link_models checkpoints "{dest}"', env=env)
        assert result.returncode == 0, result.stderr
    assert dest.is_symlink() and os.readlink(dest) == str(models / "checkpoints")
    assert (models / "checkpoints").is_dir()


def _snapshot(root: Path) -> dict[str, str]:
    """Every regular file under root (links not followed) with its content."""
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.is_symlink() and not any(q.is_symlink() for q in p.parents)}


def test_link_models_never_moves_or_deletes_user_files(tmp_path: Path) -> None:
    models, dest = tmp_path / "models", tmp_path / "app" / "loras"
    (dest / "sub").mkdir(parents=True)
    (dest / "a.safetensors").write_text("A")
    (dest / ".hidden").write_text("H")
    (dest / "sub" / "b.bin").write_text("B")
    (dest / "clash.bin").write_text("mine")
    (models / "loras" / "sub2").mkdir(parents=True)
    (models / "loras" / "clash.bin").write_text("shared")
    (models / "loras" / "shared.bin").write_text("S")
    (models / "loras" / "sub2" / "c.bin").write_text("C")
    before_app, before_models = _snapshot(tmp_path / "app"), _snapshot(models)
    for _ in range(2):  # idempotent
        result = run_bash(f'aikore_link_models loras "{dest}"', env={"AIKORE_MODELS_DIR": str(models)})
        assert result.returncode == 0, result.stderr
    assert _snapshot(tmp_path / "app") == before_app  # every file where it was, unchanged
    assert _snapshot(models) == before_models
    assert not dest.is_symlink()
    assert (dest / "shared.bin").is_symlink() and (dest / "shared.bin").read_text() == "S"
    assert (dest / "sub2" / "c.bin").read_text() == "C"
    assert (dest / "clash.bin").read_text() == "mine"  # the user's file wins a name clash
    # A shared file removed later: our dangling link goes, nothing else.
    (models / "loras" / "shared.bin").unlink()
    assert run_bash(f'aikore_link_models loras "{dest}"', env={"AIKORE_MODELS_DIR": str(models)}).returncode == 0
    assert not (dest / "shared.bin").is_symlink()
    assert _snapshot(tmp_path / "app") == before_app


def test_link_models_leaves_a_foreign_symlink_alone(tmp_path: Path) -> None:
    models, other, dest = tmp_path / "models", tmp_path / "elsewhere", tmp_path / "app" / "vae"
    other.mkdir()
    (other / "keep.bin").write_text("K")
    dest.parent.mkdir()
    dest.symlink_to(other)
    result = run_bash(f'aikore_link_models vae "{dest}"', env={"AIKORE_MODELS_DIR": str(models)})
    assert result.returncode == 0, result.stderr
    assert os.readlink(dest) == str(other) and "leaving it as it is" in result.stderr
    assert (other / "keep.bin").read_text() == "K"


def test_link_models_keeps_a_git_checkout_clean(tmp_path: Path) -> None:
    models, app = tmp_path / "models", tmp_path / "app"
    app.mkdir()
    _git("init", "-q", "-b", "main", cwd=app)
    (app / "models" / "checkpoints").mkdir(parents=True)
    (app / "models" / "checkpoints" / "put_checkpoints_here").write_text("")
    (app / "main.py").write_text("print(1)")
    _git("add", ".", cwd=app)
    _git("commit", "-qm", "init", cwd=app)
    (models / "checkpoints").mkdir(parents=True)
    (models / "checkpoints" / "sd [v1].safetensors").write_text("W")
    env = {"AIKORE_MODELS_DIR": str(models)}
    for sub, dest in (("checkpoints", "models/checkpoints"), ("loras", "models/loras"), ("vae", "models/vae/")):
        result = run_bash(f'aikore_link_models {sub} "{app / dest}"', env=env)
        assert result.returncode == 0, result.stderr
    assert (app / "models" / "checkpoints" / "sd [v1].safetensors").read_text() == "W"
    assert (app / "models" / "loras").is_symlink()
    assert _git("status", "--porcelain", "--ignored=no", cwd=app) == ""
    assert (app / "models" / "checkpoints" / "put_checkpoints_here").exists()


def test_comfyui_model_paths_names_only_shared_folders(tmp_path: Path) -> None:
    from instances.sharedmodels import LAYOUT

    out = tmp_path / "conf" / "extra_model_paths.yaml"
    result = run_bash(f'aikore_comfyui_model_paths "{out}"', env={"AIKORE_MODELS_DIR": str(tmp_path / "m")})
    assert result.returncode == 0, result.stderr
    lines = out.read_text().splitlines()
    assert lines[1] == "aikore:" and lines[2] == f"    base_path: '{tmp_path / 'm'}'"
    assert lines[3] == "    is_default: true"  # the shared folders first, and ComfyUI's downloads go there
    folders = [part.strip() for line in lines[4:] for part in [line.split(":", 1)[-1]] if part.strip() != "|"]
    assert folders and set(folders) <= set(LAYOUT), set(folders) - set(LAYOUT)


@pytest.mark.parametrize("sub", ["../escape", "/abs", "a/../../b", ""])
def test_link_models_rejects_bad_subdir(tmp_path: Path, sub: str) -> None:
    result = run_bash(f'aikore_link_models "{sub}" "{tmp_path / "dest"}"', env={"AIKORE_MODELS_DIR": str(tmp_path)})
    assert result.returncode != 0
    assert not (tmp_path / "dest").exists()


def test_link_models_refuses_to_replace_a_file(tmp_path: Path) -> None:
    dest = tmp_path / "file"
    dest.write_text("data")
    result = run_bash(f'aikore_link_models x "{dest}"', env={"AIKORE_MODELS_DIR": str(tmp_path / "m")})
    assert result.returncode != 0
    assert dest.read_text() == "data"


def test_exec_keeps_pid_and_quotes(tmp_path: Path) -> None:
    result = run_bash('echo "$$"; aikore_exec sh -c \'echo "$$"; echo "$1"\' sh "a b; \\$HOME"')
    assert result.returncode == 0, result.stderr
    shell_pid, exec_pid, arg = result.stdout.splitlines()
    assert shell_pid == exec_pid
    assert arg == "a b; $HOME"
    assert result.stderr.startswith("[aikore] exec: sh -c ")


def _git(*args: str, cwd: Path) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def test_git_sync(tmp_path: Path) -> None:
    upstream, clone = tmp_path / "upstream", tmp_path / "apps" / "clone"
    upstream.mkdir()
    _git("init", "-q", "-b", "main", cwd=upstream)
    (upstream / "f.txt").write_text("v1")
    _git("add", ".", cwd=upstream)
    _git("commit", "-qm", "v1", cwd=upstream)
    _git("tag", "v1", cwd=upstream)

    assert run_bash(f'aikore_git_sync "{upstream}" "{clone}"').returncode == 0
    assert (clone / "f.txt").read_text() == "v1"

    (upstream / "f.txt").write_text("v2")
    _git("commit", "-qam", "v2", cwd=upstream)
    _git("checkout", "-qb", "dev", cwd=upstream)
    (upstream / "f.txt").write_text("dev")
    _git("commit", "-qam", "dev", cwd=upstream)

    # A plain start leaves an existing checkout alone; an update fetches and fast-forwards.
    result = run_bash(f'aikore_git_sync "{upstream}" "{clone}"')
    assert result.returncode == 0, result.stderr
    assert (clone / "f.txt").read_text() == "v1"
    result = run_bash(f'aikore_git_sync "{upstream}" "{clone}"', env={"AIKORE_ACTION": "update"})
    assert result.returncode == 0, result.stderr
    assert (clone / "f.txt").read_text() == "v2"
    result = run_bash(f'aikore_git_sync "{upstream}" "{clone}" dev')
    assert result.returncode == 0, result.stderr
    assert (clone / "f.txt").read_text() == "dev"
    result = run_bash(f'aikore_git_sync "{upstream}" "{clone}" v1')
    assert result.returncode == 0, result.stderr
    assert (clone / "f.txt").read_text() == "v1"

    other = tmp_path / "not-a-checkout"
    other.mkdir()
    (other / "precious").write_text("p")
    assert run_bash(f'aikore_git_sync "{upstream}" "{other}"').returncode != 0
    assert (other / "precious").read_text() == "p"


def test_setup_venv(tmp_path: Path) -> None:
    venv = tmp_path / "my venv"
    script = (f'aikore_setup_venv "{venv}"; echo "$VIRTUAL_ENV"; command -v python; '
              'python -c "import sys; print(sys.prefix)"')
    result = run_bash(script, env={"AIKORE_PYTHON": sys.executable})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [str(venv), str(venv / "bin" / "python"), str(venv)]
    again = run_bash(script, env={"AIKORE_PYTHON": sys.executable})
    assert again.returncode == 0 and "creating" not in again.stderr


# --- log tester and test blueprints ----------------------------------------------------------------


def test_log_tester_counts_and_exits() -> None:
    result = subprocess.run(["bash", str(BLUEPRINTS / "99-test-logs.sh")], check=False, capture_output=True, timeout=30,
                            env={**os.environ, "TEST_LOGS_INTERVAL": "0", "TEST_LOGS_COUNT": "20"})
    assert result.returncode == 0
    assert b"line 1 stdout\n" in result.stdout and b"line 20 stderr\n" in result.stderr
    assert b"line 21" not in result.stdout + result.stderr
    assert b"\x1b[" in result.stdout
    assert b"\rprogress:  50%" in result.stderr and b"100%|##########| 10/10\n" in result.stderr


def test_crashloop_exits_3(tmp_path: Path) -> None:
    result = subprocess.run(["bash", str(TEST_BLUEPRINTS / "crashloop.sh")], check=False, capture_output=True,
                            text=True, timeout=10)
    assert result.returncode == 3 and "crashing" in result.stdout


def test_floodlog(tmp_path: Path) -> None:
    running = start(["bash", str(TEST_BLUEPRINTS / "floodlog.sh")], {**os.environ, "FLOOD_COUNT": "5000"}, 0)
    try:
        wait_until(lambda: len(running.lines) >= 5000, 10, "5000 lines")
        assert running.lines[:5000] == [str(n) for n in range(1, 5001)]
        assert running.proc.poll() is None  # idles after flooding
    finally:
        running.stop()


@pytest.mark.parametrize("name", ["envdump", "slowready", "spawner"])
def test_serving_test_blueprints(tmp_path: Path, name: str) -> None:
    port = free_port()
    env = demo_env(port, tmp_path, SLOW_READY_SECONDS="0.3")
    running = start(["bash", str(TEST_BLUEPRINTS / f"{name}.sh")], env, port, cwd=tmp_path)
    try:
        wait_serving(running)
        assert httpx.get(running.url + "/").status_code == 200
        if name == "envdump":
            dump = (tmp_path / "env.dump").read_bytes().split(b"\0")
            assert f"WEBUI_PORT={port}".encode() in dump
        if name == "spawner":
            pids = [int(p) for p in (tmp_path / "children.pids").read_text().split()]
            assert len(pids) == 3
            sessions = {os.getsid(pid) for pid in pids}
            assert len(sessions) == 2  # one escaped into its own session
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
    finally:
        running.stop()
