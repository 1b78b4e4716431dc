"""Who runs what when AiKore is started as root (the container's default, or `make run` as root).

Two unprivileged users then share the work, and root keeps only what needs it:

- **AiKore's user** (``AIKORE_USER``, default ``aikore``; in the container its uid and gid are
  ``PUID``/``PGID``) runs daphne, the worker, the watcher, nginx and the boot job, and owns
  AiKore's files: the database, the secret key, tokens, sockets, logs and configs (0600/0700).
- **The apps' user** (``AIKORE_APP_USER``, default ``aikore-app``; uid ``AIKORE_APP_UID`` when set)
  runs every instance and every instance terminal. Its primary group is AiKore's group, so what
  apps write (group-writable: instances run with a umask that keeps the group's write bit) can be
  read, moved and deleted by AiKore and by the host user who owns ``PGID``; what AiKore keeps to
  itself is mode 0600/0700 and out of the group's reach.
- **root** runs supervisord (it starts programs as either user and signals both) and the start-up
  steps around it (docker/entry.sh: this module's ``setup``, then ``manage.py stack prepare``,
  then ``own``).

Folders the apps use are AiKore's, group-shared, setgid (mode 2770): ``instances/<name>/``,
``outputs/``, ``models/`` (and their first level), ``cache/``, ``home/``, ``terminals/`` and
``tmp/``. The data dir, ``instances/`` and ``trash/`` are traversable by the group but not writable
(0750/0700), so an app can never rename or replace anything AiKore reads outside the folders above.

Started as a normal user, nothing here runs: everything runs as that user, as before.

``python -m aikore_site.privileges setup`` creates or adjusts the two users (and the group) and fixes
ownership; ``own`` fixes ownership only (after a step that ran as root created files). Ownership is
fixed without following symbolic links, never recursively in ``models/`` or ``outputs/`` (big model
folders took upstream images 10+ minutes), and recursively only once for an instance folder or a
cache that predates the two users (made by an older, single-user AiKore).

Standard library only: it runs before Django is set up.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DEFAULT_USER = "aikore"
DEFAULT_APP_USER = "aikore-app"
USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,30}")
SHARED_DIR_MODE = 0o2770  # setgid: what is created inside gets AiKore's group
NOLOGIN = next((p for p in ("/usr/sbin/nologin", "/sbin/nologin") if os.path.exists(p)), "/bin/false")

# Layout of the data dir, by who may write where (see the module's docstring).
PRIVATE_TREES = ("run", "logs", "supervisor", "nginx", "static", "custom_blueprints")
PRIVATE_FILES = ("aikore.db", "aikore.db-wal", "aikore.db-shm", "aikore.db-journal", "huey.db", "huey.db-wal",
                 "huey.db-shm", "huey.db-journal", "secret_key", "admin_password", "stack_token")
SHARED_DIRS = ("models", "outputs", "cache", "home", "terminals", "tmp")
# Shared folders whose content an older single-user AiKore made: group rights added once, recursively.
SHARED_TREES_ONCE = ("cache/uv", "cache/python")


class SetupError(RuntimeError):
    """The users could not be set up; the message says what to change."""


@dataclass(frozen=True)
class Users:
    user: str
    uid: int
    gid: int  # AiKore's group: the apps' user's primary group too
    app_user: str
    app_uid: int


def lookup(user: str, app_user: str) -> Users:
    """The two users as the system knows them (KeyError when one is missing)."""
    aikore = pwd.getpwnam(user)
    app = pwd.getpwnam(app_user)
    return Users(user, aikore.pw_uid, aikore.pw_gid, app_user, app.pw_uid)


def _run(args: list[str]) -> None:
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode != 0:
        raise SetupError(f"{' '.join(args)} failed: {(result.stderr or result.stdout).strip()}")


def _int_env(name: str, value: str | None) -> int | None:
    if value is None or value.strip() == "":
        return None
    if not value.strip().isdigit() or not 1 <= int(value) < 2**31 - 1:
        raise SetupError(f"{name} must be a positive number (a user or group id), got {value!r}")
    return int(value)


def _group_of(gid: int) -> str | None:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return None


def ensure_users(user: str = DEFAULT_USER, app_user: str = DEFAULT_APP_USER, puid: int | None = None,
                 pgid: int | None = None, app_uid: int | None = None, home: str = "/nonexistent") -> Users:
    """Create or adjust AiKore's user (uid puid, primary group gid pgid when given) and the apps'
    user (uid app_uid when given; primary group: AiKore's). Idempotent; as linuxserver.io images do,
    an existing user's ids are changed in place (``-o``: an id may already be taken)."""
    for name, value in (("AIKORE_USER", user), ("AIKORE_APP_USER", app_user)):
        if not USER_NAME.fullmatch(value) or value == "root":
            raise SetupError(f"{name} must be a user name other than root (letters, digits, '_', '-'), got {value!r}")
    if user == app_user:
        raise SetupError("AIKORE_USER and AIKORE_APP_USER must be two different users")
    if puid == 0 or pgid == 0 or app_uid == 0:
        raise SetupError("PUID, PGID and AIKORE_APP_UID must not be 0 (root)")
    # AiKore's group: the one with gid PGID if it exists (e.g. 100 "users"), else one named after AiKore's user.
    group = _group_of(pgid) if pgid is not None else None
    if group is None:
        try:
            existing = grp.getgrnam(user)
        except KeyError:
            _run(["groupadd", *(["-o", "-g", str(pgid)] if pgid is not None else ["--system"]), user])
        else:
            if pgid is not None and existing.gr_gid != pgid:
                _run(["groupmod", "-o", "-g", str(pgid), user])
        group = user
    gid = grp.getgrnam(group).gr_gid
    uid = _ensure_user(user, puid, group, gid, home)
    if uid == 0:
        raise SetupError(f"the user {user!r} has uid 0 (root); choose another AIKORE_USER")
    if app_uid is not None and app_uid == uid:
        raise SetupError(f"AIKORE_APP_UID ({app_uid}) is AiKore's own uid (PUID): the apps need a uid of their own")
    _ensure_user(app_user, app_uid, group, gid, home)
    users = lookup(user, app_user)
    if users.app_uid in (0, users.uid):
        raise SetupError(f"the apps' user {app_user!r} has uid {users.app_uid}, which is "
                         f"{'root' if users.app_uid == 0 else 'AiKore’s own'}: set AIKORE_APP_UID to another id")
    return users


def _ensure_user(name: str, uid: int | None, group: str, gid: int, home: str) -> int:
    """Create the user (uid `uid`, or a system one) in `group`, or move an existing one to that uid
    and group in place. Returns its uid."""
    try:
        current = pwd.getpwnam(name)
    except KeyError:
        _run(["useradd", *(["-o", "-u", str(uid)] if uid is not None else ["--system"]), "-g", group,
              "-M", "-d", home, "-s", NOLOGIN, name])
    else:
        if (uid is not None and current.pw_uid != uid) or current.pw_gid != gid:
            _run(["usermod", "-o", *(["-u", str(uid)] if uid is not None and current.pw_uid != uid else []),
                  "-g", group, name])
    return pwd.getpwnam(name).pw_uid


# --- ownership -------------------------------------------------------------------------------


@contextlib.contextmanager
def _opened(path: Path, directory: bool = False) -> Iterator[int | None]:
    """A descriptor of the path itself, never of what a symbolic link there points to (None when it
    is missing, a link, or not a directory where one is expected)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | (os.O_DIRECTORY if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        yield None
        return
    try:
        yield fd
    finally:
        os.close(fd)


def own(path: Path, users: Users, mode: int | None = None, only_foreign: bool = False) -> bool:
    """chown path (not a link) to AiKore's user and group, and chmod it to `mode` (a directory keeps
    bits beyond the mode it is given, e.g. setgid). only_foreign: leave it to its owner when that is
    one of the two users (a folder an app made stays the app's). Returns whether it changed."""
    with _opened(path) as fd:
        if fd is None:
            return False
        st = os.fstat(fd)
        changed = False
        if not (only_foreign and st.st_uid in (users.uid, users.app_uid)) and (st.st_uid, st.st_gid) != (users.uid, users.gid):
            os.fchown(fd, users.uid, users.gid)
            changed = True
        if mode is not None and stat.S_IMODE(st.st_mode) != mode and (
                not only_foreign or st.st_uid not in (users.app_uid,)):
            os.fchmod(fd, mode)
            changed = True
        return changed


def _own_tree(root: Path, users: Users) -> int:
    """chown everything under root (not following links) to AiKore's user and group."""
    count = 0
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory, name)
            try:
                st = os.lstat(path)
                if (st.st_uid, st.st_gid) != (users.uid, users.gid):
                    os.lchown(path, users.uid, users.gid)
                    count += 1
            except OSError:
                continue
    return count


def _share_tree(root: Path, users: Users) -> int:
    """Give AiKore's group read and write on everything under root, made by an older single-user
    AiKore (not following links): chgrp, g+rw (g+x where the owner has x), setgid directories."""
    count = 0
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory, name)
            try:
                st = os.lstat(path)
                if stat.S_ISLNK(st.st_mode):
                    continue
                mode = stat.S_IMODE(st.st_mode) | stat.S_IRGRP | stat.S_IWGRP
                if st.st_mode & stat.S_IXUSR:
                    mode |= stat.S_IXGRP
                if stat.S_ISDIR(st.st_mode):
                    mode |= stat.S_ISGID
                if st.st_gid != users.gid:
                    os.lchown(path, -1, users.gid)
                if mode != stat.S_IMODE(st.st_mode):
                    os.chmod(path, mode)  # not a link (checked above); chmod cannot follow one
                count += 1
            except OSError:
                continue
    return count


def _is_shared(path: Path, users: Users) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return True  # nothing to share (yet)
    return stat.S_ISDIR(st.st_mode) and bool(st.st_mode & stat.S_ISGID) and st.st_gid == users.gid


def fix_ownership(data_dir: Path, users: Users) -> list[str]:
    """Make the data dir's layout match the two users (see the module's docstring). Cheap when it
    already does: a few dozen stat() calls plus one per instance and model folder."""
    notes: list[str] = []
    data_dir = Path(os.path.realpath(data_dir))
    data_dir.mkdir(parents=True, exist_ok=True)
    own(data_dir, users, 0o750)
    for name in PRIVATE_FILES:
        own(data_dir / name, users)
    for name in PRIVATE_TREES:
        if own(data_dir / name, users, 0o700) | bool(_own_tree(data_dir / name, users)):
            notes.append(f"{name}/: owner set to {users.user}")
    own(data_dir / "trash", users, 0o700)
    own(data_dir / "instances", users, 0o750)
    for name in SHARED_DIRS:
        own(data_dir / name, users, SHARED_DIR_MODE)
        # The first level only: models/<type>, outputs/<instance>, cache/<tool>. Deeper folders an
        # older single-user AiKore made keep their modes (never a recursive pass over models or outputs).
        for child in _subdirs(data_dir / name):
            own(child, users, SHARED_DIR_MODE, only_foreign=True)
            _add_group_rights(child, users)
    for name in SHARED_TREES_ONCE:
        path = data_dir / name
        if not _is_shared(path, users):
            notes.append(f"{name}/: group rights given to {users.app_user} ({_share_tree(path, users)} entries)")
            own(path, users, SHARED_DIR_MODE)
    for instance_dir in _subdirs(data_dir / "instances"):
        if not _is_shared(instance_dir, users):
            count = _share_tree(instance_dir, users)
            notes.append(f"instances/{instance_dir.name}/: group rights given to {users.app_user} ({count} entries)")
        own(instance_dir, users, SHARED_DIR_MODE)
    return notes


def _subdirs(path: Path) -> list[Path]:
    try:
        with os.scandir(path) as entries:
            return [Path(e.path) for e in entries if e.is_dir(follow_symlinks=False)]
    except OSError:
        return []


def _add_group_rights(path: Path, users: Users) -> None:
    """A folder owned by the apps' user keeps its owner; AiKore's group still needs rwx on it."""
    with _opened(path, directory=True) as fd:
        if fd is None:
            return
        st = os.fstat(fd)
        wanted = stat.S_IMODE(st.st_mode) | stat.S_IRWXG | stat.S_ISGID
        if st.st_gid == users.gid and wanted != stat.S_IMODE(st.st_mode):
            with contextlib.suppress(PermissionError):
                os.fchmod(fd, wanted)


def reachable(path: Path, users: Users) -> str | None:
    """Why one of the two users could not reach path (a folder on the way it may not enter), or None."""
    path = Path(os.path.realpath(path))
    for parent in [*reversed(path.parents), path]:
        try:
            st = os.stat(parent)
        except FileNotFoundError:
            return None  # created later, by AiKore's setup, as root
        for name, uid in ((users.user, users.uid), (users.app_user, users.app_uid)):
            if st.st_uid == uid:
                ok = st.st_mode & stat.S_IXUSR
            elif st.st_gid == users.gid:
                ok = st.st_mode & stat.S_IXGRP
            else:
                ok = st.st_mode & stat.S_IXOTH
            if not ok:
                return f"{parent} (mode {stat.S_IMODE(st.st_mode):o}, owner uid {st.st_uid}) is closed to {name}"
    return None


def users_from_environment() -> Users:
    """ensure_users() with the settings from the environment (PUID, PGID, AIKORE_USER,
    AIKORE_APP_USER, AIKORE_APP_UID)."""
    return ensure_users(
        user=os.environ.get("AIKORE_USER") or DEFAULT_USER,
        app_user=os.environ.get("AIKORE_APP_USER") or DEFAULT_APP_USER,
        puid=_int_env("PUID", os.environ.get("PUID")),
        pgid=_int_env("PGID", os.environ.get("PGID")),
        app_uid=_int_env("AIKORE_APP_UID", os.environ.get("AIKORE_APP_UID")),
    )


def adopt_for_root_process() -> None:
    """For a root process that starts stacks and works on their data dirs itself (the tests, the
    benchmarks): create the two users as entry.sh would and export AIKORE_USER/AIKORE_APP_USER, so
    this process's settings match the stack's (files it makes for the stack go to AiKore's user).
    Before Django's settings are loaded. Not root, or AIKORE_USER=root: nothing to do."""
    if os.geteuid() != 0 or os.environ.get("AIKORE_USER", "") == "root":
        return
    users = ensure_users(os.environ.get("AIKORE_USER") or DEFAULT_USER,
                         os.environ.get("AIKORE_APP_USER") or DEFAULT_APP_USER)
    os.environ["AIKORE_USER"], os.environ["AIKORE_APP_USER"] = users.user, users.app_user


def main(argv: list[str]) -> int:
    """setup: create or adjust the users, check that both can reach AiKore's code and data dir, and
    print shell assignments (AIKORE_USER, AIKORE_GROUP, AIKORE_APP_USER) for entry.sh, which exports
    them (`manage.py stack prepare` fixes ownership next). own: fix ownership in the data dir."""
    if len(argv) != 2 or argv[1] not in ("setup", "own"):
        print("usage: python -m aikore_site.privileges setup|own", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("aikore_site.privileges: needs root", file=sys.stderr)
        return 2
    data_dir = Path(os.environ.get("AIKORE_DATA_DIR") or "data")
    try:
        if argv[1] == "own":
            users = lookup(os.environ.get("AIKORE_USER") or DEFAULT_USER,
                           os.environ.get("AIKORE_APP_USER") or DEFAULT_APP_USER)
            for note in fix_ownership(data_dir, users):
                print(f"AiKore: {note}", file=sys.stderr)
            return 0
        users = users_from_environment()
        # The data dir itself is AiKore's (its mode is set next); the folders above it are not.
        python = Path(os.path.realpath(os.environ.get("AIKORE_PYTHON") or sys.executable))
        for path, fix in ((Path(os.environ.get("AIKORE_HOME") or "."), "Move it to a folder others may enter "
                           "(e.g. /opt/aikore)"),
                          (python, "Make AiKore's venv from a Python others may run (Debian's /usr/bin/python3: "
                           "rm -rf .venv; make)"),
                          (Path(os.path.realpath(data_dir)).parent, "Use a data dir in a folder others may enter")):
            problem = reachable(path, users)
            if problem:
                raise SetupError(
                    f"Started as root, AiKore runs as {users.user!r} and its apps as {users.app_user!r}, "
                    f"which must reach {path}: {problem}. {fix}, or start AiKore as a normal user.")
    except (SetupError, KeyError, OSError) as exc:
        print(f"AiKore: {exc}", file=sys.stderr)
        return 1
    group = _group_of(users.gid) or str(users.gid)
    print(f"AIKORE_USER={users.user}\nAIKORE_GROUP={group}\nAIKORE_APP_USER={users.app_user}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
