"""`dpros export diffusion-policy`: a zarr format-2 store in diffusion_policy's ReplayBuffer layout,
read back under zarr 2 as diffusion_policy reads it, equal to the source dataset."""
import os

import numpy as np
import pytest

from diffusion_policy_ros.cli.main import main
from diffusion_policy_ros.data.diffusion_policy_export import flat_key
from diffusion_policy_ros.data.replay_buffer import ReplayBuffer
from diffusion_policy_reader import format2_metadata, read_with_zarr2

LENGTHS = [12, 7, 15]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("ds") / "demos"
    buf = ReplayBuffer.create(str(path))
    rng = np.random.default_rng(0)
    for i, n in enumerate(LENGTHS):
        buf.add_episode({
            "action": rng.normal(size=(n, 7)).astype(np.float32),
            "obs/joint_pos": rng.normal(size=(n, 7)).astype(np.float32),
            "obs/scene/rgb": rng.integers(0, 256, (n, 48, 64, 3), dtype=np.uint8),
            "obs/scene/depth": rng.random((n, 48, 64)).astype(np.float32),
            "obs/finger_l/tactile": rng.random((n, 4, 4)).astype(np.float32),
            "timestamp": 1000.0 + 10 * i + np.arange(n) * 0.1,
        }, {"task": f"task {i % 2}", "fps": 10.0, "robot": "single_arm", "joint_names": [f"j{k}" for k in range(7)]})
    return ReplayBuffer.open(str(path))


def check_layout(store: str, dataset) -> None:
    """The format-2 metadata files say what diffusion_policy's ReplayBuffer expects."""
    files = format2_metadata(store)
    assert files[""]["kind"] == ".zgroup" and files[""]["zarr_format"] == 2
    assert files["data"]["kind"] == files["meta"]["kind"] == ".zgroup"
    ends = files["meta/episode_ends"]
    assert (ends["kind"], ends["zarr_format"], ends["dtype"], ends["compressor"]) == (".zarray", 2, "<i8", None)
    assert ends["shape"] == ends["chunks"] == [len(LENGTHS)]
    arrays = {k[len("data/"):]: v for k, v in files.items() if k.startswith("data/")}
    assert set(arrays) == {flat_key(k) for k in dataset.keys}
    for key in dataset.keys:
        meta = arrays[flat_key(key)]
        assert meta["kind"] == ".zarray" and meta["zarr_format"] == 2, "a sub-group under data/"
        assert meta["shape"] == [dataset.n_steps, *dataset.key_spec(key)["shape"]]
        assert meta["chunks"][1:] == meta["shape"][1:], f"{key}: chunked along time only"
        assert meta["chunks"][0] == (1 if key.endswith(("/rgb", "/depth")) else dataset.n_steps), key
        assert meta["compressor"]["id"] == "blosc" and meta["compressor"]["cname"] == "lz4"


def test_export_opens_under_zarr2_as_diffusion_policy_reads_it(dataset, tmp_path, capsys):
    store = tmp_path / "demos.zarr"
    assert main(["export", "diffusion-policy", dataset.path, str(store)]) == 0
    printed = capsys.readouterr().out
    assert "data/scene_rgb" in printed and "copy_from_path" in printed, printed
    check_layout(str(store), dataset)
    read = read_with_zarr2(str(store), str(tmp_path))
    if read is None:
        pytest.skip("zarr 2 cannot be installed here (no package index): layout checked from the metadata files")
    values, info = read
    assert info["zarr"].startswith("2.")
    np.testing.assert_array_equal(values["meta/episode_ends"], np.cumsum(LENGTHS))
    assert {k for k in values if k.startswith("data/")} == {f"data/{flat_key(k)}" for k in dataset.keys}
    for i in range(len(LENGTHS)):
        rows = dataset.episode_slice(i)
        source = dataset.get_episode(i)
        for key, array in source.items():
            exported = values[f"data/{flat_key(key)}"][rows]
            assert exported.dtype == array.dtype, key
            np.testing.assert_array_equal(exported, array, err_msg=key)


def test_refuses_a_non_empty_folder_and_leaves_no_partial_store(dataset, tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["export", "diffusion-policy", dataset.path, str(out)]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert os.listdir(out) == ["notes.txt"]
    empty = ReplayBuffer.create(str(tmp_path / "empty"))
    assert main(["export", "diffusion-policy", empty.path, str(tmp_path / "never")]) == 2
    assert "no episodes" in capsys.readouterr().err
    assert not [p for p in os.listdir(tmp_path) if "exporting" in p or p == "never"]
    assert main(["export", "diffusion-policy", dataset.path, str(out), "--overwrite"]) == 0
    assert "notes.txt" not in os.listdir(out)
