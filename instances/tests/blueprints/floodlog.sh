#!/usr/bin/env bash
# aikore.name: Flood log (test)
# aikore.category: Testing
# aikore.kind: test
# aikore.description: Prints the numbers 1..$FLOOD_COUNT (default 100000), one a line like seq, as fast as it can, then idles.
# aikore.ready: none
set -euo pipefail

exec "${AIKORE_PYTHON:-python3}" -c '
import os, sys, time
count = int(os.environ.get("FLOOD_COUNT", "100000"))
chunk = 10000
for start in range(1, count + 1, chunk):
    sys.stdout.write("".join(f"{n}\n" for n in range(start, min(start + chunk, count + 1))))
sys.stdout.flush()
while True:
    time.sleep(3600)
'
