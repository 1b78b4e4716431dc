"""Blueprints: bash scripts that install and launch a WebUI. Their header metadata is parsed here
and nowhere else.

Header lines look like ``# aikore.<key>: <value>`` and may appear anywhere in the first 100 lines:

    # aikore.name: ComfyUI
    # aikore.category: Image generation
    # aikore.description: Node-based Stable Diffusion UI
    # aikore.ready: http /            (or "tcp", or "none")
    # aikore.ready_timeout: 1800      (seconds)
    # aikore.proxy: strip             (strip: the app sees / under /instance/<slug>/, the default;
                                       keep: the app mounts itself under the prefix;
                                       origin: the app needs the root of an origin of its own)
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

from django.conf import settings

BLUEPRINT_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
HEADER_RE = re.compile(r"^#\s*aikore\.([a-z_]+)\s*:\s*(.*?)\s*$")
MAX_SCRIPT_BYTES = 256 * 1024
PROXY_MODES = ("strip", "keep", "origin")


class BlueprintNotFound(LookupError):
    pass


@dataclass(frozen=True)
class Blueprint:
    id: str
    name: str
    category: str
    description: str
    ready: str  # "http", "tcp" or "none"
    ready_path: str
    ready_timeout: int | None
    custom: bool
    path: Path
    proxy_mode: str = "strip"  # one of PROXY_MODES

    def as_dict(self) -> dict:
        data = asdict(self)
        data["path"] = str(self.path)
        return data

    def read_script(self) -> str:
        return self.path.read_text(encoding="utf-8", errors="replace")


def parse_header(text: str) -> dict[str, str]:
    meta: dict[str, str] = {}
    for line in text.splitlines()[:100]:
        match = HEADER_RE.match(line)
        if match and match.group(1) not in meta:
            meta[match.group(1)] = match.group(2)
    return meta


def parse_ready(value: str) -> tuple[str, str]:
    """'http /path' -> ('http', '/path'); 'tcp' -> ('tcp', ''); anything unknown -> ('tcp', '')."""
    parts = value.split()
    if not parts:
        return "tcp", ""
    kind = parts[0].lower()
    if kind == "http":
        path = parts[1] if len(parts) > 1 else "/"
        if not path.startswith("/") or not re.fullmatch(r"[A-Za-z0-9/_.\-~?=&%]*", path):
            path = "/"
        return "http", path
    if kind == "none":
        return "none", ""
    return "tcp", ""


def parse_proxy_mode(value: str) -> str:
    """'keep' / 'origin' / 'strip'; anything else is the default, 'strip'."""
    value = value.strip().lower()
    return value if value in PROXY_MODES else "strip"


def load_blueprint(path: Path, custom: bool) -> Blueprint:
    text = path.read_text(encoding="utf-8", errors="replace")
    meta = parse_header(text)
    ready, ready_path = parse_ready(meta.get("ready", "tcp"))
    try:
        timeout = int(meta["ready_timeout"]) if "ready_timeout" in meta else None
    except ValueError:
        timeout = None
    return Blueprint(
        id=path.stem,
        name=meta.get("name", path.stem),
        category=meta.get("category", "Custom" if custom else "Other"),
        description=meta.get("description", ""),
        ready=ready,
        ready_path=ready_path,
        ready_timeout=timeout,
        custom=custom,
        path=path,
        proxy_mode=parse_proxy_mode(meta.get("proxy", "")),
    )


def _dirs() -> list[tuple[Path, bool]]:
    return [(Path(settings.STOCK_BLUEPRINTS_DIR), False), (Path(settings.CUSTOM_BLUEPRINTS_DIR), True)]


def list_blueprints() -> list[Blueprint]:
    """Stock blueprints, then custom ones; a custom blueprint never shadows a stock one."""
    seen: set[str] = set()
    found: list[Blueprint] = []
    for directory, custom in _dirs():
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.sh")):
            if path.stem in seen or not BLUEPRINT_ID_RE.fullmatch(path.stem) or not path.is_file():
                continue
            seen.add(path.stem)
            found.append(load_blueprint(path, custom))
    return found


def normalise_id(blueprint_id: str) -> str:
    """Accept 'ComfyUI' and 'ComfyUI.sh' alike."""
    if isinstance(blueprint_id, str) and blueprint_id.endswith(".sh"):
        blueprint_id = blueprint_id[:-3]
    return blueprint_id


def get_blueprint(blueprint_id: str) -> Blueprint:
    blueprint_id = normalise_id(blueprint_id)
    if not isinstance(blueprint_id, str) or not BLUEPRINT_ID_RE.fullmatch(blueprint_id):
        raise BlueprintNotFound(f"Unknown blueprint {blueprint_id!r}.")
    for directory, custom in _dirs():
        path = directory / f"{blueprint_id}.sh"
        if path.is_file():
            return load_blueprint(path, custom)
    available = ", ".join(b.id for b in list_blueprints()) or "none"
    raise BlueprintNotFound(f"Unknown blueprint {blueprint_id!r}. Available: {available}.")
