"""`python manage.py instances ...`: the command-line face of the same operations the API, the
admin and the dashboard use."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from aikore_site.files import open_no_symlink
from instances import lifecycle
from instances.models import Instance, InstanceStatus, ServiceUnavailable
from instances.serializers import instance_summary


def _validation_message(exc: ValidationError) -> str:
    if hasattr(exc, "message_dict"):
        return "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items())
    return " ".join(exc.messages)


class Command(BaseCommand):
    help = "Manage AiKore instances: list, create, edit, start, stop, restart, update, rebuild, delete, logs."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

        p = sub.add_parser("list", help="List instances.")
        p.add_argument("--json", action="store_true", help="Print a JSON array.")

        p = sub.add_parser("create", help="Create an instance from a blueprint.")
        p.add_argument("--name", required=True)
        p.add_argument("--blueprint", required=True, help="Blueprint file name without .sh")
        p.add_argument("--gpus", default="", help='GPU ids, e.g. "0,1" (empty: all)')
        p.add_argument("--autostart", action="store_true")
        p.add_argument("--port", type=int, default=None)
        p.add_argument("--launch-args", default="")
        p.add_argument("--output-path", default="")
        p.add_argument("--python", dest="python_version", default=None,
                       help="Python version of its environment, e.g. 3.12 (default: the blueprint's)")
        p.add_argument("--torch", dest="torch_variant", default="auto",
                       help="auto (from the NVIDIA driver), cpu, cu128, cu130, ... (default: auto)")
        p.add_argument("--git-ref", default="", help="Branch, tag or commit instead of the blueprint's")
        p.add_argument("--parent", default=None,
                       help="Make a satellite of this instance (runs its code and environment)")

        p = sub.add_parser("edit", help="Change an instance's settings (restarts it when needed).")
        p.add_argument("name")
        p.add_argument("--rename", dest="new_name", default=None)
        p.add_argument("--gpus", default=None)
        p.add_argument("--port", default=None)
        p.add_argument("--launch-args", default=None)
        p.add_argument("--output-path", default=None)
        p.add_argument("--python", dest="python_version", default=None)
        p.add_argument("--torch", dest="torch_variant", default=None)
        p.add_argument("--git-ref", default=None)

        for action in ("start", "stop", "restart"):
            p = sub.add_parser(action, help=f"{action.capitalize()} an instance (queues the job).")
            p.add_argument("name")
            p.add_argument("--wait", action="store_true", help="Wait until the job has settled.")
            p.add_argument("--timeout", type=float, default=120.0)

        for action, text in (("update", "Fetch the code and install what changed (local edits are kept)."),
                             ("rebuild", "Delete the Python environment and build it again from the uv cache.")):
            p = sub.add_parser(action, help=f"{text} A running instance is restarted.")
            p.add_argument("name")
            p.add_argument("--wait", action="store_true", help="Wait until the install has settled.")
            p.add_argument("--timeout", type=float, default=3600.0)

        p = sub.add_parser("delete", help="Stop and delete an instance (outputs and shared models are kept).")
        p.add_argument("name")
        files = p.add_mutually_exclusive_group()
        files.add_argument("--keep-files", action="store_true", default=None,
                           help="Move its directory to trash/ (the default when it holds your files).")
        files.add_argument("--delete-files", dest="keep_files", action="store_false",
                           help="Delete its directory even when it holds your files.")

        p = sub.add_parser("logs", help="Print an instance's log.")
        p.add_argument("name")
        p.add_argument("--follow", "-f", action="store_true")
        p.add_argument("--lines", "-n", type=int, default=200)

        sub.add_parser("reconcile", help="Make the database agree with supervisord now.")
        sub.add_parser("boot", help="Reconcile, start every instance meant to run and the autostart ones "
                                    "(run at AiKore start).")

    def handle(self, *args: Any, **opts: Any) -> None:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        getattr(self, f"do_{opts['action']}")(opts)

    def get(self, name: str) -> Instance:
        instance = Instance.objects.filter(name=name).first() or Instance.objects.filter(slug=name).first()
        if instance is None:
            raise CommandError(f"No instance named {name!r}. Try: manage.py instances list")
        return instance

    def do_list(self, opts: dict) -> None:
        rows = [instance_summary(i) for i in Instance.objects.all()]
        if opts["json"]:
            self.stdout.write(json.dumps(rows, indent=2))
            return
        if not rows:
            self.stdout.write("No instances. Create one with: manage.py instances create --name N --blueprint B")
            return
        fmt = "{:<4} {:<24} {:<18} {:<10} {:>7} {:>6} {:<6} {}"
        self.stdout.write(fmt.format("ID", "NAME", "BLUEPRINT", "STATUS", "PID", "PORT", "GPUS", "AUTOSTART"))
        for r in rows:
            self.stdout.write(fmt.format(r["id"], r["name"][:24], r["base_blueprint"][:18], r["status"],
                                         r["pid"] or "-", r["port"] or "-", r["gpu_ids"] or "all",
                                         "yes" if r["autostart"] else "no"))

    def do_create(self, opts: dict) -> None:
        try:
            instance = Instance.objects.create_instance(
                name=opts["name"], blueprint=opts["blueprint"], gpu_ids=opts["gpus"], autostart=opts["autostart"],
                port=opts["port"], launch_args=opts["launch_args"], output_path=opts["output_path"],
                python_version=opts["python_version"], torch_variant=opts["torch_variant"],
                git_ref=opts["git_ref"], parent=opts["parent"],
            )
        except ValidationError as exc:
            raise CommandError(_validation_message(exc)) from None
        self.stdout.write(self.style.SUCCESS(f"Created instance {instance.name!r} (id {instance.pk}, slug {instance.slug})."))

    def _act(self, opts: dict, action: str) -> None:
        instance = self.get(opts["name"])
        try:
            job = getattr(instance, action)()
        except ServiceUnavailable as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(f"{action} queued for {instance.name!r} (job {job})."))
        if opts["wait"]:
            settled = {"start": (InstanceStatus.RUNNING, InstanceStatus.FAILED),
                       "restart": (InstanceStatus.RUNNING, InstanceStatus.FAILED),
                       "stop": (InstanceStatus.STOPPED, InstanceStatus.FAILED)}[action]
            deadline = time.monotonic() + opts["timeout"]
            time.sleep(0.05)
            while time.monotonic() < deadline:
                instance.refresh_from_db()
                if instance.status in settled:
                    break
                time.sleep(0.05)
            style = self.style.SUCCESS if instance.status != InstanceStatus.FAILED else self.style.ERROR
            self.stdout.write(style(f"{instance.name}: {instance.status}"
                                    + (f" ({instance.error_message})" if instance.error_message else "")))
            if instance.status not in settled:
                raise CommandError(f"Timed out after {opts['timeout']} s waiting for {action}.")

    def do_edit(self, opts: dict) -> None:
        instance = self.get(opts["name"])
        fields = {"name": "new_name", "gpu_ids": "gpus", "port": "port", "launch_args": "launch_args",
                  "output_path": "output_path", "python_version": "python_version",
                  "torch_variant": "torch_variant", "git_ref": "git_ref"}
        changes = {field: opts[option] for field, option in fields.items() if opts[option] is not None}
        if changes.get("port") == "auto":
            changes["port"] = None
        try:
            result = instance.update_settings(changes)
        except ValidationError as exc:
            raise CommandError(_validation_message(exc)) from None
        self.stdout.write(self.style.SUCCESS(result["message"]))

    def _env_action(self, opts: dict, method: str) -> None:
        instance = self.get(opts["name"])
        generation = instance.generation
        try:
            result = getattr(instance, method)()
        except ValidationError as exc:
            raise CommandError(_validation_message(exc)) from None
        except ServiceUnavailable as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(f"{result['message']} (job {result['job_id']})"))
        if not opts["wait"]:
            return
        settled = (InstanceStatus.RUNNING, InstanceStatus.FAILED) if result["restarts"] else (
            InstanceStatus.STOPPED, InstanceStatus.FAILED)
        deadline = time.monotonic() + opts["timeout"]
        while time.monotonic() < deadline:
            instance.refresh_from_db()
            # The job bumps the generation when it starts the install: wait for that first.
            if (instance.generation != generation and instance.status in settled
                    and (result["restarts"] or not instance.want_running)):
                break
            time.sleep(0.1)
        else:
            raise CommandError(f"Timed out after {opts['timeout']} s (status {instance.status}).")
        style = self.style.SUCCESS if instance.status != InstanceStatus.FAILED else self.style.ERROR
        self.stdout.write(style(f"{instance.name}: {instance.status}"
                                + (f" ({instance.error_message})" if instance.error_message else "")))
        if instance.status == InstanceStatus.FAILED:
            raise CommandError(f"{method.split('_')[0]} failed.")

    def do_update(self, opts: dict) -> None:
        self._env_action(opts, "update_app")

    def do_rebuild(self, opts: dict) -> None:
        self._env_action(opts, "rebuild_env")

    def do_start(self, opts: dict) -> None:
        self._act(opts, "start")

    def do_stop(self, opts: dict) -> None:
        self._act(opts, "stop")

    def do_restart(self, opts: dict) -> None:
        self._act(opts, "restart")

    def do_delete(self, opts: dict) -> None:
        instance = self.get(opts["name"])
        name = instance.name
        plan = instance.deletion_plan()
        keep = plan["trash_default"] if opts["keep_files"] is None else opts["keep_files"]
        try:
            instance.delete_everything(keep_files=keep)
        except ValidationError as exc:
            raise CommandError(_validation_message(exc)) from None
        where = f" (moved to {plan['trash_dir']})" if keep else ""
        self.stdout.write(self.style.SUCCESS(f"Deleted instance {name!r}{where}; its outputs and the shared models are kept."))

    def do_logs(self, opts: dict) -> None:
        instance = self.get(opts["name"])
        path = instance.log_path
        out = sys.stdout.buffer
        try:
            fh = open_no_symlink(path)
        except FileNotFoundError:
            if not opts["follow"]:
                self.stderr.write(f"No log yet for {instance.name!r}.")
                return
            while not path.exists():
                time.sleep(0.2)
            fh = open_no_symlink(path)
        with fh:
            data = fh.read()
            lines = data.splitlines(keepends=True)
            out.write(b"".join(lines[-opts["lines"]:]) if opts["lines"] > 0 else data)
            out.flush()
            if not opts["follow"]:
                return
            inode = os.fstat(fh.fileno()).st_ino
            while True:
                chunk = fh.read(65536)
                if chunk:
                    out.write(chunk)
                    out.flush()
                    continue
                time.sleep(0.1)
                try:
                    if os.stat(path).st_ino != inode:  # rotated: drain the old file, then reopen
                        rest = fh.read()
                        if rest:
                            out.write(rest)
                        fh.close()
                        fh = open_no_symlink(path)
                        inode = os.fstat(fh.fileno()).st_ino
                except FileNotFoundError:
                    pass

    def do_reconcile(self, opts: dict) -> None:
        changes = lifecycle.reconcile()
        for change in changes:
            self.stdout.write(change)
        self.stdout.write(self.style.SUCCESS(f"Reconciled ({len(changes)} changes)."))

    def do_boot(self, opts: dict) -> None:
        changes = lifecycle.boot()
        for change in changes:
            self.stdout.write(change)
        self.stdout.write(self.style.SUCCESS(f"Booted ({len(changes)} changes)."))
