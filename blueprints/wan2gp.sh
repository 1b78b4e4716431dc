#!/usr/bin/env bash
# aikore.name: Wan2GP
# aikore.category: Video
# aikore.description: WanGP: video (and image/audio) generation for the GPU poor: Wan 2.x, Hunyuan Video, LTX Video, Flux and more, with memory profiles that fit small cards.
# aikore.vram: 8 GB (Wan 1.3B from 6 GB; 14B models 12-24 GB)
# aikore.homepage: https://github.com/deepbeepmeep/Wan2GP
# aikore.downloads: nothing at start (an ffmpeg build from GitHub if ffmpeg is not installed); each model downloads when first used (several to tens of GB)
# aikore.git: https://github.com/deepbeepmeep/Wan2GP
# aikore.git_ref: 8681e9f777f9f847f74a0bdefd13d5b9a6efe12d
# aikore.python: 3.11
# aikore.torch: yes
# aikore.proxy: strip
# aikore.ready: http /
# aikore.ready_timeout: 900
#
# No releases: the ref is main's commit of 2026-08-21 (WanGP 12.60). Its README installs torch
# 2.10.0 (its requirements' torchcodec matches it): that trio comes from the instance's torch variant
# index. --server-name 127.0.0.1 (--listen would mean every interface; its default is "localhost");
# the prefix through GRADIO_ROOT_PATH. LoRAs: --loras points at the shared loras folder (WanGP keeps
# one subfolder per model family there, which ComfyUI lists too); outputs/ in its folder (its default
# save path) links to the instance's output folder; its checkpoints stay in its ckpts/ folder.
# Checked against shared/cli_args.py, wgp.py and requirements.txt (main @ 8681e9f7).
set -euo pipefail
# shellcheck source=functions.sh
source "$AIKORE_HOME/blueprints/functions.sh"

install() {
    aikore_git_sync "$AIKORE_GIT_URL" "$AIKORE_APP_DIR" "$AIKORE_GIT_REF"
    aikore_env_create
    aikore_install_torch "torch==2.10.0" "torchvision==0.25.0" "torchaudio==2.10.0"
    aikore_pip_install -r "$AIKORE_APP_DIR/requirements.txt"
}
aikore_install install requirements.txt

aikore_link_outputs "$AIKORE_APP_DIR/outputs"
if ! command -v ffmpeg >/dev/null 2>&1 || ! command -v ffprobe >/dev/null 2>&1; then
    aikore_log "ffmpeg/ffprobe are not installed: Wan2GP downloads an ffmpeg build (~100 MB) from GitHub at start; install Debian's ffmpeg to avoid it"
fi
aikore_hf_cache
aikore_launch_args

cd "$AIKORE_APP_DIR"
aikore_exec "$AIKORE_ENV_DIR/bin/python" wgp.py \
    --server-name 127.0.0.1 --server-port "$WEBUI_PORT" \
    --loras "$(aikore_models_dir loras)" \
    "${AIKORE_ARGS[@]}"
