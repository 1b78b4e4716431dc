#!/usr/bin/env bash
# aikore.name: FluxGym
# aikore.category: Training
# aikore.description: FluxGym: a simple web UI to train Flux LoRAs on low VRAM, on top of Kohya's sd-scripts.
# aikore.vram: 12 GB (20 GB and 16 GB presets too)
# aikore.homepage: https://github.com/cocktailpeanut/fluxgym
# aikore.downloads: nothing at start; the first training downloads its base model (flux-dev ~23 GB), the T5-XXL (~9.8 GB) and CLIP-L text encoders and the VAE into the shared models folder
# aikore.git: https://github.com/cocktailpeanut/fluxgym
# aikore.git_ref: 678add2c6d27c5d817e9ae2fbd1602bb34f33165
# aikore.python: 3.11
# aikore.torch: yes
# aikore.proxy: strip
# aikore.ready: http /
# aikore.ready_timeout: 600
#
# FluxGym has no releases: the ref is main's commit of 2026-03-30. It needs Kohya's sd-scripts in
# its folder (sd-scripts/): FluxGym's README clones the sd3 branch, which was merged into main at
# v0.10 and is now a development branch; SD_SCRIPTS_REF pins v0.10.1, which the sd3 branch contains.
# FluxGym takes no command-line arguments (Gradio's environment variables only: 127.0.0.1, the
# instance's port, GRADIO_ROOT_PATH for the prefix), so launch arguments are ignored. Models:
# models/unet, models/clip and models/vae in its folder link to the shared unet, clip and vae
# folders (FluxGym downloads there, and ComfyUI sees them); outputs/ (each LoRA's folder: dataset,
# train script, .safetensors, samples) links to the instance's output folder.
# Checked against app.py, requirements.txt, models.yaml (main @ 678add2c) and sd-scripts v0.10.1.
set -euo pipefail
# shellcheck source=functions.sh
source "$AIKORE_HOME/blueprints/functions.sh"

SD_SCRIPTS_URL="https://github.com/kohya-ss/sd-scripts"
SD_SCRIPTS_REF="v0.10.1"

install() {
    aikore_git_sync "$AIKORE_GIT_URL" "$AIKORE_APP_DIR" "$AIKORE_GIT_REF"
    aikore_git_sync "$SD_SCRIPTS_URL" "$AIKORE_APP_DIR/sd-scripts" "$SD_SCRIPTS_REF"
    aikore_git_exclude "$AIKORE_APP_DIR/sd-scripts"
    aikore_env_create
    aikore_install_torch
    # sd-scripts' requirements end with `-e .`: they are read from its folder.
    (cd "$AIKORE_APP_DIR/sd-scripts" && aikore_pip_install -r requirements.txt)
    aikore_pip_install -r "$AIKORE_APP_DIR/requirements.txt"
}
aikore_install install requirements.txt sd-scripts/requirements.txt

aikore_link_models unet "$AIKORE_APP_DIR/models/unet"
aikore_link_models clip "$AIKORE_APP_DIR/models/clip"
aikore_link_models vae "$AIKORE_APP_DIR/models/vae"
aikore_link_outputs "$AIKORE_APP_DIR/outputs"
aikore_hf_cache
aikore_launch_args
if (( ${#AIKORE_ARGS[@]} )); then
    aikore_log "note: FluxGym takes no command-line arguments; ignoring: ${AIKORE_ARGS[*]}"
fi
aikore_log "FluxGym downloads nothing now; the first training fetches its base model (flux-dev ~23 GB, T5-XXL ~9.8 GB, CLIP-L ~0.25 GB, VAE ~0.3 GB) into $AIKORE_MODELS_DIR"
export GRADIO_SERVER_NAME=127.0.0.1 GRADIO_SERVER_PORT="$WEBUI_PORT"

cd "$AIKORE_APP_DIR"
aikore_exec "$AIKORE_ENV_DIR/bin/python" app.py
