#!/usr/bin/env python3
"""
Soak jk_socketd: many jails, restarts of the host syslog, and nothing lost
on the relay's side.

One jk_socketd serves --sockets jail sockets; as many blocking senders
(threads in a few sender processes, each with its own socket, like
syslog(3) clients) send numbered messages of mixed sizes (12 bytes to
8 KiB) through it to a real rsyslogd, which is restarted --restarts times
during the run.  Limits bind on some sockets (every 4th: block; every
10th: drop) and not on the others.

At the end it checks and prints:
  - the relay's books, read over its control channel and logged at
    shutdown: read = handed to the host syslog + held + dropped + empty;
  - end to end, per restart: how many messages are missing and whose
    (a message is charged to the first restart after it was sent).  A
    stopping rsyslogd takes with it what was still in its socket's kernel
    queue (max_dgram_qlen + 1 datagrams): that is the bound per restart;
  - that nothing is duplicated and every sender's messages arrived in
    order;
  - the slowest sender's longest blocked send, and the relay's peak RSS.

Run as root, with the jailtwist virtualenv's interpreter:
    /opt/jailtwist/bin/python benchmarks/soak_socketd.py [--json FILE]
It runs in a private mount namespace (tests/isolated) and cleans up.
Exit status 0 when every check passes, 1 otherwise.
"""

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from twisted.python.filepath import FilePath  # noqa: E402

from bench_socketd import peakRss  # noqa: E402

from jailtwist.control import RelayBooks, askSocket, pingSocket  # noqa
from jailtwist.errors import JailtwistError  # noqa: E402
from tests.harness import Rsyslog, waitFor  # noqa: E402

# The sender process: one thread per socket, blocking sends of numbered
# datagrams "<13>SSNNNNN:xxx..." (sender and number in hex), each thread's
# send times and longest block written as JSON when all are done.
SENDER = r"""
import json, random, socket, sys, threading, time
first, paths, count, pause, seed = (int(sys.argv[1]), sys.argv[2].split(","),
                                    int(sys.argv[3]), float(sys.argv[4]),
                                    int(sys.argv[5]))
results = {}

def send(number, path):
    rng = random.Random(seed * 1000 + number)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.connect(path)
    times, longest = [], 0.0
    for seq in range(count):
        # Log-uniform sizes: mostly short lines, some up to 8 KiB.
        size = int(12 * (8192 / 12) ** rng.random())
        data = b"<13>%02x%05x:" % (number, seq)
        data += b"x" * (size - len(data))
        start = time.monotonic()
        sock.send(data)
        end = time.monotonic()
        longest = max(longest, end - start)
        times.append(end)
        if pause:
            time.sleep(rng.uniform(0, 2 * pause))
    sock.close()
    results[number] = {"times": times, "longest": longest}

threads = [threading.Thread(target=send, args=(first + i, path))
           for i, path in enumerate(paths)]
print("ready", flush=True)
sys.stdin.readline()
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
json.dump(results, sys.stdout)
"""


def socketLimits(number):
    """
    @return: the ini lines of socket C{number}: every 4th has a limit that
        binds and blocks, every 10th one that binds and drops, the others
        one that does not bind.
    """
    if number % 10 == 9:
        return "base = 8000\npeak = 16000\ninterval = 0.5\noverflow = drop\n"
    if number % 4 == 3:
        return "base = 16000\npeak = 32000\ninterval = 0.5\n"
    return "base = 1000000000\npeak = 1000000000\ninterval = 1\n"


def answers(control):
    try:
        return pingSocket(control) is not None
    except JailtwistError:
        return False


def parseOutput(lines, senders):
    """
    @return: per sender, the message numbers in the order rsyslog wrote
        them; and lines that are not soak messages.
    """
    seen = {number: [] for number in range(senders)}
    other = []
    for line in lines:
        token = line[:8]
        try:
            sender, seq = int(token[:2], 16), int(token[2:7], 16)
        except ValueError:
            other.append(line)
            continue
        if token[7:8] != ":" or sender not in seen:
            other.append(line)
            continue
        seen[sender].append(seq)
    return seen, other


def analyse(seen, sent, restarts, dropSockets, books, queueBound):
    """
    Check the end-to-end figures.

    @param sent: per sender, the time each message's send returned.
    @param restarts: per restart, C{(stopped, started)} times (stopped:
        when the old rsyslogd had exited).
    @return: a report C{dict} with C{ok}.
    """
    report = {"duplicates": {}, "outOfOrder": [], "perRestart": [],
              "unattributed": {}, "problems": []}
    perRestart = [{"lost": 0, "senders": {}} for _ in restarts]
    dropMissing = 0
    for sender, numbers in seen.items():
        if len(set(numbers)) != len(numbers):
            report["duplicates"][sender] = len(numbers) - len(set(numbers))
        if numbers != sorted(numbers):
            report["outOfOrder"].append(sender)
        missing = sorted(set(range(len(sent[sender]))) - set(numbers))
        if sender in dropSockets:
            dropMissing += len(missing)
            continue
        for seq in missing:
            when = sent[sender][seq]
            for index, (stopped, _) in enumerate(restarts):
                if when <= stopped:
                    entry = perRestart[index]
                    entry["lost"] += 1
                    entry["senders"].setdefault(sender, []).append(seq)
                    break
            else:
                report["unattributed"].setdefault(sender, []).append(seq)
    report["perRestart"] = perRestart
    dropped = sum(each["dropped"] for each in books["sockets"])
    report["dropSockets"] = {"missing": dropMissing, "dropped": dropped}
    if report["duplicates"]:
        report["problems"].append(f"duplicated: {report['duplicates']}")
    if report["outOfOrder"]:
        report["problems"].append(f"out of order: {report['outOfOrder']}")
    if report["unattributed"]:
        report["problems"].append(
            f"missing with no restart to blame: {report['unattributed']}")
    for index, entry in enumerate(perRestart):
        if entry["lost"] > queueBound:
            report["problems"].append(
                f"restart {index + 1} lost {entry['lost']} messages, more "
                f"than the old socket's queue ({queueBound})")
    restartLoss = sum(entry["lost"] for entry in perRestart)
    if not dropped <= dropMissing <= dropped + len(restarts) * queueBound - \
            restartLoss:
        report["problems"].append(
            f"drop sockets: {dropMissing} missing but {dropped} dropped by "
            f"the relay")
    if not books["balanced"]:
        report["problems"].append(f"the relay's books do not balance: "
                                  f"{books}")
    report["ok"] = not report["problems"]
    return report


def run(args):
    scratch = FilePath(tempfile.mkdtemp(prefix="jtsoak", dir=args.scratch))
    os.chmod(scratch.path, 0o755)
    processes = []
    syslog = None
    try:
        syslog = Rsyslog(scratch.child("syslog"))
        scratch.child("syslog").chmod(0o755)
        syslog.start()
        paths = []
        ini = []
        for number in range(args.sockets):
            dev = scratch.child(f"j{number:03d}").child("dev")
            dev.makedirs()
            paths.append(dev.child("log").path)
            ini.append(f"[{paths[-1]}]\n{socketLimits(number)}\n")
        dropSockets = {n for n in range(args.sockets) if n % 10 == 9}
        scratch.child("jk_socketd.ini").setContent("".join(ini).encode())
        control = scratch.child("ctl").path
        relayLog = open(scratch.child("relay.log").path, "wb")
        relay = subprocess.Popen(
            [os.path.join(args.venv, "bin", "jk_socketd"), "-n", "--config",
             scratch.child("jk_socketd.ini").path, "--syslog", syslog.socket,
             "--control", f"unix:{control}:mode=600"],
            stdout=relayLog, stderr=subprocess.STDOUT)
        processes.append(relay)
        # Ready when the control channel answers: the jail sockets are
        # bound before it listens.
        waitFor(lambda: relay.poll() is not None or answers(control), 30,
                "the relay's control channel")
        if relay.poll() is not None:
            raise SystemExit(f"the relay exited: "
                             f"{scratch.child('relay.log').getContent()!r}")
        groups = [list(range(i, min(i + args.per_process, args.sockets)))
                  for i in range(0, args.sockets, args.per_process)]
        senders = []
        for group in groups:
            sender = subprocess.Popen(
                [sys.executable, "-c", SENDER, str(group[0]),
                 ",".join(paths[n] for n in group), str(args.messages),
                 str(args.pause), str(args.seed)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            processes.append(sender)
            assert sender.stdout.readline().strip() == "ready"
            senders.append(sender)
        begin = time.monotonic()
        for sender in senders:
            sender.stdin.write("go\n")
            sender.stdin.flush()
        restarts = []
        for index in range(args.restarts):
            due = begin + (index + 1) * args.every
            while time.monotonic() < due:
                time.sleep(0.05)
            syslog.stop()
            # A message whose send returned before the old rsyslogd was
            # gone may have been in its queue.
            stopped = time.monotonic()
            time.sleep(args.gap)
            syslog.start()
            restarts.append((stopped, time.monotonic()))
        sent = {}
        longest = 0.0
        for sender in senders:
            out, _ = sender.communicate(timeout=args.timeout)
            for number, result in json.loads(out).items():
                sent[int(number)] = result["times"]
                longest = max(longest, result["longest"])
        finished = time.monotonic()
        if restarts and restarts[-1][0] > finished:
            print("warning: the last restart came after the senders "
                  "finished; raise --messages or lower --every")

        total = sum(len(times) for times in sent.values())

        def settled():
            books = askSocket(control, RelayBooks)
            return (books["read"] == total and books["held"] == 0
                    and books["queued"] == 0) and books
        books = waitFor(settled, 120, "the relay to hand on what it held")
        # rsyslogd writes asynchronously: wait until its output stops
        # growing.
        size = -1
        while syslog.output.getsize() != size:
            size = syslog.output.getsize()
            time.sleep(0.5)
        rss = peakRss(relay.pid)
        relay.send_signal(signal.SIGTERM)
        relay.wait(60)
        relayLog.close()
        logText = scratch.child("relay.log").getContent().decode(
            "utf-8", "replace")
        booksLine = [line for line in logText.splitlines()
                     if "books of" in line]
        seen, other = parseOutput(syslog.lines(), args.sockets)
        report = analyse(seen, sent, restarts, dropSockets, books,
                         queueBound(args))
        report.update(
            books={k: v for k, v in books.items() if k != "sockets"},
            booksLogged=booksLine[-1] if booksLine else None,
            longestBlock=longest, peakRss=rss, seconds=finished - begin,
            sent=sum(len(times) for times in sent.values()),
            received=sum(len(numbers) for numbers in seen.values()),
            otherLines=len(other), restarts=len(restarts),
            senders=args.sockets,
            throttled=logText.count("over its limit ("))
        if not booksLine:
            report["problems"].append("the relay logged no books at "
                                      "shutdown")
            report["ok"] = False
        return report
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        if syslog is not None:
            syslog.stop()
        if args.keep:
            print(f"kept {scratch.path}")
        else:
            shutil.rmtree(scratch.path, ignore_errors=True)


def queueBound(args):
    with open("/proc/sys/net/unix/max_dgram_qlen") as f:
        return int(f.read()) + 1


def show(report):
    print(f"{report['sent']:,} messages sent by {report['senders']} "
          f"senders in {report['seconds']:.1f}s, rsyslogd restarted "
          f"{report['restarts']} times; {report['received']:,} written by "
          f"rsyslogd; sockets throttled {report['throttled']} times")
    print(f"relay books: {report['books']}")
    print(f"logged at shutdown: {report['booksLogged']}")
    for index, entry in enumerate(report["perRestart"], 1):
        who = "; ".join(f"sender {s}: {numbers}"
                        for s, numbers in sorted(entry["senders"].items()))
        print(f"restart {index}: {entry['lost']} lost (in the stopped "
              f"rsyslogd's socket queue){': ' + who if who else ''}")
    drop = report["dropSockets"]
    print(f"drop sockets: {drop['missing']} missing, {drop['dropped']} "
          f"counted dropped by the relay")
    print(f"duplicates: {len(report['duplicates'])} senders; out of order: "
          f"{len(report['outOfOrder'])} senders")
    print(f"slowest sender's longest blocked send: "
          f"{report['longestBlock']:.2f}s; relay peak RSS "
          f"{report['peakRss']:.1f} MB")
    print("OK" if report["ok"] else "FAILED: " + "; ".join(
        report["problems"]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--sockets", type=int, default=100)
    parser.add_argument("--messages", type=int, default=400,
                        help="messages per sender")
    parser.add_argument("--pause", type=float, default=0.02,
                        help="mean pause between a sender's messages (s)")
    parser.add_argument("--restarts", type=int, default=5)
    parser.add_argument("--every", type=float, default=2.5,
                        help="seconds between rsyslogd restarts")
    parser.add_argument("--gap", type=float, default=0.3,
                        help="seconds rsyslogd stays down")
    parser.add_argument("--per-process", type=int, default=25,
                        help="sender threads per sender process")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--venv", default=os.path.dirname(
        os.path.dirname(os.path.abspath(sys.executable))))
    parser.add_argument("--scratch", default="/var/tmp")
    parser.add_argument("--json", help="also write the report here")
    parser.add_argument("--keep", action="store_true",
                        help="keep the scratch directory (logs, output)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (rsyslogd and the relay run for real)")
    if os.environ.get("JAILTWIST_ISOLATED") != "1":
        os.execv(os.path.join(ROOT, "tests", "isolated"),
                 [os.path.join(ROOT, "tests", "isolated"), sys.executable]
                 + sys.argv)
    random.seed(args.seed)
    report = run(args)
    show(report)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1, default=str)
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
