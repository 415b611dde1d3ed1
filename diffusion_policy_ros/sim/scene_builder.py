"""Writes the project's MJCF scenes (resource/mjcf/single_arm.xml, bimanual.xml).

The arm is authored here once and stamped out per arm with a name prefix, so the two scenes
cannot drift apart. Only primitive shapes: they render fastest in software GL and need no meshes.
Regenerate after editing: `python -m diffusion_policy_ros.sim.scene_builder`.

Arm kinematics (zero pose: upper arm vertical, forearm and tool pointing along the base's +x):
joint_1 yaw (z) at 0.08 m, joint_2 shoulder pitch (y) at 0.16 m, joint_3 elbow pitch (y) 0.30 m
above it, joint_4 forearm roll (x) 0.14 m on, joint_5 wrist pitch (y) 0.14 m on, joint_6 tool roll
(x) 0.05 m on. The `tcp` site sits between the finger pads; its x axis is the approach direction,
its y axis the direction the left finger opens. Fingers are two coupled slide joints; the gripper
value is the gap between the pads in metres (0 = closed, 0.08 = fully open).
"""
from __future__ import annotations

import os

import numpy as np

TAXEL_ROWS = 4          # along the finger (row 0 at the tip)
TAXEL_COLS = 4          # across the finger
TAXEL_PITCH = 0.005
TAXEL_RADIUS = 0.0025
FINGER_TRAVEL = 0.04    # per finger, so the gripper opens 0.08 m
PAD_CENTER_X = 0.035    # pad centre along the finger, from the palm face
PALM_FRONT_X = 0.03     # palm face, from joint_6
TCP_X = PALM_FRONT_X + PAD_CENTER_X
CUBE_HALF = 0.02

ARM_JOINT_RANGES = [(-3.05, 3.05), (-1.9, 1.9), (-2.6, 2.6), (-3.05, 3.05), (-2.2, 2.2), (-3.05, 3.05)]


def _f(values) -> str:
    return " ".join(f"{v:.6g}" for v in values)


def look_at_xyaxes(eye, target, up=(0.0, 0.0, 1.0)) -> str:
    """MuJoCo cameras look along their -z; return `xyaxes` that aim one from eye at target."""
    eye, target, up = map(np.asarray, (eye, target, up))
    forward = target - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    cam_up = np.cross(right, forward)
    return _f([*right, *cam_up])


def _finger(p: str, side: str, sign: int) -> str:
    """One finger: a plate on a slide joint, with a 4x4 grid of taxel spheres on its inner face.

    Each taxel is a small collision sphere with a slightly larger site around it; a touch sensor
    on the site sums the normal force of the contacts inside it, so a taxel reads only where the
    finger really touches something.
    """
    name = f"{p}finger_{side}"
    # Inner face of the plate at y = sign*TAXEL_RADIUS (finger frame); the sphere tips at y = 0,
    # so the pad gap equals the sum of the two joint positions.
    plate_half_thick = 0.004
    plate_y = sign * (TAXEL_RADIUS + plate_half_thick)
    taxels, sites = [], []
    for r in range(TAXEL_ROWS):
        for c in range(TAXEL_COLS):
            x = PAD_CENTER_X + (1.5 - r) * TAXEL_PITCH
            z = (c - 1.5) * TAXEL_PITCH
            pos = _f([x, sign * TAXEL_RADIUS, z])
            taxels.append(f'<geom name="{name}_taxel_{r}_{c}" class="taxel" pos="{pos}"/>')
            sites.append(f'<site name="{name}_taxel_{r}_{c}" class="taxel" pos="{pos}"/>')
    body = "\n".join([
        f'<body name="{name}" pos="{PALM_FRONT_X} 0 0">',
        f'  <joint name="{name}_joint" class="finger" axis="0 {sign} 0"/>',
        f'  <geom name="{name}_plate" class="finger" pos="{0.025} {plate_y:.6g} 0" size="0.025 {plate_half_thick} 0.012"/>',
        *["  " + t for t in taxels], *["  " + s for s in sites],
        '</body>'])
    return body


def arm_body(p: str, pos, quat) -> str:
    """The kinematic tree of one arm; every name carries the prefix `p` (e.g. `left_`)."""
    return f"""
<body name="{p}base" pos="{_f(pos)}" quat="{_f(quat)}">
  <geom name="{p}base_geom" class="link" type="cylinder" size="0.06 0.04" pos="0 0 0.04" rgba="0.25 0.25 0.28 1"/>
  <body name="{p}link1" pos="0 0 0.08" gravcomp="1">
    <joint name="{p}joint_1" class="big" axis="0 0 1" range="{_f(ARM_JOINT_RANGES[0])}"/>
    <geom name="{p}link1_geom" class="link" type="cylinder" size="0.045 0.04" pos="0 0 0.04"/>
    <body name="{p}link2" pos="0 0 0.08" gravcomp="1">
      <joint name="{p}joint_2" class="big" axis="0 1 0" range="{_f(ARM_JOINT_RANGES[1])}"/>
      <geom name="{p}link2_geom" class="link" type="capsule" fromto="0 0 0 0 0 0.3" size="0.035"/>
      <body name="{p}link3" pos="0 0 0.3" gravcomp="1">
        <joint name="{p}joint_3" class="big" axis="0 1 0" range="{_f(ARM_JOINT_RANGES[2])}"/>
        <geom name="{p}link3_geom" class="link" type="capsule" fromto="0 0 0 0.14 0 0" size="0.03"/>
        <body name="{p}link4" pos="0.14 0 0" gravcomp="1">
          <joint name="{p}joint_4" class="small" axis="1 0 0" range="{_f(ARM_JOINT_RANGES[3])}"/>
          <geom name="{p}link4_geom" class="link" type="capsule" fromto="0 0 0 0.14 0 0" size="0.028"/>
          <body name="{p}link5" pos="0.14 0 0" gravcomp="1">
            <joint name="{p}joint_5" class="small" axis="0 1 0" range="{_f(ARM_JOINT_RANGES[4])}"/>
            <geom name="{p}link5_geom" class="link" type="capsule" fromto="0 0 0 0.05 0 0" size="0.025"/>
            <body name="{p}link6" pos="0.05 0 0" gravcomp="1">
              <joint name="{p}joint_6" class="small" axis="1 0 0" range="{_f(ARM_JOINT_RANGES[5])}"/>
              <geom name="{p}palm" class="link" type="box" size="0.015 0.045 0.02" pos="0.015 0 0" rgba="0.2 0.2 0.22 1"/>
              <camera name="{p}wrist" pos="0.0 0 0.045" xyaxes="0 -1 0 0.28 0 0.96" fovy="75"/>
              <site name="{p}tcp" pos="{TCP_X} 0 0" size="0.004" rgba="1 1 0 0.5" group="3"/>
{_indent(_finger(p, "l", 1), 14)}
{_indent(_finger(p, "r", -1), 14)}
            </body>
          </body>
        </body>
      </body>
    </body>
  </body>
</body>"""


def _indent(text: str, n: int) -> str:
    return "\n".join(" " * n + line for line in text.splitlines())


def arm_actuators(p: str) -> str:
    joints = "\n".join(
        f'  <position name="{p}joint_{i}" joint="{p}joint_{i}" class="{"big" if i <= 3 else "small"}" '
        f'ctrlrange="{_f(ARM_JOINT_RANGES[i - 1])}"/>' for i in range(1, 7))
    fingers = "\n".join(
        f'  <position name="{p}finger_{s}" joint="{p}finger_{s}_joint" class="finger"/>' for s in "lr")
    return joints + "\n" + fingers


def arm_sensors(p: str) -> str:
    lines = []
    for s in "lr":
        for r in range(TAXEL_ROWS):
            for c in range(TAXEL_COLS):
                n = f"{p}finger_{s}_taxel_{r}_{c}"
                lines.append(f'  <touch name="{n}" site="{n}"/>')
    return "\n".join(lines)


DEFAULTS = f"""
  <default>
    <geom contype="1" conaffinity="1" friction="1.0 0.01 0.001" solref="0.004 1"/>
    <default class="link">
      <geom contype="0" conaffinity="0" rgba="0.72 0.74 0.78 1" density="800"/>
    </default>
    <default class="big">
      <joint damping="2" armature="0.05"/>
      <position kp="600" kv="40" forcerange="-150 150"/>
    </default>
    <default class="small">
      <joint damping="0.5" armature="0.02"/>
      <position kp="150" kv="8" forcerange="-40 40"/>
    </default>
    <default class="finger">
      <joint type="slide" range="0 {FINGER_TRAVEL}" damping="2" armature="0.01"/>
      <position kp="400" kv="10" ctrlrange="0 {FINGER_TRAVEL}" forcerange="-12 12"/>
      <geom type="box" rgba="0.15 0.15 0.17 1" density="1000" friction="1.2 0.02 0.001"/>
    </default>
    <default class="taxel">
      <geom type="sphere" size="{TAXEL_RADIUS}" group="3" rgba="0.9 0.6 0.2 1" friction="1.5 0.02 0.001" mass="0.0005"/>
      <site type="sphere" size="{TAXEL_RADIUS * 1.5}" rgba="0 0 0 0" group="4"/>
    </default>
  </default>"""


def scene_xml(name: str, arms: list[tuple[str, tuple, tuple]], table_center, table_half, scene_eye,
              scene_target, scene_fovy=50) -> str:
    bodies = "\n".join(arm_body(p, pos, quat) for p, pos, quat in arms)
    actuators = "\n".join(arm_actuators(p) for p, _, _ in arms)
    sensors = "\n".join(arm_sensors(p) for p, _, _ in arms)
    tc = _f([table_center[0], table_center[1], -0.02])
    th = _f([table_half[0], table_half[1], 0.02])
    return f"""<!-- Generated by diffusion_policy_ros/sim/scene_builder.py; edit that file, not this one. -->
<mujoco model="{name}">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="0.002" integrator="implicitfast" cone="elliptic" impratio="10"/>
  <visual>
    <quality shadowsize="0" offsamples="0"/>
    <global offwidth="640" offheight="480"/>
    <map znear="0.01" zfar="5"/>
  </visual>
{DEFAULTS}
  <asset>
    <texture name="grid" type="2d" builtin="checker" rgb1="0.55 0.45 0.35" rgb2="0.5 0.4 0.3" width="64" height="64"/>
    <material name="table" texture="grid" texrepeat="6 6"/>
  </asset>
  <worldbody>
    <light name="key" pos="0 -0.5 2.0" dir="0 0.25 -1" directional="true" castshadow="false" diffuse="0.7 0.7 0.7"/>
    <geom name="floor" type="plane" size="3 3 0.1" pos="0 0 -0.75" rgba="0.3 0.32 0.35 1"/>
    <geom name="table" type="box" pos="{tc}" size="{th}" material="table"/>
    <camera name="scene" pos="{_f(scene_eye)}" xyaxes="{look_at_xyaxes(scene_eye, scene_target)}" fovy="{scene_fovy}"/>
    <body name="cube" pos="0.4 0 {CUBE_HALF}">
      <freejoint name="cube_joint"/>
      <geom name="cube" type="box" size="{CUBE_HALF} {CUBE_HALF} {CUBE_HALF}" rgba="0.85 0.1 0.1 1" mass="0.05"
            friction="1.2 0.02 0.001"/>
    </body>
    <body name="target" mocap="true" pos="0.4 0.2 0">
      <geom name="target" type="cylinder" size="0.04 0.001" contype="0" conaffinity="0" rgba="0.1 0.8 0.2 1"/>
    </body>
{_indent(bodies, 4)}
  </worldbody>
  <actuator>
{actuators}
  </actuator>
  <sensor>
{sensors}
  </sensor>
</mujoco>
"""


def build_scenes(out_dir: str) -> list[str]:
    os.makedirs(out_dir, exist_ok=True)
    scenes = {
        "single_arm": scene_xml(
            "single_arm", [("", (0, 0, 0), (1, 0, 0, 0))], table_center=(0.35, 0), table_half=(0.5, 0.6),
            # Close and steep: the cube must span enough pixels of a 96x96 policy image.
            scene_eye=(0.72, 0.0, 0.62), scene_target=(0.37, 0.0, 0.0), scene_fovy=48),
        # Arms face each other along x; the right one is turned half a circle about z.
        "bimanual": scene_xml(
            "bimanual", [("left_", (-0.45, 0, 0), (1, 0, 0, 0)), ("right_", (0.45, 0, 0), (0, 0, 0, 1))],
            table_center=(0, 0), table_half=(0.6, 0.45),
            scene_eye=(0.0, -0.75, 0.6), scene_target=(0.0, 0.0, 0.1)),
    }
    paths = []
    for name, xml in scenes.items():
        path = os.path.join(out_dir, f"{name}.xml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(xml)
        paths.append(path)
    return paths


if __name__ == "__main__":
    from diffusion_policy_ros.resources import _source_root
    for p in build_scenes(os.path.join(_source_root(), "resource", "mjcf")):
        print("wrote", p)
