"""Which exceptions are a user's mistake (a wrong path, config, checkpoint, dataset or argument)
rather than a bug: `dpros` prints those as one line and exits 2; `--debug` shows the traceback."""
from __future__ import annotations

import errno
import sys

USAGE_EXIT_CODE = 2


class UsageError(Exception):
    """An argument that cannot work, found after argparse (which exits 2 on its own)."""


# Error types of the library modules, by module: a module not imported yet cannot have raised.
_USER_ERRORS = {
    "diffusion_policy_ros.cli.errors": ("UsageError",),
    "diffusion_policy_ros.robot_config": ("ConfigError",),
    "diffusion_policy_ros.policy.configuration": ("PolicyConfigError",),   # also CheckpointError
    "diffusion_policy_ros.obs_keys": ("ObsKeyError",),
    "diffusion_policy_ros.data.replay_buffer": ("DatasetError",),
    "diffusion_policy_ros.data.dataset_path": ("DatasetPathError",),
    "diffusion_policy_ros.data.episode_builder": ("EpisodeError",),
    "diffusion_policy_ros.data.resample": ("ResampleError",),
    "diffusion_policy_ros.data.image_codec": ("ImageDecodeError",),
    "diffusion_policy_ros.data.bag_import": ("BagImportError",),
    "diffusion_policy_ros.data.lerobot_export": ("ExportError",),
    "diffusion_policy_ros.data.diffusion_policy_export": ("ExportError",),
}
# Files the user named that are not there or not usable, and a full disk: not bugs either.
_OS_ERRORS = (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError)


def is_user_error(exc: BaseException) -> bool:
    for module_name, class_names in _USER_ERRORS.items():
        module = sys.modules.get(module_name)
        if module is not None and any(isinstance(exc, getattr(module, c)) for c in class_names):
            return True
    return isinstance(exc, _OS_ERRORS) or (isinstance(exc, OSError) and exc.errno == errno.ENOSPC)


def one_line(exc: BaseException) -> str:
    """The message on one line (a few library errors carry newlines or are empty)."""
    text = " ".join(str(exc).split())
    if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in text:
        text = f"{text}: {exc.filename}"
    return text or type(exc).__name__
