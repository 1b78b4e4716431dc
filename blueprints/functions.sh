# shellcheck shell=bash
# aikore.kind: library
# aikore.name: Blueprint helpers
# aikore.description: Functions sourced by blueprints (not an app).
# Shared helpers for AiKore blueprints. Source it from a blueprint:
#
#     source "$AIKORE_HOME/blueprints/functions.sh"
#
# Every function works under `set -euo pipefail`, quotes all its arguments and never evals.
# Sourcing this file changes no shell options of the caller. Log lines go to stderr (the instance
# log merges stdout and stderr), so functions whose output is captured with $(...) stay clean.

if [[ -z "${AIKORE_HOME:-}" ]]; then
    AIKORE_HOME="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
    export AIKORE_HOME
fi

# aikore_log MSG... — print "[aikore] MSG" on stderr.
aikore_log() {
    printf '[aikore] %s\n' "$*" >&2
}

# aikore_die MSG... — log MSG and exit 1.
aikore_die() {
    aikore_log "error: $*"
    exit 1
}

# aikore_setup_venv DIR — create a virtualenv in DIR with ${AIKORE_PYTHON:-python3} unless it
# exists, then activate it (PATH and VIRTUAL_ENV stay set in the caller's shell).
aikore_setup_venv() {
    local dir="${1:?usage: aikore_setup_venv DIR}"
    local python="${AIKORE_PYTHON:-python3}"
    if [[ ! -f "$dir/bin/activate" ]]; then
        aikore_log "creating virtualenv in $dir with $python"
        "$python" -m venv -- "$dir"
    fi
    # activate scripts are not all nounset-safe; `local -` restores the options on return.
    local -
    set +u
    # shellcheck disable=SC1091
    source "$dir/bin/activate"
    aikore_log "virtualenv active: $dir"
}

# aikore_output_dir — create $INSTANCE_OUTPUT_DIR and print its path.
aikore_output_dir() {
    [[ -n "${INSTANCE_OUTPUT_DIR:-}" ]] || aikore_die "INSTANCE_OUTPUT_DIR is not set"
    mkdir -p -- "$INSTANCE_OUTPUT_DIR"
    printf '%s\n' "$INSTANCE_OUTPUT_DIR"
}


# --- the install phase --------------------------------------------------------------------------
#
# A blueprint that installs something puts its install in a function and hands it to aikore_install,
# which runs it only when its inputs changed, then launches with aikore_exec:
#
#     install() {
#         aikore_git_sync "$AIKORE_GIT_URL" "$AIKORE_APP_DIR" "$AIKORE_GIT_REF"
#         aikore_env_create
#         aikore_install_torch
#         aikore_pip_install -r "$AIKORE_APP_DIR/requirements.txt"
#     }
#     aikore_install install requirements.txt
#     cd "$AIKORE_APP_DIR"
#     aikore_exec "$AIKORE_ENV_DIR/bin/python" main.py --port "$WEBUI_PORT"
#
# Steps are reported to AiKore in $AIKORE_INSTALL_STATUS (a small JSON file, replaced atomically):
# the instance shows `installing` with the step and its progress, and AiKore's readiness timeout
# starts only when aikore_exec says the app launches.

# _aikore_json_string TEXT — TEXT as a JSON string (control characters become spaces).
_aikore_json_string() {
    local s="$1"
    s="${s//\\/\\\\}"
    s="${s//\"/\\\"}"
    s="${s//[$'\x01'-$'\x1f'$'\x7f']/ }"
    printf '"%s"' "$s"
}

# _aikore_write_status JSON — replace the status file atomically (no-op outside AiKore).
_aikore_write_status() {
    local file="${AIKORE_INSTALL_STATUS:-}"
    [[ -n "$file" ]] || return 0
    local tmp="$file.$BASHPID.tmp"
    printf '%s\n' "$1" > "$tmp" && mv -f -- "$tmp" "$file"
}

# aikore_step TEXT [CURRENT TOTAL] — report the install step now running (e.g. "installing
# requirements" 37 120); CURRENT/TOTAL (whole numbers) draw a progress bar. Logged when TEXT changes.
aikore_step() {
    local text="${1:?usage: aikore_step TEXT [CURRENT TOTAL]}" current="${2:-}" total="${3:-}"
    local json
    json="{\"phase\": \"installing\", \"step\": $(_aikore_json_string "$text")"
    if [[ "$current" =~ ^[0-9]{1,12}$ && "$total" =~ ^[0-9]{1,12}$ ]]; then
        json+=", \"current\": $current, \"total\": $total"
    fi
    _aikore_write_status "$json}"
    if [[ "$text" != "${_AIKORE_LAST_STEP:-}" ]]; then
        _AIKORE_LAST_STEP="$text"
        aikore_log "step: $text"
    fi
}

# _aikore_phase PHASE — "launching" (the install is over) or "done" (install only, no launch).
_aikore_phase() {
    _aikore_write_status "{\"phase\": \"$1\"}"
}

# _aikore_install_inputs FUNCTION [FILE...] — a hash of everything the install depends on: the
# Python version, the torch wheel index, the git source and ref, the checked-out commit, whether
# the environment exists, the install function's own code (so the extra packages it names) and
# the content of FILEs (relative to $AIKORE_APP_DIR unless absolute).
_aikore_install_inputs() {
    local func="$1" app="${AIKORE_APP_DIR:-}" env="${AIKORE_ENV_DIR:-}" file path
    shift
    {
        printf 'python=%s\ntorch=%s\ngit=%s@%s\n' "${AIKORE_PYTHON_VERSION:-}" "${AIKORE_TORCH_INDEX_URL:-}" \
            "${AIKORE_GIT_URL:-}" "${AIKORE_GIT_REF:-}"
        if [[ -n "$app" && -e "$app/.git" ]]; then
            printf 'head=%s\n' "$(git -C "$app" rev-parse -q --verify HEAD 2>/dev/null || echo none)"
        fi
        if [[ -n "$env" && -x "$env/bin/python" ]]; then
            printf 'env=%s\n' "$env"
        fi
        declare -f -- "$func"
        for file in "$@"; do
            path="$file"
            [[ "$path" == /* ]] || path="$app/$path"
            if [[ -f "$path" ]]; then
                printf 'file=%s ' "$file"
                sha256sum < "$path"
            else
                printf 'nofile=%s\n' "$file"
            fi
        done
    } | sha256sum | cut -d' ' -f1
}

# aikore_install FUNCTION [FILE...] — run the blueprint's install FUNCTION unless nothing it
# depends on changed since it last succeeded (see _aikore_install_inputs; FILEs are e.g. the app's
# requirement files). An update (AIKORE_ACTION=update) always runs it. A satellite never installs:
# it checks that its parent's install exists and uses it.
aikore_install() {
    local func="${1:?usage: aikore_install FUNCTION [FILE...]}"
    shift
    declare -F -- "$func" >/dev/null || aikore_die "aikore_install: no shell function named '$func'"
    local record="${AIKORE_INSTALL_RECORD:?AIKORE_INSTALL_RECORD is not set}" inputs
    if [[ -n "${AIKORE_SATELLITE_OF:-}" ]]; then
        [[ -f "$record" ]] || aikore_die "this instance is a satellite of '$AIKORE_SATELLITE_OF', which has not been installed yet: start '$AIKORE_SATELLITE_OF' once first"
        aikore_log "satellite of $AIKORE_SATELLITE_OF: using its code ($AIKORE_APP_DIR) and environment ($AIKORE_ENV_DIR)"
        return 0
    fi
    inputs="$(_aikore_install_inputs "$func" "$@")"
    if [[ "${AIKORE_ACTION:-start}" != update && -f "$record" && "$(<"$record")" == "$inputs" ]]; then
        aikore_log "install inputs unchanged since the last install: skipping it"
        return 0
    fi
    aikore_step "preparing the install"
    "$func"
    inputs="$(_aikore_install_inputs "$func" "$@")"
    mkdir -p -- "$(dirname -- "$record")"
    printf '%s\n' "$inputs" > "$record.$BASHPID.tmp"
    mv -f -- "$record.$BASHPID.tmp" "$record"
    aikore_log "install finished"
}

# --- Python environments (uv) -------------------------------------------------------------------

_aikore_need_env() {
    [[ -n "${AIKORE_ENV_DIR:-}" ]] || aikore_die "AIKORE_ENV_DIR is not set"
    [[ -x "$AIKORE_ENV_DIR/bin/python" ]] || aikore_die "no Python environment in $AIKORE_ENV_DIR: call aikore_env_create first"
}

_aikore_uv() {
    [[ -n "${AIKORE_UV:-}" ]] || aikore_die "AIKORE_UV is not set (AiKore gives blueprints its uv)"
    "$AIKORE_UV" "$@"
}

# _aikore_env_python_version ENV — the Python version recorded in ENV/pyvenv.cfg, e.g. 3.12.4.
_aikore_env_python_version() {
    local key value
    while IFS='=' read -r key value; do
        key="${key// /}"
        if [[ "$key" == version_info || "$key" == version ]]; then
            printf '%s\n' "${value// /}"
            return 0
        fi
    done < "$1/pyvenv.cfg"
    printf 'unknown\n'
}

# _aikore_pythons — the Python versions uv finds on this machine, e.g. "3.11.2, 3.12.4".
_aikore_pythons() {
    _aikore_uv python list --only-installed 2>/dev/null | awk '{print $1}' | cut -d- -f2 | sort -uV \
        | paste -sd, - | sed 's/,/, /g' || true
}

# _aikore_remove_env DIR — delete an environment AiKore built (never anything else).
_aikore_remove_env() {
    local env="$1"
    [[ -f "$env/pyvenv.cfg" ]] || aikore_die "$env is not a Python environment; not deleting it"
    rm -rf -- "$env"  # aikore-lint: allow rm (only a folder holding pyvenv.cfg: the instance's environment)
}

# aikore_env_create — create the instance's environment in $AIKORE_ENV_DIR with uv, with Python
# $AIKORE_PYTHON_VERSION (installed by uv when it can reach the internet), or reuse it when it
# exists with that version. Packages then come from the shared uv cache as hard links.
aikore_env_create() {
    local env="${AIKORE_ENV_DIR:?AIKORE_ENV_DIR is not set}" want="${AIKORE_PYTHON_VERSION:-}" have
    if [[ -x "$env/bin/python" ]]; then
        have="$(_aikore_env_python_version "$env")"
        if [[ -z "$want" || "$have" == "$want" || "$have" == "$want".* ]]; then
            aikore_log "reusing the Python $have environment in $env"
            return 0
        fi
        aikore_log "the environment has Python $have but Python $want is wanted: creating it again"
        _aikore_remove_env "$env"
    elif [[ -e "$env" || -L "$env" ]]; then
        if [[ -d "$env" && ! -L "$env" && -z "$(ls -A -- "$env")" ]]; then
            rmdir -- "$env"
        elif [[ -f "$env/pyvenv.cfg" ]]; then
            _aikore_remove_env "$env"  # a broken environment (no interpreter)
        else
            aikore_die "$env exists and is not a Python environment; move it away first"
        fi
    fi
    aikore_step "creating the Python environment${want:+ (Python $want)}"
    local args=(venv --no-project --no-config --python-preference managed)
    if [[ -n "$want" ]]; then
        args+=(--python "$want")
    else
        args+=(--python 3)
    fi
    if ! _aikore_uv "${args[@]}" "$env"; then
        aikore_die "cannot create a Python ${want:-3} environment (no such version here, and uv could not download it: offline?). Pythons on this machine: $(_aikore_pythons)"
    fi
}

# _aikore_uv_steps LABEL UV-ARGS... — run uv, its output in the log, its milestones as steps.
_aikore_uv_steps() {
    local label="$1" line
    shift
    aikore_step "$label"
    _aikore_uv "$@" 2>&1 | while IFS= read -r line; do
        printf '%s\n' "$line" >&2
        if [[ "$line" =~ ^(Resolved|Prepared|Installed|Uninstalled|Audited|Checked)\ ([0-9]+)\ package ]]; then
            case "${BASH_REMATCH[1]}" in
                Resolved) aikore_step "$label: ${BASH_REMATCH[2]} packages resolved, fetching" 1 3 ;;
                Prepared) aikore_step "$label: ${BASH_REMATCH[2]} fetched, installing" 2 3 ;;
                Installed|Audited|Checked) aikore_step "$label: done" 3 3 ;;
            esac
        fi
    done
}

# aikore_pip_install ARGS... — `uv pip install ARGS` into the instance's environment (never into
# another Python), keeping the torch build aikore_install_torch installed.
aikore_pip_install() {
    (( $# )) || aikore_die "usage: aikore_pip_install ARGS..."
    _aikore_need_env
    local label="installing packages" arg
    for arg in "$@"; do
        case "$arg" in -r|-r*|--requirement|--requirement=*) label="installing requirements" ;; esac
    done
    local args=(pip install --python "$AIKORE_ENV_DIR/bin/python")
    if [[ -f "$AIKORE_ENV_DIR/aikore-torch.txt" ]]; then
        args+=(--constraint "$AIKORE_ENV_DIR/aikore-torch.txt")
    fi
    _aikore_uv_steps "$label" "${args[@]}" "$@"
}

# aikore_install_torch [PACKAGE...] — install torch, torchvision and torchaudio (or the PACKAGEs,
# e.g. pinned versions) together from the wheel index of the instance's torch variant
# ($AIKORE_TORCH_INDEX_URL), then pin what was installed for every later aikore_pip_install. A
# changed variant reinstalls the trio.
# aikore_pip_uninstall PACKAGE... — remove PACKAGEs from the instance's environment (those not
# installed are skipped), e.g. one build of a package before installing another of the same module.
aikore_pip_uninstall() {
    (( $# )) || aikore_die "usage: aikore_pip_uninstall PACKAGE..."
    _aikore_need_env
    local name present=()
    for name in "$@"; do
        if _aikore_uv pip show --python "$AIKORE_ENV_DIR/bin/python" "$name" >/dev/null 2>&1; then
            present+=("$name")
        fi
    done
    (( ${#present[@]} )) || return 0
    aikore_step "removing ${present[*]}"
    _aikore_uv pip uninstall --python "$AIKORE_ENV_DIR/bin/python" "${present[@]}"
}

# shellcheck disable=SC2120  # the PACKAGEs are optional
aikore_install_torch() {
    _aikore_need_env
    local index="${AIKORE_TORCH_INDEX_URL:?AIKORE_TORCH_INDEX_URL is not set}" env="$AIKORE_ENV_DIR"
    local packages=("$@") pins="$env/aikore-torch.txt" recorded="" name
    (( ${#packages[@]} )) || packages=(torch torchvision torchaudio)
    local args=(pip install --python "$env/bin/python" --extra-index-url "$index")
    [[ -f "$env/aikore-torch-index" ]] && recorded="$(<"$env/aikore-torch-index")"
    if [[ -n "$recorded" && "$recorded" != "$index" ]]; then
        aikore_log "torch variant changed ($recorded -> $index): reinstalling torch"
        for name in torch torchvision torchaudio; do
            args+=(--reinstall-package "$name")
        done
    fi
    rm -f -- "$pins"
    _aikore_uv_steps "installing torch (${AIKORE_TORCH_VARIANT:-})" "${args[@]}" "${packages[@]}"
    _aikore_uv pip freeze --python "$env/bin/python" | grep -E '^(torch|torchvision|torchaudio)==' > "$pins.tmp" || true
    mv -f -- "$pins.tmp" "$pins"
    printf '%s\n' "$index" > "$env/aikore-torch-index"
}

# --- code (git) -----------------------------------------------------------------------------------

_aikore_git_has_branch() {
    git -C "$1" rev-parse -q --verify "refs/remotes/origin/$2^{commit}" >/dev/null
}

# _aikore_git_at DIR REF — is the checkout at REF (a branch checked out, or the commit REF names)?
_aikore_git_at() {
    local dir="$1" ref="$2" head want
    [[ "$(git -C "$dir" symbolic-ref -q --short HEAD 2>/dev/null || true)" == "$ref" ]] && return 0
    head="$(git -C "$dir" rev-parse -q --verify HEAD 2>/dev/null)" || return 1
    want="$(git -C "$dir" rev-parse -q --verify "$ref^{commit}" 2>/dev/null)" || return 1
    [[ "$head" == "$want" ]] && ! _aikore_git_has_branch "$dir" "$ref"
}

# _aikore_git_explain DIR OUTPUT WHAT — die with what went wrong, in the user's terms.
_aikore_git_explain() {
    local dir="$1" out="$2" what="$3"
    printf '%s\n' "$out" >&2
    if [[ "$out" == *"would be overwritten"* ]]; then
        aikore_die "$what: your local edits to tracked files in $dir conflict with it; nothing was changed. Commit or stash them (git -C '$dir' stash), then try again."
    fi
    if [[ "$out" == *"Not possible to fast-forward"* || "$out" == *"not possible to fast-forward"* ]]; then
        aikore_die "$what: $dir has local commits the new code does not contain; nothing was changed. Merge or rebase them yourself, then try again."
    fi
    aikore_die "$what failed in $dir (see above); nothing was thrown away"
}

# _aikore_git_checkout DIR REF — move to REF: a branch (tracking origin), a tag or a commit. git
# itself carries local edits over, or refuses when they would be overwritten.
_aikore_git_checkout() {
    local dir="$1" ref="$2" out
    if ! git -C "$dir" rev-parse -q --verify "$ref^{commit}" >/dev/null && ! _aikore_git_has_branch "$dir" "$ref"; then
        git -C "$dir" fetch --tags origin || aikore_die "cannot fetch $ref into $dir (offline?)"
    fi
    if _aikore_git_has_branch "$dir" "$ref"; then
        if git -C "$dir" rev-parse -q --verify "refs/heads/$ref" >/dev/null; then
            out="$(git -C "$dir" checkout "$ref" -- 2>&1)" || _aikore_git_explain "$dir" "$out" "checking out $ref"
        else
            out="$(git -C "$dir" checkout -b "$ref" --track "origin/$ref" -- 2>&1)" \
                || _aikore_git_explain "$dir" "$out" "checking out $ref"
        fi
    else
        out="$(git -C "$dir" checkout --detach "$ref" -- 2>&1)" || _aikore_git_explain "$dir" "$out" "checking out $ref"
    fi
}

# _aikore_git_update DIR [REF] — fetch, then fast-forward to REF (or the branch's upstream).
_aikore_git_update() {
    local dir="$1" ref="$2" edits before after target out
    aikore_step "updating the code"
    git -C "$dir" fetch --tags --prune origin || aikore_die "git fetch failed in $dir (offline?); the code is unchanged"
    edits="$(git -C "$dir" status --porcelain --untracked-files=no)"
    before="$(git -C "$dir" rev-parse HEAD)"
    if [[ -n "$ref" ]] && ! _aikore_git_has_branch "$dir" "$ref"; then
        _aikore_git_checkout "$dir" "$ref"  # a tag or a commit: nothing to fast-forward
    else
        [[ -z "$ref" ]] || _aikore_git_at "$dir" "$ref" || _aikore_git_checkout "$dir" "$ref"
        if git -C "$dir" symbolic-ref -q HEAD >/dev/null; then
            target="${ref:+origin/$ref}"
            target="${target:-@{upstream\}}"
            out="$(git -C "$dir" merge --ff-only "$target" 2>&1)" || _aikore_git_explain "$dir" "$out" "updating to $target"
        fi
    fi
    after="$(git -C "$dir" rev-parse HEAD)"
    if [[ "$before" == "$after" ]]; then
        aikore_log "the code is already up to date (${after:0:12})"
    else
        aikore_log "code updated: ${before:0:12} -> ${after:0:12}"
    fi
    if [[ -n "$edits" ]]; then
        aikore_log "your local edits were kept:"
        printf '%s\n' "$edits" >&2
    fi
}

# _aikore_git_progress LABEL — read `git clone --progress` output: log it (the last state of each
# counter), report "Receiving objects: n/m" as the step's progress.
_aikore_git_progress() {
    local label="$1" line
    tr '\r' '\n' | while IFS= read -r line; do
        if [[ "$line" =~ ^Receiving\ objects:\ +[0-9]+%\ \(([0-9]+)/([0-9]+)\) ]]; then
            aikore_step "$label" "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"
        fi
        if [[ ! "$line" =~ [0-9]+%\ \( || "$line" == *", done."* ]]; then
            printf '%s\n' "$line" >&2
        fi
    done
}

# aikore_git_sync URL DIR [REF] — clone URL into DIR, or use the existing clone: a plain start
# leaves it as it is (moving it only when REF names another branch, tag or commit); an update
# (AIKORE_ACTION=update) fetches and fast-forwards. Local edits to tracked files are kept, or the
# step fails saying which ones would be overwritten: nothing is ever reset or thrown away.
aikore_git_sync() {
    local url="${1:?usage: aikore_git_sync URL DIR [REF]}"
    local dir="${2:?usage: aikore_git_sync URL DIR [REF]}"
    local ref="${3:-}"
    [[ "$url" != -* ]] || aikore_die "invalid git URL: '$url'"
    [[ "$ref" != -* ]] || aikore_die "invalid git ref: '$ref'"
    if [[ -e "$dir/.git" ]]; then
        if [[ "${AIKORE_ACTION:-start}" == update ]]; then
            _aikore_git_update "$dir" "$ref"
        elif [[ -n "$ref" ]] && ! _aikore_git_at "$dir" "$ref"; then
            aikore_step "checking out $ref"
            _aikore_git_checkout "$dir" "$ref"
        fi
        return 0
    fi
    if [[ -e "$dir" ]] && [[ -n "$(ls -A -- "$dir")" ]]; then
        aikore_die "$dir exists and is not a git checkout; refusing to clone over it"
    fi
    aikore_step "cloning $url"
    mkdir -p -- "$(dirname -- "$dir")"
    git clone --progress -- "$url" "$dir" 2>&1 | _aikore_git_progress "cloning $url"
    if [[ -n "$ref" ]] && ! _aikore_git_at "$dir" "$ref"; then
        _aikore_git_checkout "$dir" "$ref"
    fi
}

# aikore_git_submodules DIR — check out the git submodules of the checkout in DIR at the commits it
# names (cloning them the first time), e.g. Kohya_ss's sd-scripts. git refuses, and the step fails,
# rather than overwrite local edits inside a submodule.
aikore_git_submodules() {
    local dir="${1:?usage: aikore_git_submodules DIR}" out
    [[ -f "$dir/.gitmodules" ]] || return 0
    aikore_step "checking out the git submodules"
    if ! out="$(git -C "$dir" submodule update --init --recursive 2>&1)"; then
        printf '%s\n' "$out" >&2
        aikore_die "checking out the git submodules of $dir failed (see above; offline?)"
    fi
    [[ -z "$out" ]] || printf '%s\n' "$out" >&2
}

# --- shared models --------------------------------------------------------------------------------
# The layout of $AIKORE_MODELS_DIR is instances/sharedmodels.py's LAYOUT (created at every start).
# Configure the app to read it where it can (aikore_comfyui_model_paths, Forge's --ckpt-dir
# "$(aikore_models_dir checkpoints)", ...); link (aikore_link_models) only where it can't.

# _aikore_check_subdir SUB — refuse absolute paths and ".." components.
_aikore_check_subdir() {
    local sub="$1"
    if [[ -z "$sub" || "$sub" == /* || "/$sub/" == */../* ]]; then
        aikore_die "invalid models subdirectory: '$sub'"
    fi
}

# aikore_models_dir SUB — print the shared folder $AIKORE_MODELS_DIR/SUB (created if missing).
aikore_models_dir() {
    local sub="${1:?usage: aikore_models_dir SUB}"
    [[ -n "${AIKORE_MODELS_DIR:-}" ]] || aikore_die "AIKORE_MODELS_DIR is not set"
    _aikore_check_subdir "$sub"
    mkdir -p -- "${AIKORE_MODELS_DIR%/}/$sub"
    printf '%s\n' "${AIKORE_MODELS_DIR%/}/$sub"
}

# aikore_comfyui_model_paths FILE — write a ComfyUI extra_model_paths.yaml mapping every model
# kind to the shared folders; launch ComfyUI with --extra-model-paths-config FILE. Keep FILE out
# of the checkout (e.g. "$INSTANCE_CONF_DIR/extra_model_paths.yaml").
aikore_comfyui_model_paths() {
    local file="${1:?usage: aikore_comfyui_model_paths FILE}"
    [[ -n "${AIKORE_MODELS_DIR:-}" ]] || aikore_die "AIKORE_MODELS_DIR is not set"
    local base="${AIKORE_MODELS_DIR%/}" tmp="$file.$BASHPID.tmp"
    mkdir -p -- "$(dirname -- "$file")"
    {
        printf '# Written by AiKore at every start (aikore_comfyui_model_paths): the shared models folder.\n'
        printf 'aikore:\n'
        printf "    base_path: '%s'\n" "${base//\'/\'\'}"
        # The shared folders come first and receive downloads (ComfyUI-Manager's model installs).
        printf '    is_default: true\n'
        printf '    checkpoints: checkpoints\n'
        printf '    text_encoders: |\n        text_encoders\n        clip\n'
        printf '    clip_vision: clip_vision\n'
        printf '    diffusion_models: |\n        diffusion_models\n        unet\n'
        printf '    vae: vae\n'
        printf '    vae_approx: vae_approx\n'
        printf '    loras: loras\n'
        printf '    embeddings: embeddings\n'
        printf '    hypernetworks: hypernetworks\n'
        printf '    controlnet: controlnet\n'
        printf '    upscale_models: upscale_models\n'
        printf '    style_models: style_models\n'
        printf '    ipadapter: ipadapter\n'
        printf '    gligen: gligen\n'
        printf '    photomaker: photomaker\n'
        printf '    LLM: llm\n'
    } > "$tmp"
    mv -f -- "$tmp" "$file"
}

# _aikore_glob_escape TEXT — TEXT with git's pattern characters escaped (for .git/info/exclude).
_aikore_glob_escape() {
    local s="$1" out="" c i
    for (( i = 0; i < ${#s}; i++ )); do
        c="${s:i:1}"
        case "$c" in
            '['|']'|'*'|'?'|\\|'!'|'#'|' ') out+="\\$c" ;;
            *) out+="$c" ;;
        esac
    done
    printf '%s' "$out"
}

# aikore_git_exclude PATH — if PATH lies in a git checkout, list it in that checkout's
# .git/info/exclude (never in a tracked file), so AiKore's links leave `git status` clean.
aikore_git_exclude() {
    local path="${1:?usage: aikore_git_exclude PATH}" parent top exclude rel line
    parent="$(realpath -m -- "$(dirname -- "$path")")"
    [[ -d "$parent" ]] || return 0
    top="$(git -C "$parent" rev-parse --show-toplevel 2>/dev/null)" || return 0
    exclude="$(git -C "$parent" rev-parse --path-format=absolute --git-path info/exclude)"
    rel="$parent/$(basename -- "$path")"
    rel="${rel#"$top"/}"
    line="/$(_aikore_glob_escape "$rel")"
    mkdir -p -- "$(dirname -- "$exclude")"
    if [[ ! -f "$exclude" ]] || ! grep -qxF -- "$line" "$exclude"; then
        printf '%s\n' "$line" >> "$exclude"
    fi
}

# aikore_link_models SUB DEST — make the shared $AIKORE_MODELS_DIR/SUB visible at DEST, for apps
# that can't be configured. Never moves, replaces or deletes a user's file:
# - DEST missing (or an empty folder): DEST becomes a link to the shared folder;
# - DEST a folder with files: each shared entry it lacks is linked inside it (the user's files stay,
#   and win on a name clash); links of ours whose target is gone are removed;
# - DEST a link elsewhere, or a file: left as it is (a warning, or an error for a file).
# Every link made inside a git checkout goes into its .git/info/exclude.
aikore_link_models() {
    local sub="${1:?usage: aikore_link_models SUB DEST}"
    local dest="${2:?usage: aikore_link_models SUB DEST}"
    [[ -n "${AIKORE_MODELS_DIR:-}" ]] || aikore_die "AIKORE_MODELS_DIR is not set"
    _aikore_check_subdir "$sub"
    dest="${dest%/}"
    local shared="${AIKORE_MODELS_DIR%/}/$sub" entry name link
    mkdir -p -- "$shared" "$(dirname -- "$dest")"
    if [[ -L "$dest" ]]; then
        if [[ "$(readlink -- "$dest")" != "$shared" ]]; then
            aikore_log "warning: $dest links to $(readlink -- "$dest"), not to the shared $shared; leaving it as it is"
            return 0
        fi
    elif [[ -d "$dest" ]]; then
        if [[ -n "$(ls -A -- "$dest")" ]]; then
            for link in "$dest"/* "$dest"/.[!.]*; do
                if [[ -L "$link" && ! -e "$link" && "$(readlink -- "$link")" == "$shared/"* ]]; then
                    rm -f -- "$link"  # our own link; its target was removed from the shared folder
                fi
            done
            for entry in "$shared"/*; do
                [[ -e "$entry" ]] || continue
                name="$(basename -- "$entry")"
                if [[ -e "$dest/$name" || -L "$dest/$name" ]]; then
                    [[ "$(readlink -- "$dest/$name" || true)" == "$entry" ]] || \
                        aikore_log "note: $dest/$name exists; the shared $entry is not linked over it"
                    continue
                fi
                ln -s -- "$entry" "$dest/$name"
                aikore_git_exclude "$dest/$name"
            done
            aikore_log "linked the shared $shared entries into $dest (its own files untouched)"
            return 0
        fi
        rmdir -- "$dest"
        ln -s -- "$shared" "$dest"
        aikore_log "linked $dest -> $shared"
    elif [[ -e "$dest" ]]; then
        aikore_die "$dest exists and is not a directory; not replacing it"
    else
        ln -s -- "$shared" "$dest"
        aikore_log "linked $dest -> $shared"
    fi
    aikore_git_exclude "$dest"
}

# --- outputs, app settings, ports -----------------------------------------------------------------

# aikore_link_outputs DEST — make DEST (a folder in the app's checkout where it writes its outputs,
# for apps with no option for it) a link to $INSTANCE_OUTPUT_DIR. A missing or empty DEST becomes
# the link; a link AiKore made into the outputs folder follows the instance's output folder when it
# changed; anything else (a folder with files, a link elsewhere) is left as it is, with a warning.
# A satellite keeps its parent's link: it writes to its parent's output folder.
aikore_link_outputs() {
    local dest="${1:?usage: aikore_link_outputs DEST}" out target
    out="$(aikore_output_dir)"
    dest="${dest%/}"
    if [[ -L "$dest" ]]; then
        target="$(readlink -- "$dest")"
        if [[ "$target" == "$out" ]]; then
            return 0
        elif [[ -n "${AIKORE_SATELLITE_OF:-}" ]]; then
            aikore_log "note: $dest links to $target: as a satellite of $AIKORE_SATELLITE_OF this instance writes its outputs there"
            return 0
        elif [[ -n "${AIKORE_DATA_DIR:-}" && "$target" == "${AIKORE_DATA_DIR%/}/outputs/"* ]]; then
            ln -sfn -- "$out" "$dest"  # our link; the instance's output folder changed
            aikore_log "linked $dest -> $out (was $target)"
            return 0
        fi
        aikore_log "warning: $dest links to $target, not to this instance's output folder $out; leaving it as it is"
        return 0
    elif [[ -d "$dest" ]]; then
        if [[ -n "$(ls -A -- "$dest")" ]]; then
            aikore_log "warning: $dest holds files, so the app keeps writing there, not to $out (move them to $out and remove the folder to change that)"
            return 0
        fi
        rmdir -- "$dest"
    elif [[ -e "$dest" ]]; then
        aikore_die "$dest exists and is not a folder; not replacing it"
    fi
    mkdir -p -- "$(dirname -- "$dest")"
    ln -s -- "$out" "$dest"
    aikore_git_exclude "$dest"
    aikore_log "linked $dest -> $out"
}

# aikore_json_defaults FILE KEY VALUE [KEY VALUE...] — set KEYs in the JSON object in FILE (an
# app's settings file) to the string VALUEs, only where the key is missing: the user's own
# settings always win. A KEY ending in [] takes a one-element list, e.g. path_checkpoints[] DIR.
# A FILE that is not a JSON object is left alone (with a warning). Written atomically; a FILE it
# creates in a git checkout goes into the checkout's .git/info/exclude.
aikore_json_defaults() {
    local file="${1:?usage: aikore_json_defaults FILE KEY VALUE...}" python=python3 existed=""
    shift
    [[ -e "$file" ]] && existed=1
    (( $# % 2 == 0 && $# > 0 )) || aikore_die "usage: aikore_json_defaults FILE KEY VALUE [KEY VALUE...]"
    [[ -x "${AIKORE_ENV_DIR:-}/bin/python" ]] && python="$AIKORE_ENV_DIR/bin/python"
    "$python" -I -c '
import json, os, sys
path, pairs = sys.argv[1], sys.argv[2:]
try:
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
except FileNotFoundError:
    data = {}
except ValueError as exc:
    print(f"[aikore] warning: {path} is not valid JSON ({exc}); not changing it", file=sys.stderr)
    sys.exit(0)
if not isinstance(data, dict):
    print(f"[aikore] warning: {path} is not a JSON object; not changing it", file=sys.stderr)
    sys.exit(0)
added = []
for key, value in zip(pairs[::2], pairs[1::2]):
    if key.endswith("[]"):
        key, value = key[:-2], [value]
    if key not in data:
        data[key] = value
        added.append(key)
if added:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=4)
    os.replace(tmp, path)
    print(f"[aikore] {path}: set " + ", ".join(added), file=sys.stderr)
' "$file" "$@"
    if [[ -z "$existed" && -f "$file" ]]; then
        aikore_git_exclude "$file"
    fi
}

# aikore_port_free [PORT] — fail unless nothing listens on 127.0.0.1:PORT (default $WEBUI_PORT), for
# apps that silently move to another port when theirs is taken (AiKore would then wait in vain).
# shellcheck disable=SC2120  # PORT is optional
aikore_port_free() {
    local port="${1:-${WEBUI_PORT:-}}"
    [[ "$port" =~ ^[0-9]{1,5}$ ]] || aikore_die "aikore_port_free: no port given (WEBUI_PORT is not set)"
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        aikore_die "port $port is already in use by another program, and this app would quietly move to another port: stop that program or give this instance another port"
    fi
}

# aikore_hf_cache — share the Hugging Face download cache between instances: HF_HUB_CACHE becomes
# $AIKORE_MODELS_DIR/huggingface (unless HF_HOME or HF_HUB_CACHE is already set).
aikore_hf_cache() {
    if [[ -z "${HF_HOME:-}" && -z "${HF_HUB_CACHE:-}" ]]; then
        HF_HUB_CACHE="$(aikore_models_dir huggingface)"
        export HF_HUB_CACHE
    fi
}

# --- tools besides Python -------------------------------------------------------------------------
# Apps that build with Node.js or .NET check for them in their install (an aikore_step first, so a
# missing tool fails the install at a step that says what to install). AiKore never downloads them.

# _aikore_version_ge HAVE WANT — is version HAVE >= WANT (dotted numbers)?
_aikore_version_ge() {
    [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" == "$2" ]]
}

# aikore_require_node MIN — Node.js >= MIN and npm on PATH, or fail saying what to install.
aikore_require_node() {
    local want="${1:?usage: aikore_require_node MIN_VERSION}" have
    aikore_step "checking for Node.js >= $want and npm"
    local how="install Node.js $want or newer with npm (e.g. Debian 13: apt-get install nodejs npm; older systems: the NodeSource packages), then start again"
    command -v node >/dev/null 2>&1 || aikore_die "Node.js is not installed: $how"
    have="$(node --version 2>/dev/null)" || aikore_die "'node --version' failed: $how"
    have="${have#v}"
    _aikore_version_ge "$have" "$want" || aikore_die "Node.js $have is too old (>= $want needed): $how"
    command -v npm >/dev/null 2>&1 || aikore_die "npm is not installed (Node.js $have is): $how"
    aikore_log "Node.js $have, npm $(npm --version 2>/dev/null || echo '?')"
}

# aikore_require_dotnet MAJOR — a .NET SDK of version MAJOR or newer, or fail saying what to install.
aikore_require_dotnet() {
    local want="${1:?usage: aikore_require_dotnet MAJOR}" line version best=""
    aikore_step "checking for the .NET $want SDK"
    local how="install the .NET $want SDK (Microsoft's package dotnet-sdk-$want.0: https://learn.microsoft.com/dotnet/core/install/linux), then start again"
    command -v dotnet >/dev/null 2>&1 || aikore_die "the .NET SDK is not installed ('dotnet' is not on PATH): $how"
    while IFS= read -r line; do
        version="${line%% *}"
        if [[ "$version" =~ ^[0-9]+\.[0-9]+ ]] && _aikore_version_ge "$version" "$want"; then
            best="$version"
        fi
    done < <(dotnet --list-sdks 2>/dev/null || true)
    [[ -n "$best" ]] || aikore_die "no .NET SDK $want or newer found ('dotnet --list-sdks' lists: $(dotnet --list-sdks 2>/dev/null | cut -d' ' -f1 | paste -sd' ' - || true)): $how"
    aikore_log ".NET SDK $best"
}

# aikore_require_commands CMD... — each CMD on PATH, or fail naming the missing ones (e.g. ffmpeg).
aikore_require_commands() {
    local cmd missing=()
    aikore_step "checking for $*"
    for cmd in "$@"; do
        command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
    done
    (( ${#missing[@]} == 0 )) || aikore_die "missing programs: ${missing[*]} (Debian: apt-get install ${missing[*]}; ffprobe comes with ffmpeg)"
}

# aikore_node_loopback — make every Node.js server this app starts listen on 127.0.0.1 only, for
# apps that listen on all interfaces with no option (ai-toolkit): NODE_OPTIONS preloads
# blueprints/node-loopback.cjs in every Node process the app runs (cluster workers included).
aikore_node_loopback() {
    local preload="$AIKORE_HOME/blueprints/node-loopback.cjs"
    [[ -f "$preload" ]] || aikore_die "$preload is missing"
    [[ "$preload" != *[\"\\]* ]] || aikore_die "AiKore's path has a quote or a backslash; Node can't preload from it: $preload"
    # Node parses NODE_OPTIONS itself: the double quotes are for Node (a path with blanks), not bash.
    # shellcheck disable=SC2089,SC2090
    NODE_OPTIONS="--require \"$preload\"${NODE_OPTIONS:+ $NODE_OPTIONS}"
    # shellcheck disable=SC2090
    export NODE_OPTIONS
}

# --- launching ------------------------------------------------------------------------------------

# aikore_launch_args — split $AIKORE_LAUNCH_ARGS (the instance's "Launch arguments") into the array
# AIKORE_ARGS: words separated by blanks, with '...', "..." and \ grouping as in a shell, but never
# evaluated (no variables, globs, commands or redirections), e.g.
#     aikore_launch_args
#     aikore_exec "$AIKORE_ENV_DIR/bin/python" main.py --port "$WEBUI_PORT" "${AIKORE_ARGS[@]}"
# Unbalanced quotes fail the start with a message (an empty argument at the very end is dropped).
aikore_launch_args() {
    AIKORE_ARGS=()
    [[ -n "${AIKORE_LAUNCH_ARGS//[[:space:]]/}" ]] || return 0
    local out
    # xargs splits the way a shell does (quotes, backslashes) and does nothing else.
    if ! out="$(printf '%s' "$AIKORE_LAUNCH_ARGS" | xargs -r printf '%s\036' 2>/dev/null)"; then
        aikore_die "the launch arguments have an unbalanced quote: $AIKORE_LAUNCH_ARGS"
    fi
    # shellcheck disable=SC2034  # AIKORE_ARGS is the caller's
    mapfile -t -d $'\036' AIKORE_ARGS < <(printf '%s' "$out")
}

# aikore_background CMD [ARG...] — start a helper process beside the app (e.g. a job worker); call
# it before aikore_exec, which then watches both: when either exits, the other is stopped and the
# instance ends (a helper that exits counts as a crash). Skipped in an install-only run.
_AIKORE_BACKGROUND=()
aikore_background() {
    [[ $# -gt 0 ]] || aikore_die "usage: aikore_background CMD [ARG...]"
    [[ -z "${AIKORE_INSTALL_ONLY:-}" ]] || return 0
    local quoted
    quoted="$(printf '%q ' "$@")"
    aikore_log "background: ${quoted% }"
    "$@" &
    _AIKORE_BACKGROUND+=("$!")
}

# aikore_exec CMD [ARG...] — log the command line, tell AiKore the install is over (its readiness
# timeout starts now), then replace the shell with CMD (the app keeps the PID supervisord watches,
# and receives its signals directly). In an install-only run (update/rebuild of a stopped instance)
# it exits 0 instead. With helpers started by aikore_background, the shell stays and watches them.
aikore_exec() {
    [[ $# -gt 0 ]] || aikore_die "usage: aikore_exec CMD [ARG...]"
    if [[ -n "${AIKORE_INSTALL_ONLY:-}" ]]; then
        _aikore_phase "done"
        aikore_log "install finished; not launching (install-only run)"
        exit 0
    fi
    _aikore_phase launching
    local quoted
    quoted="$(printf '%q ' "$@")"
    aikore_log "exec: ${quoted% }"
    if (( ${#_AIKORE_BACKGROUND[@]} == 0 )); then
        exec "$@"
    fi
    "$@" &
    local app=$! done_pid="" status=0
    wait -n -p done_pid "$app" "${_AIKORE_BACKGROUND[@]}" || status=$?
    if [[ "$done_pid" != "$app" ]]; then
        aikore_log "the background process $done_pid exited (status $status): stopping the app"
        (( status != 0 )) || status=1
    fi
    kill -TERM "$app" "${_AIKORE_BACKGROUND[@]}" 2>/dev/null || true
    wait || true
    exit "$status"
}
