#!/usr/bin/env bash
# aikore.name: SwarmUI
# aikore.category: Image
# aikore.description: SwarmUI: a fast, friendly image and video generation UI (generate tab, grids, presets) that runs ComfyUI as its backend.
# aikore.vram: 8 GB (SDXL; Flux and video models 12-24 GB)
# aikore.homepage: https://github.com/mcmonkeyprojects/SwarmUI
# aikore.downloads: install: its NuGet packages (dotnet build); first visit: its setup page installs the ComfyUI backend (a few GB of Python packages) and the models you pick
# aikore.requires: .NET 8 SDK
# aikore.git: https://github.com/mcmonkeyprojects/SwarmUI
# aikore.git_ref: 0.9.8-Beta
# aikore.proxy: strip
# aikore.ready: http /
# aikore.ready_timeout: 600
#
# SwarmUI is a .NET 8 program, built at install time with `dotnet build` (the .NET 8 SDK must be
# installed: the install fails at its first step otherwise; AiKore does not download it). It runs
# with --launch_mode none (no browser) on 127.0.0.1 and the instance's port; its pages use relative
# URLs, so the prefix is stripped. Its settings (Data/Settings.fds) are written once, before its
# first start, if missing: models from the shared folder (ComfyUI's folder names), outputs to the
# instance's output folder, and a port that never moves (it would otherwise pick the next free
# one). The first visit shows its setup page, which installs its ComfyUI backend (with its own
# Python and torch, managed by SwarmUI). When you restart it from its UI it exits with status 42,
# which AiKore treats as a crash and restarts it.
# Checked against src/Core/Program.cs (its command line), src/Core/Settings.cs, launch-linux.sh.
set -euo pipefail
# shellcheck source=functions.sh
source "$AIKORE_HOME/blueprints/functions.sh"

install() {
    aikore_require_dotnet 8
    aikore_git_sync "$AIKORE_GIT_URL" "$AIKORE_APP_DIR" "$AIKORE_GIT_REF"
    aikore_step "building SwarmUI (dotnet build)"
    (cd "$AIKORE_APP_DIR" && dotnet build src/SwarmUI.csproj --configuration Release -o ./src/bin/live_release)
    git -C "$AIKORE_APP_DIR" rev-parse HEAD > "$AIKORE_APP_DIR/src/bin/last_build"
}
aikore_install install src/SwarmUI.csproj

settings="$AIKORE_APP_DIR/Data/Settings.fds"
if [[ ! -f "$settings" ]]; then
    mkdir -p -- "$(dirname -- "$settings")"
    models="$(aikore_models_dir checkpoints)"
    models="${models%/checkpoints}"
    # FDS: "Key: value", sections indented with a tab.
    printf 'LaunchMode: none\nPaths:\n\tModelRoot: %s\n\tSDModelFolder: checkpoints\n\tSDLoraFolder: loras\n\tSDVAEFolder: vae\n\tSDEmbeddingFolder: embeddings\n\tOutputPath: %s\nNetwork:\n\tPortCanChange: false\n' \
        "$models" "$(aikore_output_dir)" > "$settings.tmp"
    mv -f -- "$settings.tmp" "$settings"
    aikore_log "wrote $settings (shared models, outputs to the instance's folder, a fixed port)"
fi
aikore_launch_args

cd "$AIKORE_APP_DIR"
aikore_exec ./src/bin/live_release/SwarmUI \
    --launch_mode none --host 127.0.0.1 --port "$WEBUI_PORT" \
    "${AIKORE_ARGS[@]}"
