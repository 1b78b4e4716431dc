#!/usr/bin/env bash
# aikore.name: IOPaint
# aikore.category: Tools
# aikore.description: IOPaint (ex Lama Cleaner): erase objects, inpaint and outpaint images with LaMa, MAT or Stable Diffusion inpainting models, plus background removal and upscaling plugins.
# aikore.vram: 2 GB (LaMa; 6-8 GB for the Stable Diffusion models; runs on CPU too)
# aikore.homepage: https://github.com/Sanster/IOPaint
# aikore.downloads: first start, before its page opens: the default LaMa model big-lama.pt (~200 MB); other models when you pick them
# aikore.git_ref: 1.6.0
# aikore.python: 3.10
# aikore.torch: yes
# aikore.proxy: origin
# aikore.ready: http /api/v1/server-config
# aikore.ready_timeout: 900
#
# Installed from PyPI: the instance's "git ref" is the iopaint version (1.6.0 by default). Its page
# loads its scripts from /assets/... at the root: it needs an origin of its own. Models download
# into a folder shared by IOPaint instances ($AIKORE_MODELS_DIR/iopaint, --model-dir); saved images
# go to the instance's output folder. It runs on the GPU (--device cuda) unless the instance uses
# CPU wheels. Launch arguments are `iopaint start` options, e.g. --model mat.
# Checked against the iopaint 1.6.0 wheel (iopaint/cli.py `start`).
set -euo pipefail
# shellcheck source=functions.sh
source "$AIKORE_HOME/blueprints/functions.sh"

VERSION="${AIKORE_GIT_REF:-1.6.0}"

install() {
    aikore_env_create
    aikore_install_torch
    aikore_pip_install "iopaint==$VERSION"
}
aikore_install install

device=cuda
[[ "${AIKORE_TORCH_VARIANT:-}" == cpu ]] && device=cpu
model_dir="$(aikore_models_dir iopaint)"
if [[ ! -e "$model_dir/torch/hub/checkpoints/big-lama.pt" ]]; then
    aikore_log "IOPaint downloads its default model big-lama.pt (~200 MB) into $model_dir before its page opens (unless you chose another --model)"
fi
aikore_launch_args

mkdir -p -- "$AIKORE_APP_DIR"
cd "$AIKORE_APP_DIR"
aikore_exec "$AIKORE_ENV_DIR/bin/iopaint" start \
    --host 127.0.0.1 --port "$WEBUI_PORT" \
    --device "$device" \
    --model-dir "$model_dir" \
    --output-dir "$(aikore_output_dir)" \
    "${AIKORE_ARGS[@]}"
