"""Instance environments: a cold build against the same requirements for a second instance (uv's
shared cache), and the start of an unchanged instance against launching its command directly.

Everything is local and offline: a git repository with a small app, and local wheel indexes built
here with realistic sizes (a fake torch trio with a large payload, and several requirement packages
of many small files plus a payload each; stored uncompressed, like real wheels' binaries). The
first instance's start builds its environment with an empty uv cache (uv unpacks every wheel into
the cache, then hard-links it into the environment); the second instance, a separate environment
with the same requirements, only links. A third measure restarts the first instance with nothing
changed (the install is skipped) against starting its app directly with the same environment.
Targets: second build < 10 % of the first; unchanged start < 100 ms added.

    .venv/bin/python bench/envs.py [--torch-mb 1000] [--packages 12] [--package-mb 8] [--files 400] [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _stack import REPO, percentile, port_answers, running_stack, write_blueprint

sys.path.insert(0, str(REPO))
from instances.tests.wheels import git, index_wheel

APP = """import os, time
from http.server import BaseHTTPRequestHandler, HTTPServer
import torch, torchvision, torchaudio
{imports}

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass

HTTPServer(("127.0.0.1", int(os.environ["WEBUI_PORT"])), Handler).serve_forever()
"""

BLUEPRINT = """#!/usr/bin/env bash
# aikore.name: Bench environment app
# aikore.kind: test
# aikore.ready: tcp
# aikore.git: {repo}
# aikore.torch: yes
set -euo pipefail
source "$AIKORE_HOME/blueprints/functions.sh"
install() {{
    aikore_git_sync "$AIKORE_GIT_URL" "$AIKORE_APP_DIR" "$AIKORE_GIT_REF"
    aikore_env_create
    aikore_install_torch
    aikore_pip_install -r "$AIKORE_APP_DIR/requirements.txt"
}}
aikore_install install requirements.txt
cd "$AIKORE_APP_DIR"
aikore_exec "$AIKORE_ENV_DIR/bin/python" app.py
"""


def build_indexes(root: Path, args: argparse.Namespace) -> tuple[list[str], int, int]:
    """The torch indexes (cpu variant) and a simple index of requirement packages."""
    mib = 1024 * 1024
    small = {f"mod{i:04d}.py": f"VALUE = {i}\n".encode() * 20 for i in range(args.files)}
    torch_index = root / "torch" / "cpu"
    index_wheel(torch_index, "torch", "2.9.0", files=small, payload_bytes=args.torch_mb * mib)
    index_wheel(torch_index, "torchvision", "0.24.0", requires=("torch==2.9.0",), files=small,
                payload_bytes=max(1, args.torch_mb // 20) * mib)
    index_wheel(torch_index, "torchaudio", "2.9.0", requires=("torch==2.9.0",), files=small,
                payload_bytes=max(1, args.torch_mb // 40) * mib)
    names = [f"benchpkg{i:02d}" for i in range(args.packages)]
    for name in names:
        index_wheel(root / "simple", name, "1.0", files=small, payload_bytes=args.package_mb * mib)
    total = sum(p.stat().st_size for p in root.rglob("*.whl"))
    files = (args.files + 3) * (args.packages + 3)
    return names, total, files


def make_repo(root: Path, packages: list[str]) -> Path:
    repo = root / "app-repo"
    repo.mkdir()
    git("init", "-q", "-b", "main", cwd=repo)
    (repo / "app.py").write_text(APP.format(imports="\n".join(f"import {n}" for n in packages)))
    (repo / "requirements.txt").write_text("".join(f"{n}==1.0\n" for n in packages))
    git("add", ".", cwd=repo)
    git("commit", "-qm", "app", cwd=repo)
    return repo


def timed_start(instance, phases: dict | None = None) -> tuple[float, float]:
    """start() -> (seconds until the port answers, seconds until status running); `phases` gets
    the seconds the instance spent `installing` (the environment build)."""
    from instances.models import InstanceStatus

    t0 = time.monotonic()
    instance.start()
    answered = installing_since = None
    while True:
        instance.refresh_from_db()
        now = time.monotonic()
        if installing_since is None and instance.status == InstanceStatus.INSTALLING:
            installing_since = now
        if installing_since is not None and phases is not None and "install" not in phases \
                and instance.status != InstanceStatus.INSTALLING:
            phases["install"] = now - installing_since
        if answered is None and instance.port and port_answers(instance.port):
            answered = now - t0
        if instance.status == InstanceStatus.RUNNING and answered is not None:
            return answered, time.monotonic() - t0
        if instance.status == InstanceStatus.FAILED:
            raise SystemExit(f"{instance.name} failed: {instance.error_message}\n{instance.log_tail(3000)}")
        time.sleep(0.002)


def stop(instance) -> None:
    from instances.models import InstanceStatus

    instance.stop()
    while True:
        instance.refresh_from_db()
        if instance.status == InstanceStatus.STOPPED:
            return
        time.sleep(0.01)


def du(path: Path) -> int:
    """Bytes used under path, each hard-linked inode counted once (like du)."""
    seen, total = set(), 0
    for p in path.rglob("*"):
        st = p.lstat()
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--torch-mb", type=int, default=1000,
                        help="payload of the fake torch wheel (real ones: ~0.7 GB CPU, ~5 GB with CUDA libraries)")
    parser.add_argument("--packages", type=int, default=12, help="requirement packages")
    parser.add_argument("--package-mb", type=int, default=8, help="payload of each requirement package")
    parser.add_argument("--files", type=int, default=400, help="small .py files in every wheel")
    parser.add_argument("--runs", type=int, default=7, help="unchanged starts (and direct launches) measured")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="aikore-bench-envs-"))
    try:
        names, wheel_bytes, wheel_files = build_indexes(work / "wheels", args)
        repo = make_repo(work, names)
        env = {"UV_INDEX_URL": f"file://{work}/wheels/simple", "AIKORE_TORCH_INDEX_BASE": f"file://{work}/wheels/torch",
               "UV_PYTHON_DOWNLOADS": "never", "AIKORE_READY_TIMEOUT": "600"}
        with running_stack(**env) as data_dir:
            from django.conf import settings

            from instances.models import Instance

            write_blueprint("bench-envs", BLUEPRINT.format(repo=repo))
            first = Instance.objects.create_instance(name="Bench Env One", blueprint="bench-envs", torch_variant="cpu")
            second = Instance.objects.create_instance(name="Bench Env Two", blueprint="bench-envs", torch_variant="cpu")
            cold_phase: dict = {}
            warm_phase: dict = {}
            cold_port, cold = timed_start(first, cold_phase)
            warm_port, warm = timed_start(second, warm_phase)
            stop(second)
            clone = first.clone("Bench Env Clone")  # the code copied, the environment from the cache
            clone_phase: dict = {}
            clone_port, _ = timed_start(clone, clone_phase)
            stop(clone)

            # Unchanged restarts of the first instance vs its app started directly.
            stop(first)
            unchanged, unchanged_running = [], []
            for _ in range(args.runs):
                answered, running = timed_start(first)
                unchanged.append(answered * 1000)
                unchanged_running.append(running * 1000)
                stop(first)
            first.refresh_from_db()
            app_env = {**os.environ, **first.environment()}
            app_env.pop("VIRTUAL_ENV", None)
            direct = []
            for _ in range(args.runs):
                t0 = time.monotonic()
                proc = subprocess.Popen([str(first.env_dir / "bin" / "python"), "app.py"], cwd=first.app_dir,
                                        env=app_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                while not port_answers(first.port):
                    if proc.poll() is not None:
                        raise SystemExit("the app exited when started directly")
                    time.sleep(0.002)
                direct.append((time.monotonic() - t0) * 1000)
                proc.terminate()
                proc.wait(10)
            cache_bytes = du(Path(settings.UV_CACHE_DIR))
            env_one, env_two = du(first.env_dir), du(second.env_dir)
            both = du(first.directory.parent)
            del data_dir
    finally:
        shutil.rmtree(work, ignore_errors=True)

    mib = 1024 * 1024
    print(f"packages: fake torch/torchvision/torchaudio ({args.torch_mb} MiB payload in torch) + {args.packages} "
          f"requirement packages ({args.package_mb} MiB payload each); {args.files} small modules per wheel; "
          f"{wheel_bytes / mib:.0f} MiB of wheels, ~{wheel_files} files; local file:// indexes, empty uv cache")
    cold_install, warm_install = cold_phase.get("install", float("nan")), warm_phase.get("install", float("nan"))
    print("                                                  environment build (installing)   start -> port answering")
    print(f"first instance, cold (empty uv cache)             {cold_install:8.2f} s"
          f"                       {cold_port:8.2f} s")
    print(f"second instance, same requirements (uv cache)     {warm_install:8.2f} s"
          f"                       {warm_port:8.2f} s")
    print(f"a clone of the first (code copied, env from cache) {clone_phase.get('install', float('nan')):8.2f} s"
          f"                       {clone_port:8.2f} s")
    print(f"second / first: {100 * warm_install / cold_install:.1f} % of the build, {100 * warm_port / cold_port:.1f} % "
          "of the whole start  (target < 10 %)")
    print(f"disk: uv cache {cache_bytes / mib:.0f} MiB; environments {env_one / mib:.0f} + {env_two / mib:.0f} MiB "
          f"counted alone, {both / mib:.0f} MiB for both instance folders together (hard links)")
    print(f"unchanged start, {args.runs} runs (start request -> port answering): median "
          f"{statistics.median(unchanged):.0f} ms, p95 {percentile(unchanged, 95):.0f} ms "
          f"(-> status running: median {statistics.median(unchanged_running):.0f} ms)")
    print(f"its app launched directly (Popen -> port answering):    median {statistics.median(direct):.0f} ms, "
          f"p95 {percentile(direct, 95):.0f} ms")
    print(f"added by AiKore (median): {statistics.median(unchanged) - statistics.median(direct):.0f} ms  "
          f"(target < 100 ms)")


if __name__ == "__main__":
    main()
