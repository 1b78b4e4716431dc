"""Building and running AiKore's Docker image with Debian's podman, as the image test
(test_docker_image.py) and bench/image.py do.

No registry of images is reachable from the test machines, so the base is made here: a Debian
bookworm (the distribution of the Dockerfile's default base, debian:bookworm-slim, with Debian's
Python) bootstrapped by mmdebstrap and imported into podman; the Dockerfile's BASE argument selects
it. Everything podman needs is passed on its command line, nothing on the host changes: a storage of
its own in a cache folder that outlives the test run (the base tarball and the layer cache make a
second build quick), cgroupfs (no systemd), events in a file, ulimits below the sandbox's hard limits
(podman's defaults fail there: "error setting rlimit"), and the host's CA bundle as a build secret,
for a TLS-inspecting proxy between the build and PyPI or npm.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from aikore_site.tests.cache import cache_dir

REPO = Path(__file__).resolve().parents[2]
CACHE = cache_dir() / "image"
BASE_TAR = CACHE / "base-bookworm.tar"
BASE_IMAGE = "localhost/aikore-test-base:bookworm"
BASE_MAX_AGE = 7 * 86400  # days-old security updates are fine for a test base; older ones are made again
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
ULIMITS = ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]
# A slim bookworm, as debian:bookworm-slim is: merged /usr without the usrmerge package (which pulls
# in perl), no documentation, manual pages or translations.
MMDEBSTRAP = ["mmdebstrap", "--variant=minbase", "--quiet", "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
              "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-include=/usr/share/doc/*/copyright",
              "--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/info/*",
              "--dpkgopt=path-exclude=/usr/share/locale/*", "--dpkgopt=path-include=/usr/share/locale/locale.alias",
              "bookworm"]
MIRRORS = ("http://deb.debian.org/debian/dists/bookworm/Release", "https://pypi.org/simple/django/",
           "https://registry.npmjs.org/esbuild")


class Unavailable(RuntimeError):
    """podman can't build or run images on this machine: the message says why (a test skip reason)."""


def missing_prerequisite() -> str | None:
    """Why the image can't be built and run here, or None."""
    if os.geteuid() != 0:
        return "the image test runs podman as root (run the suite as root, as CI does)"
    for tool in ("podman", "mmdebstrap"):
        if not shutil.which(tool):
            return f"{tool} is not installed (scripts/system-deps.sh test installs podman, runc and mmdebstrap as root)"
    return None


def offline_reason() -> str | None:
    """Why the Debian, PyPI and npm mirrors the build uses can't be reached, or None."""
    import ssl

    context = ssl.create_default_context(cafile=str(CA_BUNDLE) if CA_BUNDLE.exists() else None)
    for url in MIRRORS:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=10, context=context):
                pass
        except Exception as exc:  # any failure means: no network for the build
            return f"the build needs {url.split('/')[2]}, which is not reachable: {exc}"
    return None


@dataclass
class Podman:
    """podman with this test's own storage and settings (see the module's docstring)."""

    storage: Path = CACHE / "storage"
    runroot: Path = field(default_factory=lambda: Path("/run/aikore-tests") / hashlib.sha256(
        str(CACHE).encode()).hexdigest()[:12])

    def command(self, *args: str) -> list[str]:
        return ["podman", "--root", str(self.storage), "--runroot", str(self.runroot), "--storage-driver", "overlay",
                "--cgroup-manager", "cgroupfs", "--events-backend", "file", *args]

    def run(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(self.command(*args), capture_output=True, text=True, timeout=timeout,
                                stdin=subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args[:3])} ... failed ({result.returncode}):\n"
                               f"{(result.stdout + result.stderr)[-4000:]}")
        return result

    def check(self) -> None:
        """Raise Unavailable when podman can't work here (its error says why)."""
        result = self.run("info", "--format", "{{.Store.GraphDriverName}}", check=False, timeout=60)
        if result.returncode != 0:
            raise Unavailable(f"podman does not work here: {result.stderr.strip()[-500:]}")

    def image_exists(self, name: str) -> bool:
        return self.run("image", "exists", name, check=False).returncode == 0

    def ensure_base(self) -> float:
        """Make (mmdebstrap) and import the bookworm base when missing or old. Returns the seconds spent."""
        started = time.monotonic()
        CACHE.mkdir(parents=True, exist_ok=True)
        fresh = BASE_TAR.exists() and time.time() - BASE_TAR.stat().st_mtime < BASE_MAX_AGE
        if not fresh:
            partial = BASE_TAR.with_suffix(".partial")
            result = subprocess.run([*MMDEBSTRAP, str(partial)], capture_output=True, text=True, timeout=900)
            if result.returncode != 0:
                raise RuntimeError(f"mmdebstrap failed:\n{result.stderr[-3000:]}")
            partial.replace(BASE_TAR)
        if not fresh or not self.image_exists(BASE_IMAGE):
            self.run("import", "--quiet", str(BASE_TAR), BASE_IMAGE)
        return time.monotonic() - started

    def build(self, tag: str, context: Path = REPO, *extra: str, timeout: float = 1200) -> float:
        """podman build of the Dockerfile on the test base (layers cached in this storage); returns
        the seconds it took. docker format: OCI images have no HEALTHCHECK."""
        started = time.monotonic()
        self.run(*self._build_args(context), *extra, "-t", tag, str(context), timeout=timeout)
        return time.monotonic() - started

    def build_and_prune(self, tag: str, context: Path = REPO) -> float:
        """build(), then drop what earlier builds left (their app layers), keeping the cache of
        every step still in use: the build stage is tagged too (`<tag>-build`, from the cache),
        else pruning would take its layers (pip's, npm's) as left over."""
        seconds = self.build(tag, context)
        self.run(*self._build_args(context), "--target", "build", "-t", f"{tag}-build", str(context))
        self.run("image", "prune", "--force")
        return seconds

    def _build_args(self, context: Path) -> list[str]:
        secret = ["--secret", f"id=ca_bundle,src={CA_BUNDLE}"] if CA_BUNDLE.exists() else []
        return ["build", "--format", "docker", "--pull=never", "--layers", "--build-arg", f"BASE={BASE_IMAGE}",
                *secret, *ULIMITS, "-f", str(context / "Dockerfile")]

    def inspect(self, name: str) -> dict:
        return json.loads(self.run("inspect", name).stdout)[0]

    def layers(self, image: str) -> list[tuple[int, str]]:
        """(size in bytes, the step that made it) of each layer, newest first."""
        rows = json.loads(self.run("history", "--format", "json", image).stdout)
        return [(int(row.get("size") or 0), " ".join(str(row.get("CreatedBy") or row.get("createdBy") or "").split())[:110])
                for row in rows]

    def healthy(self, name: str) -> bool:
        """Run the image's HEALTHCHECK once (podman runs it on a timer only under systemd)."""
        return self.run("healthcheck", "run", name, check=False, timeout=60).returncode == 0

    def remove(self, name: str) -> None:
        self.run("rm", "--force", "--time", "0", name, check=False, timeout=120)


def free_ports(size: int, low: int = 32501, high: int = 32700) -> int:
    """The first of `size` consecutive free ports for a container's published ports (the same
    numbers inside and out: AiKore's pages send the browser between its ports by number), below the
    kernel's ephemeral range and away from the test stacks' ranges."""
    starts = list(range(low, high - size, size))
    shift = os.getpid() % len(starts)  # two runs at once rarely try the same block first
    for first in starts[shift:] + starts[:shift]:
        try:
            for port in range(first, first + size):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    raise RuntimeError(f"no {size} consecutive free ports in {low}-{high}")


def container_memory(pid: int) -> dict:
    """Memory of every process of a container whose init is host PID `pid`: RSS summed (counts shared
    pages once per process) and PSS summed (shares them out: what the container really adds), and
    each process's (PSS, command line)."""
    import psutil

    root = psutil.Process(pid)
    procs = [root, *root.children(recursive=True)]
    rss = pss = 0
    each: list[tuple[int, str]] = []
    for proc in procs:
        try:
            info = proc.memory_full_info()
            line = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        rss += info.rss
        pss += getattr(info, "pss", info.uss)
        each.append((getattr(info, "pss", info.uss), line))
    return {"processes": len(procs), "rss": rss, "pss": pss, "each": each}
