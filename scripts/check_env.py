"""Prints the versions of the pieces human3r_ros runs on; exits non-zero if one is missing."""

import importlib
import os
import sys

CHECKS = [
    ("rclpy", "rclpy"),
    ("human3r_msgs", "human3r_msgs.msg"),
    ("tf2_msgs", "tf2_msgs.msg"),
    ("human3r_ros", "human3r_ros"),
    ("torch", "torch"),
    ("numpy", "numpy"),
]


def version_of(name: str, module) -> str:
    if name in ("human3r_msgs", "tf2_msgs", "rclpy"):
        # ROS packages carry their version in package.xml, not in the module.
        from ament_index_python.packages import get_package_share_directory

        import xml.etree.ElementTree as ET

        xml = os.path.join(get_package_share_directory(name), "package.xml")
        return ET.parse(xml).getroot().findtext("version")
    return getattr(module, "__version__", "?")


def main() -> int:
    failed = False
    print(f"python       {sys.version.split()[0]} ({sys.executable})")
    print(f"ROS_DISTRO   {os.environ.get('ROS_DISTRO', '(none: ROS 2 Kilted wheels from PyPI)')}")
    print(f"RMW          {os.environ.get('RMW_IMPLEMENTATION', '(default)')}")
    for name, module_name in CHECKS:
        try:
            module = importlib.import_module(module_name)
            where = os.path.dirname(getattr(module, "__file__", "") or "")
            print(f"{name:<12} {version_of(name, module):<14} {where}")
        except Exception as exc:  # report every missing piece, not just the first
            failed = True
            print(f"{name:<12} MISSING: {exc}")
    try:
        import torch

        print(f"CUDA         {torch.cuda.is_available()}")
    except ImportError:
        pass
    print("environment OK" if not failed else "environment incomplete: run `make setup`")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
