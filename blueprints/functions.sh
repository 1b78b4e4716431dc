# shellcheck shell=bash
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

# _aikore_git_update DIR [REF] — fetch and move an existing checkout to REF (or fast-forward the
# current branch). Network or merge problems are warnings: an offline machine still launches.
_aikore_git_update() {
    local dir="$1" ref="${2:-}"
    if ! git -C "$dir" fetch --tags --prune origin; then
        aikore_log "warning: git fetch failed in $dir; keeping the current checkout"
    fi
    if [[ -z "$ref" ]]; then
        if git -C "$dir" symbolic-ref -q HEAD >/dev/null; then
            git -C "$dir" merge --ff-only '@{upstream}' \
                || aikore_log "warning: cannot fast-forward $dir (local changes?); keeping it as is"
        fi
        return 0
    fi
    if [[ "$ref" == -* ]]; then
        aikore_die "invalid git ref: '$ref'"
    fi
    if git -C "$dir" rev-parse --verify --quiet "refs/remotes/origin/$ref^{commit}" >/dev/null; then
        if git -C "$dir" rev-parse --verify --quiet "refs/heads/$ref" >/dev/null; then
            git -C "$dir" checkout "$ref" --
        else
            git -C "$dir" checkout -b "$ref" --track "origin/$ref" --
        fi
        git -C "$dir" merge --ff-only "origin/$ref" \
            || aikore_log "warning: cannot fast-forward $dir to origin/$ref; keeping it as is"
    else
        git -C "$dir" checkout --detach "$ref" --
    fi
}

# aikore_git_sync URL DIR [REF] — clone URL into DIR, or update an existing clone. REF may be a
# branch, a tag or a commit; without it the default branch is fast-forwarded. Local commits and
# changes are never thrown away.
aikore_git_sync() {
    local url="${1:?usage: aikore_git_sync URL DIR [REF]}"
    local dir="${2:?usage: aikore_git_sync URL DIR [REF]}"
    local ref="${3:-}"
    if [[ -d "$dir/.git" ]]; then
        aikore_log "updating $dir${ref:+ to $ref}"
        _aikore_git_update "$dir" "$ref"
        return 0
    fi
    if [[ -e "$dir" ]] && [[ -n "$(ls -A -- "$dir")" ]]; then
        aikore_die "$dir exists and is not a git checkout; refusing to clone over it"
    fi
    aikore_log "cloning $url into $dir"
    mkdir -p -- "$(dirname -- "$dir")"
    git clone -- "$url" "$dir"
    if [[ -n "$ref" ]]; then
        _aikore_git_update "$dir" "$ref"
    fi
}

# _aikore_merge_dir SRC DST — move every entry of SRC into DST. Entries whose name already exists
# in DST are merged when both are real directories and otherwise left in SRC. Removes SRC when it
# ends up empty; returns 1 when something had to be left behind.
_aikore_merge_dir() {
    local src="$1" dst="$2" entry name left=0
    while IFS= read -r -d '' entry; do
        name="$(basename -- "$entry")"
        if [[ ! -e "$dst/$name" && ! -L "$dst/$name" ]]; then
            mv -- "$entry" "$dst/$name" || left=1
        elif [[ -d "$entry" && ! -L "$entry" && -d "$dst/$name" && ! -L "$dst/$name" ]]; then
            _aikore_merge_dir "$entry" "$dst/$name" || left=1
        else
            left=1
        fi
    done < <(find "$src" -mindepth 1 -maxdepth 1 -print0)
    if [[ "$left" == 0 ]]; then
        rmdir -- "$src" || left=1
    fi
    return "$left"
}

# _aikore_check_subdir SUB — refuse absolute paths and ".." components.
_aikore_check_subdir() {
    local sub="$1"
    if [[ -z "$sub" || "$sub" == /* || "/$sub/" == */../* ]]; then
        aikore_die "invalid models subdirectory: '$sub'"
    fi
}

# aikore_link_models SRC_SUBDIR DEST — make DEST a symlink to the shared $AIKORE_MODELS_DIR/SRC_SUBDIR.
# If DEST is a real directory its contents are moved into the shared one first (name clashes are
# kept aside in DEST.aikore-old-<time>); nothing is ever deleted.
aikore_link_models() {
    local sub="${1:?usage: aikore_link_models SRC_SUBDIR DEST}"
    local dest="${2:?usage: aikore_link_models SRC_SUBDIR DEST}"
    [[ -n "${AIKORE_MODELS_DIR:-}" ]] || aikore_die "AIKORE_MODELS_DIR is not set"
    _aikore_check_subdir "$sub"
    dest="${dest%/}"
    local shared="${AIKORE_MODELS_DIR%/}/$sub"
    mkdir -p -- "$shared" "$(dirname -- "$dest")"

    if [[ -L "$dest" ]]; then
        if [[ "$(readlink -- "$dest")" == "$shared" ]]; then
            return 0
        fi
        rm -- "$dest"  # the link only, never its target
    elif [[ -d "$dest" ]]; then
        aikore_log "moving the contents of $dest into $shared"
        if ! _aikore_merge_dir "$dest" "$shared"; then
            local aside
            aside="$dest.aikore-old-$(date +%Y%m%d-%H%M%S)-$$"
            mv -- "$dest" "$aside" || aikore_die "cannot move $dest aside"
            aikore_log "warning: some files already existed in $shared; the originals are kept in $aside"
        fi
    elif [[ -e "$dest" ]]; then
        aikore_die "$dest exists and is not a directory; not replacing it"
    fi
    if [[ -e "$dest" || -L "$dest" ]]; then
        aikore_die "$dest is still in the way; not linking it"
    fi
    ln -sn -- "$shared" "$dest"
    aikore_log "linked $dest -> $shared"
}

# aikore_output_dir — create $INSTANCE_OUTPUT_DIR and print its path.
aikore_output_dir() {
    [[ -n "${INSTANCE_OUTPUT_DIR:-}" ]] || aikore_die "INSTANCE_OUTPUT_DIR is not set"
    mkdir -p -- "$INSTANCE_OUTPUT_DIR"
    printf '%s\n' "$INSTANCE_OUTPUT_DIR"
}

# aikore_exec CMD [ARG...] — log the command line, then replace the shell with it (the app keeps
# the PID supervisord watches, and receives its signals directly).
aikore_exec() {
    [[ $# -gt 0 ]] || aikore_die "usage: aikore_exec CMD [ARG...]"
    local quoted
    quoted="$(printf '%q ' "$@")"
    aikore_log "exec: ${quoted% }"
    exec "$@"
}
