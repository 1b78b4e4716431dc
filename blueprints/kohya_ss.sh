#!/usr/bin/env bash
# aikore.name: Kohya_ss
# aikore.category: Training
# aikore.description: Kohya's GUI: train LoRA, DreamBooth and fine-tunes for SD 1.5, SDXL, SD3 and Flux with sd-scripts, with captioning and dataset tools.
# aikore.vram: 12 GB (SD 1.5 LoRA from 8 GB; SDXL and Flux 16-24 GB)
# aikore.homepage: https://github.com/bmaltais/kohya_ss
# aikore.downloads: nothing at start; a base model named by its Hugging Face id downloads when a training uses it
# aikore.git: https://github.com/bmaltais/kohya_ss
# aikore.git_ref: v26.0.0
# aikore.python: 3.11
# aikore.torch: yes
# aikore.proxy: strip
# aikore.ready: http /
# aikore.ready_timeout: 600
#
# sd-scripts is a git submodule. requirements.txt (not requirements_linux.txt, which pins its own
# torch build) is installed on top of AiKore's torch, and --noverify stops the GUI from reinstalling
# requirements at every start. --headless hides the desktop file dialogs (it runs on a server);
# --listen takes the address; --root_path is Gradio's root path. Its folder defaults come from a
# config.toml kept in the instance folder (written once, yours to edit): base models from the shared
# checkpoints folder, trained models to the instance's output folder.
# Checked against kohya_gui.py (initialize_arg_parser) and config example.toml (v26.0.0).
set -euo pipefail
# shellcheck source=functions.sh
source "$AIKORE_HOME/blueprints/functions.sh"

install() {
    aikore_git_sync "$AIKORE_GIT_URL" "$AIKORE_APP_DIR" "$AIKORE_GIT_REF"
    aikore_git_submodules "$AIKORE_APP_DIR"
    aikore_env_create
    aikore_install_torch
    # requirements.txt ends with `-e ./sd-scripts`: read from the checkout.
    (cd "$AIKORE_APP_DIR" && aikore_pip_install -r requirements.txt)
}
aikore_install install requirements.txt sd-scripts/requirements.txt

config="$INSTANCE_CONF_DIR/kohya-config.toml"
if [[ ! -f "$config" ]]; then
    # TOML basic strings take JSON's escapes: json.dumps quotes the paths.
    "$AIKORE_ENV_DIR/bin/python" -I -c '
import json, os, sys
path, models, output = sys.argv[1:]
text = ("# Written once by AiKore (the kohya_ss blueprint); yours to edit. Keys: config example.toml.\n"
        f"[model]\nmodels_dir = {json.dumps(models)}\n\n[folders]\noutput_dir = {json.dumps(output)}\n")
with open(path + ".tmp", "w", encoding="utf-8") as fh:
    fh.write(text)
os.replace(path + ".tmp", path)
' "$config" "$(aikore_models_dir checkpoints)" "$(aikore_output_dir)"
    aikore_log "wrote $config (base models from the shared checkpoints folder, outputs to the instance's)"
fi
aikore_hf_cache
aikore_launch_args

cd "$AIKORE_APP_DIR"
aikore_exec "$AIKORE_ENV_DIR/bin/python" kohya_gui.py \
    --noverify --headless \
    --listen 127.0.0.1 --server_port "$WEBUI_PORT" \
    --root_path "${SUBFOLDER%/}" \
    --config "$config" \
    "${AIKORE_ARGS[@]}"
