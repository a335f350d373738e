#!/usr/bin/env python3
"""
Memory and speed of jaildaemon probes: a real C{jaildaemon -D} plants N
probes (100 by default) in a namespaced jail (C{jk_chrootlaunch --isolate});
the script then reads each probe's PSS from C{/proc/PID/smaps_rollup}, times
the planting, and times HUP -> host command finished through the event
stream.  For comparison it measures the PSS of the same number of idle
Python interpreters (what a probe per interpreter would cost).  Target:
under 5 MB of PSS per probe.

Run as root:  tests/isolated python3 benchmarks/bench_probes.py [--probes N]
with the interpreter of the installed package (it runs the jaildaemon,
jailtwist and jk_chrootlaunch next to it).
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from busybox_jail import buildJail

BIN = os.path.dirname(os.path.abspath(sys.executable))


def pss(pid):
    """
    @return: the PSS of C{pid} in kB.
    """
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    raise RuntimeError(f"no Pss in /proc/{pid}/smaps_rollup")


def waitFor(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise RuntimeError("timed out")


def run(*args):
    result = subprocess.run(args, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"{args[0]}: {result.stderr.strip()}")
    return result.stdout


def attachAll(socket, count):
    """
    Attach C{count} probes over one control connection; return the seconds
    it took.
    """
    from twisted.internet.task import react

    from jailtwist.control import AttachProbe
    from jailtwist.tools.client import connect
    took = []

    async def main(reactor):
        client = await connect(reactor, socket)
        started = time.perf_counter()
        for n in range(count):
            await client.callRemote(AttachProbe, jail="benchjail",
                                    command="true", respawn="after",
                                    title=f"BENCH_PROBE_{n:03d}")
        took.append(time.perf_counter() - started)
        client.transport.loseConnection()

    from twisted.internet.defer import Deferred
    try:
        react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
    except SystemExit as e:
        if e.code:
            raise
    return took[0]


def hupLatency(socket, probes, rounds):
    """
    HUP probes one at a time; return the seconds from each kill() to the
    daemon's command-finished event for it.
    """
    events = subprocess.Popen(
        [os.path.join(BIN, "jailtwist"), "-f", socket, "events", "--json",
         "--kind", "command-finished", "--kind", "probe-planted"],
        stdout=subprocess.PIPE, text=True, bufsize=1)
    time.sleep(1.0)
    times = []
    try:
        for n in range(rounds):
            probe = probes[n % len(probes)]
            started = time.perf_counter()
            os.kill(probe["pid"], signal.SIGHUP)
            while True:
                event = json.loads(events.stdout.readline())
                if event["kind"] == "command-finished" and \
                        event["probe"] == probe["probe"]:
                    times.append(time.perf_counter() - started)
                    break
            while True:
                event = json.loads(events.stdout.readline())
                if event["kind"] == "probe-planted" and \
                        event["probe"] == probe["probe"]:
                    probe["pid"] = event["pid"]
                    break
    finally:
        events.terminate()
        events.wait()
    return times


def pythonInterpreters(count):
    """
    @return: the PSS (kB) of C{count} idle Python interpreters, each.
    """
    processes = [subprocess.Popen([sys.executable, "-S", "-c",
                                   "import time; time.sleep(60)"])
                 for _ in range(count)]
    try:
        time.sleep(1.0)
        return [pss(p.pid) for p in processes]
    finally:
        for p in processes:
            p.kill()
            p.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probes", type=int, default=100)
    parser.add_argument("--hups", type=int, default=20)
    options = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_probes: run as root")
    scratch = tempfile.mkdtemp(prefix="jtb", dir="/tmp")
    os.chmod(scratch, 0o755)
    socket = os.path.join(scratch, "ctl")
    pidfile = os.path.join(scratch, "pid")
    jailPid = os.path.join(scratch, "jail.pid")
    state = os.path.join(scratch, "state")
    jail = buildJail(scratch)
    launcher = daemon = None
    try:
        launcher = subprocess.Popen(
            [os.path.join(BIN, "jk_chrootlaunch"), "--state-dir", state,
             "-j", jail, "--isolate", "--name", "benchjail", "-p", jailPid,
             "-x", "/bin/busybox", "--", "sleep", "3600"],
            stderr=subprocess.DEVNULL)
        waitFor(lambda: os.path.exists(jailPid))
        config = os.path.join(scratch, "jailtwist.ini")
        with open(config, "w") as f:
            f.write(f"[probes]\nregistry = {state}\nburst = 1000\n"
                    f"max_probes = {options.probes + 10}\n")
        run(os.path.join(BIN, "jaildaemon"), "-D", "-p", pidfile, "-f",
            socket, "-l", os.path.join(scratch, "log"), "--config", config)
        waitFor(lambda: os.path.exists(socket) and os.path.exists(pidfile))
        daemon = int(open(pidfile).read())
        daemonBefore = pss(daemon)

        seconds = attachAll(socket, options.probes)
        probes = [json.loads(line) for line in run(
            os.path.join(BIN, "jailtwist"), "-f", socket, "probes",
            "--json").splitlines()]
        sizes = [pss(p["pid"]) for p in probes]
        daemonAfter = pss(daemon)
        latencies = hupLatency(socket, probes, options.hups)
        interpreters = pythonInterpreters(min(10, options.probes))

        total = sum(sizes)
        print(f"jaildaemon probes in a namespaced jail (pid, mount, ipc, "
              f"uts, net namespaces), {len(sizes)} probes:")
        print(f"  planting:            {seconds:.2f} s for {len(sizes)} "
              f"({seconds / len(sizes) * 1000:.1f} ms each, over one AMP "
              f"connection)")
        print(f"  probe PSS:           {total} kB in all, "
              f"{total / len(sizes):.1f} kB each (min {min(sizes)}, max "
              f"{max(sizes)}); target < 5120 kB each")
        print(f"  daemon PSS:          {daemonBefore} kB before, "
              f"{daemonAfter} kB with the probes")
        latencies.sort()
        print(f"  HUP -> command done: median "
              f"{latencies[len(latencies) // 2] * 1000:.1f} ms, max "
              f"{latencies[-1] * 1000:.1f} ms over {len(latencies)} HUPs "
              f"(command 'true', respawn -r)")
        print(f"  for comparison, an idle Python interpreter "
              f"({sys.executable} -S): {sum(interpreters) / len(interpreters):.0f}"
              f" kB PSS each ({len(interpreters)} running)")
    finally:
        if daemon is not None:
            try:
                os.kill(daemon, signal.SIGTERM)
            except ProcessLookupError:
                pass
        if launcher is not None:
            if os.path.exists(jailPid):
                try:
                    os.kill(int(open(jailPid).read()), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            launcher.wait()
        time.sleep(0.5)
        shutil.rmtree(scratch, True)


if __name__ == "__main__":
    main()
