"""Where relative paths in settings are anchored: the working directory, as for any
daemon started by systemd with WorkingDirectory= set."""

import os


def resolve(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))
