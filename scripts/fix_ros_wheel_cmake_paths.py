"""Point the ROS 2 wheels' CMake exports at this machine's Python headers and NumPy headers.

The wheels were built in a manylinux image whose paths (/opt/python/cp311-cp311/...) are baked
into their exported CMake targets, and CMake refuses imported targets with missing include paths.
The NumPy headers are copied out of the venv first: the venv sits inside the source tree, and
CMake refuses to export a target whose include path lies in the source tree.
Idempotent: re-running rewrites nothing new.
"""
import os
import pathlib
import re
import shutil
import sys
import sysconfig

import numpy

BUILDER_PYTHON_INCLUDE = "/opt/python/cp311-cp311/include/python3.11"
NUMPY_INCLUDE_PATTERN = re.compile(r"[^\s\";]*/numpy/_core/include")


def numpy_include_outside_tree() -> str:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    target = os.path.join(cache, "diffusion_policy_ros", f"numpy-{numpy.__version__}", "numpy", "_core", "include")
    if not os.path.isdir(target):
        shutil.copytree(numpy.get_include(), target + ".partial", dirs_exist_ok=True)
        os.replace(target + ".partial", target)
    return target


def main(venv: str) -> int:
    numpy_include = numpy_include_outside_tree()
    python_include = sysconfig.get_paths()["include"]
    fixed = 0
    for path in pathlib.Path(venv, "share").rglob("*.cmake"):
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
        new = NUMPY_INCLUDE_PATTERN.sub(numpy_include, text.replace(BUILDER_PYTHON_INCLUDE, python_include))
        if new != text:
            path.write_text(new, encoding="utf-8", errors="surrogateescape")
            fixed += 1
    if fixed:
        print(f"[setup] pointed {fixed} ROS wheel CMake files at this machine's Python and NumPy headers")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--numpy-include"]:
        print(numpy_include_outside_tree())
        sys.exit(0)
    sys.exit(main(sys.argv[1]))
