"""How many GPUs this machine has, for validating gpu_ids. Asked once per process of the same GPU
source the monitoring sampler reads (real NVML, or AIKORE_FAKE_GPUS demo cards)."""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=1)
def detected_gpu_count() -> int | None:
    """The device count, or None when there is no GPU/driver (then ids are only range-checked)."""
    from monitoring.collectors import default_gpu_source

    source = default_gpu_source()
    try:
        source.init()
        try:
            return int(source.device_count()) or None
        finally:
            source.shutdown()
    except Exception:  # no driver, no library, no permission: all mean "unknown"
        return None
