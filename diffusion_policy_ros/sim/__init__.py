"""The embedded MuJoCo simulation: scenes, tasks, scripted experts, rendering."""
from diffusion_policy_ros.sim.gl_backend import choose_headless_gl

choose_headless_gl()  # before any module of the package imports MuJoCo (it reads MUJOCO_GL then)
