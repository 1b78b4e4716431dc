"""TZ (as the container's users set it) is the time zone of AiKore's own processes: Django would
otherwise set every one of them to UTC (its TIME_ZONE), whatever TZ says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROBE = ("import time, django; django.setup(); from django.conf import settings; "
         "print(settings.TIME_ZONE, time.strftime('%Z'))")


@pytest.mark.parametrize(("tz", "expected"), [
    ("Europe/Paris", {"Europe/Paris CET", "Europe/Paris CEST"}),
    ("Nowhere/Bogus", {"UTC UTC"}),  # not a zone of the system: UTC, as before
    ("../../etc/passwd", {"UTC UTC"}),
])
def test_django_processes_keep_the_time_zone_tz_names(tmp_path, tz: str, expected: set[str]) -> None:
    env = {**os.environ, "TZ": tz, "AIKORE_DATA_DIR": str(tmp_path / "data"),
           "DJANGO_SETTINGS_MODULE": "aikore_site.settings"}
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() in expected
