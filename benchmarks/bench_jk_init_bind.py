#!/usr/bin/env python3
"""
Time jk_init --bind against jailtwist's copying jk_init and jailkit's
jk_init, in the same run, on the hosting-panel set; compare build time, CPU
and disk use (du of the jail).

The set is the jail a hosting panel builds for every account: basicshell
jk_lsh sftp scp rsync extendedshell netutils git ssh.  The three contenders
run alternately, each building a fresh jail every time; the first round is
a warm-up (page cache).  CPU is the user+system time of the command (its
children included), from getrusage.

It also measures what phase B will pay at every login: making the bind
jail's mounts (each a read-only, nosuid, nodev bind) in a fresh private
mount namespace, in a child process, with libc's mount(2) through ctypes.
No jailtwist code mounts anything yet; this only sizes the cost.

The benchmark re-runs itself in the private mount namespace of
tests/isolated, so the machine is not changed (see bench_jk_init.py).

Run as root:  python3 benchmarks/bench_jk_init_bind.py [--runs N]
It uses the jk_init installed next to the interpreter running it.
Targets (issue 12): --bind builds in under 0.2 s and uses under 1 MB.
"""

import argparse
import ctypes
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import bench_jk_init

HERE = os.path.dirname(os.path.abspath(__file__))
SET = bench_jk_init.BIG

_MS_RDONLY, _MS_NOSUID, _MS_NODEV = 1, 2, 4
_MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 32, 4096, 16384, 1 << 18
_CLONE_NEWNS = 0x00020000


def build(argv, config, jail, env=None, extra=()):
    """
    Build a fresh jail.

    @return: C{(wall seconds, cpu seconds)}.
    """
    shutil.rmtree(jail, ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(argv + ["-c", config, *extra, "-j", jail] + SET,
                            capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({result.returncode}):\n"
                 f"{result.stdout}{result.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + \
        (after.ru_stime - before.ru_stime)
    return wall, cpu


def du(jail):
    """
    @return: the disk use of C{jail} in kilobytes, as C{du -sk} says.
    """
    out = subprocess.run(["du", "-sk", jail], capture_output=True,
                         text=True, check=True).stdout
    return int(out.split()[0])


def mountCost(jail, rounds):
    """
    Time making the bind jail's mounts in a fresh mount namespace (in a
    child, which exits afterwards, so they vanish with it).

    @return: C{(mounts, [seconds per round])}.
    """
    from jailtwist.bindlist import loadPlan
    from jailtwist.jail import Jail
    plan, _ = loadPlan(Jail(jail))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p,
                           ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
    times = []
    for _ in range(rounds):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            status = 0
            try:
                if libc.unshare(_CLONE_NEWNS) != 0 or libc.mount(
                        b"none", b"/", None, _MS_REC | _MS_PRIVATE,
                        None) != 0:
                    raise OSError(ctypes.get_errno(), "unshare")
                start = time.perf_counter()
                for mount in plan:
                    target = (jail + mount.target).encode()
                    flags = _MS_BIND
                    if libc.mount(mount.source.encode(), target, None,
                                  flags, None) != 0 or libc.mount(
                            None, target, None, flags | _MS_REMOUNT
                            | _MS_RDONLY | _MS_NOSUID | _MS_NODEV,
                            None) != 0:
                        raise OSError(ctypes.get_errno(), mount.target)
                os.write(write, repr(time.perf_counter() - start).encode())
            except BaseException as e:
                os.write(write, f"error {e}".encode())
                status = 1
            finally:
                os._exit(status)
        os.close(write)
        answer = os.read(read, 200).decode()
        os.close(read)
        os.waitpid(pid, 0)
        if answer.startswith("error"):
            sys.exit(f"mounting the plan failed: {answer}")
        times.append(float(answer))
    return len(plan), times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--runs", type=int, default=5,
                        help="timed rounds (default 5)")
    args = parser.parse_args()
    scratch, base = bench_jk_init.isolate()
    try:
        theirArgv, theirEnv, theirConfig = bench_jk_init.jailkit(scratch)
        mine, config = bench_jk_init.ours(), bench_jk_init.oursConfig()
        contenders = [
            ("jailtwist jk_init --bind", mine, config, None, ["--bind"]),
            ("jailtwist jk_init (copy)", mine, config, None, []),
            ("jailkit   jk_init", theirArgv, theirConfig, theirEnv, []),
        ]
        print(f"set: {' '.join(SET)}")
        results = {name: ([], []) for name, *_ in contenders}
        sizes = {}
        for round_ in range(args.runs + 1):
            for name, argv, conf, env, extra in contenders:
                jail = os.path.join(base, name.split()[-1].strip("-"))
                wall, cpu = build(argv, conf, jail, env, extra)
                if round_ == 0:
                    sizes[name] = du(jail)
                    continue
                results[name][0].append(wall)
                results[name][1].append(cpu)
        for name, (walls, cpus) in results.items():
            print(f"  {name}: median {statistics.median(walls):.3f} s wall, "
                  f"{statistics.median(cpus):.3f} s CPU, best "
                  f"{min(walls):.3f} s over {args.runs} runs; du "
                  f"{sizes[name]} KB")
        bindJail = os.path.join(base, "bind")
        build(mine, config, bindJail, None, ["--bind"])
        with open(os.path.join(bindJail, "etc/jailkit/bind.list")) as f:
            entries = sum(1 for line in f if line.startswith("/"))
        # /mnt is a tmpfs, where an empty file takes no block: measure
        # one bind jail on the disk as well (its directories take blocks).
        disk = tempfile.mkdtemp(prefix="jt-bench-", dir="/srv")
        try:
            os.chmod(disk, 0o755)
            build(mine, config, os.path.join(disk, "bind"), None, ["--bind"])
            onDisk = du(os.path.join(disk, "bind"))
        finally:
            shutil.rmtree(disk, ignore_errors=True)
        print(f"  jailtwist jk_init --bind on the disk (/srv): du "
              f"{onDisk} KB")
        mounts, times = mountCost(bindJail, args.runs)
        print(f"  bind list: {entries} entries, {mounts} mounts after "
              f"dropping covered children")
        print(f"  making those mounts (bind + read-only remount) in a fresh "
              f"mount namespace: median {statistics.median(times) * 1e3:.1f}"
              f" ms, best {min(times) * 1e3:.1f} ms over {len(times)} runs")
        wall = statistics.median(results[contenders[0][0]][0])
        size = max(sizes[contenders[0][0]], onDisk)
        print(f"\ntargets: --bind under 0.2 s: "
              f"{'met' if wall < 0.2 else 'NOT met'} ({wall:.3f} s); under "
              f"1 MB: {'met' if size < 1024 else 'NOT met'} ({size} KB)")
    finally:
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
