"""Static checks of blueprint scripts (stock, test and custom ones): `bash -n`, ShellCheck, the header
(through instances/blueprints.py's parser: no problems), and AiKore's own rules: no `eval`, never
listening on every interface, no recursive `rm` outside the instance's own folders.

`make test` runs them on every blueprint in the repository (instances/tests/test_blueprint_lint.py)
and on each blueprint a test writes (instances/tests/helpers.custom_blueprint). A line may opt out of
one of AiKore's rules with a comment saying why: `# aikore-lint: allow <rule> (reason)`, rule being
eval, listen or rm.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

from django.conf import settings

from instances.blueprints import CATEGORIES, parse_metadata

# ShellCheck codes ignored in blueprints (the same as blueprints/.shellcheckrc, which editors read):
# a sourced file named through a variable can't be followed; install functions are run by name.
SHELLCHECK_EXCLUDE = ("SC1090", "SC1091", "SC2317")
# The instance's own folders: a recursive rm may only aim inside them.
OWN_FOLDERS = ("INSTANCE_CONF_DIR", "AIKORE_APP_DIR", "AIKORE_ENV_DIR")
ALLOW_RE = re.compile(r"#\s*aikore-lint:\s*allow\s+(eval|listen|rm)\b")
EVAL_RE = re.compile(r"(?:^|[\s;&|({`])eval(?:\s|$)")
ALL_INTERFACES_RE = re.compile(
    r"0\.0\.0\.0"  # IPv4 "any"
    r"|(?:^|[\s\"'=\[(,])::(?:$|[\s\"'\]),])"  # IPv6 "any" ([::], "::", --host ::)
    r"|--listen(?=\s*(?:\\?$|--|[;&|)]))"  # a bare --listen means every interface in most apps
    r"|--(?:host|listen|server[-_]name)[=\s]+[\"']?\*"  # "*" (SwarmUI, ASP.NET)
)
RM_RE = re.compile(r"(?:^|[\s;&|({`])rm\s+([^;&|`\n]*)")


def _code_lines(text: str) -> list[tuple[int, str, str]]:
    """(line number, the line without a trailing comment, the comment) for lines that are not
    comments. A `#` starts a comment at the start of a word, outside quotes (close enough for
    these checks: a quoted multi-line Python snippet is checked like shell)."""
    lines = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("#"):
            continue
        code, comment, quote = line, "", ""
        for i, ch in enumerate(line):
            if quote:
                if ch == quote:
                    quote = ""
            elif ch in "'\"":
                quote = ch
            elif ch == "#" and (i == 0 or line[i - 1] in " \t;"):
                code, comment = line[:i], line[i:]
                break
        lines.append((number, code, comment))
    return lines


def _rm_targets_ok(args: str) -> bool:
    """Is this `rm` harmless here: not recursive, or every operand inside the instance's folders?"""
    try:
        words = shlex.split(args, posix=True)
    except ValueError:
        return False
    options = [w for w in words if w.startswith("-") and w != "--"]
    recursive = any(w == "--recursive" or (not w.startswith("--") and ("r" in w or "R" in w)) for w in options)
    if not recursive:
        return True
    operands = [w for w in words if not w.startswith("-")]
    if not operands:
        return False
    for word in operands:
        if ".." in word.split("/"):
            return False
        if not any(word == f"${name}" or word.startswith((f"${name}/", f"${{{name}}}/")) or word == f"${{{name}}}"
                   for name in OWN_FOLDERS):
            return False
    return True


def rule_problems(text: str) -> list[str]:
    """AiKore's own rules (no eval, no listening on every interface, no rm -rf outside the
    instance's folders), line by line."""
    problems = []
    for number, code, comment in _code_lines(text):
        allowed = set(ALLOW_RE.findall(comment))
        if "eval" not in allowed and EVAL_RE.search(code):
            problems.append(f"line {number}: eval runs text as code; pass arguments as an array instead")
        if "listen" not in allowed and ALL_INTERFACES_RE.search(code):
            problems.append(f"line {number}: listens on every interface; apps listen on 127.0.0.1 only "
                            "(AiKore's proxy reaches them there)")
        if "rm" not in allowed:
            for match in RM_RE.finditer(code):
                if not _rm_targets_ok(match.group(1)):
                    problems.append(f"line {number}: recursive rm outside the instance's own folders "
                                    f"(${', $'.join(OWN_FOLDERS)})")
    return problems


def header_problems(text: str, catalogue: bool = False) -> list[str]:
    """The header parser's problems; with `catalogue`, also what a stock app must state."""
    values, problems = parse_metadata(text)
    if catalogue and values["kind"] == "app":
        installs = values["git_url"] or values["python_version"] or values["torch"]
        for key in ("name", "description", "vram", "downloads", *(("homepage",) if installs else ())):
            if not values[key]:
                problems.append(f"aikore.{key} is missing (the catalogue shows it)")
        if values["category"] not in CATEGORIES:
            problems.append(f"aikore.category {values['category']!r} is not one of {', '.join(CATEGORIES)}")
        if values["ready"] == "none":
            problems.append("aikore.ready is none: a stock app needs a readiness check")
    return problems


def shell_problems(text: str) -> list[str]:
    """bash -n, then ShellCheck (without .shellcheckrc, so the result is the same everywhere)."""
    syntax = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True, timeout=30)
    if syntax.returncode:
        return [f"bash -n: {syntax.stderr.strip()}"]
    shellcheck = shutil.which("shellcheck")
    if not shellcheck:
        return ["shellcheck is not installed (Debian package shellcheck; scripts/system-deps.sh test installs it)"]
    result = subprocess.run(
        [shellcheck, "--norc", "--shell=bash", "--format=gcc", f"--exclude={','.join(SHELLCHECK_EXCLUDE)}", "-"],
        input=text, capture_output=True, text=True, timeout=60)
    return [f"shellcheck: {line.removeprefix('-:')}" for line in result.stdout.splitlines() if line.strip()]


def lint_text(text: str, catalogue: bool = False) -> list[str]:
    """Every problem of a blueprint's text; [] when it passes."""
    return shell_problems(text) + header_problems(text, catalogue) + rule_problems(text)


def lint_file(path: Path) -> list[str]:
    stock = Path(path).resolve().parent == Path(settings.STOCK_BLUEPRINTS_DIR).resolve()
    return lint_text(Path(path).read_text(encoding="utf-8"), catalogue=stock)
