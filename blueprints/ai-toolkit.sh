#!/usr/bin/env bash
# aikore.name: AI Toolkit
# aikore.category: Training
# aikore.description: Ostris' AI Toolkit: train LoRAs and fine-tunes for Flux, Wan, Qwen-Image, SDXL and more from a web UI with a job queue.
# aikore.vram: 24 GB (Flux LoRA; some models fit 12-16 GB with quantization)
# aikore.homepage: https://github.com/ostris/ai-toolkit
# aikore.downloads: install: the UI's npm packages and Prisma's engines; nothing at start; each training downloads its base model from Hugging Face (Flux ~24 GB)
# aikore.requires: Node.js >= 20.9 with npm
# aikore.git: https://github.com/ostris/ai-toolkit
# aikore.git_ref: 27a03a91f23eb1b757d5ec2e80ee3e129cfcc350
# aikore.python: 3.12
# aikore.torch: yes
# aikore.proxy: origin
# aikore.ready: http /
# aikore.ready_timeout: 600
#
# No releases: the ref is main's commit of 2026-08-21 (version 0.12.26). The UI is a Next.js app
# built with npm at install time (Node.js >= 20.9 must be installed: the install fails at its first
# step otherwise; AiKore does not download Node). It runs as two processes, as `npm run start`
# does but on the instance's port: the job worker (dist/cron/worker.js, in the background) and the
# front server (dist/cron/fileServer.js), which listens on every interface with no option to
# choose: blueprints/node-loopback.cjs, preloaded through NODE_OPTIONS, moves its listen (and its
# cluster workers') to 127.0.0.1. Its pages call /api/... at the root: it needs an origin of its
# own (a public port or host name). Jobs run the environment's python3 (first on PATH). The UI's
# training folder setting defaults to the instance's output folder (set only if you have not set
# it); base models are Hugging Face ids, downloaded to the shared Hugging Face cache.
# Checked against ui/package.json, ui/cron/fileServer.ts, ui/cron/paths.ts, ui/prisma/schema.prisma.
set -euo pipefail
# shellcheck source=functions.sh
source "$AIKORE_HOME/blueprints/functions.sh"

NODE_MIN=20.9

install() {
    aikore_require_node "$NODE_MIN"
    aikore_git_sync "$AIKORE_GIT_URL" "$AIKORE_APP_DIR" "$AIKORE_GIT_REF"
    aikore_env_create
    aikore_install_torch
    aikore_pip_install -r "$AIKORE_APP_DIR/requirements.txt"
    aikore_step "installing the UI's packages (npm install)"
    (cd "$AIKORE_APP_DIR/ui" && npm install --no-save --no-audit --no-fund)
    aikore_step "creating the UI's database (npm run update_db)"
    (cd "$AIKORE_APP_DIR/ui" && npm run update_db)
    aikore_step "building the UI (npm run build)"
    (cd "$AIKORE_APP_DIR/ui" && npm run build)
}
aikore_install install requirements.txt ui/package.json ui/package-lock.json

command -v node >/dev/null 2>&1 || aikore_die "Node.js is no longer installed (ai-toolkit's UI runs on it): install Node.js >= $NODE_MIN"
# The UI's settings live in its SQLite database (table Settings): the training folder defaults to
# the instance's output folder, unless you chose one.
"$AIKORE_ENV_DIR/bin/python" -I -c '
import os, sqlite3, sys
db, pairs = sys.argv[1], sys.argv[2:]
if not os.path.isfile(db):
    print(f"[aikore] warning: {db} is missing (npm run update_db creates it); UI defaults not set", file=sys.stderr)
    sys.exit(0)
try:
    with sqlite3.connect(db) as con:
        for key, value in zip(pairs[::2], pairs[1::2]):
            con.execute("INSERT OR IGNORE INTO Settings (key, value) VALUES (?, ?)", (key, value))
except sqlite3.Error as exc:
    print(f"[aikore] warning: could not set the UI defaults in {db}: {exc}", file=sys.stderr)
' "$AIKORE_APP_DIR/aitk_db.db" TRAINING_FOLDER "$(aikore_output_dir)"
aikore_hf_cache
aikore_node_loopback
PATH="$AIKORE_ENV_DIR/bin:$PATH"
export PATH
aikore_launch_args

cd "$AIKORE_APP_DIR/ui"
aikore_background node dist/cron/worker.js
aikore_exec node dist/cron/fileServer.js start --port "$WEBUI_PORT" "${AIKORE_ARGS[@]}"
