"""Read an exported store as diffusion_policy does: zarr 2 (its pinned major version), installed
apart from the project's zarr 3 in build/zarr2_reader, in a process of its own.

The reader follows diffusion_policy's ReplayBuffer conventions (written from its public
replay_buffer.py, not copied): `zarr.open(path, 'r')`, `data` and `meta` groups,
`meta/episode_ends`, and every item of `data` sliced to the last episode end, which fails on any
sub-group. Without a network to install zarr 2, the format-2 metadata files are checked instead.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
READER_DIR = os.path.join(REPO_ROOT, "build", "zarr2_reader")
REQUIREMENTS = os.path.join(REPO_ROOT, "requirements", "zarr2-reader.txt")

READ_LIKE_DIFFUSION_POLICY = r"""
import json, sys
import numpy as np
import zarr
assert zarr.__version__.startswith("2."), zarr.__version__
path, out = sys.argv[1], sys.argv[2]
root = zarr.open(path, "r")
assert "data" in root and "meta" in root and "episode_ends" in root["meta"]
meta = {key: value[:] for key, value in root["meta"].items()}
n_steps = int(meta["episode_ends"][-1])
data, layout = {}, {}
for key, value in root["data"].items():
    rows = value[:n_steps]
    assert rows.shape[0] == n_steps, (key, rows.shape)
    data[key] = rows
    layout[key] = {"chunks": list(value.chunks), "compressor": value.compressor.get_config()
                   if value.compressor else None, "dtype": str(value.dtype)}
np.savez(out + ".npz", **{"meta/" + k: v for k, v in meta.items()}, **{"data/" + k: v for k, v in data.items()})
json.dump({"zarr": zarr.__version__, "layout": layout}, open(out + ".json", "w"))
"""


def zarr2_path() -> str | None:
    """A folder with zarr 2 and its numcodecs (shadowing the project's), or None when pip cannot
    install them (no network)."""
    if os.path.isfile(os.path.join(READER_DIR, ".complete")):
        return READER_DIR
    os.makedirs(os.path.dirname(READER_DIR), exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".zarr2_reader-", dir=os.path.dirname(READER_DIR))
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", staging,
                             "-r", REQUIREMENTS], capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        return None
    open(os.path.join(staging, ".complete"), "w").close()
    shutil.rmtree(READER_DIR, ignore_errors=True)      # an install that did not complete
    try:
        os.rename(staging, READER_DIR)
    except OSError:        # another run installed it meanwhile
        return staging
    return READER_DIR


def read_with_zarr2(path: str, workdir: str) -> tuple[dict[str, np.ndarray], dict] | None:
    """({'meta/episode_ends': ..., 'data/<key>': ...}, {'zarr': version, 'layout': per key}) as
    read under zarr 2, or None when zarr 2 cannot be installed here."""
    site = zarr2_path()
    if site is None:
        return None
    env = dict(os.environ, PYTHONPATH=site)
    out = os.path.join(workdir, "read")
    result = subprocess.run([sys.executable, "-c", READ_LIKE_DIFFUSION_POLICY, path, out], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"diffusion_policy-style read under zarr 2 failed:\n{result.stderr[-3000:]}"
    with np.load(out + ".npz") as arrays:
        values = {k: arrays[k] for k in arrays.files}
    with open(out + ".json") as f:
        return values, json.load(f)


def format2_metadata(path: str) -> dict[str, dict]:
    """The zarr format-2 metadata files of the store: '' and 'data', 'meta' groups -> .zgroup,
    arrays 'data/<key>', 'meta/episode_ends' -> .zarray."""
    found = {}
    for folder, _, files in os.walk(path):
        rel = os.path.relpath(folder, path).replace(os.sep, "/")
        rel = "" if rel == "." else rel
        for name in (".zgroup", ".zarray"):
            if name in files:
                with open(os.path.join(folder, name)) as f:
                    found[rel] = {"kind": name, **json.load(f)}
    return found
