"""A PEP 517/660 build backend in the fixture sd-scripts repository (pyproject: backend-path ["."]), so its
requirements' `-e .` installs offline: no setuptools to download. Editable installs put the checkout on
sys.path with a .pth file (as setuptools does); plain wheels are not needed by the blueprints."""

from __future__ import annotations

import base64
import hashlib
import os
import zipfile

NAME, VERSION = "library", "0.0.0"
DIST_INFO = f"{NAME}-{VERSION}.dist-info"


def get_requires_for_build_editable(config_settings=None):
    return []


def get_requires_for_build_wheel(config_settings=None):
    return []


def _wheel(directory: str, files: dict[str, bytes]) -> str:
    files[f"{DIST_INFO}/METADATA"] = f"Metadata-Version: 2.1\nName: {NAME}\nVersion: {VERSION}\n".encode()
    files[f"{DIST_INFO}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: aikore-fixture\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{DIST_INFO}/RECORD,,")
    files[f"{DIST_INFO}/RECORD"] = ("\n".join(record) + "\n").encode()
    name = f"{NAME}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(directory, name), "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return name


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    return _wheel(wheel_directory, {f"__editable__.{NAME}.pth": (os.path.abspath(".") + "\n").encode()})


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    files = {}
    for root, _dirs, names in os.walk(NAME):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as fh:
                files[path] = fh.read()
    return _wheel(wheel_directory, files)
