"""Blueprints: bash scripts that install and launch a WebUI. Their header metadata is parsed here
and nowhere else.

Header lines look like ``# aikore.<key>: <value>`` and may appear anywhere in the first 100 lines:

    # aikore.name: ComfyUI
    # aikore.category: Image generation
    # aikore.description: Node-based Stable Diffusion UI
    # aikore.kind: app                 (app, library or test; default app)
    # aikore.ready: http /             (or "tcp", "none", or "window": a desktop program has a window)
    # aikore.ready_timeout: 1800       (seconds, counted from the end of the install)
    # aikore.git: https://github.com/comfyanonymous/ComfyUI
    # aikore.git_ref: master           (branch, tag or commit; empty = the default branch)
    # aikore.python: 3.12              (the Python version of the instance's environment)
    # aikore.torch: yes                (installs PyTorch: the instance's torch variant applies)
    # aikore.proxy: strip              (strip, keep or origin: see README "Blueprint metadata")
    # aikore.vram: 8 GB (4 GB with --lowvram)   (rough GPU memory need: "<n> GB ..." or "none")
    # aikore.homepage: https://github.com/Comfy-Org/ComfyUI
    # aikore.downloads: nothing at start (models on demand)   (what the first start fetches)
    # aikore.requires: Node.js >= 20.9   (tools besides Python the install needs)
    # aikore.desktop: program          (the app is a desktop program: it runs on the instance's
                                        own display, which persistent mode gives it; no browser)

Every key is declared once in HEADER_KEYS (its parser and default): adding a key is one line
there plus its field on Blueprint. A value a parser refuses, or an unknown key, is reported in
``Blueprint.problems`` and the default is used, so a typo never hides a blueprint.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from django.conf import settings

BLUEPRINT_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
HEADER_RE = re.compile(r"^#\s*aikore\.([a-z_]+)\s*:\s*(.*?)\s*$")
MAX_SCRIPT_BYTES = 256 * 1024

KINDS = ("app", "library", "test")
# The catalogue's categories, in display order. Other names are allowed (custom blueprints) and
# listed after these; a known name in another case is normalised ("image" -> "Image").
CATEGORIES = ("Image", "Video", "Training", "Audio", "LLM", "Tools")
PROXY_MODES = ("strip", "keep", "origin")
# "program": the app is a desktop program (a window on $DISPLAY, no web page); "" a web app, which in
# persistent mode gets a kiosk browser on its desktop.
DESKTOP_KINDS = ("program", "")
# A git source: a URL git understands, or an absolute path (a local mirror); never an option.
GIT_URL_RE = re.compile(r"((https?|git|ssh|file)://|[A-Za-z0-9_.\-]+@[A-Za-z0-9_.\-]+:|/)[A-Za-z0-9_.~:/%@+=\-]*")
# A branch, tag or commit as `git check-ref-format` allows, minus what could read as an option.
GIT_REF_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+/\-]{0,199}")
PYTHON_VERSION_RE = re.compile(r"3(\.\d{1,2}){0,2}")
# "none" (no GPU needed) or "<n> GB" followed by free text, e.g. "12 GB (8 GB with --lowvram)".
VRAM_RE = re.compile(r"(?i:none)\b.{0,100}|(\d{1,3}(?:\.\d{1,2})?) ?GB\b.{0,100}")
HOMEPAGE_RE = re.compile(r"https?://[A-Za-z0-9.\-]+(:\d{1,5})?(/[A-Za-z0-9_.~:/%@+=&?#!,;\-]*)?")
MAX_TEXT = 500


class BlueprintNotFound(LookupError):
    pass


class BadValue(ValueError):
    pass


def _text(value: str) -> str:
    if len(value) > MAX_TEXT:
        raise BadValue(f"is longer than {MAX_TEXT} characters")
    return value


def _category(value: str) -> str:
    value = _text(value)
    for known in CATEGORIES:
        if value.lower() == known.lower():
            return known
    return value


def _vram(value: str) -> tuple[str, float | None]:
    """'12 GB (8 GB with --lowvram)' -> (the text, 12.0); 'none' -> ('none', 0.0)."""
    match = VRAM_RE.fullmatch(value)
    if not match:
        raise BadValue("must be 'none' or start with a size like '8 GB'")
    return value, float(match.group(1)) if match.group(1) else 0.0


def _homepage(value: str) -> str:
    if value and (len(value) > 300 or not HOMEPAGE_RE.fullmatch(value)):
        raise BadValue("must be an http(s) URL")
    return value


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        value = value.lower()
        if value not in choices:
            raise BadValue(f"must be one of {', '.join(choices)}")
        return value

    return parse


def _int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise BadValue("must be a whole number of seconds") from None
    if not 1 <= number <= 7 * 86400:
        raise BadValue("must be between 1 and 604800 seconds")
    return number


def _yes_no(value: str) -> bool:
    value = value.lower()
    if value in ("yes", "true", "1", "on"):
        return True
    if value in ("no", "false", "0", "off", ""):
        return False
    raise BadValue("must be yes or no")


def _matching(regex: re.Pattern[str], what: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value and (not regex.fullmatch(value) or ".." in value.replace("://", "")):
            raise BadValue(f"is not a valid {what}")
        return value

    return parse


def parse_ready(value: str) -> tuple[str, str]:
    """'http /path' -> ('http', '/path'); 'tcp' -> ('tcp', ''); 'none' -> ('none', '')."""
    parts = value.split()
    if not parts:
        return "tcp", ""
    kind = parts[0].lower()
    if kind == "http":
        path = parts[1] if len(parts) > 1 else "/"
        if not path.startswith("/") or not re.fullmatch(r"[A-Za-z0-9/_.\-~?=&%]*", path):
            raise BadValue("http needs a path like /health made of URL-safe characters")
        return "http", path
    if kind in ("tcp", "none", "window"):
        return kind, ""
    raise BadValue("must be 'http /path', 'tcp', 'window' or 'none'")


# key -> (Blueprint field(s) it fills, parser, default). One line per key.
HEADER_KEYS: dict[str, tuple[str | tuple[str, ...], Callable[[str], object], object]] = {
    "name": ("name", _text, None),
    "category": ("category", _category, None),
    "description": ("description", _text, ""),
    "kind": ("kind", _choice(*KINDS), "app"),
    "ready": (("ready", "ready_path"), parse_ready, ("tcp", "")),
    "ready_timeout": ("ready_timeout", _int, None),
    "git": ("git_url", _matching(GIT_URL_RE, "git URL"), ""),
    "git_ref": ("git_ref", _matching(GIT_REF_RE, "git branch, tag or commit"), ""),
    "python": ("python_version", _matching(PYTHON_VERSION_RE, "Python version like 3.12"), ""),
    "torch": ("torch", _yes_no, False),
    "proxy": ("proxy_mode", _choice(*PROXY_MODES), "strip"),
    "vram": (("vram", "vram_gb"), _vram, ("", None)),
    "homepage": ("homepage", _homepage, ""),
    "downloads": ("downloads", _text, ""),
    "requires": ("requires", _text, ""),
    "desktop": ("desktop", _choice(*DESKTOP_KINDS), ""),
}


@dataclass(frozen=True)
class Blueprint:
    id: str
    name: str
    category: str
    description: str
    ready: str  # "http", "tcp", "window" (a desktop program's window is on its display) or "none"
    ready_path: str
    ready_timeout: int | None
    custom: bool
    path: Path
    kind: str = "app"  # "app" (offered for new instances), "library" (sourced, never run), "test"
    git_url: str = ""
    git_ref: str = ""
    python_version: str = ""
    torch: bool = False
    proxy_mode: str = "strip"  # "strip" the /instance/<slug> prefix, "keep" it, or own "origin"
    vram: str = ""  # rough GPU memory need, as written ("12 GB (8 GB with --lowvram)", "none")
    vram_gb: float | None = None  # its first number (0 for "none"), for sorting
    homepage: str = ""
    downloads: str = ""  # what the first start downloads (weights, toolchains)
    requires: str = ""  # what the install needs besides Python (Node.js, .NET SDK, ffmpeg)
    desktop: str = ""  # "program": a desktop program (always on a desktop of its own, no browser)
    problems: tuple[str, ...] = field(default=())

    @property
    def installs(self) -> bool:
        """Does it build an environment (so a start may spend a while `installing`)?"""
        return bool(self.git_url or self.python_version or self.torch)

    @property
    def desktop_program(self) -> bool:
        """Is the app a window on a desktop rather than a web page (persistent mode implied)?"""
        return self.desktop == "program"

    def as_dict(self) -> dict:
        data = asdict(self)
        data["path"] = str(self.path)
        data["problems"] = list(self.problems)
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


def parse_metadata(text: str) -> tuple[dict[str, object], list[str]]:
    """Header text -> ({Blueprint field: value} for every key, [problems])."""
    raw = parse_header(text)
    values: dict[str, object] = {}
    problems = [f"unknown key aikore.{key}" for key in raw if key not in HEADER_KEYS]
    for key, (fields, parser, default) in HEADER_KEYS.items():
        value = default
        if key in raw:
            try:
                value = parser(raw[key])
            except BadValue as exc:
                problems.append(f"aikore.{key}: {raw[key]!r} {exc}; using the default")
        if isinstance(fields, tuple):
            values.update(zip(fields, value, strict=True))  # type: ignore[arg-type]
        else:
            values[fields] = value
    return values, problems


def load_blueprint(path: Path, custom: bool, blueprint_id: str | None = None) -> Blueprint:
    values, problems = parse_metadata(path.read_text(encoding="utf-8", errors="replace"))
    values["name"] = values["name"] or path.stem
    values["category"] = values["category"] or ("Custom" if custom else "Other")
    return Blueprint(id=blueprint_id or path.stem, custom=custom, path=path, problems=tuple(problems),
                     **values)  # type: ignore[arg-type]


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
    available = ", ".join(b.id for b in list_blueprints() if b.kind == "app") or "none"
    raise BlueprintNotFound(f"Unknown blueprint {blueprint_id!r}. Available: {available}.")
