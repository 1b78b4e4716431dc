"""The image's HEALTHCHECK: exit 0 when AiKore's /api/health, on the port AiKore is configured with
(AIKORE_PORT), says "ok" (not just any HTTP 200: a degraded stack answers 200 too). Standard library
only; never through a proxy from the environment."""

from __future__ import annotations

import json
import os
import sys
import urllib.request


def health_url() -> str:
    port = os.environ.get("AIKORE_PORT") or "9000"
    bind = (os.environ.get("AIKORE_BIND") or "127.0.0.1").strip("[]")
    if bind in ("0.0.0.0", "*", "localhost", ""):
        host = "127.0.0.1"
    elif bind == "::":
        host = "[::1]"
    else:
        host = f"[{bind}]" if ":" in bind else bind
    return f"http://{host}:{port}/api/health"


def main() -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(health_url(), timeout=8) as response:
            health = json.load(response)
    except (OSError, ValueError) as exc:
        print(f"AiKore is not answering at {health_url()}: {exc}")
        return 1
    if health.get("status") != "ok":
        # Anonymous callers get problem codes (db, nginx_down, disk_low, ...); the reasons in words are
        # for signed-in users (an older AiKore gave them to everyone).
        problems = health.get("codes") or health.get("reasons") or []
        print(f"AiKore is {health.get('status')}: {', '.join(map(str, problems)) or 'no details'}")
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
