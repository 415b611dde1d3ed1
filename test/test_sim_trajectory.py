"""The joint_trajectory_controller-like follower, without ROS."""
import numpy as np
import pytest

from diffusion_policy_ros.sim.trajectory import TrajectoryFollower, TrajectoryRejected

JOINTS = ["a", "b", "c"]


def make(q0=(0.0, 0.0, 0.0)):
    return TrajectoryFollower(JOINTS, q0, lower=[-1, -1, -1], upper=[1, 1, 1])


def test_interpolates_from_current_command_through_points_and_holds_at_end():
    f = make()
    kept = f.set_trajectory(10.0, 0.0, JOINTS, [1.0, 2.0], [[0.4, 0.2, 0.0], [0.8, 0.2, -0.4]])
    assert kept == 2
    np.testing.assert_allclose(f.sample(10.5)[0], [0.2, 0.1, 0.0])
    np.testing.assert_allclose(f.sample(11.0)[0], [0.4, 0.2, 0.0])
    pos, vel = f.sample(11.5)
    np.testing.assert_allclose(pos, [0.6, 0.2, -0.2])
    np.testing.assert_allclose(vel, [0.4, 0.0, -0.4])
    for t in (12.0, 13.0, 100.0):
        pos, vel = f.sample(t)
        np.testing.assert_allclose(pos, [0.8, 0.2, -0.4])
        np.testing.assert_allclose(vel, 0.0)
    assert not f.active


def test_drops_points_in_the_past_and_rejects_all_past():
    f = make()
    # Started 1.5 s ago: the point at 1 s is gone, the one at 2 s is 0.5 s ahead.
    kept = f.set_trajectory(10.0, 8.5, JOINTS, [1.0, 2.0], [[0.9, 0.9, 0.9], [0.5, 0.5, 0.5]])
    assert kept == 1
    np.testing.assert_allclose(f.sample(10.25)[0], [0.25] * 3)
    before = f.sample(10.25)[0]
    with pytest.raises(TrajectoryRejected, match="in the past"):
        f.set_trajectory(10.25, 5.0, JOINTS, [1.0, 2.0], [[0.9] * 3, [0.1] * 3])
    np.testing.assert_allclose(f.sample(10.25)[0], before)   # the old command stays


def test_cubic_with_velocities_matches_end_points():
    f = make()
    f.set_trajectory(0.0, 0.0, JOINTS, [1.0], [[0.5, 0.0, 0.0]], velocities=[[0.0, 0.0, 0.0]])
    p_mid, v_mid = f.sample(0.5)
    np.testing.assert_allclose(p_mid, [0.25, 0, 0], atol=1e-12)
    np.testing.assert_allclose(v_mid, [0.75, 0, 0], atol=1e-12)   # smoothstep peak speed 1.5 * 0.5
    np.testing.assert_allclose(f.sample(0.999999)[0], [0.5, 0, 0], atol=1e-5)


def test_partial_joints_keep_their_command_and_new_trajectory_replaces_old():
    f = make([0.1, 0.2, 0.3])
    f.set_trajectory(0.0, 0.0, ["b"], [1.0], [[0.6]])
    np.testing.assert_allclose(f.sample(1.0)[0], [0.1, 0.6, 0.3])
    f.set_trajectory(1.0, 0.0, JOINTS, [1.0, 3.0], [[0.0] * 3, [0.0] * 3])
    f.set_trajectory(1.5, 0.0, ["a"], [0.5], [[-0.5]])      # replaces from where it is now
    pos = f.sample(2.0)[0]
    assert pos[0] == pytest.approx(-0.5)


def test_bad_trajectories_are_rejected_with_a_reason():
    f = make()
    with pytest.raises(TrajectoryRejected, match="unknown joints"):
        f.set_trajectory(0, 0, ["a", "zz"], [1.0], [[0, 0]])
    with pytest.raises(TrajectoryRejected, match="increase"):
        f.set_trajectory(0, 0, JOINTS, [1.0, 1.0], [[0] * 3, [0] * 3])
    with pytest.raises(TrajectoryRejected, match="NaN"):
        f.set_trajectory(0, 0, JOINTS, [1.0], [[0, np.nan, 0]])
    with pytest.raises(TrajectoryRejected, match="positions"):
        f.set_trajectory(0, 0, JOINTS, [1.0], [[0, 0]])
    with pytest.raises(TrajectoryRejected, match="no points"):
        f.set_trajectory(0, 0, JOINTS, [], [])
    with pytest.raises(TrajectoryRejected):
        f.hold([0.0, 0.0])
    assert not f.active


def test_targets_are_clipped_to_joint_limits():
    f = make()
    f.set_trajectory(0, 0, JOINTS, [1.0], [[5.0, -5.0, 0.0]])
    np.testing.assert_allclose(f.sample(2.0)[0], [1.0, -1.0, 0.0])
