#!/usr/bin/env python3
"""
Connections per second through jailtwist's skd and through tcpserver
(Debian's ucspi-tcp, the C reference) in the same run, with a trivial
handler (`true`: the connection closes as soon as the child exits; `cat`:
the client half-closes and reads the echo).

Both servers listen on 127.0.0.1 with the same backlog (64) and the same
concurrency limit (-c 200, far above what the clients reach); tcpserver runs
with -H -R -l 0 so it does no DNS or ident lookups (skd does none).  Several
client processes connect in a loop for a fixed time; the servers take turns
(skd, tcpserver, skd, ...) and the best of the rounds is reported for each, with
the ratio skd/tcpserver.  Each run also prints the CPU time the server process
itself used per connection (its children not counted), which is less noisy
than the rate on a shared machine.

tcpserver is not a dependency of jailtwist: when it is missing, this script
installs `ucspi-tcp` with apt-get.

Run as root:  python3 benchmarks/bench_skd.py [--seconds S] [--rounds N]
              [--clients N] [--handler true|cat|both]
It uses the installed skd next to the interpreter running it, else the one on
PATH.
"""

import argparse
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import time


def findSkd():
    here = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "skd")
    if os.access(here, os.X_OK):
        return here
    found = shutil.which("skd")
    if found is None:
        sys.exit("bench_skd: no skd installed (run ./bootstrap.sh install)")
    return found


def ensureTcpserver():
    if shutil.which("tcpserver") is None:
        print("installing ucspi-tcp (tcpserver) with apt-get for the comparison")
        subprocess.run(["apt-get", "install", "-y", "-q", "ucspi-tcp"],
                       check=True, stdout=subprocess.DEVNULL,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    return shutil.which("tcpserver")


def freePort():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def waitListening(port, process, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("server did not start listening")


def clientLoop(port, seconds, echo, start, results):
    """
    Connect, (send and half-close for cat), read to EOF, close; repeat.
    """
    payload = b"ping\n"
    count = failures = 0
    start.wait()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            if echo:
                s.sendall(payload)
                s.shutdown(socket.SHUT_WR)
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            s.close()
            if echo and data != payload:
                failures += 1
            else:
                count += 1
        except OSError:
            failures += 1
    results.put((count, failures))


def serverCpu(pid):
    """
    CPU seconds (user + system) the server process itself has used, not
    counting its children.
    """
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(command, port, handler, seconds, clients):
    process = subprocess.Popen(command + [shutil.which(handler)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        waitListening(port, process)
        time.sleep(0.2)
        start = multiprocessing.Event()
        results = multiprocessing.Queue()
        workers = [multiprocessing.Process(
            target=clientLoop,
            args=(port, seconds, handler == "cat", start, results))
            for _ in range(clients)]
        for w in workers:
            w.start()
        began = time.monotonic()
        start.set()
        totals = [results.get() for _ in workers]
        elapsed = time.monotonic() - began
        for w in workers:
            w.join()
        cpu = serverCpu(process.pid)
    finally:
        process.terminate()
        process.wait()
        # Let the handlers of the last connections finish.
        time.sleep(0.3)
    done = sum(t[0] for t in totals)
    failed = sum(t[1] for t in totals)
    return done / elapsed, failed, cpu / max(done, 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--handler", choices=("true", "cat", "both"),
                        default="both")
    args = parser.parse_args()
    skd = findSkd()
    tcpserver = ensureTcpserver()
    handlers = ("true", "cat") if args.handler == "both" else (args.handler,)
    print(f"skd: {skd}\ntcpserver: {tcpserver}\n"
          f"{args.clients} clients, {args.seconds:g} s per run, "
          f"{args.rounds} rounds, best of the rounds reported; "
          f"{os.cpu_count()} CPUs")
    for handler in handlers:
        best = {"skd": 0.0, "tcpserver": 0.0}
        for round in range(args.rounds):
            for name in ("skd", "tcpserver"):
                port = freePort()
                if name == "skd":
                    command = [skd, "-b", "64", "-c", "200",
                               "-t", f"127.0.0.1:{port}"]
                else:
                    command = [tcpserver, "-q", "-H", "-R", "-l", "0",
                               "-b", "64", "-c", "200", "127.0.0.1",
                               str(port)]
                rate, failed, cpu = measure(command, port, handler,
                                            args.seconds, args.clients)
                note = f" ({failed} failed)" if failed else ""
                print(f"  {handler:4} round {round + 1} {name:9} "
                      f"{rate:8.1f} conn/s, server CPU "
                      f"{cpu * 1e6:6.0f} us/conn{note}")
                best[name] = max(best[name], rate)
        ratio = best["skd"] / best["tcpserver"] if best["tcpserver"] else 0
        print(f"{handler}: skd {best['skd']:.0f} conn/s, tcpserver "
              f"{best['tcpserver']:.0f} conn/s, ratio skd/tcpserver "
              f"{ratio:.2f}")


if __name__ == "__main__":
    main()
