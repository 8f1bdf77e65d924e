from glob import glob

from setuptools import find_packages, setup

PACKAGE = "human3r_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    # include= keeps the scan inside the package: the repo root also holds .venv/ and build/.
    packages=find_packages(include=[PACKAGE, PACKAGE + ".*"], exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE]),
        ("share/" + PACKAGE, ["package.xml"]),
        ("share/" + PACKAGE + "/launch", glob("launch/*.py")),
        ("share/" + PACKAGE + "/config", glob("config/*.yaml")),
        ("share/" + PACKAGE + "/rviz", glob("rviz/*.rviz")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="human3r_ros maintainers",
    maintainer_email="maintainers@human3r-ros.org",
    description="Online 4D human and camera reconstruction (Human3R) for ROS 2.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "human3r_node = human3r_ros.ros.node:main",
            "human3r-process = human3r_ros.cli.process:main",
            "human3r-replay = human3r_ros.cli.replay:main",
        ],
    },
)
