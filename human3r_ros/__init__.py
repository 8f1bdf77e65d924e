"""human3r_ros: Human3R (CUT3R + Multi-HMR) online 4D human and scene perception for ROS 2.

The core (``human3r_ros.model``, ``human3r_ros.engine``) is importable without ROS.
"""

__version__ = "0.1.0"
