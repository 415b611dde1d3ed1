"""The sim picks a headless OpenGL platform itself when there is no display (a sim under
`ros2 launch` or on a CI machine has no MUJOCO_GL from ./env.sh)."""
import os
import subprocess
import sys

from diffusion_policy_ros.sim.gl_backend import choose_headless_gl


def test_no_display_and_no_choice_gets_egl_or_osmesa():
    found = {"EGL": "libEGL.so.1", "OSMesa": "libOSMesa.so.8"}
    env = {}
    assert choose_headless_gl(env, found.get) == "egl"
    assert env == {"MUJOCO_GL": "egl", "PYOPENGL_PLATFORM": "egl"}
    env = {}
    assert choose_headless_gl(env, {"OSMesa": "libOSMesa.so.8"}.get) == "osmesa"
    assert env["MUJOCO_GL"] == "osmesa"


def test_a_users_choice_or_a_display_is_left_alone():
    for env in ({"MUJOCO_GL": "osmesa"}, {"DISPLAY": ":0"}, {"WAYLAND_DISPLAY": "wayland-0"}):
        before = dict(env)
        assert choose_headless_gl(env, lambda name: "lib.so") is None
        assert env == before


def test_the_sim_renders_without_mujoco_gl_set():
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM", "DISPLAY",
                                                            "WAYLAND_DISPLAY")}
    code = ("from diffusion_policy_ros.robot_config import load_robot_config\n"
            "from diffusion_policy_ros.sim.env import SimEnv\n"
            "env = SimEnv(load_robot_config('config/single_arm.yaml'))\n"
            "env.reset(0)\n"
            "print(env.render('scene')[0].shape)\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("(96, 96, 3)")
