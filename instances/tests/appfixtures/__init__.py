"""Offline stand-ins for the apps of the stock blueprints (instances/tests/test_stock_blueprints.py).

Each app has a spec in specs/<app>.json (where it listens, its sub-path handling, its routes, the
files of its repository or its PyPI wheel) and, for argparse apps, specs/<app>.argparse: the
app's own add_argument lines, copied from its source. build() turns them into:

- git repositories under <data>/test-repos/github.com/<owner>/<repo>, with the app's layout, its
  requirement files and an entry point running fakeapp.py (see there), tagged with the blueprint's
  ref when it is a tag (a pinned commit can't be reproduced: the test gives the instance the
  fixture's commit instead). aikore_site/testing.py points git at them for every
  https://github.com/ URL (url.<dir>.insteadOf in GIT_CONFIG_* variables), so the stock blueprints
  clone them unchanged;
- tiny wheels for every package their requirement files name, and for the PyPI-installed apps
  (InvokeAI, IOPaint) a wheel of that name and version whose console script runs fakeapp.py, in the
  local index uv uses in tests (UV_INDEX_URL); torch 2.10 for the blueprint that pins it (in the
  cu126 index alone);
- stand-ins for programs this machine lacks (the .NET SDK's dotnet, ffmpeg, ffprobe) in
  <data>/test-bin, which testing.py puts first on PATH. Node.js is the real one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from instances.blueprints import load_blueprint
from instances.tests.wheels import git, index_wheel, torch_indexes

HERE = Path(__file__).resolve().parent
SPECS = HERE / "specs"
REPO_ROOT = HERE.parents[2]
TORCH_PINNED = {"torch": "2.10.0", "torchvision": "0.25.0", "torchaudio": "2.10.0"}  # Wan2GP's README pins
# The pinned trio lives alone in the cu126 index (the test runs Wan2GP with that variant), so the other
# tests' unpinned torch installs keep getting wheels.TORCH_VERSION.
PINNED_VARIANT = "cu126"
TORCH_NAMES = ("torch", "torchvision", "torchaudio")
REQUIREMENT_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._\-]*)\s*(?:\[[^\]]*\])?\s*(?:==\s*([^\s;,]+))?")
SHA_RE = re.compile(r"[0-9a-f]{40}")
STAND_INS = {"ffmpeg": "ffmpeg version fixture (a stand-in: ffmpeg is not installed here)",
             "ffprobe": "ffprobe version fixture (a stand-in: ffmpeg is not installed here)"}


def load_spec(name: str) -> dict:
    return json.loads((SPECS / f"{name}.json").read_text())


def app_specs() -> dict[str, dict]:
    """Every stock app's spec, by blueprint id."""
    specs = (json.loads(p.read_text()) for p in sorted(SPECS.glob("*.json")))
    return {spec["blueprint"]: spec for spec in specs if "blueprint" in spec}


def blueprint_of(spec: dict):
    return load_blueprint(REPO_ROOT / "blueprints" / f"{spec['blueprint']}.sh", custom=False)


def repo_dir(data_dir: Path, url: str) -> Path:
    """Where testing.py's insteadOf rule sends https://github.com/<owner>/<name>."""
    assert url.startswith("https://github.com/"), url
    return data_dir / "test-repos" / "github.com" / url.removeprefix("https://github.com/")


def requirements(spec: dict) -> list[tuple[str, str]]:
    """(package, version) for every package the spec's requirement files name ("1.0" when not
    pinned), plus its extra wheels; the torch trio comes from the torch indexes."""
    wanted: list[tuple[str, str]] = []
    for path, text in spec.get("repo", {}).get("files", {}).items():
        if not (path.endswith(".txt") and "requirements" in path) or text.startswith("@"):
            continue
        for line in text.splitlines():
            if not line.strip() or line.lstrip().startswith(("#", "-")):
                continue
            match = REQUIREMENT_RE.match(line)
            name, version = match.group(1), match.group(2) or "1.0"
            if name.lower() not in TORCH_NAMES and "+" not in version:
                wanted.append((name, version))
    return wanted + [(name, version) for name, version in spec.get("extra_wheels", [])]


def fixture_files(app: str, prefix: str) -> dict[str, bytes]:
    """fakeapp.py and the app's spec, under `prefix` (a folder of a repository or a wheel)."""
    files = {f"{prefix}/fakeapp.py": (HERE / "fakeapp.py").read_bytes()}
    for path in SPECS.glob(f"{app}.*"):
        files[f"{prefix}/specs/{path.name}"] = path.read_bytes()
    return files


def entry_point(app: str) -> str:
    return ("# Fixture entry point: the real app is replaced by AiKore's stand-in (instances/tests/appfixtures).\n"
            "import os, sys\n"
            "sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '_aikore_fixture'))\n"
            "import fakeapp\n"
            f"fakeapp.main({app!r})\n")


def file_content(app: str, value: str) -> bytes:
    if value == "@entry":
        return entry_point(app).encode()
    if value == "@backend":
        return (HERE / "build_backend.py").read_bytes()
    if value == "@backend-pyproject":
        return (b'[build-system]\nrequires = []\nbuild-backend = "aikore_build_backend"\nbackend-path = ["."]\n\n'
                b'[project]\nname = "library"\nversion = "0.0.0"\n')
    if value.startswith("@file:"):
        return (HERE / value.removeprefix("@file:")).read_bytes()
    return value.encode()


def build_repo(path: Path, spec: dict, tags: list[str]) -> str:
    """The fixture repository of one app at `path`; returns its commit."""
    path.mkdir(parents=True)
    git("init", "-q", "-b", "main", cwd=path)
    files = {name: file_content(spec["app"], value) for name, value in spec["repo"]["files"].items()}
    if "library" not in spec:
        files.update(fixture_files(spec["app"], "_aikore_fixture"))
    for name, data in files.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    for sub, url in spec["repo"].get("submodules", {}).items():
        git("submodule", "add", "-q", url, sub, cwd=path)  # through the insteadOf rule: a fixture repo
    git("add", "-A", ".", cwd=path)
    git("commit", "-qm", f"{spec['app']} fixture", cwd=path)
    for tag in tags:
        git("tag", tag, cwd=path)
    return git("rev-parse", "HEAD", cwd=path)


def build(data_dir: Path) -> dict[str, str]:
    """Wheels, repositories and stand-ins for every stock app (once per data dir); returns
    {blueprint id: the commit of its fixture repository}."""
    marker = data_dir / "test-repos" / "commits.json"
    if marker.exists():
        return json.loads(marker.read_text())
    simple, torch = data_dir / "test-wheels" / "simple", data_dir / "test-wheels" / "torch"
    if not (torch / "cpu" / "torch").exists():
        torch_indexes(torch)
    for name, version in TORCH_PINNED.items():
        index_wheel(torch / PINNED_VARIANT, name, version,
                    requires=() if name == "torch" else (f"torch=={TORCH_PINNED['torch']}",),
                    files={"variant.py": f"VARIANT = {PINNED_VARIANT!r}\n".encode()} if name == "torch" else None)
    specs = {p.stem: json.loads(p.read_text()) for p in sorted(SPECS.glob("*.json"))}
    wanted: dict[tuple[str, str], None] = {}
    for spec in specs.values():
        for name, version in requirements(spec):
            wanted[(name, version)] = None
    for name, version in wanted:
        index_wheel(simple, name, version)
    for spec in specs.values():
        wheel = spec.get("wheel")
        if wheel:
            package = wheel["name"].replace("-", "_")
            files = {k.removeprefix(f"{package}/"): v for k, v in fixture_files(spec["app"], package).items()}
            files["_entry.py"] = f"def main():\n    from {package} import fakeapp\n    fakeapp.main({spec['app']!r})\n".encode()
            index_wheel(simple, wheel["name"], wheel["version"], requires=tuple(wheel.get("requires", ())),
                        files=files, scripts={cmd: f"_entry:{func}" for cmd, func in wheel["scripts"].items()})

    commits: dict[str, str] = {}
    # Libraries first: the apps' submodules point at them.
    for name, spec in sorted(specs.items(), key=lambda item: "library" not in item[1]):
        if "repo" not in spec:
            continue
        if "library" in spec:
            url, tags = spec["repo"]["url"], spec["repo"].get("tags", [])
        else:
            bp = blueprint_of(spec)
            url, tags = bp.git_url, [bp.git_ref] if bp.git_ref and not SHA_RE.fullmatch(bp.git_ref) else []
        path = repo_dir(data_dir, url)
        commits[spec.get("blueprint", name)] = build_repo(path, spec, tags)
        for alias in spec["repo"].get("aliases", []):
            (path.parent / alias).symlink_to(path.name)

    stand_ins = data_dir / "test-bin"
    stand_ins.mkdir(exist_ok=True)
    path_without = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p != str(stand_ins))
    if not shutil.which("dotnet", path=path_without):
        shutil.copy(HERE / "dotnet", stand_ins / "dotnet")
    for program, banner in STAND_INS.items():
        if not shutil.which(program, path=path_without):
            script = stand_ins / program
            script.write_text(f"#!/bin/sh\necho '{banner}'\n")
            script.chmod(0o755)
    marker.write_text(json.dumps(commits))
    return commits
