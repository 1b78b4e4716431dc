"""Local package indexes for tests and benches (no internet): wheels are zip files with a
METADATA, WHEEL and RECORD, written here directly, served as PEP 503 "simple" indexes on disk
(file:// URLs that uv reads like PyPI)."""

from __future__ import annotations

import base64
import hashlib
import html
import os
import subprocess
import zipfile
from pathlib import Path

# The torch trio, as fake wheels that say which variant's index they came from.
TORCH_VERSION = "2.9.0"
TORCH_TRIO = {"torch": TORCH_VERSION, "torchvision": "0.24.0", "torchaudio": TORCH_VERSION}


def _normalise(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def make_wheel(directory: Path, name: str, version: str, requires: tuple[str, ...] = (),
               files: dict[str, bytes] | None = None, payload_bytes: int = 0,
               scripts: dict[str, str] | None = None) -> Path:
    """A pure-Python wheel `name` (importable as name with '-' -> '_') with `files` in its
    package and, with payload_bytes, a data file of that size. Deflated, like real wheels.
    `scripts` are console scripts: {"command": "module:function"} (module inside the package)."""
    dist = name.replace("-", "_")
    package = {f"{dist}/__init__.py": f"__version__ = {version!r}\n".encode()}
    for path, data in (files or {}).items():
        package[f"{dist}/{path}"] = data
    if payload_bytes:
        # Like compiled libraries: compresses about 2:1 (random 16 KiB blocks, each followed by zeros).
        block = 16 * 1024
        package[f"{dist}/payload.bin"] = b"".join(
            os.urandom(block) + bytes(block) for _ in range(payload_bytes // (2 * block) + 1))[:payload_bytes]
    info = f"{dist}-{version}.dist-info"
    package[f"{info}/METADATA"] = (f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                                   + "".join(f"Requires-Dist: {r}\n" for r in requires)).encode()
    if scripts:
        package[f"{info}/entry_points.txt"] = ("[console_scripts]\n" + "".join(
            f"{command} = {dist}.{target}\n" for command, target in scripts.items())).encode()
    package[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: aikore-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = []
    for path, data in package.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    package[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for path, data in package.items():
            zf.writestr(path, data)
    return wheel


def index_wheel(index: Path, name: str, version: str, **kwargs: object) -> Path:
    """make_wheel into a simple index at `index` (index/<project>/<wheel> + index.html)."""
    project = index / _normalise(name)
    wheel = make_wheel(project, name, version, **kwargs)  # type: ignore[arg-type]
    links = "".join(f'<a href="{html.escape(p.name)}">{html.escape(p.name)}</a>\n'
                    for p in sorted(project.glob("*.whl")))
    (project / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")
    projects = "".join(f'<a href="{p.name}/">{p.name}</a>\n' for p in sorted(index.iterdir()) if p.is_dir())
    (index / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{projects}</body></html>\n")
    return wheel


def torch_indexes(base: Path, variants: tuple[str, ...] = ("cpu", "cu128", "cu130")) -> None:
    """<base>/<variant>/ for each variant: fake torch/torchvision/torchaudio whose torch.VARIANT
    says which index they came from."""
    for variant in variants:
        index = base / variant
        for name, version in TORCH_TRIO.items():
            requires = () if name == "torch" else (f"torch=={TORCH_VERSION}",)
            files = {"variant.py": f"VARIANT = {variant!r}\n".encode()} if name == "torch" else None
            index_wheel(index, name, version, requires=requires, files=files)


def git(*args: str, cwd: Path) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "GIT_CONFIG_NOSYSTEM": "1"}
    # The test (root) looks into checkouts the apps' user made: not "dubious" here.
    return subprocess.run(["git", "-c", "safe.directory=*", *args], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()
