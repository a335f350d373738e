#!/usr/bin/env python3
"""
Time jk_check on a jail of 10,000 files, against jailkit's jk_check on the
same jail in the same run.

The jail holds copies of the host's first 10,000 regular files under
/usr/bin, /usr/sbin, /usr/lib and /usr/share (at the same paths, so every
one is compared with the host), a few planted problems, and is built in a
fresh directory under /srv (root-owned parents, as jk_check wants).

jailtwist's jk_check compares every byte of every file; jailkit's reads one
random 1 KiB block per file.  jailkit is not a dependency: when it is not
installed, its package is fetched with `apt-get download` and unpacked in a
scratch directory (nothing is installed on the machine).

Run as root:  python3 benchmarks/bench_jk_check.py [--files N] [--runs N]
It uses the installed jk_check next to the interpreter running it, else the
one on PATH.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import jailkit_package

SOURCES = ("/usr/bin", "/usr/sbin", "/usr/lib", "/usr/share")


def hostFiles(count, maxSize=4 * 1024 * 1024):
    chosen = []
    for top in SOURCES:
        for directory, dirs, files in os.walk(top):
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(directory, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                if not (st.st_mode & 0o170000 == 0o100000):
                    continue
                if st.st_size > maxSize or st.st_mode & 0o6000:
                    continue
                if not os.access(path, os.R_OK):
                    continue
                chosen.append(path)
                if len(chosen) == count:
                    return chosen
    return chosen


def buildJail(jail, files):
    total = 0
    for path in files:
        target = jail + path
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(path, target)
        total += os.path.getsize(path)
    # What jk_check must find.
    planted = jail + "/usr/bin/planted-setuid"
    shutil.copy2(files[0], planted)
    os.chmod(planted, 0o4755)
    os.makedirs(jail + "/var/drop")
    os.chmod(jail + "/var/drop", 0o777)
    victim = next(p for p in files if os.path.getsize(p) > 4096)
    with open(jail + victim, "r+b") as f:
        f.seek(os.path.getsize(jail + victim) // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    return total, victim


def jailkitCheck(scratch):
    """
    @return: the command and environment that run jailkit's jk_check.
    """
    argv, env = jailkit_package.pythonTool("jk_check", scratch)
    return argv, env or {}


def ours():
    local = os.path.join(os.path.dirname(sys.executable), "jk_check")
    if os.path.exists(local):
        return local
    found = shutil.which("jk_check")
    if not found:
        sys.exit("jk_check is not installed: run ./bootstrap.sh install")
    return found


def timed(argv, env=None, runs=3):
    best = None
    result = None
    for _ in range(runs):
        start = time.perf_counter()
        result = subprocess.run(argv, capture_output=True, text=True,
                                env=env)
        elapsed = time.perf_counter() - start
        best = elapsed if best is None else min(best, elapsed)
    return best, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--files", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (jails need root-owned directories)")
    scratch = tempfile.mkdtemp(prefix="jt-bench-", dir="/var/tmp")
    jail = tempfile.mkdtemp(prefix="jt-bench-check-", dir="/srv")
    os.chmod(jail, 0o755)
    try:
        files = hostFiles(args.files)
        start = time.perf_counter()
        size, victim = buildJail(jail, files)
        print(f"jail {jail}: {len(files)} files copied from the host,"
              f" {size / 1e6:.0f} MB, built in"
              f" {time.perf_counter() - start:.1f} s; planted: a setuid"
              f" copy, a 0777 directory, one flipped byte in {victim}")
        config = os.path.join(scratch, "jk_check.ini")
        with open(config, "w") as f:
            f.write(f"[{jail}]\n")
        # Warm the page cache for both sides once, so neither tool pays
        # for the first read from disk.
        subprocess.run([ours(), jail], capture_output=True)

        elapsed, result = timed([ours(), jail], runs=args.runs)
        lines = result.stdout.splitlines()
        print(f"jailtwist jk_check JAIL:     {elapsed:.3f} s (best of"
              f" {args.runs}), exit {result.returncode}, {len(lines)}"
              f" findings, whole content compared")
        for line in lines:
            print("    " + line)
        found = {
            "setuid": any("planted-setuid: setuid" in l for l in lines),
            "writable": any("/var/drop: world-writable" in l for l in lines),
            "modified": any(victim + ": modified" in l for l in lines),
        }
        print(f"    planted problems found: {found}")

        argv, env = jailkitCheck(scratch)
        elapsed, result = timed(argv + ["-c", config], env=env or None,
                                runs=args.runs)
        output = (result.stdout + result.stderr).splitlines()
        print(f"jailkit jk_check -c INI:     {elapsed:.3f} s (best of"
              f" {args.runs}), exit {result.returncode}, {len(output)} lines"
              f" of output, one random 1 KiB block compared per file")
        for line in output[:12]:
            print("    " + line)
        print(f"    modified byte found by jailkit this run:"
              f" {any(victim in l for l in output)}")
    finally:
        shutil.rmtree(jail, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
