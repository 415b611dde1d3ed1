"""Where the package's shared files (config/, launch/, resource/) live on this machine.

Installed by colcon or pip they are under `share/diffusion_policy_ros` of the install prefix; in
a source checkout they sit beside the Python package. Checked in that order.
"""
from __future__ import annotations

import os
import sys

PACKAGE_NAME = "diffusion_policy_ros"


def package_share_path(*parts: str) -> str:
    for root in _share_roots():
        candidate = os.path.join(root, *parts)
        if os.path.exists(candidate):
            return candidate
    return os.path.join(_source_root(), *parts)


def _share_roots():
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
        try:
            yield get_package_share_directory(PACKAGE_NAME)
        except (PackageNotFoundError, OSError, ValueError):
            pass  # not installed, or no AMENT_PREFIX_PATH (plain Python, pip install)
    except ImportError:
        pass
    yield os.path.join(sys.prefix, "share", PACKAGE_NAME)  # pip install of setup.py
    yield _source_root()


def _source_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
