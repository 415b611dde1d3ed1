"""The OpenGL platform MuJoCo renders the cameras with, when nobody chose one.

MuJoCo reads MUJOCO_GL once, when it is first imported; unset, it uses GLFW, which needs a display.
A sim started by `ros2 launch` or a service on a robot PC or a CI machine has none (the environment
`./env.sh` sets is not there), so the `sim` package picks, when it is imported and before any of its
modules imports MuJoCo: EGL (GPU drivers or Mesa), else OSMesa. A MUJOCO_GL the user set, or a
display, is left alone.
"""
from __future__ import annotations

import ctypes.util
import os
import sys


def choose_headless_gl(environ=None, find_library=ctypes.util.find_library) -> str | None:
    """Set MUJOCO_GL (and PYOPENGL_PLATFORM) for a process without a display; returns the choice
    or None when there was nothing to choose."""
    environ = os.environ if environ is None else environ
    if environ is os.environ and "mujoco" in sys.modules:
        return None  # too late: MuJoCo chose when it was imported
    if environ.get("MUJOCO_GL") or environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY"):
        return None
    backend = "egl" if find_library("EGL") else "osmesa" if find_library("OSMesa") else None
    if backend is not None:
        environ["MUJOCO_GL"] = backend
        environ.setdefault("PYOPENGL_PLATFORM", backend)
    return backend
