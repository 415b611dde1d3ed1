"""Checkpoints: a folder with model.safetensors (weights) and config.json (policy config +
normalizer stats + training info). Nothing is ever unpickled; files that look like pickles or
torch.save archives are refused, and weights must match the shapes the config implies.

Training state for resume (optimizer moments, EMA weights) goes to training_state.safetensors +
training_state.json in the same folder, same rules.
"""
from __future__ import annotations

import json
import os
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


def read_config(folder: str) -> tuple[PolicyConfig, MinMaxNormalizer, dict]:
    """Config, normalizer and training info of a checkpoint, without touching the weights."""
    _check_folder(folder)
    path = os.path.join(folder, CONFIG)
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e.strerror}") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a {FORMAT} config")
    if doc.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: unsupported format_version {doc.get('format_version')}")
    try:
        config = PolicyConfig.from_dict(doc["policy"])
        normalizer = MinMaxNormalizer.from_json(doc["normalizer"])
    except KeyError as e:
        raise CheckpointError(f"{path} lacks {e}") from e
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: {e}") from e
    return config, normalizer, doc.get("training", {})


def load_checkpoint(folder: str, device: str | None = None):
    """-> DiffusionPolicy on `device` (default: the config's, 'auto' = CUDA if available)."""
    from diffusion_policy_ros.policy.modeling import DiffusionPolicy
    config, normalizer, _ = read_config(folder)
    try:
        policy = DiffusionPolicy(config, normalizer)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{folder}: config cannot build a policy: {e}") from e
    tensors = load_tensors(os.path.join(folder, WEIGHTS))
    expected = policy.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [f"{k}: file {tuple(tensors[k].shape)} vs config {tuple(v.shape)}" for k, v in expected.items()
             if k in tensors and (tensors[k].shape != v.shape or tensors[k].dtype != v.dtype)]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            parts.append(f"{len(wrong)} tensors of the wrong shape, e.g. {wrong[:3]}")
        if missing:
            parts.append(f"{len(missing)} missing, e.g. {missing[:3]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected, e.g. {unexpected[:3]}")
        raise CheckpointError(f"weights in {folder} do not match its config: " + "; ".join(parts))
    policy.load_state_dict(tensors, strict=True)
    return policy.to_device(device)
