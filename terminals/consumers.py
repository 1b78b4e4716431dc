"""/ws/instances/<id>/terminal/?cols=C&rows=R: a browser's view of the instance's shell.

Each connection runs its own `tmux attach` (terminals/service.py) in a pty and relays bytes both
ways. Protocol:
  browser -> server  binary frames: keystrokes (and pastes), written to the pty as they are;
                     text {"type": "resize", "cols": C, "rows": R}: TIOCSWINSZ on the pty;
                     text {"type": "ack", "bytes": N}: N output bytes processed since the socket opened;
                     text {"type": "new_shell"}: replace the shell (dead or alive) with a fresh one.
  server -> browser  binary frames: terminal output; text {"type": "attached", "created": bool,
                     "stale": bool} before a (re)attachment's output (the browser resets its screen:
                     the scrollback and the screen follow); {"type": "ended"} when the shell exited
                     (nothing restarts it until "new_shell"); {"type": "error", "message": ...}.

Flow control, as for the log websocket: at most WINDOW output bytes are in flight unacknowledged;
past that the server stops reading the pty. tmux then sees a slow client and skips frames (it
redraws the screen when the client catches up), so `yes` costs the web process bounded memory and
the browser never queues more than WINDOW bytes to parse.

Only users with the admin role may connect (terminals/access.py), and a session that loses it
(logout, deactivation, another role) is closed at once; every open and close is logged with the
user's name, to the web process's log and as an [aikore] line in the instance's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import struct
import termios
import time
import tty
from collections import deque
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from accounts.live import LiveAccessMixin
from instances.models import Instance
from terminals import service
from terminals.access import TERMINAL_ROLE

log = logging.getLogger(__name__)

WINDOW = 256 * 1024
READ_CHUNK = 64 * 1024
MAX_PENDING_INPUT = 1024 * 1024
# A tmux client that keeps ending at once while the shell lives is a fault, not a restart.
REATTACH_LIMIT = 5
MAX_COLS, MAX_ROWS = 1000, 500


def _size(value: object, default: int, limit: int) -> int:
    try:
        number = int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default
    return max(2, min(number, limit))


def set_window_size(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class TerminalConsumer(LiveAccessMixin, AsyncWebsocketConsumer):
    """The admin role (terminals/access.py; LiveAccessMixin: refused without it at the handshake,
    closed at once when the user's access ends: logout, deactivation, a narrower role)."""

    required_role = TERMINAL_ROLE

    async def connect(self) -> None:
        if not await self.admit():
            return
        user = self.scope["user"]
        pk = self.scope["url_route"]["kwargs"]["instance_id"]
        instance = await database_sync_to_async(Instance.objects.filter(pk=pk).first)()
        if instance is None:
            await self.close(code=4404)
            return
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        self.cols = _size(query.get("cols", [80])[0], 80, MAX_COLS)
        self.rows = _size(query.get("rows", [24])[0], 24, MAX_ROWS)
        self.instance = instance
        self.username = user.get_username()
        self.loop = asyncio.get_running_loop()
        self.closing = False
        self.master: int | None = None
        self.client_ready = False
        self.proc: asyncio.subprocess.Process | None = None
        self.reading = False
        self.eof = asyncio.Event()
        self.wake = asyncio.Event()  # "new_shell" after the shell ended
        self.busy = False  # a new_shell in progress
        self.inbuf = bytearray()
        # Output: bytes and control messages in order; queued + sent bytes minus acknowledged ones
        # is what the window bounds.
        self.outq: deque[bytes | str] = deque()
        self.out_ready = asyncio.Event()
        self.window_open = asyncio.Event()
        self.window_open.set()
        self.produced = 0
        self.acked = 0
        await self.accept()
        self.opened_at = time.monotonic()
        await self._record(f"terminal opened by {self.username}")
        self.sender = asyncio.ensure_future(self._send_loop())
        self.task = asyncio.ensure_future(self._run())

    # --- the shell's life -----------------------------------------------------------------------

    async def _run(self) -> None:
        pk = self.instance.pk
        quick = 0
        try:
            state = await asyncio.to_thread(service.ensure_shell, self.instance, self.cols, self.rows)
            while not self.closing:
                started = time.monotonic()
                await self._attach(created=state.created, stale=state.stale)
                state = service.ShellState(created=False, stale=False)
                if self.closing:
                    return
                if await asyncio.to_thread(service.session_alive, pk):
                    # Another tab replaced the shell (the server restarted) or tmux let us go.
                    quick = quick + 1 if time.monotonic() - started < 2 else 0
                    if quick > REATTACH_LIMIT:
                        raise service.TerminalError("The terminal keeps disconnecting; see the terminal log in logs/.")
                    await asyncio.sleep(0.05 * quick)
                    continue
                self.wake.clear()
                self._queue_text({"type": "ended"})
                await self.wake.wait()
        except asyncio.CancelledError:
            raise
        except service.TerminalError as exc:
            await self._fail(str(exc))
        except Exception as exc:
            log.exception("terminal of instance %s failed", pk)
            await self._fail(f"The terminal failed: {exc}")

    async def _fail(self, message: str) -> None:
        self._queue_text({"type": "error", "message": message})
        await asyncio.sleep(0.2)  # let the sender deliver it
        await self.close(code=4500)

    async def _attach(self, created: bool, stale: bool) -> None:
        """Run one tmux client in a pty until it exits (shell ended, server restarted, closed)."""
        pk = self.instance.pk
        history = await asyncio.to_thread(service.history, pk)
        master, slave = os.openpty()
        try:
            set_window_size(master, self.cols, self.rows)
            # Raw from the start: a keystroke that arrives before tmux has taken over the tty must
            # not be turned into a signal (^C) or an echo by the line discipline.
            tty.setraw(slave)
            self.proc = await asyncio.create_subprocess_exec(
                *service.attach_command(pk), stdin=slave, stdout=slave, stderr=slave,
                env=service.client_environment(), close_fds=True,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        self.master = master
        self.client_ready = False  # until tmux draws: input waits in inbuf meanwhile
        self.eof.clear()
        self._queue_text({"type": "attached", "created": created, "stale": stale})
        try:
            if history:
                # Into the browser's scrollback: then as many line feeds as the screen has rows, so
                # tmux's drawing of the screen overwrites none of it.
                history += b"\r\n" * self.rows
                for start in range(0, len(history), READ_CHUNK):
                    await self.window_open.wait()
                    self._queue_bytes(history[start:start + READ_CHUNK])
            self._resume_reading()
            await self.eof.wait()
        finally:
            await self._detach()

    async def _detach(self) -> None:
        # Unregister from the event loop before closing: the next pty may get the same fd number,
        # and asyncio would take its registration for the old one's.
        self._pause_reading()
        master, proc = self.master, self.proc
        self.master, self.proc = None, None
        if master is not None:
            with contextlib.suppress(ValueError, OSError):
                self.loop.remove_writer(master)
            os.close(master)  # the client's controlling tty hangs up: it exits
        if proc is not None and proc.returncode is None:
            try:
                await asyncio.wait_for(proc.wait(), 2)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()

    # --- output: pty -> browser, bounded ------------------------------------------------------

    def _on_readable(self) -> None:
        if self.master is None:
            return
        try:
            data = os.read(self.master, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:  # EIO: the client closed its side
            data = b""
        if not data:
            self._pause_reading()
            self.eof.set()
            return
        self._queue_bytes(data)
        if not self.client_ready:
            self.client_ready = True
            self._flush_input()

    def _queue_bytes(self, data: bytes) -> None:
        self.outq.append(data)
        self.produced += len(data)
        self.out_ready.set()
        if self.produced - self.acked >= WINDOW:
            self.window_open.clear()
            self._pause_reading()

    def _queue_text(self, message: dict) -> None:
        self.outq.append(json.dumps(message))
        self.out_ready.set()

    def _pause_reading(self) -> None:
        if self.reading and self.master is not None:
            self.loop.remove_reader(self.master)
        self.reading = False

    def _resume_reading(self) -> None:
        if not self.reading and self.master is not None and self.window_open.is_set():
            self.loop.add_reader(self.master, self._on_readable)
            self.reading = True

    async def _send_loop(self) -> None:
        try:
            while True:
                await self.out_ready.wait()
                self.out_ready.clear()
                while self.outq:
                    item = self.outq.popleft()
                    if isinstance(item, str):
                        await self.send(text_data=item)
                        continue
                    # Coalesce what queued up meanwhile into one frame.
                    parts = [item]
                    while self.outq and isinstance(self.outq[0], bytes) and sum(map(len, parts)) < READ_CHUNK:
                        parts.append(self.outq.popleft())  # type: ignore[arg-type]
                    await self.send(bytes_data=b"".join(parts))
        except asyncio.CancelledError:
            raise
        except Exception:  # the socket went away mid-send: disconnect() cleans up
            return

    # --- input: browser -> pty ------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: object) -> None:
        if bytes_data is not None:
            if len(self.inbuf) + len(bytes_data) > MAX_PENDING_INPUT:
                self._queue_text({"type": "error", "message": "Input dropped: the shell is not reading it."})
                return
            self.inbuf += bytes_data
            self._flush_input()
            return
        try:
            message = json.loads(text_data or "")
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        kind = message.get("type")
        if kind == "ack" and isinstance(message.get("bytes"), int):
            # Never beyond what was produced, never backwards: a bogus ack can't open the window.
            self.acked = max(self.acked, min(message["bytes"], self.produced))
            if self.produced - self.acked < WINDOW:
                self.window_open.set()
                self._resume_reading()
        elif kind == "resize":
            self.cols = _size(message.get("cols"), self.cols, MAX_COLS)
            self.rows = _size(message.get("rows"), self.rows, MAX_ROWS)
            if self.master is not None:
                with contextlib.suppress(OSError):
                    set_window_size(self.master, self.cols, self.rows)
        elif kind == "new_shell" and not self.busy:
            self.busy = True
            try:
                instance = await database_sync_to_async(Instance.objects.filter(pk=self.instance.pk).first)()
                if instance is None:
                    self._queue_text({"type": "error", "message": "This instance no longer exists."})
                    return
                self.instance = instance
                await self._record(f"terminal: new shell started by {self.username}")
                await asyncio.to_thread(service.new_shell, instance, self.cols, self.rows)
            except service.TerminalError as exc:
                self._queue_text({"type": "error", "message": str(exc)})
            finally:
                self.busy = False
                self.wake.set()

    def _flush_input(self) -> None:
        if self.master is None or not self.client_ready:
            return
        while self.inbuf:
            try:
                written = os.write(self.master, self.inbuf)
            except BlockingIOError:
                self.loop.add_writer(self.master, self._flush_input)
                return
            except OSError:
                self.inbuf.clear()
                break
            del self.inbuf[:written]
        with contextlib.suppress(ValueError, OSError):
            self.loop.remove_writer(self.master)

    # --- the end --------------------------------------------------------------------------------

    async def disconnect(self, code: int) -> None:
        await self.leave_access_groups()
        if not hasattr(self, "task"):
            return  # refused before accept
        self.closing = True
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task
        self.sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.sender
        await self._detach()
        seconds = time.monotonic() - self.opened_at
        await self._record(f"terminal closed by {self.username} after {seconds:.0f} s")

    async def _record(self, line: str) -> None:
        """Who opened and closed shells, and when: the web process's log and the instance's."""
        instance = self.instance
        log.info("instance %s (%s): %s", instance.pk, instance.slug, line)

        def append() -> None:
            if instance.directory.is_dir():  # never recreate a deleted instance's directory
                instance.append_log(line)

        with contextlib.suppress(OSError):
            await asyncio.to_thread(append)
