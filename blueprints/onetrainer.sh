#!/usr/bin/env bash
# aikore.name: OneTrainer
# aikore.category: Training
# aikore.description: OneTrainer: a desktop program (Qt) to train LoRAs and fine-tune SD 1.5, SDXL, SD3, Flux and more; it runs on the instance's own desktop, shown in the View tab.
# aikore.vram: 12 GB (SD 1.5 LoRA from 8 GB; SDXL and Flux 16-24 GB)
# aikore.homepage: https://github.com/Nerogar/OneTrainer
# aikore.downloads: nothing at start; a training downloads its base model from Hugging Face into the shared cache
# aikore.requires: Qt's X11 libraries (Debian: libgl1 libegl1 libxkbcommon-x11-0 libxcb-cursor0 libdbus-1-3)
# aikore.git: https://github.com/Nerogar/OneTrainer
# aikore.git_ref: 23df3832e8f213d64c337e39f9365ba46e99fed0
# aikore.python: 3.12
# aikore.torch: yes
# aikore.desktop: program
# aikore.ready: window
# aikore.ready_timeout: 600
#
# OneTrainer has no web page: its UI (scripts/train_ui_qt.py, PySide6) is a window on the instance's
# desktop ($DISPLAY, persistent mode: Xvnc and openbox, no browser), shown with noVNC in the View
# tab, so a training goes on with the laptop closed. It has no releases: the ref is master's commit
# of 2026-08-19. Its own launch scripts (start-ui.sh, lib.include.sh) manage a conda or venv
# environment and reinstall requirements with an eager upgrade that would replace the instance's
# torch; this blueprint installs requirements-global.txt on top of AiKore's torch build instead
# (requirements-cuda.txt only pins torch, torchvision, onnxruntime-gpu and bitsandbytes for CUDA 13).
# Launch arguments reach Qt (e.g. -style Fusion); the UI takes no others. Base models download from
# Hugging Face into the shared cache; training configs and presets live in its folder.
# Checked against scripts/train_ui_qt.py, start-ui.sh, lib.include.sh and requirements*.txt (master @ 23df3832).
set -euo pipefail
# shellcheck source=functions.sh
source "$AIKORE_HOME/blueprints/functions.sh"

install() {
    # PySide6's wheels bring Qt itself, not the system libraries its X11 (xcb) platform loads.
    aikore_step "checking Qt's X11 libraries"
    local lib missing=()
    for lib in libGL.so.1 libEGL.so.1 libxkbcommon-x11.so.0 libxcb-cursor.so.0 libdbus-1.so.3; do
        /sbin/ldconfig -p 2>/dev/null | grep -q "$lib" || missing+=("$lib")
    done
    (( ${#missing[@]} == 0 )) || aikore_die "Qt needs ${missing[*]}: install the Debian packages libgl1 libegl1 libxkbcommon-x11-0 libxcb-cursor0 libdbus-1-3 (make run does)"
    aikore_git_sync "$AIKORE_GIT_URL" "$AIKORE_APP_DIR" "$AIKORE_GIT_REF"
    aikore_env_create
    aikore_install_torch
    aikore_pip_install -r "$AIKORE_APP_DIR/requirements-global.txt"
}
aikore_install install requirements-global.txt

aikore_hf_cache
aikore_launch_args
[[ -n "${DISPLAY:-}" ]] || aikore_die "OneTrainer is a desktop program: it needs the instance's desktop (DISPLAY is not set)"
# Qt on the desktop's X server; no accessibility bus to wait for.
export QT_QPA_PLATFORM=xcb NO_AT_BRIDGE=1
aikore_log "OneTrainer opens on the instance's desktop ($DISPLAY): View tab > Desktop"

cd "$AIKORE_APP_DIR"
aikore_exec "$AIKORE_ENV_DIR/bin/python" scripts/train_ui_qt.py "${AIKORE_ARGS[@]}"
