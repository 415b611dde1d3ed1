"""Checkpoints: a folder with model.safetensors (weights) and config.json (policy config +
normalizer stats + training info). Nothing is ever unpickled; files that look like pickles or
torch.save archives are refused. Sizes in the config are bounded before the model is built
(configuration.check_sizes), config.json must be a small regular file, and the weights must have the
names, shapes and dtypes the config implies (checked on the header, before any is read) and be finite.

Training state for resume (optimizer moments, EMA weights) goes to training_state.safetensors +
training_state.json in the same folder, same rules.
"""
from __future__ import annotations

import json
import os
import stat
import struct
import tempfile
from collections.abc import Mapping

import torch
from safetensors.torch import load_file, save_file

from diffusion_policy_ros.policy.configuration import PolicyConfig, PolicyConfigError
from diffusion_policy_ros.policy.normalizer import MinMaxNormalizer

FORMAT = "diffusion_policy_ros/checkpoint"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
TRAIN_STATE = "training_state.safetensors"
TRAIN_STATE_JSON = "training_state.json"
_PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt")
# config.json holds the policy config and normalizer stats: kilobytes. The bound keeps a hostile file
# (or a link to a device that never ends) from being read into memory.
MAX_CONFIG_BYTES = 16 << 20
_SAFETENSORS_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
                       torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL"}


class CheckpointError(PolicyConfigError):
    """A checkpoint folder that is missing, malformed, unsafe or does not fit its config."""


def _atomic_write_bytes(path: str, data: bytes) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: str, obj) -> None:
    _atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True).encode())


def save_tensors(path: str, tensors: Mapping[str, torch.Tensor], metadata: dict[str, str] | None = None):
    tmp = path + ".tmp"
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def check_safetensors_file(path: str) -> dict:
    """Refuse anything that is not a well-formed safetensors file; return its header."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path} not found")
    with open(path, "rb") as f:
        head = f.read(8)
        if head[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05") or head[:4] == b"PK\x03\x04":
            raise CheckpointError(f"{path} is a pickle / torch.save archive; refusing to load it "
                                  "(checkpoints must be safetensors, never pickle)")
        if len(head) < 8:
            raise CheckpointError(f"{path} is truncated (not a safetensors file)")
        (header_len,) = struct.unpack("<Q", head)
        size = os.path.getsize(path)
        if header_len <= 0 or header_len > min(size - 8, 100_000_000):
            raise CheckpointError(f"{path} is not a safetensors file (bad header length)")
        try:
            header = json.loads(f.read(header_len))
        except RecursionError:
            raise CheckpointError(f"{path} has a safetensors header nested too deeply") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{path} is not a safetensors file (header is not JSON: {e})") from e
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} has a malformed safetensors header")
    return header


def load_tensors(path: str) -> dict[str, torch.Tensor]:
    check_safetensors_file(path)
    try:
        return load_file(path)
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"cannot read {path}: {e}") from e


def _check_folder(folder: str) -> None:
    if not os.path.isdir(folder):
        raise CheckpointError(f"checkpoint folder {folder} does not exist")
    unsafe = [n for n in os.listdir(folder) if n.endswith(_PICKLE_SUFFIXES)]
    if unsafe:
        raise CheckpointError(f"checkpoint folder {folder} contains pickle-based files {unsafe}; refusing "
                              "it (only model.safetensors + config.json are accepted)")


def save_checkpoint(folder: str, policy, training: dict | None = None) -> str:
    """Write weights + config atomically (config last, it names the weights it belongs to)."""
    os.makedirs(folder, exist_ok=True)
    save_tensors(os.path.join(folder, WEIGHTS), policy.state_dict(), metadata={"format": FORMAT})
    write_json(os.path.join(folder, CONFIG), {
        "format": FORMAT, "format_version": FORMAT_VERSION, "policy": policy.config.to_dict(),
        "normalizer": policy.normalizer.to_json(), "training": training or {}})
    return folder


def read_bounded_json(path: str, limit: int = MAX_CONFIG_BYTES):
    """Parse a JSON file that must be a regular file of at most `limit` bytes."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses it
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e.strerror}") from e
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise CheckpointError(f"{path} is not a regular file (a device, FIFO or socket?); refusing to read it")
        if info.st_size > limit:
            raise CheckpointError(f"{path} has {info.st_size:,} bytes, above the limit {limit:,} bytes")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise CheckpointError(f"{path} grew past the limit {limit:,} bytes while being read")
    try:
        return json.loads(data)
    except RecursionError:
        raise CheckpointError(f"{path} is nested too deeply to be a checkpoint config") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON: {e}") from e


def check_normalizer_fits(config: PolicyConfig, normalizer: MinMaxNormalizer, path: str) -> None:
    """Stats of every normalized key must have the shape the policy feeds them (else warm-up fails)."""
    from diffusion_policy_ros import obs_keys
    expected = {"action": [config.action_dim]}
    for key, shape in config.obs_shapes.items():
        if not obs_keys.is_image(key):
            expected[key] = list(shape)
    wrong = [f"{key} {list(normalizer.stats[key]['min'].shape)} (policy uses {shape})"
             for key, shape in expected.items()
             if key in normalizer and list(normalizer.stats[key]["min"].shape) != shape]
    if wrong:
        raise CheckpointError(f"{path}: normalizer stats of the wrong shape: {'; '.join(wrong)}")


def read_config(folder: str) -> tuple[PolicyConfig, MinMaxNormalizer, dict]:
    """Config, normalizer and training info of a checkpoint, without touching the weights."""
    _check_folder(folder)
    path = os.path.join(folder, CONFIG)
    doc = read_bounded_json(path)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a {FORMAT} config")
    if doc.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {doc.get('format_version')!r} is not supported (this "
                              f"version of diffusion_policy_ros supports {FORMAT_VERSION})")
    try:
        config = PolicyConfig.from_dict(doc["policy"])
        normalizer = MinMaxNormalizer.from_json(doc["normalizer"])
    except KeyError as e:
        raise CheckpointError(f"{path} lacks {e}") from e
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: {e}") from e
    check_normalizer_fits(config, normalizer, path)
    return config, normalizer, doc.get("training", {})


def load_checkpoint(folder: str, device: str | None = None):
    """-> DiffusionPolicy on `device` (default: the config's, 'auto' = CUDA if available)."""
    from diffusion_policy_ros.policy.modeling import DiffusionPolicy
    config, normalizer, _ = read_config(folder)
    try:
        policy = DiffusionPolicy(config, normalizer)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{folder}: config cannot build a policy: {e}") from e
    path = os.path.join(folder, WEIGHTS)
    check_weights_header(check_safetensors_file(path), policy.state_dict(), folder)
    tensors = load_tensors(path)
    non_finite = [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if non_finite:
        raise CheckpointError(f"weights in {folder} contain NaN or Inf in {len(non_finite)} tensors, e.g. "
                              f"{non_finite[:3]}; refusing them")
    policy.load_state_dict(tensors, strict=True)
    return policy.to_device(device)


def check_weights_header(header: dict, expected: Mapping[str, torch.Tensor], folder: str) -> None:
    """Names, shapes and dtypes the safetensors header declares against the state dict the config
    builds, before any weight is read."""
    declared = {k: v for k, v in header.items() if k != "__metadata__"}
    if not all(isinstance(v, dict) for v in declared.values()):
        raise CheckpointError(f"weights in {folder} have a malformed safetensors header")
    missing = sorted(set(expected) - set(declared))
    unexpected = sorted(set(declared) - set(expected))
    wrong_shape, wrong_dtype = [], []
    for k, v in expected.items():
        if k not in declared:
            continue
        shape, dtype = declared[k].get("shape"), declared[k].get("dtype")
        if shape != list(v.shape):
            wrong_shape.append(f"{k}: file {shape} vs config {list(v.shape)}")
        elif dtype != _SAFETENSORS_DTYPES.get(v.dtype):
            wrong_dtype.append(f"{k}: file {dtype} vs config {_SAFETENSORS_DTYPES.get(v.dtype, v.dtype)}")
    if missing or unexpected or wrong_shape or wrong_dtype:
        parts = []
        if wrong_dtype:
            parts.append(f"{len(wrong_dtype)} tensors of the wrong dtype, e.g. {wrong_dtype[:3]}")
        if wrong_shape:
            parts.append(f"{len(wrong_shape)} tensors of the wrong shape, e.g. {wrong_shape[:3]}")
        if missing:
            parts.append(f"{len(missing)} missing, e.g. {missing[:3]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected, e.g. {unexpected[:3]}")
        raise CheckpointError(f"weights in {folder} do not match its config: " + "; ".join(parts))
