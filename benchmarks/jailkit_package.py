"""
jailkit's own programs for side-by-side benchmarks, without installing the
package (its conffiles would land in /etc/jailkit, which jailtwist reads):
the installed Debian copy when there is one, else the .deb fetched with
`apt-get download` and unpacked into a scratch directory.
"""

import glob
import os
import subprocess


def unpacked(scratch):
    """
    @return: the root of jailkit's unpacked package under C{scratch}.
    """
    root = os.path.join(scratch, "jailkit")
    if not os.path.isdir(root):
        subprocess.run(["apt-get", "download", "-q", "jailkit"], cwd=scratch,
                       check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        deb = glob.glob(os.path.join(scratch, "jailkit_*.deb"))[0]
        subprocess.run(["dpkg-deb", "-x", deb, root], check=True)
    return root


def installedPython(name):
    """
    @return: whether Debian's jailkit Python tool C{name} is installed
        (not jailtwist's command of the same name).
    """
    path = f"/usr/sbin/{name}"
    if not (os.path.exists(path)
            and os.path.exists("/usr/share/jailkit/jk_lib.py")):
        return False
    with open(path, "rb") as f:
        return b"jk_lib" in f.read()


def pythonTool(name, scratch):
    """
    @return: C{(argv, env)} running jailkit's Python tool C{name}.
    """
    if installedPython(name):
        return [f"/usr/sbin/{name}"], None
    root = unpacked(scratch)
    env = dict(os.environ, PYTHONPATH=os.path.join(root, "usr/share/jailkit"))
    return ["/usr/bin/python3", os.path.join(root, "usr/sbin", name)], env


def cTool(name, scratch):
    """
    @return: the path of jailkit's C program C{name} (an ELF file, never
        jailtwist's Python command of the same name).
    """
    for path in (f"/usr/sbin/{name}", f"/usr/bin/{name}"):
        if os.path.exists(path):
            with open(path, "rb") as f:
                if f.read(4) == b"\x7fELF":
                    return path
    root = unpacked(scratch)
    for where in ("usr/sbin", "usr/bin"):
        path = os.path.join(root, where, name)
        if os.path.exists(path):
            return path
    raise SystemExit(f"jailkit's package has no {name}")
