"""pip install path (``pip install -e .``) for the ROS-free core and the ``inerf-ros`` command.

A ROS workspace builds the package with colcon through CMakeLists.txt (ament_cmake), which also
generates the messages; this file serves users who only want the core library and the CLI.
"""
from setuptools import find_packages, setup

setup(
    name="inerf_ros",
    version="0.1.0",
    description="Camera localization by inverting a NeRF, started from PoseCNN object-pose priors",
    license="Apache-2.0",
    packages=find_packages(include=["inerf_ros", "inerf_ros.*"]),
    python_requires=">=3.10",
    install_requires=[line.split("#")[0].strip() for line in open("requirements/core.txt")
                      if line.split("#")[0].strip()] + ["torch"],
    entry_points={"console_scripts": [
        "inerf-ros = inerf_ros.cli:main",
        "posecnn_node = inerf_ros.nodes.posecnn_node:main",
        "initializer_node = inerf_ros.nodes.initializer_node:main",
        "inerf_node = inerf_ros.nodes.inerf_node:main",
    ]},
)
