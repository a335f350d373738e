#!/usr/bin/env python3
"""
Time starting a program in a jail: jailkit's C jk_chrootlaunch against
jailtwist's jk_chrootlaunch plain (jailkit's behaviour) and with each level
of isolation, in the same run, on the same static-busybox jail running
C{busybox true}; plus L{jailtwist.enter.launch} called in-process, which
separates the cost of the isolation from the cost of starting Python.

jailkit is not a dependency: when its C jk_chrootlaunch is not installed,
the package is fetched with `apt-get download` and unpacked in a scratch
directory (nothing is installed on the machine).  Network isolation is
measured inside a network namespace this script creates and deletes.

Run as root:  python3 benchmarks/bench_launch.py [--runs N]
(best under tests/isolated, which keeps /run/jailtwist private).  It uses the
jk_chrootlaunch and jailtwist package next to the interpreter running it.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import jailkit_package
from busybox_jail import buildJail


def jailkitLaunch(scratch):
    return jailkit_package.cTool("jk_chrootlaunch", scratch)


def median(function, runs):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def command(argv):
    def run():
        result = subprocess.run(argv, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        if result.returncode != 0:
            sys.exit(f"{' '.join(argv)} failed: {result.stderr.decode()}")
    return run


def inProcess(jail, isolation):
    from jailtwist import enter

    def run():
        pid = os.fork()
        if pid == 0:
            try:
                os._exit(enter.launch(enter.LaunchSpec(
                    jail, "/bin/busybox", ["busybox", "true"],
                    isolation=isolation)))
            except BaseException:
                os._exit(1)
        _, raw = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(raw) != 0:
            sys.exit("in-process launch failed")
    return run


def initMemory(base, state):
    """
    Launch a daemon in an isolated jail and read its init's memory.
    """
    pidfile = os.path.join(state, "bench.pid")
    command(base + ["--isolate", "-p", pidfile, "-x", "/bin/busybox", "--",
                    "httpd", "-p", "8080", "-h", "/"])()
    with open(pidfile) as f:
        pid = int(f.read())
    try:
        with open(f"/proc/{pid}/status") as f:
            status = dict(line.split(":", 1) for line in f)
        return [(f"jail init {name}", int(status[name].split()[0]))
                for name in ("VmRSS", "RssAnon")]
    finally:
        os.kill(pid, 9)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    runs = parser.parse_args().runs
    if os.geteuid() != 0:
        sys.exit("run as root")
    from jailtwist import enter
    ours = os.path.join(os.path.dirname(sys.executable), "jk_chrootlaunch")
    if not os.path.exists(ours):
        sys.exit("jk_chrootlaunch is not installed next to this Python: "
                 "run ./bootstrap.sh install")
    parent = tempfile.mkdtemp(prefix="jtbench", dir="/srv"
                              if os.path.isdir("/srv") else "/var/tmp")
    os.chmod(parent, 0o755)
    scratch = tempfile.mkdtemp(prefix="jtbench-jailkit")
    netns = f"jtbench{os.getpid()}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        jail = buildJail(parent)
        state = os.path.join(scratch, "state")
        base = [ours, "--state-dir", state, "--plain", "-j", jail]
        tail = ["-x", "/bin/busybox", "--", "true"]
        rows = [
            ("jailkit jk_chrootlaunch (C)",
             command([jailkitLaunch(scratch), "-j", jail, "-x",
                      "/bin/busybox", "--", "true"])),
            ("jailtwist, plain chroot", command(base + tail)),
            ("jailtwist, --caps default --no-new-privs",
             command(base + ["--caps", "default", "--no-new-privs"] + tail)),
            ("jailtwist, --pid --fs", command(base + ["--pid", "--fs"] + tail)),
            ("jailtwist, --isolate (net none)",
             command(base + ["--isolate"] + tail)),
            ("jailtwist, --isolate --net ADDRESS (veth)",
             command(["ip", "netns", "exec", netns] + base +
                     ["--isolate", "--net", "192.0.2.2", "--host-address",
                      "192.0.2.1"] + tail)),
            ("enter.launch in-process, plain",
             inProcess(jail, enter.Isolation())),
            ("enter.launch in-process, isolate (net none)",
             inProcess(jail, enter.Isolation(
                 capabilities=enter.DEFAULT_CEILING, noNewPrivs=True,
                 pid=True, ipc=True, uts=True, hostname="bench",
                 network="none", filesystem=True))),
        ]
        print(f"median of {runs} launches of 'busybox true' in a jail:")
        for label, function in rows:
            print(f"  {label:46s} {median(function, runs):8.1f} ms")
        print("memory of a running jail (busybox httpd, --isolate):")
        for label, kilobytes in initMemory(base, state):
            print(f"  {label:46s} {kilobytes:8d} kB")
    finally:
        subprocess.run(["ip", "netns", "delete", netns])
        shutil.rmtree(parent, True)
        shutil.rmtree(scratch, True)


if __name__ == "__main__":
    main()
