"""A bag written with rosbags (images, joint states, teleop commands) imports into a dataset
equivalent to what the recorder would have written: same keys, lengths, rates and values. A bag
with a malformed message stops the import with one line naming bag, topic and time, and leaves the
dataset as it was; a bag is never imported twice."""
import hashlib
import os

import numpy as np
import pytest

from diffusion_policy_ros.cli.main import main
from diffusion_policy_ros.data.bag_import import BagImportError, import_bags, typestore_with_package_msgs
from diffusion_policy_ros.data.replay_buffer import ReplayBuffer
from diffusion_policy_ros.robot_config import load_robot_config

RATE = 10.0
T0 = 1700000000.0


@pytest.fixture(scope="module")
def config():
    return load_robot_config("config/single_arm.yaml")


def frame_for(k: int, h: int, w: int) -> np.ndarray:
    """A recognisable image per publish index k."""
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = (k * 7) % 256
    img[..., 1] = np.arange(w, dtype=np.uint8)[None, :] * 2
    img[..., 2] = 200
    return img


def write_bag(path, config, *, seconds=2.0, storage="mcap", with_teleop=True, compressed=False, broken=None,
              phase=0.0):
    """`broken`: one malformed message: 'empty_image' (camera message 5 has no pixels), 'yuv422'
    (camera message 5 in an encoding the importer does not know), 'missing_joint' (joint state 10
    lacks the gripper). `phase` shifts the joint trajectory (a different recording)."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    store = typestore_with_package_msgs()
    Header = store.types["std_msgs/msg/Header"]
    Time = store.types["builtin_interfaces/msg/Time"]
    Duration = store.types["builtin_interfaces/msg/Duration"]
    JointState = store.types["sensor_msgs/msg/JointState"]
    Image = store.types["sensor_msgs/msg/Image"]
    CompressedImage = store.types["sensor_msgs/msg/CompressedImage"]
    JointTrajectory = store.types["trajectory_msgs/msg/JointTrajectory"]
    Point = store.types["trajectory_msgs/msg/JointTrajectoryPoint"]
    Tactile = store.types["diffusion_policy_ros/msg/TactileArray"]
    arm, cam = config.arms[0], config.cameras[0]
    joints = list(arm.joint_names)

    def header(t):
        sec = int(t)
        return Header(stamp=Time(sec=sec, nanosec=int(round((t - sec) * 1e9))), frame_id="")

    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    events = []
    for k in range(int(seconds * 50)):          # joint states 50 Hz
        t = T0 + k / 50
        q = np.sin(0.5 * t - T0 * 0.5 + np.arange(7) + phase).astype(np.float64)
        names, position = joints[::-1], q[::-1].copy()
        if broken == "missing_joint" and k == 10:
            names, position = [n for n in names if n != "gripper"], position[1:]
        events.append((t, arm.joint_states_topic, JointState(
            header=header(t), name=names, position=position,
            velocity=np.zeros(len(names)), effort=np.zeros(len(names))), "sensor_msgs/msg/JointState"))
    for k in range(int(seconds * 30)):          # camera 30 Hz
        t = T0 + 0.004 + k / 30
        img = frame_for(k, cam.height, cam.width)
        if compressed:
            from diffusion_policy_ros.data.image_codec import compress_rgb
            msg = CompressedImage(header=header(t), format="png",
                                  data=np.frombuffer(compress_rgb(img, "png"), np.uint8))
            events.append((t, cam.rgb_topic + "/compressed", msg, "sensor_msgs/msg/CompressedImage"))
        else:
            encoding, step, data = "rgb8", cam.width * 3, img.reshape(-1)
            if broken == "empty_image" and k == 5:
                data = np.zeros(0, np.uint8)
            if broken == "yuv422" and k == 5:
                encoding, step, data = "yuv422", cam.width * 2, np.zeros(cam.width * 2 * cam.height, np.uint8)
            msg = Image(header=header(t), height=cam.height, width=cam.width, encoding=encoding,
                        is_bigendian=0, step=step, data=data)
            events.append((t, cam.rgb_topic, msg, "sensor_msgs/msg/Image"))
    if with_teleop:
        for k in range(int(seconds * 20)):      # teleop 20 Hz
            t = T0 + 0.01 + k / 20
            events.append((t, arm.teleop_topic, JointTrajectory(
                header=header(t), joint_names=joints,
                points=[Point(positions=np.full(7, k, np.float64), velocities=np.zeros(0),
                              accelerations=np.zeros(0), effort=np.zeros(0),
                              time_from_start=Duration(sec=0, nanosec=0))]),
                "trajectory_msgs/msg/JointTrajectory"))
    for k in range(int(seconds * 30)):
        t = T0 + 0.002 + k / 30
        events.append((t, config.tactile_sensors[0].topic, Tactile(
            header=header(t), sensor_name="finger_l", rows=4, cols=4,
            normal_force=np.full(16, k, np.float32), shear_x=np.zeros(0, np.float32),
            shear_y=np.zeros(0, np.float32)), "diffusion_policy_ros/msg/TactileArray"))
    events.sort(key=lambda e: e[0])
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        conns = {}
        for t, topic, msg, msgtype in events:
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msgtype, typestore=store)
            writer.write(conns[topic], int(t * 1e9), store.serialize_cdr(msg, msgtype))
    return path


def test_mcap_bag_imports_like_a_recording(tmp_path, config):
    bag = write_bag(tmp_path / "demo_bag", config, seconds=2.0)
    report = import_bags([str(bag)], str(tmp_path / "ds"), config, task="pick the cube", rate_hz=RATE)
    [(_, index)] = report.imported

    reopened = ReplayBuffer.open(str(tmp_path / "ds"))
    assert reopened.n_episodes == 1
    ep = reopened.get_episode(index)
    meta = reopened.episode_meta(index)
    assert meta["task"] == "pick the cube" and meta["fps"] == RATE
    assert set(ep) == {"action", "obs/joint_pos", "obs/scene/rgb", "obs/finger_l/tactile",
                       "obs/finger_r/tactile", "timestamp"} - {"obs/finger_r/tactile"}
    n = len(ep["timestamp"])
    # The grid starts at the first instant every stream has data, the first teleop command at
    # T0 + 0.01 (joints T0, tactile T0 + 0.002 and camera T0 + 0.004 are earlier), and ends at the
    # newest stamp, the last joint state at T0 + 1.98: ticks T0 + 0.01 + k / 10 for k = 0..19.
    assert n == 20
    assert ep["timestamp"][0] == pytest.approx(T0 + 0.01, abs=1e-6)
    assert all(len(v) == n for v in ep.values())
    assert np.all(np.diff(ep["timestamp"]) > 0)
    np.testing.assert_allclose(np.diff(ep["timestamp"]), 1 / RATE, atol=1e-6)
    ticks = ep["timestamp"]
    # Each sample is the latest message at or before its tick (zero-order hold by header stamp).
    q_expected = np.sin(0.5 * (T0 + np.floor((ticks - T0) * 50 + 1e-4) / 50) - T0 * 0.5 + np.arange(7)[:, None]).T
    np.testing.assert_allclose(ep["obs/joint_pos"], q_expected, atol=1e-5)
    k_action = np.floor((ticks - T0 - 0.01) * 20 + 1e-4)
    np.testing.assert_allclose(ep["action"][:, 0], k_action)
    k_cam = np.floor((ticks - T0 - 0.004) * 30 + 1e-4).astype(int)
    for row, k in zip(ep["obs/scene/rgb"], k_cam):
        np.testing.assert_array_equal(row, frame_for(int(k), 96, 96))
    np.testing.assert_allclose(ep["obs/finger_l/tactile"][:, 0, 0], np.floor((ticks - T0 - 0.002) * 30 + 1e-4))
    # Faster streams are downsampled without counting losses; nothing is duplicated.
    assert meta["dropped_frames"] == 0 and meta["duplicated_frames"] == 0
    assert "tactile/finger_r" in meta["skipped_streams"]


def test_sqlite_bag_with_compressed_images_and_no_teleop(tmp_path, config):
    bag = write_bag(tmp_path / "bag_sqlite", config, seconds=1.5, storage="sqlite3", with_teleop=False,
                    compressed=True)
    out = str(tmp_path / "ds")
    with pytest.raises(BagImportError, match="next_state"):
        import_bags([str(bag)], out, config, task="t", rate_hz=RATE)
    assert not os.path.exists(out)
    [(_, index)] = import_bags([str(bag)], out, config, task="t", rate_hz=RATE,
                               action_source="next_state").imported
    ep = ReplayBuffer.open(out).get_episode(index)
    np.testing.assert_allclose(ep["action"][:-1], ep["obs/joint_pos"][1:])
    ticks = ep["timestamp"]
    k_cam = np.floor((ticks - T0 - 0.004) * 30 + 1e-4).astype(int)
    np.testing.assert_array_equal(ep["obs/scene/rgb"][3], frame_for(int(k_cam[3]), 96, 96))   # PNG: lossless


def test_missing_joint_states_is_a_clear_error(tmp_path, config):
    from rosbags.rosbag2 import Writer
    store = typestore_with_package_msgs()
    with Writer(tmp_path / "empty", version=9) as writer:
        writer.add_connection("/other", "std_msgs/msg/String", typestore=store)
    with pytest.raises(BagImportError, match="joint states"):
        import_bags([str(tmp_path / "empty")], str(tmp_path / "ds"), config, task="t", rate_hz=RATE)


def folder_state(path) -> dict[str, str]:
    """Every file under `path` with a digest of its bytes (empty when the folder is absent)."""
    state = {}
    for folder, _, files in os.walk(path):
        for name in files:
            full = os.path.join(folder, name)
            state[os.path.relpath(full, path)] = hashlib.sha256(open(full, "rb").read()).hexdigest()
    return state


def dpros_import(capsys, *bags, out):
    rc = main(["import", "bag", *map(str, bags), "--out", str(out), "--task", "t", "--config", "single_arm"])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


# (broken message, its topic, its header stamp, what the error says was wrong)
MALFORMED = [
    ("empty_image", "/camera/scene/image_raw", T0 + 0.004 + 5 / 30,
     "image payload of 0 bytes does not hold 96 rows of 288 bytes"),
    ("yuv422", "/camera/scene/image_raw", T0 + 0.004 + 5 / 30, "unsupported colour encoding 'yuv422'"),
    ("missing_joint", "/joint_states", T0 + 10 / 50, "joints ['gripper'] not in message"),
]


@pytest.mark.parametrize("broken, topic, stamp, expected", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_a_malformed_message_is_one_line_and_changes_nothing(tmp_path, config, capsys, broken, topic, stamp,
                                                             expected):
    good = write_bag(tmp_path / "good", config, seconds=1.0)
    bad = write_bag(tmp_path / "bad", config, seconds=1.0, broken=broken)
    new = tmp_path / "new_dataset"
    rc, _, err = dpros_import(capsys, good, bad, out=new)
    assert rc == 2 and "Traceback" not in err, err
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"dpros import bag: {bad}: {topic} at t={stamp:.3f} s (") and expected in line, line
    assert not new.exists(), "a failed import must not leave a dataset behind"
    assert not [p for p in os.listdir(tmp_path) if "importing" in p], "the staging folder is left"

    existing = tmp_path / "existing"
    assert dpros_import(capsys, good, out=existing)[0] == 0
    before = folder_state(existing)
    rc, _, err = dpros_import(capsys, bad, out=existing)
    assert rc == 2 and expected in err.strip().splitlines()[-1]
    assert folder_state(existing) == before


def test_multi_bag_import_reports_and_never_imports_a_bag_twice(tmp_path, config, capsys):
    first = write_bag(tmp_path / "first", config, seconds=1.0)
    second = write_bag(tmp_path / "second", config, seconds=1.0, phase=0.5)
    out = tmp_path / "ds"
    rc, stdout, _ = dpros_import(capsys, first, out=out)
    assert rc == 0 and f"{first} -> episode 0" in stdout and "imported 1 of 1 bags" in stdout, stdout
    before = ReplayBuffer.open(out).get_episode(0)
    # `first` again (renamed too: a bag is known by its content) and `second`, named twice
    renamed = tmp_path / "first_renamed"
    os.rename(first, renamed)
    rc, stdout, _ = dpros_import(capsys, renamed, second, second, out=out)
    assert rc == 0, stdout
    assert f"{renamed}: skipped, already imported as episode 0" in stdout, stdout
    assert f"{second} -> episode 1" in stdout and f"{second}: skipped, the same bag as {second}" in stdout
    assert "imported 1 of 3 bags" in stdout and "(2 episodes now); skipped 2" in stdout, stdout
    dataset = ReplayBuffer.open(out)
    assert dataset.n_episodes == 2
    for key, values in before.items():
        np.testing.assert_array_equal(dataset.get_episode(0)[key], values)
    assert dataset.episode_meta(1)["bag_path"] == str(second)
    assert not np.allclose(dataset.get_episode(1)["obs/joint_pos"][:5], before["obs/joint_pos"][:5])
