"""pip-installable core for machines without ROS 2 (e.g. a GPU training box):
models, samplers, datasets, training and the `dpros` command line. ROS users build the whole
package with colcon instead (package.xml, CMakeLists.txt)."""
from setuptools import find_packages, setup

SHARE = "share/diffusion_policy_ros"

setup(
    name="diffusion_policy_ros",
    version="0.1.0",
    description="Diffusion policies with streaming warm-started sampling for ROS 2 robot arms",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["diffusion_policy_ros", "diffusion_policy_ros.*"]),
    data_files=[
        (f"{SHARE}/config", ["config/single_arm.yaml", "config/bimanual.yaml", "config/fastdds_large_messages.xml"]),
        (f"{SHARE}/resource/mjcf", ["resource/mjcf/single_arm.xml", "resource/mjcf/bimanual.xml"]),
    ],
    install_requires=[
        "torch>=2.13,<2.14",
        "numpy>=1.26",
        "PyYAML>=6",
        "safetensors>=0.4",
        "zarr>=3",
        "tqdm>=4.60",
        "matplotlib>=3.8",
    ],
    extras_require={
        "sim": ["mujoco==4.0.0", "mink>=1.3"],
        "data": ["pyarrow>=15", "av>=12", "rosbags>=0.10", "mcap>=1.1", "opencv-python-headless>=4.8"],
        "safety": ["pin>=3", "ruckig>=0.12", "transforms3d>=0.4"],
    },
    entry_points={"console_scripts": ["dpros = diffusion_policy_ros.cli.main:main"]},
)
