#!/usr/bin/env bash
# aikore.name: Crash loop (test)
# aikore.category: Testing
# aikore.kind: test
# aikore.description: Prints "crashing" and exits with status 3 after 0.1 s, every time.
# aikore.ready: none
set -euo pipefail
echo "crashing"
sleep 0.1
exit 3
