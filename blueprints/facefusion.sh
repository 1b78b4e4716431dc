#!/usr/bin/env bash
# aikore.name: FaceFusion
# aikore.category: Video
# aikore.description: FaceFusion: face swapping, enhancement, lip sync and frame processing for images and videos (ONNX Runtime, no PyTorch).
# aikore.vram: 4 GB (runs on CPU too, slowly)
# aikore.homepage: https://github.com/facefusion/facefusion
# aikore.downloads: first start, before its page opens: the models of its default processors (face swapper, detector, landmarker, masks; about 1 GB) into a folder shared by FaceFusion instances
# aikore.requires: ffmpeg (with ffprobe) and curl
# aikore.git: https://github.com/facefusion/facefusion
# aikore.git_ref: 3.8.1
# aikore.python: 3.12
# aikore.proxy: strip
# aikore.ready: http /
# aikore.ready_timeout: 1800
#
# FaceFusion needs the programs curl, ffmpeg and ffprobe (the install fails at its first step,
# naming them, when they are missing). Its requirements are installed directly (its install.py
# wants conda) with the ONNX Runtime build that matches the instance's "PyTorch build" field:
# onnxruntime-gpu for CUDA 13 or 12, the CPU build otherwise; with a CUDA build it runs on
# --execution-providers cuda. `python facefusion.py run` takes Gradio's environment variables for
# the address and port, GRADIO_ROOT_PATH for the prefix. Its models (.assets/models in its folder)
# link to $AIKORE_MODELS_DIR/facefusion; outputs/ in its folder links to the instance's output
# folder and is its default output path. Launch arguments are `facefusion.py run` options.
# Checked against facefusion/program.py, facefusion/installer.py, requirements.txt (tag 3.8.1).
set -euo pipefail
# shellcheck source=functions.sh
source "$AIKORE_HOME/blueprints/functions.sh"

case "${AIKORE_TORCH_VARIANT:-cpu}" in
    cu13*) onnxruntime="onnxruntime-gpu==1.28.0" providers=(--execution-providers cuda) ;;
    cu12*) onnxruntime="onnxruntime-gpu==1.24.4" providers=(--execution-providers cuda) ;;
    *) onnxruntime="onnxruntime==1.28.0" providers=() ;;
esac

install() {
    aikore_require_commands curl ffmpeg ffprobe
    aikore_git_sync "$AIKORE_GIT_URL" "$AIKORE_APP_DIR" "$AIKORE_GIT_REF"
    aikore_env_create
    # Every requirement but ONNX Runtime, which comes in the build for this machine (one build only:
    # they install the same module).
    aikore_pip_uninstall onnxruntime onnxruntime-gpu
    grep -viE '^[[:space:]]*onnxruntime([^-_[:alnum:]]|$)' "$AIKORE_APP_DIR/requirements.txt" \
        > "$AIKORE_ENV_DIR/aikore-requirements.txt" || true
    aikore_pip_install -r "$AIKORE_ENV_DIR/aikore-requirements.txt" "$onnxruntime"
}
aikore_install install requirements.txt

aikore_link_models facefusion "$AIKORE_APP_DIR/.assets/models"
aikore_link_outputs "$AIKORE_APP_DIR/outputs"
aikore_log "FaceFusion downloads the models of its processors (about 1 GB for the defaults) into $AIKORE_MODELS_DIR/facefusion before its page opens, the first time"
export GRADIO_SERVER_NAME=127.0.0.1 GRADIO_SERVER_PORT="$WEBUI_PORT"
aikore_launch_args

cd "$AIKORE_APP_DIR"
aikore_exec "$AIKORE_ENV_DIR/bin/python" facefusion.py run \
    --output-path "$AIKORE_APP_DIR/outputs" \
    "${providers[@]}" "${AIKORE_ARGS[@]}"
