"""A stand-in for a real WebUI, for the stock blueprints' tests (instances/tests/test_stock_blueprints.py).

The fixture repositories and wheels carry this file and the app's spec (specs/<app>.json, and for
argparse apps specs/<app>.argparse: the app's own `add_argument` lines, copied from its source). It
parses its command line the way the real app does (an unknown or malformed option exits with
status 2, as argparse, Click and Typer do), records what it got (argv, parsed options, environment,
installed packages, where it listens) to $INSTANCE_CONF_DIR/fixture-record.json, then serves HTTP
where the real app would: the address and port its options or environment name, under its
sub-path when it mounts itself there. It answers 200 on the app's known routes (the readiness
check must use one) and 404 elsewhere, and adds every request to the record.

Standard library only, Python 3.10+: it runs on the instance's own Python.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))


class SpecError(Exception):
    """The spec uses something this interpreter does not understand (fix the spec or add it here)."""


def load_spec(app: str) -> dict:
    with open(os.path.join(HERE, "specs", f"{app}.json"), encoding="utf-8") as fh:
        spec = json.load(fh)
    argparse_file = os.path.join(HERE, "specs", f"{app}.argparse")
    if os.path.exists(argparse_file):
        with open(argparse_file, encoding="utf-8") as fh:
            spec["argparse_source"] = fh.read()
    return spec


# --- argparse from the app's own source lines ------------------------------------------------------


def existing_dir(value: str) -> str:
    """ComfyUI's is_valid_directory: the folder must exist and be readable."""
    if not os.path.isdir(value) or not os.access(value, os.R_OK):
        raise argparse.ArgumentTypeError(f"{value!r} is not a readable directory")
    return value


def int_range(low: int, high: int):
    """FaceFusion's sanitize_int_range."""
    def parse(value: str) -> int:
        number = int(value)
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(f"{value} is not in {low}..{high}")
        return number
    return parse


def frange(start: float, stop: float, step: float) -> list[float]:
    """FaceFusion's float ranges (both ends included), rounded like its create_float_range."""
    count = int(round((stop - start) / step))
    return [round(start + i * step, 2) for i in range(count + 1)]


class VerboseAction(argparse.Action):
    """ComfyUI's --verbose: no value, a console LEVEL, or LEVEL FILE; repeatable."""

    def __call__(self, parser, namespace, values, option_string=None):
        if len(values) > 2 or (values and values[0] not in ("DEBUG", "DETAIL", "INFO", "WARNING", "ERROR", "CRITICAL")):
            parser.error("--verbose expects no values, a console LEVEL, or LEVEL FILE")
        items = list(getattr(namespace, self.dest, None) or [])
        items.append(tuple(values) if values else ("DEBUG", None))
        setattr(namespace, self.dest, items)


SPECIAL = {
    "str": str, "int": int, "float": float, "Path": str, "existing_dir": existing_dir,
    "json": json.loads, "lower": str.lower, "VerboseAction": VerboseAction,
}


class SourceParser:
    """Builds an ArgumentParser from the app's `add_argument` lines (a restricted Python subset read
    with ast, never executed): assignments of groups, subparsers and an `add` alias, and calls of
    add_argument / add_parser / set_defaults. Names the app defines (its enums, its type
    functions) are mapped by the spec's "names"; defaults that are not literals become None."""

    def __init__(self, spec: dict) -> None:
        self.names: dict = spec.get("names", {})
        self.parser = argparse.ArgumentParser(prog=spec["app"], conflict_handler=spec.get("conflict_handler", "error"),
                                              allow_abbrev=spec.get("allow_abbrev", True))
        self.objects: dict[str, object] = {}
        self.subparsers = None
        tree = ast.parse(spec["argparse_source"])
        for node in tree.body:
            self.statement(node)

    def receiver(self, node: ast.expr) -> object:
        if isinstance(node, ast.Name) and node.id in self.objects:
            return self.objects[node.id]
        return self.parser  # parser, _parser, args_parser.parser, group (SD.Next reuses one name), ...

    def statement(self, node: ast.stmt) -> None:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, value = node.targets[0].id, node.value
            if isinstance(value, ast.Attribute) and value.attr == "add_argument":  # add = parser.add_argument
                self.objects[name] = self.receiver(value.value)
                return
            if isinstance(value, ast.Call):
                self.objects[name] = self.call(value)
            else:
                self.objects[name] = self.value(value)  # a constant the lines refer to
            return
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            self.call(node.value)
            return
        raise SpecError(f"line {node.lineno}: unsupported statement")

    def call(self, node: ast.Call) -> object:
        func = node.func
        if ast.unparse(func).split(".")[-1] == "ArgumentParser":
            return self.parser  # its options (prog, formatter) do not change what it accepts
        if isinstance(func, ast.Name):  # the `add` alias
            target, method = self.objects.get(func.id), "add_argument"
            if target is None:
                raise SpecError(f"line {node.lineno}: unknown function {func.id}")
        elif isinstance(func, ast.Attribute):
            target, method = self.receiver(func.value), func.attr
        else:
            raise SpecError(f"line {node.lineno}: unsupported call")
        args = [self.value(a) for a in node.args]
        kwargs = {k.arg: self.value(k.value, k.arg) for k in node.keywords}
        if method == "add_argument":
            if isinstance(target, argparse.ArgumentParser | argparse._ArgumentGroup):
                return target.add_argument(*args, **self.argument(kwargs))
            raise SpecError(f"line {node.lineno}: add_argument on {target!r}")
        if method == "add_mutually_exclusive_group":
            return target.add_mutually_exclusive_group()
        if method == "add_argument_group":
            return target.add_argument_group(*args)
        if method == "add_subparsers":
            self.subparsers = target.add_subparsers(dest=kwargs.get("dest"), required=kwargs.get("required", True))
            return self.subparsers
        if method == "add_parser":
            return target.add_parser(*args)
        if method == "set_defaults":
            return target.set_defaults(**kwargs)
        raise SpecError(f"line {node.lineno}: unsupported method {method}")

    def argument(self, kwargs: dict) -> dict:
        action = kwargs.get("action")
        if action == "EnumAction":  # ComfyUI/Fooocus: choices are the enum's values
            kwargs["action"] = "store"
            kwargs["choices"] = kwargs.pop("type")
            kwargs["type"] = str
        elif isinstance(action, type):
            kwargs["action"] = action
        if isinstance(kwargs.get("type"), list):  # an enum used as a type: its values
            kwargs["choices"] = kwargs.pop("type")
        if "version" in kwargs:
            kwargs["version"] = "fixture"
        return kwargs

    def value(self, node: ast.expr, keyword: str | None = None) -> object:
        try:
            return ast.literal_eval(node)
        except ValueError:
            pass
        if isinstance(node, ast.Name):
            if node.id in self.names:
                mapped = self.names[node.id]
                return SPECIAL.get(mapped, mapped) if isinstance(mapped, str) else mapped
            if node.id in SPECIAL:
                return SPECIAL[node.id]
        if isinstance(node, ast.Attribute):
            dotted = ast.unparse(node)
            if dotted in self.names:
                return self.names[dotted]
            if dotted == "json.loads":
                return json.loads
            if dotted == "str.lower":
                return str.lower
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            args = [self.value(a, keyword) for a in node.args]
            if name in ("os.environ.get", "env_flag", "os.getenv", "ini"):
                return args[1] if len(args) > 1 else None
            if name in ("float", "int", "str", "bool"):
                return {"float": float, "int": int, "str": str, "bool": bool}[name](args[0])
            if name == "range":
                return list(range(*args))
            if name == "frange":
                return frange(*args)
            if name == "sanitize_int_range":
                return int_range(*args)
            if keyword == "default":
                return None  # os.path.join(data_path, ...) and friends: the value does not matter here
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return not self.value(node.operand, keyword)
        if keyword in ("default", "help", "metavar", "version"):
            return None
        raise SpecError(f"can't read {ast.unparse(node)!r}" + (f" for {keyword}=" if keyword else ""))


# --- Typer (IOPaint) and SwarmUI's own parser --------------------------------------------------------


def typer_parser(spec: dict) -> argparse.ArgumentParser:
    """Typer/Click as argparse: a subcommand, `--x/--no-x` for every bool option, choices for enums."""
    parser = argparse.ArgumentParser(prog=spec["app"], allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True)
    for command, options in spec["typer"].items():
        cmd = sub.add_parser(command, allow_abbrev=False)
        for opt in options:
            name, kind = opt["name"], opt.get("type", "str")
            dest = name.lstrip("-").replace("-", "_")
            if kind == "bool":
                cmd.add_argument(name, dest=dest, action="store_true", default=opt.get("default", False))
                cmd.add_argument("--no-" + name[2:], dest=dest, action="store_false")
            else:
                cmd.add_argument(name, dest=dest, type={"int": int, "float": float}.get(kind, str),
                                 choices=opt.get("choices"), default=opt.get("default"))
    return parser


def swarm_parse(spec: dict, argv: list[str]) -> dict:
    """SwarmUI's Program.ParseCommandLineArgs: `--key value`, `--key=value` or a bare `--flag`; every
    token must start with -- (else an error); a repeated key is an error; unknown keys only warn."""
    values: dict[str, str] = {}
    i = 0
    while i < len(argv):
        token = argv[i]
        if not token.startswith("--"):
            sys.exit(f"Error: Unknown command line argument '{token}'")
        key, eq, value = token[2:].partition("=")
        key = key.lower().replace("-", "_")
        if not eq:
            if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                value = argv[i + 1]
                i += 1
            else:
                value = "true"
        if key in values:
            sys.exit(f"Error: Duplicate command line flag '{key}'")
        values[key] = value
        i += 1
    known = spec["swarm"]
    for key, value in values.items():
        kind = known.get(key, known.get(key.replace("_", "")))
        if kind is None:
            print(f"Unused command line flag '{key}'", file=sys.stderr)
        elif kind == "bool" and value.lower() not in ("true", "yes", "1", "false", "no", "0"):
            sys.exit(f"Error: Invalid boolean value '{value}' for '{key}'")
        elif isinstance(kind, list) and value.lower() not in kind:
            sys.exit(f"Error: Invalid value '{value}' for '{key}'")
        elif kind == "int" and not value.lstrip("-").isdigit():
            sys.exit(f"Error: Invalid number '{value}' for '{key}'")
    return values


def parse(spec: dict, argv: list[str]) -> dict:
    style = spec.get("style", "argparse")
    if style == "argparse":
        return vars(SourceParser(spec).parser.parse_args(argv))
    if style == "typer":
        return vars(typer_parser(spec).parse_args(argv))
    if style == "swarm":
        return swarm_parse(spec, argv)
    if style == "none":  # the app reads no arguments at all (FluxGym)
        return {}
    raise SpecError(f"unknown parser style {style!r}")


# --- where it listens ----------------------------------------------------------------------------


def pick(rules: list, args: dict, unset: tuple = (None, "", 0, "0", False)) -> object:
    """The first rule that gives a value: ["arg", name, format, also-unset...] (the parsed option,
    formatted with format when not empty), ["arg_true", name, value] (value when the option is
    set), ["env", name], ["value", v]. None, "", 0, "0" and False count as not given."""
    for rule in rules:
        kind, name = rule[0], rule[1]
        if kind == "arg":
            value = args.get(name)
            if value not in unset and value not in rule[3:]:
                return rule[2].format(value) if len(rule) > 2 and rule[2] else value
        elif kind == "arg_true":
            if args.get(name):
                return rule[2]
        elif kind == "env":
            value = os.environ.get(name)
            if value not in unset:
                return value
        elif kind == "value":
            return name
        else:
            raise SpecError(f"unknown rule {rule!r}")
    return None


def installed_packages() -> dict[str, str]:
    from importlib import metadata

    return {(d.metadata["Name"] or "").lower().replace("_", "-"): d.version for d in metadata.distributions()}


def torch_variant() -> str | None:
    try:
        from torch.variant import VARIANT  # the fake torch wheels say which index they came from
    except ImportError:
        return None
    return VARIANT


def importable(name: str) -> bool:
    import importlib

    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


class Recorder:
    def __init__(self, record: dict) -> None:
        self.record = record
        self.lock = threading.Lock()
        self.path = os.path.join(os.environ.get("INSTANCE_CONF_DIR") or os.getcwd(), "fixture-record.json")
        self.save()

    def add_request(self, entry: dict) -> None:
        with self.lock:
            self.record["requests"].append(entry)
            self.save()

    def save(self) -> None:
        tmp = f"{self.path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(self.record, fh, indent=1, default=str)
        os.replace(tmp, self.path)


def make_handler(spec: dict, recorder: Recorder, root_path: str):
    routes = set(spec.get("routes", ["/"]))
    mount = spec.get("mount")  # "subpath": the app serves under root_path itself (SD.Next)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            path = self.path.split("?", 1)[0]
            route = path
            if mount == "subpath" and root_path:
                if path != root_path and not path.startswith(root_path + "/"):
                    self.answer(308, {"redirect": root_path + path}, location=root_path + path)
                    return
                route = path[len(root_path):] or "/"
            status = 200 if route in routes else 404
            self.answer(status, {"app": spec["app"], "path": self.path, "route": route, "root_path": root_path,
                                 "host": self.headers.get("Host")})

        def answer(self, status: int, body: dict, location: str | None = None) -> None:
            recorder.add_request({"path": self.path, "status": status, "agent": self.headers.get("User-Agent", "")})
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if location:
                self.send_header("Location", location)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    return Handler


def serve(spec: dict, args: dict, argv: list[str]) -> None:
    bind = spec["bind"]
    host = str(pick(bind["host"], args)).split(",")[0]
    port = int(pick(bind["port"], args))
    root_path = str(pick(spec.get("root_path", []), args) or "").rstrip("/")
    if root_path and spec.get("root_path_leading_slash"):  # SD.Next adds the "/" when missing
        root_path = "/" + root_path.lstrip("/")
    record = {
        "app": spec["app"], "argv": argv, "args": args, "env": dict(os.environ), "cwd": os.getcwd(),
        "executable": sys.executable, "prefix": sys.prefix, "bind": {"host": host, "port": port},
        "root_path": root_path, "packages": installed_packages(), "torch_variant": torch_variant(),
        "imports": {name: importable(name) for name in spec.get("imports", [])}, "requests": [],
    }
    address = "127.0.0.1" if host == "localhost" else host

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in address else socket.AF_INET
        daemon_threads = True

    for attempt in range(10 if bind.get("port_moves_if_busy") else 1):
        try:
            server = Server((address, port + attempt), None)
            break
        except OSError as exc:
            if attempt == (9 if bind.get("port_moves_if_busy") else 0):
                sys.exit(f"{spec['app']} fixture: can't listen on {address}:{port}: {exc}")
            print(f"port {port + attempt} is busy, trying {port + attempt + 1}", file=sys.stderr)
    record["bind"]["port"] = server.server_address[1]
    recorder = Recorder(record)
    server.RequestHandlerClass = make_handler(spec, recorder, root_path)
    print(f"{spec['app']} fixture listening on {address}:{server.server_address[1]} (root path {root_path or '/'})",
          flush=True)
    server.serve_forever()


def main(app: str, argv: list[str] | None = None) -> None:
    spec = load_spec(app)
    argv = sys.argv[1:] if argv is None else argv
    args = parse(spec, argv)
    serve(spec, args, argv)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
