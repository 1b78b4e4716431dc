#!/usr/bin/env bash
# Install the Debian packages AiKore needs when they are missing: nginx (the reverse proxy), git (apps'
# code), tmux (keeps each instance's browser terminal alive between connections), the desktop of
# persistent mode (TigerVNC's Xvnc, openbox, chromium as the kiosk browser, x11-utils' xprop; the
# Qt libraries desktop programs such as OneTrainer load) and, for the tests,
# chromium (Playwright drives it), redis-server (the AIKORE_REDIS_URL path is tested against a
# throwaway redis-server the test starts itself), shellcheck (every blueprint is linted) and, as root,
# podman, runc, mmdebstrap and iptables (podman's port forwarding): the Docker image is built and run
# by aikore_site/tests/test_docker_image.py, rootful (skipped, saying why, without root). As root it
# uses apt-get; otherwise it says what to run.
set -euo pipefail

mode="${1:-run}"
need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v node >/dev/null 2>&1 || need+=(nodejs npm)
# Blueprints clone their apps' code (blueprints/functions.sh: aikore_git_sync).
command -v git >/dev/null 2>&1 || need+=(git)
command -v tmux >/dev/null 2>&1 || need+=(tmux)
# Persistent mode (instances/desktop.py): a desktop per instance, its kiosk browser, the readiness
# check of desktop programs (xprop), and what Qt's xcb platform needs.
command -v Xvnc >/dev/null 2>&1 || need+=(tigervnc-standalone-server)
command -v openbox >/dev/null 2>&1 || need+=(openbox)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v xprop >/dev/null 2>&1 || need+=(x11-utils)
if command -v dpkg-query >/dev/null 2>&1; then
    for lib in libgl1 libegl1 libxkbcommon-x11-0 libxcb-cursor0 libdbus-1-3 fonts-dejavu-core; do  # (and a font for chromium)
        dpkg-query -W -f='${Status}' "$lib" 2>/dev/null | grep -q "ok installed" || need+=("$lib")
    done
fi
if [ "$mode" = test ]; then
    command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || need+=(redis-server)
    command -v shellcheck >/dev/null 2>&1 || need+=(shellcheck)
    # The desktop tests read the desktop's clipboard with xclip.
    command -v xclip >/dev/null 2>&1 || need+=(xclip)
    if [ "$(id -u)" -eq 0 ]; then
        for tool in podman runc mmdebstrap; do
            command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
        done
        command -v iptables >/dev/null 2>&1 || [ -x /usr/sbin/iptables ] || need+=(iptables)
    fi
fi
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing Debian packages: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    # The Debian packages enable a system nginx on port 80 and a system redis on 6379; AiKore runs
    # its own nginx under supervisord, and the tests start their own redis-server on a free port.
    if command -v systemctl >/dev/null 2>&1; then
        for service in nginx redis-server; do
            systemctl disable --now "$service" >/dev/null 2>&1 || true
        done
    fi
else
    echo "AiKore needs these Debian packages: ${need[*]}" >&2
    echo "Install them with:  sudo apt-get install -y ${need[*]}" >&2
    exit 1
fi
