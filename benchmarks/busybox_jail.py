"""
The smallest jail the benchmarks launch programs in: static busybox and the
directories a launch expects.
"""

import os
import shutil


def buildJail(parent):
    """
    @return: the path of a new jail under C{parent}.
    """
    jail = os.path.join(parent, "jail")
    for directory in ("bin", "dev", "proc", "etc", "tmp"):
        os.makedirs(os.path.join(jail, directory), 0o755)
    shutil.copy("/bin/busybox", os.path.join(jail, "bin", "busybox"))
    return jail
