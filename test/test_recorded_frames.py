"""The recorder's frame arithmetic on plain data: the grid ignores what came before the episode,
the action is the setpoint a joint_trajectory_controller would follow, and safety marks cover a
held stretch."""
import numpy as np
import pytest

from diffusion_policy_ros.data.recorded_frames import (Command, FrameError, commanded_setpoints, controller_setpoints,
                                                       safety_flags,
                                                       sensor_frames)


def test_frames_start_after_the_episode_start():
    # Camera at 10 Hz from t = 0 (frames 0..19), joints at 100 Hz; the episode starts at 0.95 s.
    camera = np.arange(20) / 10
    joints = np.arange(200) / 100
    result = sensor_frames({"cam": camera, "joints": joints}, 10.0, start=0.95, stop=1.9)
    assert result.ticks[0] == pytest.approx(1.05)             # first tick with a camera frame >= 0.95
    assert camera[result.indices["cam"]].min() >= 0.95        # nothing from before the episode
    assert list(result.indices["cam"]) == list(range(10, 19))
    with pytest.raises(FrameError, match="since the episode started"):
        sensor_frames({"cam": camera[:5], "joints": joints}, 10.0, start=0.95, stop=1.9)


def test_setpoints_follow_the_forwarded_trajectories():
    measured = np.zeros((6, 2))
    # Command A at t=1: point [1, 1] at t=2. Command B at t=3: points [3, NaN] at 4, [5, NaN] at 6
    # (the second joint is not commanded by B).
    a = Command(1.0, np.array([2.0]), np.array([[1.0, 1.0]]))
    b = Command(3.0, np.array([4.0, 6.0]), np.array([[3.0, np.nan], [5.0, np.nan]]))
    at = np.array([0.5, 1.5, 2.5, 3.5, 5.0, 7.0])
    out = commanded_setpoints([b, a], at, measured)
    np.testing.assert_allclose(out[0], [0, 0])                 # before any command: where the robot is
    np.testing.assert_allclose(out[1], [0.5, 0.5])             # from the measured state towards A's point
    np.testing.assert_allclose(out[2], [1, 1])                 # A's last point held
    np.testing.assert_allclose(out[3], [2, 1])                 # from A's setpoint at B's stamp towards 3;
    np.testing.assert_allclose(out[4], [4, 1])                 # joint 2 keeps A's setpoint
    np.testing.assert_allclose(out[5], [5, 1])                 # B's end held


def test_safety_marks_cover_the_held_stretch():
    ticks = np.arange(10) / 10                                # frames at 0.0 .. 0.9, 10 Hz
    # A reject at 0.25 (its hold published with the same stamp), a clamp at 0.62 (that command),
    # then a normal command at 0.75.
    flags = safety_flags(ticks, 10.0, [0.25, 0.62], [2, 1], command_stamps=[0.05, 0.25, 0.62, 0.75])
    # Frame k's action is the setpoint at t_k + 0.1: the hold of 0.25 rules frames 2..5 (frame 2
    # also holds the reject itself), the clamped command frame 6, the normal one frames 7..9.
    assert flags.tolist() == [0, 0, 2, 2, 2, 2, 1, 0, 0, 0]


def test_an_unstamped_hold_is_marked_until_the_next_forwarded_command():
    ticks = np.arange(10) / 10
    # A reject at 0.25; the filter's hold arrives unstamped ("start on receipt", indexed by its
    # receive time 0.27); the next forwarded command is stamped 0.55.
    flags = safety_flags(ticks, 10.0, [0.25], [2], command_stamps=[0.05, 0.27, 0.55],
                         command_stamped=[True, False, True])
    assert flags.tolist() == [0, 0, 2, 2, 2, 0, 0, 0, 0, 0]


def test_arm_and_gripper_controllers_each_keep_their_setpoints():
    measured = np.zeros((3, 2))
    arm = Command(1.0, np.array([2.0, 4.0]), np.array([[2.0, np.nan], [4.0, np.nan]]))
    gripper = Command(2.5, np.array([2.5]), np.array([[np.nan, 0.04]]))
    out = controller_setpoints([[arm], [gripper]], np.array([2.0, 3.0, 5.0]), measured)
    # A gripper command does not freeze the arm's trajectory, nor the arm's the gripper.
    np.testing.assert_allclose(out, [[2.0, 0.0], [3.0, 0.04], [4.0, 0.04]])
