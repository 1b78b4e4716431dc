"""Input rules for instance fields, in one place so the API, the admin, the CLI and the dashboard
refuse the same things with the same words. Every function raises ValidationError with a message a
user can act on, keyed by field name."""

from __future__ import annotations

import re
import unicodedata

from django.conf import settings
from django.core.exceptions import ValidationError

NAME_MAX = 64
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.\-]*")
SLUG_RE = re.compile(r"[a-z0-9][a-z0-9-]*")
OUTPUT_PATH_RE = re.compile(r"[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*")
LAUNCH_ARGS_MAX = 4000
ALLOWED_ORIGINS_MAX = 20
# scheme://host[:port] and nothing else: these values reach the nginx config.
ORIGIN_RE = re.compile(
    r"(?P<scheme>https?)://(?P<host>(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
    r"|\[[0-9a-f:.]{2,45}\])(?::(?P<port>[0-9]{1,5}))?"
)
MAX_GPU_ID = 63


def _err(field: str, message: str) -> ValidationError:
    return ValidationError({field: [message]})


def validate_name(name: object) -> str:
    if not isinstance(name, str):
        raise _err("name", "Name must be a string.")
    name = name.strip()
    if not name:
        raise _err("name", "Name is required.")
    if len(name) > NAME_MAX:
        raise _err("name", f"Name is too long ({len(name)} characters, at most {NAME_MAX}).")
    if not NAME_RE.fullmatch(name) or ".." in name:
        raise _err(
            "name",
            "Name may contain letters, digits, spaces, '_', '-' and '.', must start with a letter "
            "or digit, and may not contain '..'.",
        )
    return name


def slug_for(name: str) -> str:
    """The URL-, path- and shell-safe form of a (validated) name: lower case, [a-z0-9-]."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    slug = re.sub(r"[^a-z0-9]+", "-", text).strip("-")
    if not slug or not SLUG_RE.fullmatch(slug):
        raise _err("name", "Name must contain at least one letter or digit.")
    return slug[:NAME_MAX]


def validate_gpu_ids(value: object, gpu_count: int | None = None) -> str:
    """Normalise "0, 1" to "0,1"; empty means all GPUs. gpu_count (when a GPU was detected)
    bounds the ids."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        parts = [str(v).strip() for v in value]
    elif isinstance(value, str):
        if value.strip() == "":
            return ""
        parts = [p.strip() for p in value.split(",")]
    else:
        raise _err("gpu_ids", "GPU ids must be a comma-separated string like '0,1'.")
    ids: list[int] = []
    for part in parts:
        if not re.fullmatch(r"\d{1,3}", part):
            raise _err("gpu_ids", f"Invalid GPU id {part!r}: use non-negative integers like '0,1'.")
        gpu = int(part)
        limit = gpu_count if gpu_count else MAX_GPU_ID + 1
        if gpu >= limit:
            if gpu_count:
                raise _err("gpu_ids", f"GPU {gpu} does not exist (detected GPUs: 0..{gpu_count - 1}).")
            raise _err("gpu_ids", f"GPU id {gpu} is out of range (0..{MAX_GPU_ID}).")
        if gpu in ids:
            raise _err("gpu_ids", f"GPU {gpu} is listed twice.")
        ids.append(gpu)
    return ",".join(str(i) for i in ids)


def validate_port(port: object, field: str = "port") -> int | None:
    if port is None or port == "":
        return None
    if isinstance(port, bool) or not isinstance(port, int):
        try:
            port = int(str(port))
        except ValueError:
            raise _err(field, "Port must be an integer.") from None
    low, high = settings.AIKORE_INSTANCE_PORT_RANGE
    if not low <= port <= high:
        raise _err(field, f"Port {port} is outside the instance port range {low}-{high}.")
    return port


def validate_launch_args(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _err("launch_args", "Launch arguments must be a string.")
    if len(value) > LAUNCH_ARGS_MAX:
        raise _err("launch_args", f"Launch arguments are too long (at most {LAUNCH_ARGS_MAX} characters).")
    if any(ch in value for ch in "\x00\n\r") or any(unicodedata.category(c) == "Cc" and c != "\t" for c in value):
        raise _err("launch_args", "Launch arguments must be one line without control characters.")
    return value.strip()


def validate_output_path(value: object) -> str:
    """A path relative to $AIKORE_DATA_DIR/outputs; empty means the instance's slug."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _err("output_path", "Output path must be a string.")
    value = value.strip().rstrip("/")
    if value == "":
        return ""
    if value.startswith("/"):
        raise _err("output_path", "Output path must be relative to the outputs folder (no leading '/').")
    if len(value) > 200 or not OUTPUT_PATH_RE.fullmatch(value) or any(
        part in (".", "..") for part in value.split("/")
    ):
        raise _err(
            "output_path",
            "Output path must be a relative folder under outputs/ made of letters, digits, "
            "'_', '-', '.' and '/', without '..'.",
        )
    return value


def validate_allowed_origins(value: object) -> str:
    """Extra origins (besides the app's own) whose pages may send websocket upgrades and writes to
    the instance: "https://a.example.com http://10.0.0.5:8080". A list or a string separated by
    spaces, commas or new lines; normalised to lower case, one space between, no duplicates."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        parts = value
    elif isinstance(value, str):
        parts = re.split(r"[\s,]+", value.strip())
    else:
        raise _err("allowed_origins", "Allowed origins must be a list or a space-separated string.")
    origins: list[str] = []
    for part in parts:
        if not isinstance(part, str):
            raise _err("allowed_origins", "Each allowed origin must be a string.")
        if part == "":
            continue
        origin = part.lower().rstrip("/")
        match = ORIGIN_RE.fullmatch(origin)
        if not match or (match.group("port") and not 1 <= int(match.group("port")) <= 65535):
            raise _err("allowed_origins", f"{part[:100]!r} is not an origin: use scheme://host[:port], "
                                          "e.g. https://example.com or http://10.0.0.5:8080 (no path).")
        if origin not in origins:
            origins.append(origin)
    if len(origins) > ALLOWED_ORIGINS_MAX:
        raise _err("allowed_origins", f"At most {ALLOWED_ORIGINS_MAX} allowed origins.")
    return " ".join(origins)
def validate_python_version(value: object) -> str:
    """'3', '3.12' or '3.12.4'; empty = the blueprint's choice (or whatever Python uv finds)."""
    from instances.blueprints import PYTHON_VERSION_RE

    if value is None:
        return ""
    if not isinstance(value, str):
        raise _err("python_version", "Python version must be a string like '3.12'.")
    value = value.strip()
    if value and not PYTHON_VERSION_RE.fullmatch(value):
        raise _err("python_version", f"Python version {value!r} is not like '3.12' or '3.12.4'.")
    return value


def validate_torch_variant(value: object) -> str:
    from instances import torchvariants

    if value is None or value == "":
        return torchvariants.AUTO
    if not isinstance(value, str) or not torchvariants.is_valid(value.strip().lower()):
        raise _err(
            "torch_variant",
            f"Torch variant must be 'auto', 'cpu', a CUDA build like 'cu128' or a ROCm build like "
            f"'rocm6.4' (known CUDA builds: {', '.join(torchvariants.CHOICES[2:])}).",
        )
    return value.strip().lower()


def validate_git_ref(value: object) -> str:
    """A branch, tag or commit to use instead of the blueprint's; empty = the blueprint's."""
    from instances.blueprints import GIT_REF_RE

    if value is None:
        return ""
    if not isinstance(value, str):
        raise _err("git_ref", "Git ref must be a string.")
    value = value.strip()
    if value and (not GIT_REF_RE.fullmatch(value) or ".." in value or value.endswith((".lock", "/", "."))
                  or "//" in value):
        raise _err("git_ref", f"{value!r} is not a valid git branch, tag or commit name.")
    return value
