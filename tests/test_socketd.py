"""
Integration tests for C{jk_socketd} and C{twistd jk-socketd}: the installed
commands relay a jail's log socket to a real rsyslogd.

Waiting here is for real external processes (rsyslogd, the relay); the
relay's timing itself is tested with a fake clock in L{tests.test_relay}.
"""

import json
import os
import signal
import socket
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from tests.harness import (BIN, isolated, jailParent, run, script,
                           shortTempDir, startRsyslog, waitFor, waitForSocket)


def send(path, *datagrams):
    """
    Send datagrams to C{path} like a jailed program's blocking syslog().
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(path)
        for data in datagrams:
            sock.send(data)


def syslogLine(tag, text):
    return f"<13>Nov 23 08:00:00 {tag}: {text}".encode()


class RelayTestMixin:
    def setUp(self):
        isolated(self)
        self.syslog = startRsyslog(self)
        self.jail = jailParent(self).child("jail")
        self.jail.child("dev").makedirs()
        self.socket = self.jail.child("dev").child("log").path
        self.ini = shortTempDir(self).child("jk_socketd.ini")

    def writeIni(self, body=""):
        self.ini.setContent(f"[{self.socket}]\n{body}".encode())

    def startRelay(self, *args, command=("jk_socketd", "-n")):
        argv = [script(command[0])] + list(command[1:]) + [
            "--config", self.ini.path, "--syslog", self.syslog.socket
        ] + list(args)
        process = subprocess.Popen(argv, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT)
        self.addCleanup(self.stopRelay, process)
        waitForSocket(self.socket, socket.SOCK_DGRAM,
                      what="the relay's socket",
                      alive=lambda: process.poll() is None)
        if process.poll() is not None:
            self.fail(f"the relay exited: {process.stdout.read()!r}")
        return process

    def stopRelay(self, process):
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0].decode()
        return output


class RelayTests(RelayTestMixin, SynchronousTestCase):
    def test_relaysIntact(self):
        """
        What a real C{logger} and a program write into the jail's socket
        arrives at the host's rsyslog unchanged, 8 KiB messages included.
        """
        self.writeIni("base = 100000\npeak = 200000\ninterval = 5\n")
        self.startRelay()
        subprocess.run(["logger", "--socket", self.socket, "-t", "jailtest",
                        "hello from the jail"], check=True, timeout=30)
        big = "B" * 8000 + "end"
        send(self.socket, syslogLine("bigtest", big))
        lines = self.syslog.waitForLines(2)
        self.assertEqual(lines[0], "jailtest: hello from the jail")
        self.assertEqual(lines[1], "bigtest: " + big)

    def test_confined(self):
        """
        After binding, the relay runs as nobody with no groups, rooted in
        the directory of the host syslog socket, and still relays.
        """
        self.writeIni()
        process = self.startRelay()
        send(self.socket, syslogLine("t", "after confinement"))
        self.syslog.waitForLines(1)
        status = open(f"/proc/{process.pid}/status").read()
        fields = dict(line.split(":", 1) for line in status.splitlines())
        self.assertEqual(fields["Uid"].split()[:2], ["65534", "65534"])
        self.assertEqual(fields["Groups"].strip(), "")
        self.assertEqual(fields["NoNewPrivs"].strip(), "1")
        self.assertEqual(os.readlink(f"/proc/{process.pid}/root"),
                         os.path.dirname(self.syslog.socket))
        self.assertEqual(os.stat(self.socket).st_mode & 0o777, 0o666)

    def test_syslogRestart(self):
        """
        A real rsyslog restart (its socket replaced) needs no relay
        restart, and what was sent while it was down arrives.
        """
        self.writeIni("base = 100000\npeak = 200000\n")
        relay = self.startRelay()
        send(self.socket, syslogLine("t", "before"))
        self.syslog.waitForLines(1)
        self.syslog.stop()
        send(self.socket, *[syslogLine("t", f"during {i}") for i in range(5)])
        self.syslog.start()
        send(self.socket, syslogLine("t", "after"))
        lines = self.syslog.waitForLines(7)
        self.assertEqual(lines, ["t: before"] + [f"t: during {i}"
                                                 for i in range(5)]
                         + ["t: after"])
        output = self.stopRelay(relay)
        self.assertIn("went away", output)
        self.assertIn("is back after", output)

    def test_syslogRestartThroughSymlink(self):
        """
        A host syslog socket reached through a symlink (systemd's /dev/log
        points at journald's socket) is followed once, before the relay
        changes root, so a restart of the syslog daemon is survived too.
        """
        self.writeIni("base = 100000\npeak = 200000\n")
        link = shortTempDir(self).child("log").path
        os.symlink(self.syslog.socket, link)
        relay = self.startRelay("--syslog", link)
        send(self.socket, syslogLine("t", "before"))
        self.syslog.waitForLines(1)
        self.syslog.stop()
        self.syslog.start()
        send(self.socket, syslogLine("t", "after"))
        self.assertEqual(self.syslog.waitForLines(2),
                         ["t: before", "t: after"])
        self.assertIn("is back after", self.stopRelay(relay))

    def test_pacedNothingLost(self):
        """
        Over the limit the relay slows a blocking sender down; every
        message arrives, in order, and the throttling is logged.
        """
        self.writeIni("base = 200\npeak = 400\ninterval = 0.5\n")
        relay = self.startRelay()
        messages = [syslogLine("pace", f"{i:02d} " + "x" * 70)
                    for i in range(20)]
        send(self.socket, *messages)
        lines = self.syslog.waitForLines(20, timeout=30)
        self.assertEqual([line[6:8] for line in lines],
                         [f"{i:02d}" for i in range(20)])
        output = self.stopRelay(relay)
        self.assertIn("over its limit", output)
        self.assertIn("20 messages", output)

    def test_markedJail(self):
        self.writeIni("mark = web1\n")
        self.startRelay()
        send(self.socket, syslogLine("sshd[7]", "posing"))
        self.assertEqual(self.syslog.waitForLines(1), ["web1/sshd[7]: posing"])

    def test_socketOption(self):
        """
        C{--socket} creates one socket without the ini; C{--peek} is the old
        spelling of C{--peak}.
        """
        self.ini.setContent(b"[/nonexistent/dev/log]\n")
        process = self.startRelay("--socket", self.socket, "--base", "1000",
                                  "--peek", "3000")
        send(self.socket, syslogLine("t", "one"))
        self.syslog.waitForLines(1)
        output = self.stopRelay(process)
        self.assertIn("[1000:3000]/10.0s", output)

    def test_twistdPlugin(self):
        """
        The installed C{twistd jk-socketd} runs the same relay.
        """
        self.writeIni()
        process = self.startRelay(command=("twistd", "-n", "--pidfile=",
                                           "jk-socketd"))
        send(self.socket, syslogLine("t", "via twistd"))
        self.assertEqual(self.syslog.waitForLines(1), ["t: via twistd"])
        self.stopRelay(process)

    def test_detached(self):
        """
        Without C{-n} the relay detaches, writes its pid to C{-p}, and logs
        to the host syslog itself.
        """
        self.writeIni()
        pidfile = shortTempDir(self).child("jk_socketd.pid")
        result = run("jk_socketd", "-p", pidfile.path, "--config",
                     self.ini.path, "--syslog", self.syslog.socket)
        self.assertEqual(result.returncode, 0, result.stderr)
        pid = int(waitFor(lambda: pidfile.exists() and pidfile.getContent(),
                          what="the pidfile"))
        self.addCleanup(os.kill, pid, signal.SIGTERM)
        waitForSocket(self.socket, socket.SOCK_DGRAM, what="the relay's socket")
        send(self.socket, syslogLine("t", "detached"))
        lines = waitFor(lambda: "t: detached" in self.syslog.lines()
                        and self.syslog.lines(), what="the relayed line")
        self.assertTrue(any(line.startswith(f"jk_socketd[{pid}]: listening")
                            for line in lines), lines)


class BooksTests(RelayTestMixin, SynchronousTestCase):
    def test_controlChannel(self):
        """
        With C{--control} the relay answers L{RelayBooks} over AMP (after
        it confined itself), and it logs the books when it stops.
        """
        from jailtwist.control import RelayBooks, askSocket, pingSocket
        self.writeIni("base = 100\npeak = 100\ninterval = 60\n")
        control = shortTempDir(self).child("ctl").path
        relay = self.startRelay("--control", f"unix:{control}:mode=600")
        waitFor(lambda: pingSocket(control), what="the control channel")
        send(self.socket, syslogLine("t", "one"), b"",
             syslogLine("t", "two " + "x" * 100))
        books = waitFor(lambda: (lambda b: b["read"] == 3 and b)(
            askSocket(control, RelayBooks)), what="three datagrams read")
        self.assertEqual(
            {key: books[key] for key in ("read", "handed", "held", "dropped",
                                         "empty", "balanced")},
            {"read": 3, "handed": 1, "held": 1, "dropped": 0, "empty": 1,
             "balanced": True})
        self.assertEqual(books["sockets"][0]["socket"], self.socket)
        output = self.stopRelay(relay)
        self.assertIn("books of 1 sockets: 3 read = 2 handed to the host "
                      "syslog + 0 held + 0 dropped + 1 empty (balanced)",
                      output)


class SoakTests(SynchronousTestCase):
    """
    A short run of C{benchmarks/soak_socketd.py}: many jail sockets and
    blocking senders, a real rsyslogd restarted under them, limits binding
    on some sockets.
    """

    def test_soak(self):
        isolated(self)
        scriptPath = os.path.join(
            os.path.dirname(os.path.dirname(os.path.realpath(__file__))),
            "benchmarks", "soak_socketd.py")
        if not os.path.exists(scriptPath):
            self.fail(f"{scriptPath} is missing (run from the source tree)")
        report = shortTempDir(self).child("soak.json")
        result = subprocess.run(
            [sys.executable, scriptPath, "--sockets", "20", "--messages",
             "60", "--pause", "0.01", "--restarts", "2", "--every", "0.3",
             "--gap", "0.2", "--per-process", "10", "--venv",
             os.path.dirname(BIN.path), "--json", report.path],
            capture_output=True, text=True, timeout=300)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        figures = json.loads(report.getContent())
        self.assertTrue(figures["ok"])
        self.assertEqual(figures["sent"], 20 * 60)
        self.assertEqual(figures["restarts"], 2)
        self.assertTrue(figures["books"]["balanced"])
        self.assertEqual(figures["books"]["read"], 20 * 60)
        # Each restart the relay noticed (by a send after it) needed a
        # reconnect; no relay restart.
        self.assertGreaterEqual(figures["books"]["reconnects"], 1)
        self.assertGreater(figures["books"]["dropped"], 0)
        self.assertGreater(figures["throttled"], 0)
        self.assertEqual(figures["duplicates"], {})
        self.assertEqual(figures["outOfOrder"], [])
        self.assertIn("restart 2:", result.stdout)


class BadInputTests(SynchronousTestCase):
    """
    Every bad input gives one line naming the problem, a non-zero exit, and
    starts nothing.
    """

    def setUp(self):
        isolated(self)
        self.dir = jailParent(self)
        self.dir.child("dev").makedirs()
        self.socket = self.dir.child("dev").child("log").path
        self.ini = self.dir.child("sd.ini")

    def assertOneLine(self, result, *fragments):
        self.assertNotEqual(result.returncode, 0)
        lines = result.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertTrue(lines[0].startswith("jk_socketd: "), lines[0])
        for fragment in fragments:
            self.assertIn(fragment, lines[0])
        self.assertFalse(os.path.exists(self.socket))

    def check(self, body, *fragments):
        self.ini.setContent(body.encode())
        self.assertOneLine(run("jk_socketd", "-n", "--config", self.ini.path),
                           *fragments)

    def test_unparsable(self):
        self.check("[broken\n", self.ini.path)

    def test_nonNumeric(self):
        self.check(f"[{self.socket}]\nbase = lots\n", f"[{self.socket}] base",
                   "not an integer")

    def test_negative(self):
        self.check(f"[{self.socket}]\ninterval = -1\n", "interval", "minimum")

    def test_peakBelowBase(self):
        self.check(f"[{self.socket}]\nbase = 900\npeak = 800\n", "peak",
                   "below base")

    def test_unknownKey(self):
        self.check(f"[{self.socket}]\nrate = 5\n", "rate", "unknown key")

    def test_missingDirectory(self):
        self.check(f"[{self.dir.path}/nodev/log]\n", "does not exist")

    def test_symlinkAtPath(self):
        os.symlink("/etc/passwd", self.socket)
        self.addCleanup(os.unlink, self.socket)
        self.ini.setContent(f"[{self.socket}]\n".encode())
        result = run("jk_socketd", "-n", "--config", self.ini.path)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("is a symlink", result.stderr)
        self.assertEqual(len(result.stderr.strip().splitlines()), 1)
        self.assertTrue(os.path.islink(self.socket))

    def test_missingConfig(self):
        self.assertOneLine(run("jk_socketd", "-n", "--config", "/nope.ini"),
                           "/nope.ini", "cannot read")

    def test_badSocketOption(self):
        self.assertOneLine(run("jk_socketd", "-n", "--socket", self.socket,
                               "--base", "x"), "--base", "not an integer")

    def test_unknownOption(self):
        self.assertOneLine(run("jk_socketd", "--bogus"), "bogus", "--help")

    def test_help(self):
        result = run("jk_socketd", "-h")
        self.assertEqual(result.returncode, 0)
        for option in ("--nodetach", "--pidfile", "--socket", "--base",
                       "--peak", "--interval"):
            self.assertIn(option, result.stdout)

    def test_twistdBadConfig(self):
        """
        Under twistd too, a bad config file is one line, not twistd's whole
        usage text.
        """
        self.ini.setContent(f"[{self.socket}]\npeak = -1\n".encode())
        result = subprocess.run(
            [script("twistd"), "-n", "--pidfile=", "jk-socketd", "--config",
             self.ini.path], cwd="/", capture_output=True, text=True,
            timeout=60)
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stderr.strip().splitlines(), [
            f"twistd jk-socketd: {self.ini.path}: [{self.socket}] peak: -1 "
            f"is below the minimum 1"])
        self.assertFalse(os.path.exists(self.socket))

    def test_twistdListsPlugin(self):
        """
        The installed package (run from /, outside any source tree) gives
        twistd its jk-socketd plugin.
        """
        result = subprocess.run([script("twistd"), "--help"], cwd="/",
                                capture_output=True, text=True, timeout=60)
        self.assertIn("jk-socketd", result.stdout)
