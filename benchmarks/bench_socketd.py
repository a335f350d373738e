#!/usr/bin/env python3
"""
Benchmark the jk_socketd relay: 100,000 datagrams of 100 bytes from one
blocking sender through a jail socket to a receiver bound at /dev/log,
with limits that do not bind; messages/s and the relay's peak RSS, then
peak RSS with 100 sockets.  jailkit's C jk_socketd runs on the same
workload in the same run (Debian's copy, or its package unpacked in a
scratch directory) and the ratio is printed.

Run as root:  python3 benchmarks/bench_socketd.py [--count N] [--venv DIR]
Everything happens in a private mount namespace (a tmpfs on /dev, a bind
mount on /etc/jailkit), so the host's /dev/log and /etc/jailkit are not
touched.
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import jailkit_package

SIZE = 100


def inNamespace():
    return os.environ.get("JAILTWIST_BENCH_NS") == "1"


def privateDev():
    """
    Give this namespace its own /dev with just what the relays need.
    """
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "benchdev",
                    "/dev"], check=True)
    for name, major, minor in (("null", 1, 3), ("zero", 1, 5),
                               ("urandom", 1, 9)):
        os.mknod(f"/dev/{name}", 0o20666, os.makedev(major, minor))


RECEIVER = r"""
import socket, sys, time
count = int(sys.argv[1])
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
sock.bind("/dev/log")
import os; os.chmod("/dev/log", 0o666)
print("ready", flush=True)
buf = bytearray(65536)
recv = sock.recv_into
got = 0
while got < count:
    if recv(buf) == SIZE:
        got += 1
print(time.monotonic(), flush=True)
""".replace("SIZE", str(SIZE))


def startReceiver(count):
    if os.path.exists("/dev/log"):
        os.unlink("/dev/log")
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, str(count)],
                                stdout=subprocess.PIPE, text=True)
    assert receiver.stdout.readline().strip() == "ready"
    return receiver


def waitForSocket(path, process):
    for _ in range(1000):
        if os.path.exists(path):
            return
        if process.poll() is not None:
            raise SystemExit(f"relay exited: {process.communicate()}")
        time.sleep(0.01)
    raise SystemExit(f"{path} never appeared")


def peakRss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def cpuSeconds(pid):
    """
    User plus system CPU time the process has used so far.
    """
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pump(jailSocket, count, receiver):
    message = b"<13>Nov 23 08:00:00 bench: " + b"x" * (SIZE - 27)
    assert len(message) == SIZE
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sender.connect(jailSocket)
    send = sender.send
    start = time.monotonic()
    for _ in range(count):
        send(message)
    end = float(receiver.stdout.readline())
    sender.close()
    return count / (end - start)


def runRelay(argv, jailSocket, count):
    receiver = startReceiver(count)
    relay = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        waitForSocket(jailSocket, relay)
        time.sleep(0.3)
        before = cpuSeconds(relay.pid)
        rate = pump(jailSocket, count, receiver)
        cpu = (cpuSeconds(relay.pid) - before) / count * 1e6
        rss = peakRss(relay.pid)
    finally:
        relay.terminate()
        relay.wait()
        receiver.kill()
        receiver.wait()
    return rate, rss, cpu


def writeIni(path, sockets, interval="1.0"):
    with open(path, "w") as f:
        for each in sockets:
            f.write(f"[{each}]\nbase = 1000000\npeak = 10000000\n"
                    f"interval = {interval}\n\n")


def manySockets(venv, root, number=100):
    sockets = []
    for i in range(number):
        os.makedirs(f"{root}/many/j{i:03d}/dev")
        sockets.append(f"{root}/many/j{i:03d}/dev/log")
    ini = f"{root}/many.ini"
    writeIni(ini, sockets)
    receiver = startReceiver(number * 100)
    relay = subprocess.Popen([f"{venv}/bin/jk_socketd", "-n", "--config",
                              ini], stdout=subprocess.DEVNULL)
    try:
        waitForSocket(sockets[-1], relay)
        time.sleep(0.2)
        message = b"<13>Nov 23 08:00:00 bench: " + b"y" * (SIZE - 27)
        for path in sockets:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.connect(path)
                for _ in range(100):
                    s.send(message)
        receiver.stdout.readline()
        return peakRss(relay.pid)
    finally:
        relay.terminate()
        relay.wait()
        receiver.kill()
        receiver.wait()


def jailkitRelay(scratch):
    """
    jailkit's C relay: Debian's, or unpacked from its package (never the
    jailtwist command on PATH).
    """
    return jailkit_package.cTool("jk_socketd", scratch)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--count", type=int, default=100000)
    parser.add_argument("--venv", default=os.environ.get(
        "JAILTWIST_VENV", "/opt/jailtwist"))
    parser.add_argument("--no-jailkit", action="store_true",
                        help="do not run jailkit's relay to compare")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (it binds /dev/log in a private "
                         "namespace and starts relays that confine "
                         "themselves)")
    if not inNamespace():
        env = dict(os.environ, JAILTWIST_BENCH_NS="1")
        os.execvpe("unshare", ["unshare", "--mount", "--propagation",
                               "private", sys.executable] + sys.argv, env)
    privateDev()
    root = tempfile.mkdtemp(prefix="jtbench", dir="/var/tmp")
    os.chmod(root, 0o755)
    try:
        os.makedirs(f"{root}/jail/dev")
        jailSocket = f"{root}/jail/dev/log"
        ini = f"{root}/jk_socketd.ini"
        writeIni(ini, [jailSocket])
        ours, oursRss, oursCpu = runRelay(
            [f"{args.venv}/bin/jk_socketd", "-n", "--config", ini],
            jailSocket, args.count)
        print(f"jailtwist jk_socketd: {ours:,.0f} msg/s, "
              f"{oursCpu:.2f} us CPU/msg, peak RSS {oursRss:.1f} MB "
              f"({args.count:,} x {SIZE} bytes)")
        if not args.no_jailkit:
            c = jailkitRelay(root)
            # jailkit reads /etc/jailkit/jk_socketd.ini and chroots there;
            # give it a private one (interval 0.01 s is its smallest, so
            # 1e6 bytes per 10 ms cannot bind).
            etc = f"{root}/etc-jailkit"
            os.makedirs(etc)
            writeIni(f"{etc}/jk_socketd.ini", [jailSocket], "0.01")
            subprocess.run(["mount", "--bind", etc, "/etc/jailkit"],
                           check=True)
            os.unlink(jailSocket)
            theirs, theirsRss, theirsCpu = runRelay([c, "-n"], jailSocket,
                                                    args.count)
            print(f"jailkit jk_socketd:   {theirs:,.0f} msg/s, "
                  f"{theirsCpu:.2f} us CPU/msg, peak RSS {theirsRss:.1f} MB")
            print(f"ratio jailtwist/jailkit: {ours / theirs:.2f}")
        rss = manySockets(args.venv, root)
        print(f"jailtwist jk_socketd with 100 sockets: peak RSS {rss:.1f} MB "
              f"(target < 40 MB)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
