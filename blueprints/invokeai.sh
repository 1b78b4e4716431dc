#!/usr/bin/env bash
# aikore.name: InvokeAI
# aikore.category: Image
# aikore.description: Invoke: a polished studio for image generation and editing (canvas, layers, workflows, gallery) for SD 1.5, SDXL, Flux and more.
# aikore.vram: 8 GB (SD 1.5 from 4 GB; SDXL 8 GB; Flux 12 GB or more)
# aikore.homepage: https://github.com/invoke-ai/InvokeAI
# aikore.downloads: nothing at start; models only when you install them in its Model Manager
# aikore.git_ref: 6.14.2
# aikore.python: 3.12
# aikore.torch: yes
# aikore.proxy: strip
# aikore.ready: http /api/v1/app/version
# aikore.ready_timeout: 600
#
# Installed from PyPI: the instance's "git ref" is the invokeai version (6.14.2 by default). Its
# root folder (invokeai.yaml, databases, its own models folder) is the instance's app/ folder.
# Settings come from INVOKEAI_* variables (they win over invokeai.yaml): 127.0.0.1 and the
# instance's port; outputs to the instance's output folder; HTTP compression off (its gzip breaks
# socket.io behind a proxy: live updates fail otherwise). It works under the stripped prefix. If its
# port is taken it silently moves to another one, so the start fails early instead. InvokeAI keeps
# its models in its own folder and database: add the shared ones with Model Manager -> Add Models ->
# Scan Folder on the folders printed below, leaving "In-place install" on (nothing is copied).
# Checked against the invokeai 6.14.2 wheel (frontend/cli/arg_parser.py, app/services/config).
set -euo pipefail
# shellcheck source=functions.sh
source "$AIKORE_HOME/blueprints/functions.sh"

VERSION="${AIKORE_GIT_REF:-6.14.2}"

install() {
    aikore_env_create
    aikore_install_torch
    aikore_pip_install "invokeai==$VERSION"
}
aikore_install install

mkdir -p -- "$AIKORE_APP_DIR"
INVOKEAI_HOST=127.0.0.1
INVOKEAI_PORT="$WEBUI_PORT"
INVOKEAI_OUTPUTS_DIR="$(aikore_output_dir)"
INVOKEAI_HTTP_COMPRESSION_LEVEL=0
export INVOKEAI_HOST INVOKEAI_PORT INVOKEAI_OUTPUTS_DIR INVOKEAI_HTTP_COMPRESSION_LEVEL
aikore_hf_cache
aikore_log "shared models: add them in Model Manager -> Scan Folder (in place): $(aikore_models_dir checkpoints), $(aikore_models_dir diffusion_models), $(aikore_models_dir loras), $(aikore_models_dir vae)"
aikore_port_free
aikore_launch_args

cd "$AIKORE_APP_DIR"
aikore_exec "$AIKORE_ENV_DIR/bin/invokeai-web" --root "$AIKORE_APP_DIR" "${AIKORE_ARGS[@]}"
