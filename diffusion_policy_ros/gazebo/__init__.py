"""The robot and its task for Gazebo, written from the robot description the MuJoCo sim and the
safety filter load (resource/mjcf/<robot>.xml plus config/<robot>.yaml), so the three cannot drift.

- `model_source`: what the MuJoCo model, the sim task and the safety filter say about a config
- `urdf`: one URDF per arm, with `<ros2_control>` for gz_ros2_control
- `world`: one SDF world per task (table, cube, target, scene camera, light), poses from a seed
- `ros_interfaces`: controller parameters, bridge entries, and the topics each side serves
- `shipped`: where the generated files live, writing them, finding stale ones
- `launch_plan`: what gazebo.launch.py starts for a config

`dpros describe gazebo` writes the shipped files; test/test_gazebo_*.py regenerate and compare.
No module here imports rclpy.
"""
