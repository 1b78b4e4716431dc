#!/usr/bin/env bash
# aikore.name: SD.Next
# aikore.category: Image
# aikore.description: SD.Next: an all-in-one image and video generation UI on diffusers (SD 1.5/SDXL/SD3, Flux, Chroma, Wan, ...), with many backends and extensions.
# aikore.vram: 8 GB (4 GB with --lowvram; Flux 12 GB or more)
# aikore.homepage: https://github.com/vladmandic/sdnext
# aikore.downloads: first start: its built-in extensions (git submodules) and the Python packages it checks; models only when you pick them
# aikore.git: https://github.com/vladmandic/sdnext
# aikore.git_ref: 2026-07-14
# aikore.python: 3.12
# aikore.torch: yes
# aikore.proxy: keep
# aikore.ready: http /
# aikore.ready_timeout: 1800
#
# SD.Next mounts itself under --subpath and redirects every other path there, so the proxy keeps
# the /instance/<slug>/ prefix (the readiness check asks /instance/<slug>/ too). Its launch.py checks
# and installs its requirements at every start (with the environment's own pip); they are installed
# first so it finds them, and --skip-torch keeps AiKore's torch, --skip-git its checkout (AiKore
# updates it). Shared models: its dir flags, and the checkpoint, UNet, text encoder and Hugging Face
# folders in its settings (config.json, set only where the key is missing: your changes win).
# Outputs: outputs/ in the checkout links to the instance's output folder. Port 7860 is refused:
# SD.Next hands it to Gradio as "unset" and may end up elsewhere.
# Checked against modules/cmd_args.py and installer.py (master @ 058a7f0c, tag 2026-07-14).
set -euo pipefail
# shellcheck source=functions.sh
source "$AIKORE_HOME/blueprints/functions.sh"

install() {
    aikore_git_sync "$AIKORE_GIT_URL" "$AIKORE_APP_DIR" "$AIKORE_GIT_REF"
    aikore_git_submodules "$AIKORE_APP_DIR"
    aikore_env_create
    aikore_install_torch
    # SD.Next's installer (installer.py) calls `python -m pip`.
    aikore_pip_install pip
    aikore_pip_install -r "$AIKORE_APP_DIR/requirements.txt"
}
aikore_install install requirements.txt

[[ "$WEBUI_PORT" != 7860 ]] || aikore_die "SD.Next can't use port 7860 (it treats it as 'no port'): give this instance another port"
aikore_link_outputs "$AIKORE_APP_DIR/outputs"
aikore_json_defaults "$AIKORE_APP_DIR/config.json" \
    ckpt_dir "$(aikore_models_dir checkpoints)" \
    unet_dir "$(aikore_models_dir diffusion_models)" \
    te_dir "$(aikore_models_dir text_encoders)" \
    hfcache_dir "$(aikore_models_dir huggingface)"
aikore_launch_args

cd "$AIKORE_APP_DIR"
aikore_exec "$AIKORE_ENV_DIR/bin/python" launch.py \
    --server-name 127.0.0.1 --port "$WEBUI_PORT" \
    --subpath "${SUBFOLDER%/}" \
    --skip-torch --skip-git --insecure \
    --vae-dir "$(aikore_models_dir vae)" \
    --lora-dir "$(aikore_models_dir loras)" \
    --embeddings-dir "$(aikore_models_dir embeddings)" \
    --hypernetwork-dir "$(aikore_models_dir hypernetworks)" \
    "${AIKORE_ARGS[@]}"
