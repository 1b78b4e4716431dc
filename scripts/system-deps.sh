#!/usr/bin/env bash
# Install the Debian packages AiKore needs when they are missing: nginx (the reverse proxy) and, for
# the tests, chromium (Playwright drives it). As root it uses apt-get; otherwise it says what to run.
set -euo pipefail

mode="${1:-run}"
need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v node >/dev/null 2>&1 || need+=(nodejs npm)
if [ "$mode" = test ]; then
    command -v chromium >/dev/null 2>&1 || need+=(chromium)
    command -v Xvnc >/dev/null 2>&1 || true
fi
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing Debian packages: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    # The Debian package enables a system nginx on port 80; AiKore runs its own under supervisord.
    if command -v systemctl >/dev/null 2>&1; then systemctl disable --now nginx >/dev/null 2>&1 || true; fi
else
    echo "AiKore needs these Debian packages: ${need[*]}" >&2
    echo "Install them with:  sudo apt-get install -y ${need[*]}" >&2
    exit 1
fi
