"""What this machine's GPUs are, for validating gpu_ids and choosing PyTorch wheels. Asked once per
process of the same GPU source the monitoring sampler reads (real NVML, or AIKORE_FAKE_GPUS demo
cards)."""

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


def cuda_version_of(source: object) -> tuple[int, int] | None:
    """The newest CUDA version the driver behind `source` supports, e.g. (12, 8); None without a
    driver, without a GPU, or when the source can't tell."""
    try:
        source.init()
        try:
            if not source.device_count():
                return None
            raw = int(source.cuda_driver_version())  # NVML's encoding: 1000 * major + 10 * minor
        finally:
            source.shutdown()
    except Exception:  # no driver, no library, not supported: no CUDA to match
        return None
    if raw <= 0:
        return None
    return raw // 1000, (raw % 1000) // 10


@functools.lru_cache(maxsize=1)
def cuda_driver_version() -> tuple[int, int] | None:
    from monitoring.collectors import default_gpu_source

    return cuda_version_of(default_gpu_source())
