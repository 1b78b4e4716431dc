"""PyTorch wheel variants: which one an instance gets and where its wheels are. The one place that
maps a variant (``cpu``, ``cu128``, ...) to a wheel index, and ``auto`` to a variant.

``auto`` follows the NVIDIA driver: NVML's ``nvmlSystemGetCudaDriverVersion`` says the newest CUDA
the driver runs, and the newest CUDA wheel build not newer than that is chosen. No driver (or a
driver older than every CUDA build listed) means the CPU wheels, which are also much smaller.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from django.conf import settings

AUTO = "auto"
CPU = "cpu"
# CUDA builds PyTorch publishes wheels for, newest first: (major, minor) of CUDA -> variant tag.
CUDA_BUILDS: tuple[tuple[tuple[int, int], str], ...] = (
    ((13, 0), "cu130"),
    ((12, 9), "cu129"),
    ((12, 8), "cu128"),
    ((12, 6), "cu126"),
    ((12, 4), "cu124"),
    ((12, 1), "cu121"),
    ((11, 8), "cu118"),
)
# What a user may ask for: auto, cpu, any CUDA tag (newer ones than CUDA_BUILDS included, so a new
# PyTorch build needs no AiKore release) or a ROCm tag.
VARIANT_RE = re.compile(r"auto|cpu|cu\d{3}|rocm\d{1,2}\.\d{1,2}(\.\d{1,2})?")
CHOICES = (AUTO, CPU, *(tag for _version, tag in CUDA_BUILDS))


def is_valid(variant: object) -> bool:
    return isinstance(variant, str) and VARIANT_RE.fullmatch(variant) is not None


def for_cuda(version: tuple[int, int] | None) -> str:
    """The newest CUDA build a driver supporting CUDA `version` runs; cpu without one."""
    if version is None:
        return CPU
    for build, tag in CUDA_BUILDS:
        if build <= version:
            return tag
    return CPU


def resolve(variant: str, cuda_version: Callable[[], tuple[int, int] | None] | None = None) -> str:
    """`auto` -> a concrete variant (asks the driver); anything else is returned as is."""
    if variant != AUTO and variant:
        return variant
    if cuda_version is None:
        from instances.gpus import cuda_driver_version as cuda_version
    return for_cuda(cuda_version())


def index_url(variant: str) -> str:
    """The wheel index of a concrete variant: torch, torchvision and torchaudio all come from it."""
    if not variant or variant == AUTO or not is_valid(variant):
        raise ValueError(f"no wheel index for torch variant {variant!r}")
    return f"{settings.AIKORE_TORCH_INDEX_BASE}/{variant}"
