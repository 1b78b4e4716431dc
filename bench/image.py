"""The Docker image's figures, with Debian's podman on a bookworm base made by mmdebstrap (as the
image test builds it: aikore_site/tests/podman.py). Run as root:

    .venv/bin/python bench/image.py

- a cold build (an empty podman storage; the base made or taken from the test cache),
- a build after only the app changed (a Python file of a copy of the source tree edited),
- the image's size by layer,
- start to healthy: until the image's own HEALTHCHECK command first passes (run every 0.5 s here;
  Docker runs it every 10 s, so it shows "healthy" up to 10 s later),
- the idle memory of the container 10 s after that, the stack up and no instance running: the
  processes' PSS summed (shared pages counted once: what the container adds), each process's, RSS
  summed, and what `podman stats` reads from the container's cgroup.

Targets (issue 14): under 60 s to healthy, under 300 MB idle.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from aikore_site.tests import podman as podman_mod  # noqa: E402

TAG = "localhost/aikore:bench"
MB = 1e6


def source_copy(into: Path) -> Path:
    """The committed tree plus local changes, as a build context of its own (edited below)."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, files):
        source = REPO / name.decode()
        if source.is_file():
            target = into / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return into


def main() -> int:
    reason = podman_mod.missing_prerequisite() or podman_mod.offline_reason()
    if reason:
        print(f"bench/image.py: skipped: {reason}")
        return 0
    with tempfile.TemporaryDirectory(prefix="aikore-bench-image-", ignore_cleanup_errors=True) as tmp:
        tmp_path = Path(tmp)
        tool = podman_mod.Podman(storage=tmp_path / "storage", runroot=tmp_path / "run")
        tool.check()
        context = source_copy(tmp_path / "src")
        base = tool.ensure_base()
        cold = tool.build(TAG, context)
        print(f"base image ready (mmdebstrap or cached tarball, import): {base:.1f} s")
        print(f"cold build: {cold:.1f} s")
        settings = context / "aikore_site" / "settings.py"
        settings.write_text(settings.read_text() + "\n# an app change\n")
        warm = tool.build(TAG, context)
        print(f"build after an app change (one .py file): {warm:.1f} s")
        size = tool.inspect(TAG)["Size"]
        print(f"image size: {size / MB:.0f} MB; layers (newest first):")
        for layer_size, step in tool.layers(TAG):
            print(f"  {layer_size / MB:8.1f} MB  {step}")

        config = tmp_path / "config"
        config.mkdir()
        name = "aikore-bench"
        port = podman_mod.free_ports(2)
        tool.run("run", "--detach", "--name", name, *podman_mod.ULIMITS, "-p", f"127.0.0.1:{port}:{port}",
                 "-e", f"AIKORE_PORT={port}", "-e", f"AIKORE_APPS_PORT={port + 1}", "-e", "AIKORE_PUBLIC_PORT_RANGE=",
                 "-e", "PUID=1234", "-e", "PGID=1234", "-v", f"{config}:/config", TAG)
        started = time.monotonic()
        try:
            while not tool.healthy(name):
                if time.monotonic() - started > 180:
                    print(tool.run("logs", name, check=False).stdout[-3000:])
                    return 1
                time.sleep(0.5)
            healthy = time.monotonic() - started
            print(f"start to healthy: {healthy:.1f} s (target < 60 s)")
            time.sleep(10)
            memory = podman_mod.container_memory(tool.inspect(name)["State"]["Pid"])
            print(f"idle memory: {memory['pss'] / MB:.0f} MB PSS summed ({memory['pss'] / 2**20:.0f} MiB), "
                  f"{memory['rss'] / MB:.0f} MB RSS summed, {memory['processes']} processes (target < 300 MB):")
            for pss, line in sorted(memory["each"], reverse=True):
                print(f"  {pss / MB:6.1f} MB  {line[:100]}")
            stats = tool.run("stats", "--no-stream", "--format", "{{.MemUsage}}", name, check=False)
            print(f"podman stats (the container's cgroup, as docker stats shows it): "
                  f"{(stats.stdout.strip() or stats.stderr.strip())[-200:]}")
            stop_started = time.monotonic()
            tool.run("stop", "--time", "15", name)
            print(f"docker stop, no instance: {time.monotonic() - stop_started:.1f} s")
        finally:
            tool.remove(name)
            tool.run("rmi", "--all", "--force", check=False)  # the bench's own storage only
    return 0


if __name__ == "__main__":
    sys.exit(main())
