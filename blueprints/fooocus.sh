#!/usr/bin/env bash
# aikore.name: Fooocus
# aikore.category: Image
# aikore.description: Fooocus: prompt-and-generate SDXL image UI in the spirit of Midjourney (styles, inpainting, image prompts); in maintenance mode since 2025.
# aikore.vram: 6 GB (4 GB works, slowly)
# aikore.homepage: https://github.com/lllyasviel/Fooocus
# aikore.downloads: first start, before its page opens: the default SDXL checkpoint juggernautXL_v8Rundiffusion (~7 GB), an offset LoRA (~50 MB) and helper models (~0.5 GB); --disable-preset-download skips the checkpoint and LoRA
# aikore.git: https://github.com/lllyasviel/Fooocus
# aikore.git_ref: v2.5.5
# aikore.python: 3.10
# aikore.torch: yes
# aikore.proxy: origin
# aikore.ready: http /
# aikore.ready_timeout: 3600
#
# Fooocus runs Gradio 3.41 without a root path: it needs an origin of its own (a public port or
# host name). launch.py, not entry_with_update.py (which resets the checkout to upstream at every
# start). Its requirements get the FastAPI/pydantic that Gradio 3 still works with. It downloads its
# default model before it starts serving (hence the long ready timeout), into the shared checkpoints
# folder: the model folders are set in its config.txt (only where you have not set them), outputs
# go to the instance's output folder (--output-path).
# Checked against ldm_patched/modules/args_parser.py, args_manager.py, launch.py, modules/config.py (v2.5.5).
set -euo pipefail
# shellcheck source=functions.sh
source "$AIKORE_HOME/blueprints/functions.sh"

install() {
    aikore_git_sync "$AIKORE_GIT_URL" "$AIKORE_APP_DIR" "$AIKORE_GIT_REF"
    aikore_env_create
    aikore_install_torch
    # Fooocus' launch.py checks its requirements with `python -m pip`.
    aikore_pip_install pip
    # Gradio 3.41 breaks with today's FastAPI and pydantic.
    aikore_pip_install -r "$AIKORE_APP_DIR/requirements_versions.txt" "fastapi==0.104.1" "pydantic<2.10"
}
aikore_install install requirements_versions.txt

aikore_json_defaults "$AIKORE_APP_DIR/config.txt" \
    "path_checkpoints[]" "$(aikore_models_dir checkpoints)" \
    "path_loras[]" "$(aikore_models_dir loras)" \
    path_embeddings "$(aikore_models_dir embeddings)" \
    path_vae "$(aikore_models_dir vae)" \
    path_vae_approx "$(aikore_models_dir vae_approx)" \
    path_upscale_models "$(aikore_models_dir upscale_models)" \
    path_controlnet "$(aikore_models_dir controlnet)" \
    path_clip_vision "$(aikore_models_dir clip_vision)"
aikore_launch_args
if [[ " ${AIKORE_ARGS[*]} " != *" --disable-preset-download "* ]]; then
    aikore_log "Fooocus downloads its default SDXL checkpoint (~7 GB), an offset LoRA (~50 MB) and helper models (~0.5 GB) before its page opens, the first time (into $AIKORE_MODELS_DIR); add --disable-preset-download to the launch arguments to skip the checkpoint"
fi
aikore_hf_cache

cd "$AIKORE_APP_DIR"
aikore_exec "$AIKORE_ENV_DIR/bin/python" launch.py \
    --listen 127.0.0.1 --port "$WEBUI_PORT" \
    --disable-in-browser --disable-analytics \
    --output-path "$(aikore_output_dir)" \
    "${AIKORE_ARGS[@]}"
