"""`dpros sim bench --json out.json`: physics steps/s, render fps per camera, and the real-time
factor of the sim loop (physics at its rate, every camera rendered at the publish rate, tactile and
joint states read at the joint-state rate) for each scene at the config's frame sizes.

Cameras a scene has but its config leaves off (the single arm's `wrist`) are benchmarked too, at
64x64 with depth, so "all cameras on" means every camera in the MJCF.
"""
from __future__ import annotations

import time


def add_arguments(parser) -> None:
    parser.add_argument("--robots", nargs="+", default=["single_arm", "bimanual"])
    parser.add_argument("--seconds", type=float, default=2.0, help="sim seconds per measurement")
    parser.add_argument("--json", default=None)
    parser.add_argument("--node-seconds", type=float, default=5.0,
                        help="wall seconds to run sim_node (real_time_factor 0, all cameras); 0 skips")


def _all_cameras(config, model):
    import dataclasses

    import mujoco

    from diffusion_policy_ros.robot_config import CameraConfig
    cams = list(config.cameras)
    known = {c.name for c in cams}
    for i in range(model.ncam):
        name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_CAMERA, i)
        if name not in known:
            cams.append(CameraConfig(name=name, topic=f"/camera/{name}", width=64, height=64, depth=True,
                                     depth_max_m=1.0))
    return dataclasses.replace(config, cameras=tuple(cams))


def bench_robot(robot: str, sim_seconds: float) -> dict:
    from diffusion_policy_ros.robot_config import config_path, load_robot_config
    from diffusion_policy_ros.sim.env import SimEnv
    from diffusion_policy_ros.sim.robot_model import load_scene_model

    config = load_robot_config(config_path(robot))
    config = _all_cameras(config, load_scene_model(config.robot))
    params = config.node_params("sim_node")
    publish_hz = float(params.get("publish_rate_hz", 30.0))
    joint_hz = float(params.get("joint_state_rate_hz", 100.0))
    out = {"robot": robot, "timestep_s": None, "cameras": {}}
    with SimEnv(config) as env:
        env.reset(0)
        dt = env.model.opt.timestep
        out["timestep_s"] = dt
        n = int(sim_seconds / dt)
        target = env.home.copy()
        t0 = time.perf_counter()
        env.step_physics(target, n=n)
        out["physics_steps_per_s"] = n / (time.perf_counter() - t0)
        for cam in config.cameras:
            r = env.renderers[cam.name]
            r.render(env.data)  # warm up the GL context
            reps = 60
            t0 = time.perf_counter()
            for _ in range(reps):
                r.render(env.data)
            fps = reps / (time.perf_counter() - t0)
            out["cameras"][cam.name] = {"width": cam.width, "height": cam.height, "depth": cam.depth,
                                        "fps_rgb_plus_depth" if cam.depth else "fps_rgb": fps}
        # The sim_node loop without ROS: physics, joint/tactile reads and all cameras at their rates.
        env.reset(1)
        steps_per_frame = max(1, int(round(1.0 / (publish_hz * dt))))
        steps_per_joint = max(1, int(round(1.0 / (joint_hz * dt))))
        t0 = time.perf_counter()
        for i in range(n):
            env.step_physics(target)
            if i % steps_per_joint == 0:
                env.joint_positions(), env.joint_velocities(), env.joint_efforts()
                for s in env.tactile:
                    env.read_tactile(s)
            if i % steps_per_frame == 0:
                for cam in env.renderers:
                    env.render(cam)
        wall = time.perf_counter() - t0
        out["loop_real_time_factor_all_cameras"] = n * dt / wall
        out["publish_rate_hz"] = publish_hz
        # Frames per second when every camera renders once per frame.
        out["all_cameras_fps"] = 1.0 / sum(1.0 / c[k] for c in out["cameras"].values()
                                            for k in c if k.startswith("fps"))
    return out


def bench_node(robot: str, wall_seconds: float) -> dict:
    """Run the real sim_node as fast as it goes with every camera on; simulated s per wall s."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter

    from diffusion_policy_ros.nodes.sim_node import SimNode
    from diffusion_policy_ros.robot_config import config_path, load_robot_config
    from diffusion_policy_ros.runtime.spin_thread import SpinThread
    from diffusion_policy_ros.sim.robot_model import load_scene_model

    config = _all_cameras(load_robot_config(config_path(robot)), load_scene_model(robot))
    overrides = [Parameter("real_time_factor", value=0.0), Parameter("cameras", value=[c.name for c in config.cameras])]
    for c in config.cameras:
        overrides += [Parameter(f"camera.{c.name}.{k}", value=getattr(c, k))
                      for k in ("topic", "width", "height", "depth", "depth_max_m")]
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(__import__("os").environ.get("ROS_DOMAIN_ID", "0")))
    try:
        node = SimNode(context=context, cli_args=["--ros-args", "--params-file", config_path(robot)],
                       parameter_overrides=overrides)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        spin = SpinThread(executor).start()
        time.sleep(0.5)
        sim0, t0 = node.sim_seconds, time.perf_counter()
        time.sleep(wall_seconds)
        rtf = (node.sim_seconds - sim0) / (time.perf_counter() - t0)
        spin.stop()
        node.shutdown()
        node.destroy_node()
    finally:
        context.try_shutdown()
    return {"sim_node_real_time_factor_all_cameras": rtf, "cameras": [c.name for c in config.cameras],
            "publish_rate_hz": float(config.node_params("sim_node").get("publish_rate_hz", 30.0))}


def run(args) -> int:
    from diffusion_policy_ros.cli.sim_common import write_json
    results = {r: bench_robot(r, args.seconds) for r in args.robots}
    if args.node_seconds > 0:
        try:
            import diffusion_policy_ros.msg  # noqa: F401 - built by colcon (make setup)
        except ImportError:
            print("sim bench: no ROS messages built (make setup); skipping the sim_node measurement")
        else:
            for r in args.robots:
                results[r]["sim_node"] = bench_node(r, args.node_seconds)
    write_json(args.json, results)
    return 0
