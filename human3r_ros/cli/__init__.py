"""Offline command-line tools: ``human3r-process`` (videos, image folders, arrays and bags in,
``.npz`` or bags out) and ``human3r-replay`` (publish a bag's camera images live).

Everything except the replay tool runs without a ROS installation (bags through ``rosbags``).
"""


class CliError(Exception):
    """A problem the user can fix (bad input, missing file, ...): printed as one line, exit code 1."""
