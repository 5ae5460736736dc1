"""ament_python package fsmde_ros: real-time full-surround monocular depth for ROS 2.

Python dependencies live here, and only here (constraints.txt pins the verified versions).
colcon installs none of them: on a ROS 2 machine rclpy and the message packages come from the
system packages; elsewhere `make setup` installs the PyPI wheels (extra `ros`). cv_bridge is not used:
the codec converts images itself.
"""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "fsmde_ros"

CORE = [
    "numpy>=1.24,<2",  # nuscenes-devkit needs numpy 1
    "opencv-python-headless>=4.8,<4.12",
    "pyyaml>=6",
    "tqdm>=4.60",
    "onnx>=1.16",
]

EXTRAS = {
    # ONNX Runtime on CPU (laptops, CI). Vehicles use the `gpu` extra instead: the two wheels
    # provide the same module and must not be installed together.
    "cpu": ["onnxruntime>=1.18"],
    "gpu": ["onnxruntime-gpu>=1.18", "tensorrt>=10"],
    "tensorrt": ["tensorrt>=10"],  # TensorRT alone, beside an onnxruntime you already have
    # Training, export and the torch backend.
    "train": ["torch==2.14.1", "torchvision==0.29.1", "timm>=1.0", "transformers>=4.45", "tensorboard>=2.14"],
    # ROS 2 from PyPI wheels, for machines without a ROS 2 installation.
    "ros": [
        "ros-rclpy",
        "ros-sensor-msgs",
        "ros-std-msgs",
        "ros-diagnostic-msgs",
        "ros-rmw-fastrtps-cpp",
        "rosbags>=0.10",
    ],
    "nuscenes": ["nuscenes-devkit>=1.1"],
    "test": ["pytest>=8", "colcon-common-extensions", "ros-ament-package"],
}

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["tests", "tests.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
        (f"share/{PACKAGE}/config/rviz", glob("config/rviz/*.rviz")),
        (f"share/{PACKAGE}/config/rigs", glob("config/rigs/*.yaml")),
        (f"share/{PACKAGE}/models", glob("models/*.onnx") + glob("models/*.md")),
    ],
    package_data={PACKAGE: []},
    include_package_data=False,
    python_requires=">=3.10",
    install_requires=CORE,
    extras_require=EXTRAS,
    zip_safe=False,
    maintainer="fsmde_ros developers",
    maintainer_email="fsmde-ros@example.com",
    description="Real-time full-surround monocular metric depth (distilled from a depth foundation model) for ROS 2.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "fsmde = fsmde_ros.app.cli:main",
            "surround_depth_node = fsmde_ros.ros.node:main",
        ],
    },
)
