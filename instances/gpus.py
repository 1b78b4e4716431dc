"""How many GPUs this machine has, for validating gpu_ids. Asked of NVML once per process."""

from __future__ import annotations

import functools
import os


@functools.lru_cache(maxsize=1)
def detected_gpu_count() -> int | None:
    """The NVML device count, or None when there is no GPU/driver (then ids are only range-checked).
    AIKORE_FAKE_GPUS=N stands in for N GPUs on machines without one (tests, demos)."""
    fake = os.environ.get("AIKORE_FAKE_GPUS", "").strip()
    if fake.isdigit():
        return int(fake) or None
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetCount()) or None
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no driver, no library, no permission: all mean "unknown"
        return None
