"""Diffusion policies on ROS 2 robot arms.

The colcon build installs generated message modules (`diffusion_policy_ros.msg`, `.srv`) into
install/; extending the package path lets a source checkout on sys.path find them there too.
"""
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
