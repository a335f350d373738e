"""
Login start-up through the root login service, against the user-namespace
path and jailkit's setuid C tools, in one run with the contenders taking
turns: the installed jk_chrootsh run as an unprivileged account whose jail
passwd shell is jk_lsh, from exec until the allowed program (a static
busybox C{true} in the jail) has run and the login command has exited.

    tests/isolated /opt/jailtwist/bin/python benchmarks/bench_login_service.py

The service path needs a login command that cannot make a user namespace.
So as not to touch the machine-wide sysctl, it runs under
C{tests/nouserns.py} (a user namespace mapping every id to itself, whose
C{user.max_user_namespaces} is 0); the same wrapper around a bare
C{busybox true} is measured too, and its extra cost over the direct run
is taken off the service figure ("net").  The suite (C{twistd jailtwist},
control channel and login service only) runs in this namespace meanwhile.
The service's CPU time per login (user + system of the daemon and its
children) is printed beside the rate.
"""

import os
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_login_start import (BIN, CUSER, USER, asUser, buildLoginJail,
                               isolatedScratch, jailkit)

RUNS = int(os.environ.get("RUNS", "40"))
HERE = os.path.dirname(os.path.abspath(__file__))
NOUSERNS = os.path.join(os.path.dirname(HERE), "tests", "nouserns.py")
SOCKET = "/run/jailtwist/login.sock"


def once(command):
    start = time.perf_counter()
    result = subprocess.run(command, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, cwd="/")
    elapsed = (time.perf_counter() - start) * 1000
    if result.returncode:
        raise SystemExit(f"{command} failed ({result.returncode}): "
                         f"{result.stderr.decode().strip()}")
    return elapsed


def cpu(pid):
    """
    User + system seconds of process C{pid} and its reaped children.
    """
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    ticks = sum(int(f) for f in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def startSuite(directory):
    ini = os.path.join(directory, "jailtwist.ini")
    with open(ini, "w") as f:
        f.write(f"[control]\nipc = unix:{directory}/ctl:mode=600\n"
                f"[probes]\nenabled = no\n"
                f"[login]\nendpoint = unix:{SOCKET}:mode=0666\n")
    process = subprocess.Popen(
        [os.path.join(BIN, "twistd"), "-n", "--pidfile=", "--logfile",
         os.path.join(directory, "twistd.log"), "jailtwist", "--config",
         ini])
    import socket
    for _ in range(500):
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(SOCKET)
            s.close()
            return process
        except OSError:
            time.sleep(0.02)
    raise SystemExit("the login service did not start")


def main():
    parent = isolatedScratch()
    jail = os.path.join(parent, "jail")
    suite = None
    try:
        cjk = None if "--no-jailkit" in sys.argv else jailkit()
        buildLoginJail(jail, os.path.join(BIN, "jk_chrootsh"), cjk)
        suite = startSuite(parent)
        login = [os.path.join(BIN, "jk_chrootsh"), "-c", "busybox true"]
        wrap = [sys.executable, NOUSERNS]
        rows = {
            "direct": ("busybox true, run directly as the account",
                       asUser(["/bin/busybox", "true"])),
            "wrapped": ("busybox true as the account under nouserns.py",
                        wrap + asUser(["/bin/busybox", "true"])),
            "userns": ("jk_chrootsh, user namespace path",
                       asUser(login)),
            "service": ("jk_chrootsh through the login service (gross)",
                        wrap + asUser(login)),
        }
        if cjk:
            rows["jailkit"] = ("jailkit's setuid C jk_chrootsh + jk_lsh",
                               asUser([cjk, "-c", "busybox true"], CUSER))
        samples = {key: [] for key in rows}
        serviceCpu = 0.0
        for _ in range(RUNS):
            for key, (_, command) in rows.items():
                before = cpu(suite.pid) if key == "service" else 0
                samples[key].append(once(command))
                if key == "service":
                    serviceCpu += cpu(suite.pid) - before
        print(f"login start-up, {RUNS} runs each, contenders in turn, ms "
              f"(median / min):")
        for key, (label, _) in rows.items():
            print(f"  {statistics.median(samples[key]):7.1f} / "
                  f"{min(samples[key]):6.1f}  {label}")
        overhead = statistics.median(samples["wrapped"]) - \
            statistics.median(samples["direct"])
        net = statistics.median(samples["service"]) - overhead
        print(f"  {net:7.1f}          jk_chrootsh through the login service "
              f"(net of the wrapper's {overhead:.1f} ms)")
        print(f"login service CPU (daemon + its children) per login: "
              f"{serviceCpu / RUNS * 1000:.1f} ms")
    finally:
        if suite is not None:
            suite.terminate()
            suite.wait(10)
        for user in (USER, CUSER):
            subprocess.run(["userdel", "-f", user], capture_output=True)
        shutil.rmtree(parent, True)


if __name__ == "__main__":
    main()
