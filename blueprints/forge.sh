#!/usr/bin/env bash
# aikore.name: SD WebUI Forge
# aikore.category: Image
# aikore.description: Stable Diffusion WebUI Forge: the AUTOMATIC1111 interface on a faster, leaner backend (SD 1.5, SDXL, Flux), with its extensions.
# aikore.vram: 6 GB (SD 1.5 from 4 GB; Flux 12 GB or more)
# aikore.homepage: https://github.com/lllyasviel/stable-diffusion-webui-forge
# aikore.downloads: first start: its helper repositories (assets, huggingface_guess, BLIP; a few MB) and the CLIP packages; no checkpoint
# aikore.git: https://github.com/lllyasviel/stable-diffusion-webui-forge
# aikore.git_ref: dfdcbab685e57677014f05a3309b48cc87383167
# aikore.python: 3.10
# aikore.torch: yes
# aikore.proxy: strip
# aikore.ready: http /
# aikore.ready_timeout: 1800
#
# Forge has no release tags: the ref is main's last commit (2025-06-26). Its launch.py prepares its
# environment at every start (clones a few helper repositories, installs the CLIP packages and
# extension requirements with the environment's own pip); the requirements and AiKore's torch are
# installed first, so it finds them and never replaces torch. --subpath is Gradio's root_path,
# given without its leading slash (Forge adds it). Models come from the shared folders through its
# dir flags; outputs/ in the checkout links to the instance's output folder (Gradio serves what
# lies under its working directory). Forge turns the Extensions tab's installs off when it serves a
# --server-name: --enable-insecure-extension-access turns them back on (only signed-in AiKore users
# reach the app, and they may already edit this script). On CPU wheels, --skip-torch-cuda-test.
# Checked against modules/cmd_args.py, backend/args.py, modules/launch_utils.py (main @ dfdcbab6).
set -euo pipefail
# shellcheck source=functions.sh
source "$AIKORE_HOME/blueprints/functions.sh"

install() {
    aikore_git_sync "$AIKORE_GIT_URL" "$AIKORE_APP_DIR" "$AIKORE_GIT_REF"
    aikore_env_create
    aikore_install_torch
    # Forge's own installers (launch_utils.run_pip, extensions' install.py) call `python -m pip`.
    aikore_pip_install pip
    aikore_pip_install -r "$AIKORE_APP_DIR/requirements_versions.txt"
}
aikore_install install requirements_versions.txt

# A stray COMMANDLINE_ARGS would be appended to the command line by Forge itself.
unset COMMANDLINE_ARGS
aikore_link_outputs "$AIKORE_APP_DIR/outputs"
subpath="${SUBFOLDER#/}"  # Forge wants "instance/<slug>": root_path is "/" + it
extra=()
[[ "${AIKORE_TORCH_VARIANT:-}" == cpu ]] && extra+=(--skip-torch-cuda-test)
aikore_launch_args

cd "$AIKORE_APP_DIR"
aikore_exec "$AIKORE_ENV_DIR/bin/python" launch.py \
    --server-name 127.0.0.1 --port "$WEBUI_PORT" \
    --subpath "${subpath%/}" \
    --enable-insecure-extension-access \
    --ckpt-dir "$(aikore_models_dir checkpoints)" \
    --vae-dir "$(aikore_models_dir vae)" \
    --text-encoder-dir "$(aikore_models_dir text_encoders)" \
    --lora-dir "$(aikore_models_dir loras)" \
    --embeddings-dir "$(aikore_models_dir embeddings)" \
    --hypernetwork-dir "$(aikore_models_dir hypernetworks)" \
    --controlnet-dir "$(aikore_models_dir controlnet)" \
    --esrgan-models-path "$(aikore_models_dir upscale_models)" \
    "${extra[@]}" "${AIKORE_ARGS[@]}"
