"""Fixture entry point standing in for OneTrainer's scripts/train_ui_qt.py (instances/tests/appfixtures).

OneTrainer's UI is a Qt desktop program: QApplication(sys.argv), no argument parser of its own (Qt's
options only). This stand-in opens one small X window titled "OneTrainer" on $DISPLAY with libX11
through ctypes (no toolkit needed), records its arguments, environment and packages in the
instance's fixture-record.json like fakeapp.py does, and stays until SIGTERM."""

import ctypes
import ctypes.util
import importlib.metadata
import json
import os
import signal
import sys
import time

QT_OPTIONS = {"-platform", "-style", "-display", "-geometry", "-qwindowgeometry", "-reverse", "-stylesheet"}


def record() -> None:
    conf = os.environ.get("INSTANCE_CONF_DIR", ".")
    packages = {d.metadata["Name"].lower().replace("_", "-"): d.version for d in importlib.metadata.distributions()}
    data = {"argv": sys.argv[1:], "env": dict(os.environ), "executable": sys.executable, "cwd": os.getcwd(),
            "pid": os.getpid(), "packages": packages}
    path = os.path.join(conf, "fixture-record.json")
    with open(path + ".tmp", "w") as fh:
        json.dump(data, fh)
    os.replace(path + ".tmp", path)


def main() -> None:
    for arg in sys.argv[1:]:
        if arg.startswith("-") and arg.split("=")[0] not in QT_OPTIONS:
            print(f"qt.qpa: unknown option {arg!r} ignored", flush=True)
    x11 = ctypes.CDLL(ctypes.util.find_library("X11") or "libX11.so.6")
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x11.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
    x11.XDefaultRootWindow.restype = ctypes.c_ulong
    x11.XCreateSimpleWindow.argtypes = [ctypes.c_void_p, ctypes.c_ulong] + [ctypes.c_int] * 2 + [ctypes.c_uint] * 3 + [ctypes.c_ulong] * 2
    x11.XCreateSimpleWindow.restype = ctypes.c_ulong
    x11.XStoreName.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_char_p]
    x11.XMapWindow.argtypes = [ctypes.c_void_p, ctypes.c_ulong]
    x11.XFlush.argtypes = [ctypes.c_void_p]
    display = x11.XOpenDisplay(None)
    if not display:
        sys.exit(f"qt.qpa.xcb: could not connect to display {os.environ.get('DISPLAY')!r}")
    window = x11.XCreateSimpleWindow(display, x11.XDefaultRootWindow(display), 40, 40, 640, 400, 1, 0, 0xF0F0F0)
    x11.XStoreName(display, window, os.environ.get("FIXTURE_WINDOW_TITLE", "OneTrainer").encode())
    x11.XMapWindow(display, window)
    x11.XFlush(display)
    record()
    print(f"OneTrainer (fixture) window on {os.environ.get('DISPLAY')}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
