#!/usr/bin/env bash
# aikore.name: ComfyUI
# aikore.category: Image
# aikore.description: Node-based UI for diffusion models (SD 1.5/SDXL/SD3, Flux, Wan, Qwen, ...) with ComfyUI-Manager to install custom nodes and models.
# aikore.vram: 8 GB (runs from 4 GB with --lowvram, on CPU with --cpu)
# aikore.homepage: https://github.com/Comfy-Org/ComfyUI
# aikore.downloads: nothing at start; models only when you ask for them (ComfyUI-Manager)
# aikore.git: https://github.com/Comfy-Org/ComfyUI
# aikore.git_ref: v0.38.1
# aikore.python: 3.12
# aikore.torch: yes
# aikore.proxy: strip
# aikore.ready: http /system_stats
# aikore.ready_timeout: 600
#
# ComfyUI's front end derives its URLs from the page's address, so it works under the stripped
# /instance/<slug>/ prefix. It listens on 127.0.0.1 (a bare --listen would mean every interface).
# Shared models come from extra_model_paths.yaml (written at every start, outside the checkout),
# images go to the instance's output folder; input/, user/ (workflows) and custom_nodes/ stay in
# the checkout. ComfyUI-Manager is the pip package named by manager_requirements.txt, turned on
# with --enable-manager; refs older than that (no manager_requirements.txt) get the Manager v3 clone
# in custom_nodes/ instead.
# Checked against ComfyUI's comfy/cli_args.py and README (v0.38.x, Comfy-Org/ComfyUI).
set -euo pipefail
# shellcheck source=functions.sh
source "$AIKORE_HOME/blueprints/functions.sh"

MANAGER_V3_URL="https://github.com/Comfy-Org/ComfyUI-Manager"

install() {
    aikore_git_sync "$AIKORE_GIT_URL" "$AIKORE_APP_DIR" "$AIKORE_GIT_REF"
    aikore_env_create
    aikore_install_torch
    aikore_pip_install -r "$AIKORE_APP_DIR/requirements.txt"
    if [[ -f "$AIKORE_APP_DIR/manager_requirements.txt" ]]; then
        aikore_pip_install -r "$AIKORE_APP_DIR/manager_requirements.txt"
    else
        aikore_git_sync "$MANAGER_V3_URL" "$AIKORE_APP_DIR/custom_nodes/comfyui-manager" main
        aikore_pip_install -r "$AIKORE_APP_DIR/custom_nodes/comfyui-manager/requirements.txt"
    fi
}
aikore_install install requirements.txt manager_requirements.txt

aikore_comfyui_model_paths "$INSTANCE_CONF_DIR/extra_model_paths.yaml"
output_dir="$(aikore_output_dir)"
manager=()
[[ -f "$AIKORE_APP_DIR/manager_requirements.txt" ]] && manager=(--enable-manager)
aikore_launch_args

cd "$AIKORE_APP_DIR"
aikore_exec "$AIKORE_ENV_DIR/bin/python" main.py \
    --listen 127.0.0.1 --port "$WEBUI_PORT" \
    --extra-model-paths-config "$INSTANCE_CONF_DIR/extra_model_paths.yaml" \
    --output-directory "$output_dir" \
    "${manager[@]}" "${AIKORE_ARGS[@]}"
