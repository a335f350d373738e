#!/usr/bin/env python3
"""
Benchmark the jk_socketd relay under contention, in the shape users have:
a separate Python process sends 100-byte datagrams into a jail's log socket
with one blocking send each (like syslog(3) clients); a separate Python
sink process counts them on a socket bind-mounted over /dev/log; the relay
sits between them.  Three busy processes share the machine's cores, so
the relay's CPU per message matters as much as its rate.

jailtwist's jk_socketd and jailkit's C jk_socketd (Debian's copy, or its
package unpacked in a scratch directory; never a dependency) run
alternately in the same run, several rounds, with limits that do not bind.
Each round prints messages/s and the relay's CPU time per message (user +
system, from /proc/PID/task/*/schedstat, every thread of the relay); the
summary gives medians and the ratio.  Then the peak RSS of one jailtwist
relay with 100 sockets.

A relay also changes what the sender and the sink cost: each time a kernel
queue (11 datagrams) runs full or empty, one of them sleeps and is woken.
So each round also prints the CPU per message of the whole pipeline
(sender + relay + sink, each measured by itself over its own timed part)
and the sleeps (voluntary context switches) of each process per 1000
messages.  On shared cores the pipeline's CPU decides the rate.  With
--direct, the sender sends straight to the sink with no relay: the upper
bound of any relay on this machine, in the same run.

With --metrics, a third contender is jailtwist's relay serving Prometheus
metrics (--metrics tcp:PORT) while a separate process scrapes them every
--scrape-every seconds: what metrics cost the relay's per-datagram path.

Run as root:  python3 benchmarks/bench_socketd.py [--count N] [--rounds N]
              [--venv DIR] [--metrics [--scrape-every S]]
Everything happens in a private mount namespace (a tmpfs on /dev, a bind
mount on /etc/jailkit), so the host's /dev/log and /etc/jailkit are not
touched.
"""

import argparse
import inspect
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import jailkit_package

SIZE = 100
# Sender sleeps per 1000 messages above which a round is a ping-pong one.
PING_PONG_SLEEPS = 250


def inNamespace():
    return os.environ.get("JAILTWIST_BENCH_NS") == "1"


def privateDev():
    """
    Give this namespace its own /dev with just what the relays need, and
    an empty /dev/log for the sink's socket to be bind-mounted over.
    """
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "benchdev",
                    "/dev"], check=True)
    for name, major, minor in (("null", 1, 3), ("zero", 1, 5),
                               ("urandom", 1, 9)):
        os.mknod(f"/dev/{name}", 0o20666, os.makedev(major, minor))
    open("/dev/log", "w").close()


def usage(pid="self"):
    """
    @return: CPU nanoseconds, voluntary and involuntary context switches of
        every thread of C{pid} so far (the sender and the sink run this
        too, on themselves).
    """
    cpu = sleeps = preempted = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                cpu += int(f.read().split()[0])
            with open(f"/proc/{pid}/task/{task}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        sleeps += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches"):
                        preempted += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return cpu, sleeps, preempted


# The sender and the sink measure themselves with the same function.
USAGE = "import os\n" + inspect.getsource(usage)

# The sink: bind a socket in the scratch directory, bind-mount it over
# /dev/log (what the relays connect to), wait for one priming datagram (the
# proof that a relay is reading and forwarding), then count datagrams, and
# print the time the last one arrived and what the counting cost it.
SINK = USAGE + r"""
import os, socket, subprocess, sys, time
count, path = int(sys.argv[1]), sys.argv[2]
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(path)
os.chmod(path, 0o666)
subprocess.run(["mount", "--bind", path, "/dev/log"], check=True)
print("ready", flush=True)
buf = bytearray(65536)
recv = sock.recv_into
recv(buf)
print("primed", flush=True)
got = 0
before = usage()
while got < count:
    if recv(buf):
        got += 1
end = time.monotonic()
print(end, *(b - a for a, b in zip(before, usage())), flush=True)
sys.stdin.read()
subprocess.run(["umount", "/dev/log"])
"""

# The sender: one blocking send per datagram, its start time and what the
# sending cost it printed once it is done.
SENDER = USAGE + r"""
import socket, sys, time
count, path, size = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
message = b"<13>Nov 23 08:00:00 bench: " + b"x" * (size - 27)
sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sender.connect(path)
send = sender.send
before = usage()
start = time.monotonic()
for _ in range(count):
    send(message)
print(start, *(b - a for a, b in zip(before, usage())), flush=True)
"""


def startSink(count, scratch):
    path = os.path.join(scratch, "sink.sock")
    if os.path.exists(path):
        os.unlink(path)
    sink = subprocess.Popen([sys.executable, "-c", SINK, str(count), path],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert sink.stdout.readline().strip() == "ready"
    return sink


def stopSink(sink):
    try:
        sink.stdin.close()
        sink.wait(10)
    except subprocess.TimeoutExpired:
        sink.kill()
        sink.wait()


def prime(path, process, sink):
    """
    Wait until a relay forwards: send one datagram into C{path} until a
    send succeeds (the socket is bound), then wait for the sink to have it.
    A socket file that exists proves nothing: it appears at C{bind}, before
    the relay reads, and under load that gap is long.
    """
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        for _ in range(3000):
            if process is not None and process.poll() is not None:
                raise SystemExit(f"relay exited with {process.returncode}")
            try:
                probe.sendto(b"<13>bench: prime", path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                time.sleep(0.01)
        else:
            raise SystemExit(f"nothing bound at {path} after 30 s")
    finally:
        probe.close()
    line = sink.stdout.readline().strip()
    if line != "primed":
        raise SystemExit(f"the sink did not get the priming datagram: {line!r}")


def peakRss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


# Scrapes http://127.0.0.1:PORT/metrics every S seconds until killed;
# prints how many scrapes it made.
SCRAPER = r"""
import signal, sys, time, urllib.request
port, every = int(sys.argv[1]), float(sys.argv[2])
done = 0
signal.signal(signal.SIGTERM, lambda *a: sys.exit(print(done, flush=True)))
while True:
    urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read()
    done += 1
    time.sleep(every)
"""


@dataclass
class Round:
    """
    One timed run: its rate, and per message the CPU microseconds and
    sleeps (voluntary context switches, per 1000 messages) of each process.
    """

    rate: float
    relayCpu: float = 0.0
    relaySleeps: float = 0.0
    senderCpu: float = 0.0
    senderSleeps: float = 0.0
    sinkCpu: float = 0.0
    sinkSleeps: float = 0.0
    rss: float = 0.0

    @property
    def pipelineCpu(self):
        return self.senderCpu + self.relayCpu + self.sinkCpu

    @property
    def pingPong(self):
        """
        Whether this round fell into the per-message hand-off: the sender
        slept at least once every 4 messages (a batching pipeline sleeps
        about once per kernel queue, 11 messages), so nearly every datagram
        cost a cross-CPU wake-up.  Relays that move one datagram per system
        call fall into it on some rounds and not others.
        """
        return self.senderSleeps > PING_PONG_SLEEPS


def runRelay(argv, jailSocket, count, scratch, scrape=None):
    """
    One timed run.

    @param argv: the relay's command line, or C{None} for no relay: the
        sender sends straight to the sink.
    @param scrape: C{(port, seconds)}: scrape the relay's metrics on
        C{port} this often while it runs.
    @return: a L{Round}.
    """
    sink = startSink(count, scratch)
    relay = scraper = None
    target = os.path.join(scratch, "sink.sock")
    try:
        if argv is not None:
            relay = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL,
                                     start_new_session=True)
            target = jailSocket
        prime(target, relay, sink)
        if relay is not None:
            if scrape is not None:
                scraper = subprocess.Popen(
                    [sys.executable, "-c", SCRAPER, str(scrape[0]),
                     str(scrape[1])], stdout=subprocess.PIPE, text=True)
            before = usage(relay.pid)
        sender = subprocess.Popen(
            [sys.executable, "-c", SENDER, str(count), target, str(SIZE)],
            stdout=subprocess.PIPE, text=True)
        end, sinkCpu, sinkSleeps, _ = map(float,
                                          sink.stdout.readline().split())
        result = Round(0.0, sinkCpu=sinkCpu / count / 1e3,
                       sinkSleeps=sinkSleeps / count * 1e3)
        if relay is not None:
            cpu, sleeps, _ = (b - a for a, b in zip(before,
                                                    usage(relay.pid)))
            result.relayCpu = cpu / count / 1e3
            result.relaySleeps = sleeps / count * 1e3
        start, cpu, sleeps, _ = map(float, sender.stdout.readline().split())
        sender.wait()
        result.rate = count / (end - start)
        result.senderCpu = cpu / count / 1e3
        result.senderSleeps = sleeps / count * 1e3
        if relay is not None:
            result.rss = peakRss(relay.pid)
    finally:
        if scraper is not None:
            scraper.terminate()
            scrapes = scraper.communicate()[0].strip() or "0"
            print(f"       (scraped {scrapes} times during the run)")
        if relay is not None:
            stopRelay(relay)
        stopSink(sink)
    return result


def stopRelay(relay):
    # SIGINT stops both relays, and makes a profiler wrapper write out.
    relay.send_signal(signal.SIGINT)
    try:
        relay.wait(30)
    except subprocess.TimeoutExpired:
        relay.kill()
        relay.wait()
    # A profiler wrapper may leave the relay behind: its session goes.
    try:
        os.killpg(relay.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def freePort():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def writeIni(path, sockets, interval="1.0", base=10 ** 9, peak=10 ** 9):
    with open(path, "w") as f:
        for each in sockets:
            f.write(f"[{each}]\nbase = {base}\npeak = {peak}\n"
                    f"interval = {interval}\n\n")


def manySockets(venv, root, number=100, each=100):
    """
    @return: the peak RSS of one relay serving C{number} sockets, after
        C{each} datagrams went through each of them.
    """
    sockets = []
    for i in range(number):
        os.makedirs(f"{root}/many/j{i:03d}/dev")
        sockets.append(f"{root}/many/j{i:03d}/dev/log")
    ini = f"{root}/many.ini"
    writeIni(ini, sockets)
    sink = startSink(number * each, root)
    relay = subprocess.Popen([f"{venv}/bin/jk_socketd", "-n", "--config",
                              ini], stdout=subprocess.DEVNULL)
    try:
        # All sockets are bound before any is read: one forwarding proves
        # they all are.
        prime(sockets[-1], relay, sink)
        senders = [subprocess.Popen(
            [sys.executable, "-c", SENDER, str(each), path, "2000"],
            stdout=subprocess.DEVNULL) for path in sockets]
        sink.stdout.readline()
        for sender in senders:
            sender.wait()
        return peakRss(relay.pid)
    finally:
        relay.terminate()
        relay.wait()
        stopSink(sink)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--count", type=int, default=100000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--venv", default=os.environ.get(
        "JAILTWIST_VENV", "/opt/jailtwist"))
    parser.add_argument("--no-jailkit", action="store_true",
                        help="do not run jailkit's relay to compare")
    parser.add_argument("--no-rss", action="store_true",
                        help="skip the 100-socket RSS measurement")
    parser.add_argument("--wrap", default="",
                        help="a command line to run jailtwist's relay under, "
                        "for profiling (e.g. 'py-spy record -f raw -o F --'"
                        "); its CPU figures are then the wrapper's")
    parser.add_argument("--metrics", action="store_true",
                        help="add jailtwist's relay with --metrics, scraped "
                        "during the run")
    parser.add_argument("--scrape-every", type=float, default=1.0,
                        help="seconds between scrapes with --metrics")
    parser.add_argument("--direct", action="store_true",
                        help="add the sender sending straight to the sink, "
                        "with no relay: the upper bound of any relay")
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
        contenders = [("jailtwist", args.wrap.split() + [
            f"{args.venv}/bin/jk_socketd", "-n", "--config", ini])]
        scrapes = {}
        if args.metrics:
            port = freePort()
            contenders.append(("jt+metrics", args.wrap.split() + [
                f"{args.venv}/bin/jk_socketd", "-n", "--config", ini,
                "--metrics", f"tcp:{port}:interface=127.0.0.1"]))
            scrapes["jt+metrics"] = (port, args.scrape_every)
        if not args.no_jailkit:
            c = jailkit_package.cTool("jk_socketd", root)
            # jailkit reads /etc/jailkit/jk_socketd.ini and chroots there;
            # give it a private one with its largest limits (base 1e6 and
            # peak 1e7 bytes per 0.02 s: 5e7 bytes/s, which cannot bind;
            # ours have 1e9 bytes per second).  Not 0.01 s, its smallest:
            # read into a C float, 0.01 falls below that bound and jailkit
            # silently takes 5 s, so a run of more than 1e7 bytes stalls.
            etc = f"{root}/etc-jailkit"
            os.makedirs(etc)
            writeIni(f"{etc}/jk_socketd.ini", [jailSocket], "0.02",
                     10 ** 6, 10 ** 7)
            subprocess.run(["mount", "--bind", etc, "/etc/jailkit"],
                           check=True)
            contenders.append(("jailkit", [c, "-n"]))
        if args.direct:
            contenders.append(("direct", None))
        print(f"{args.count:,} datagrams of {SIZE} bytes per run, blocking "
              f"sender and sink in their own processes")
        print("us CPU/msg: the relay's; pipeline: sender + relay + sink. "
              "sleeps: voluntary context switches per 1000 messages of "
              "sender/relay/sink")
        print(f"{'round':>5}  {'relay':<10} {'msg/s':>10} {'us CPU/msg':>11}"
              f" {'pipeline':>9} {'sleeps s/r/k':>16} {'peak RSS MB':>12}")
        results = {name: [] for name, _ in contenders}
        for number in range(1, args.rounds + 1):
            # Alternate which goes first, so neither always runs on a
            # machine just warmed (or just loaded) by the other.
            order = contenders if number % 2 else contenders[::-1]
            for name, argv in order:
                if os.path.exists(jailSocket):
                    os.unlink(jailSocket)
                run = runRelay(argv, jailSocket, args.count, root,
                               scrapes.get(name))
                results[name].append(run)
                sleeps = (f"{run.senderSleeps:.0f}/{run.relaySleeps:.0f}/"
                          f"{run.sinkSleeps:.0f}")
                relayCpu, rss = ((f"{run.relayCpu:.2f}", f"{run.rss:.1f}")
                                 if argv is not None else ("-", "-"))
                mode = " *" if run.pingPong else ""
                print(f"{number:>5}  {name:<10} {run.rate:>10,.0f} "
                      f"{relayCpu:>11} {run.pipelineCpu:>9.2f} "
                      f"{sleeps:>16} {rss:>12}{mode}", flush=True)
        print(f"* ping-pong round: the sender slept more than "
              f"{PING_PONG_SLEEPS} times per 1000 messages")
        for name, runs in results.items():
            def median(field, rounds=runs):
                return statistics.median(getattr(r, field) for r in rounds)
            relay = (f"{median('relayCpu'):.2f} us CPU/msg, "
                     if name != "direct" else "")
            pingPong = sum(r.pingPong for r in runs)
            print(f"{name}: median {median('rate'):,.0f} msg/s, {relay}"
                  f"pipeline {median('pipelineCpu'):.2f} us CPU/msg; "
                  f"{pingPong} of {len(runs)} rounds ping-pong")
        if "jailkit" in results:
            pairs = list(zip(results["jailtwist"], results["jailkit"]))
            ratios = [ours.rate / theirs.rate for ours, theirs in pairs]
            cpus = [ours.relayCpu / theirs.relayCpu for ours, theirs in pairs]
            print(f"ratio jailtwist/jailkit msg/s per round: "
                  f"{', '.join(f'{r:.2f}' for r in ratios)} "
                  f"(median {statistics.median(ratios):.2f}); CPU/msg ratio "
                  f"median {statistics.median(cpus):.2f}")
            # The same ratio without the luck of the draw: only rounds in
            # which neither relay fell into the ping-pong hand-off.
            calm = [(ours, theirs) for ours, theirs in pairs
                    if not (ours.pingPong or theirs.pingPong)]
            if calm:
                rate = statistics.median(o.rate / t.rate for o, t in calm)
                cpu = statistics.median(o.relayCpu / t.relayCpu
                                        for o, t in calm)
                print(f"ratio over the {len(calm)} rounds without ping-pong: "
                      f"msg/s median {rate:.2f}, CPU/msg median {cpu:.2f}")
            else:
                print("no round without ping-pong: no calm ratio")
        if not args.no_rss:
            rss = manySockets(args.venv, root)
            print(f"jailtwist jk_socketd with 100 sockets (100 senders of "
                  f"100 x 2000 B): peak RSS {rss:.1f} MB (target < 40 MB)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
