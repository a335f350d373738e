"""
Tests for L{jailtwist.relay}: settings, safe binding and the relay socket,
with real unix sockets, a fake sink and a fake reactor clock.
"""

import os
import socket
import stat

from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from jailtwist.config import ConfigError, parseIni
from jailtwist.errors import JailtwistError
from jailtwist.relay import (RelaySocket, SocketSettings, _bindDatagram,
                             markMessage, readSocketSettings,
                             settingsFromSection)
from jailtwist.syslogsink import IMessageSink
from tests.harness import shortTempDir


@implementer(IMessageSink)
class FakeSink:
    def __init__(self, room=10 ** 9):
        self.sent = []
        self.room = room
        self.waiters = []

    @property
    def queued(self):
        return 0

    def send(self, data):
        if self.room <= 0:
            return False
        self.room -= 1
        self.sent.append(bytes(data))
        return True

    def whenRoom(self, callback):
        self.waiters.append(callback)

    def directFd(self):
        # Always the slow path here; the direct one is covered by the
        # integration tests with a real syslog socket.
        return None

    def makeRoom(self, room):
        self.room = room
        waiters, self.waiters = self.waiters, []
        for each in waiters:
            each()


class FakeSinkTests(SynchronousTestCase):
    def test_interface(self):
        verifyObject(IMessageSink, FakeSink())


class SettingsTests(SynchronousTestCase):
    def settings(self, body, name="/j/dev/log"):
        return settingsFromSection(
            parseIni(f"[{name}]\n{body}", "sd.ini").section(name))

    def test_defaults(self):
        self.assertEqual(self.settings(""),
                         SocketSettings("/j/dev/log", 511, 2048, 5.0))

    def test_values(self):
        s = self.settings("base = 512\npeak = 4096\ninterval = 10\n"
                          "overflow = drop\nmark = web1\n")
        self.assertEqual((s.base, s.peak, s.interval, s.overflow, s.mark),
                         (512, 4096, 10.0, "drop", "web1"))

    def assertBad(self, body, *fragments, name="/j/dev/log"):
        e = self.assertRaises(ConfigError, self.settings, body, name)
        for fragment in ("sd.ini",) + fragments:
            self.assertIn(fragment, str(e))

    def test_errors(self):
        self.assertBad("base = abc\n", "[/j/dev/log] base", "not an integer")
        self.assertBad("base = -5\n", "base", "below the minimum")
        self.assertBad("interval = fast\n", "interval", "not a number")
        self.assertBad("base = 600\npeak = 500\n", "peak", "below base")
        self.assertBad("bsae = 1\n", "bsae", "unknown key")
        self.assertBad("overflow = maybe\n", "overflow")
        self.assertBad("mark = a b\n", "mark")
        self.assertBad("", "absolute path", name="dev/log")

    def test_emptyFile(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("# nothing\n")
        e = self.assertRaises(JailtwistError, readSocketSettings, path)
        self.assertIn("no sockets configured", str(e))


class BindTests(SynchronousTestCase):
    def setUp(self):
        self.dir = shortTempDir(self)
        self.path = self.dir.child("log").path

    def test_mode(self):
        sock = _bindDatagram(self.path)
        self.addCleanup(sock.close)
        st = os.lstat(self.path)
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o666)

    def test_staleSocketReplaced(self):
        _bindDatagram(self.path).close()
        sock = _bindDatagram(self.path)
        self.addCleanup(sock.close)

    def test_symlinkRefused(self):
        target = self.dir.child("target")
        target.setContent(b"precious")
        os.symlink(target.path, self.path)
        e = self.assertRaises(JailtwistError, _bindDatagram, self.path)
        self.assertIn("is a symlink", str(e))
        self.assertTrue(os.path.islink(self.path))
        self.assertEqual(target.getContent(), b"precious")

    def test_danglingSymlinkRefused(self):
        os.symlink(self.dir.child("elsewhere").path, self.path)
        self.assertRaises(JailtwistError, _bindDatagram, self.path)
        self.assertFalse(self.dir.child("elsewhere").exists())

    def test_fileAndDirectoryRefused(self):
        self.dir.child("log").setContent(b"x")
        e = self.assertRaises(JailtwistError, _bindDatagram, self.path)
        self.assertIn("not a socket", str(e))
        other = self.dir.child("dir")
        other.makedirs()
        e = self.assertRaises(JailtwistError, _bindDatagram, other.path)
        self.assertIn("is a directory", str(e))

    def test_parentSymlinkRefused(self):
        real = self.dir.child("real")
        real.makedirs()
        os.symlink(real.path, self.dir.child("dev").path)
        e = self.assertRaises(JailtwistError, _bindDatagram,
                              self.dir.child("dev").child("log").path)
        self.assertIn("symlink", str(e))
        self.assertFalse(real.child("log").exists())

    def test_missingParent(self):
        e = self.assertRaises(JailtwistError, _bindDatagram,
                              self.dir.child("no").child("log").path)
        self.assertIn("does not exist", str(e))


class RelaySocketTests(SynchronousTestCase):
    def setUp(self):
        self.dir = shortTempDir(self)
        self.reactor = MemoryReactorClock()
        self.reactor.advance(100)
        self.sink = FakeSink()
        self.sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sender.setblocking(False)
        self.addCleanup(self.sender.close)

    def relay(self, name="log", **kw):
        settings = SocketSettings(self.dir.child(name).path, **kw)
        relay = RelaySocket(settings, self.sink, self.reactor)
        relay.privilegedStartService()
        relay.startService()
        self.addCleanup(relay.stopService)
        return relay

    def send(self, relay, *datagrams):
        for data in datagrams:
            self.sender.sendto(data, relay.settings.path)

    def pump(self, relay):
        while relay in self.reactor.readers:
            before = relay.messages + relay.suppressed
            relay.doRead()
            if relay.messages + relay.suppressed == before:
                return

    def test_intact(self):
        """
        Datagrams of any size pass byte for byte (jailkit cuts at 512).
        """
        relay = self.relay(base=10 ** 6, peak=10 ** 6)
        big = bytes(range(256)) * 32 + b"\0end"
        self.send(relay, b"<13>small", big, b"bin\0ary\nnewline")
        self.pump(relay)
        self.assertEqual(self.sink.sent, [b"<13>small", big,
                                          b"bin\0ary\nnewline"])

    def test_blockHoldsAndResumes(self):
        """
        Over budget, the socket stops being read until its next window; the
        datagrams already read that did not fit are held and sent first, and
        nothing is lost or reordered.
        """
        relay = self.relay(base=300, peak=500, interval=10.0)
        for i in range(9):
            self.send(relay, b"%099d" % i)
        with capturedLogs() as events:
            self.pump(relay)
        self.assertEqual(len(self.sink.sent), 5)
        self.assertNotIn(relay, self.reactor.readers)
        self.assertEqual(relay.throttled, 1)
        warnings = [e for e in events if "over its limit" in e["log_format"]]
        self.assertEqual(len(warnings), 1)
        self.reactor.advance(9.9)
        self.assertEqual(len(self.sink.sent), 5)
        self.reactor.advance(0.1)
        # After a peak, only base (3 datagrams) per window.
        self.assertEqual(len(self.sink.sent), 8)
        self.assertNotIn(relay, self.reactor.readers)
        self.reactor.advance(10.0)
        self.assertIn(relay, self.reactor.readers)
        self.assertEqual(self.sink.sent, [b"%099d" % i for i in range(9)])
        self.assertEqual((relay.messages, relay.bytes), (9, 9 * 99))
        self.assertEqual(relay.throttled, 2)

    def test_stopsReadingWhileHeld(self):
        """
        What the kernel still queues is not read while the socket is held,
        so a blocking sender waits.
        """
        relay = self.relay(base=100, peak=100, interval=10.0)
        self.send(relay, b"a" * 100, b"b" * 100)
        self.pump(relay)
        self.send(relay, b"c" * 100)
        self.reactor.advance(10.0)
        self.assertEqual(self.sink.sent, [b"a" * 100, b"b" * 100])
        self.assertIn(relay, self.reactor.readers)
        self.pump(relay)
        self.assertEqual(len(self.sink.sent), 2)
        self.reactor.advance(10.0)
        self.assertEqual(self.sink.sent[-1], b"c" * 100)

    def test_events(self):
        """
        With an event stream, throttling and suppression are published to
        it (the suite streams them over the control channel).
        """
        from jailtwist.control import EventStream
        stream = EventStream(self.reactor)
        seen = []
        stream.subscribe(seen.append)
        settings = SocketSettings(self.dir.child("ev").path, 100, 100, 1.0)
        relay = RelaySocket(settings, self.sink, self.reactor, events=stream)
        relay.privilegedStartService()
        relay.startService()
        self.addCleanup(relay.stopService)
        self.send(relay, b"a" * 100, b"b" * 100)
        self.pump(relay)
        self.assertEqual([(e.kind, e.fields["socket"]) for e in seen],
                         [("relay-throttled", settings.path)])

    def test_drop(self):
        """
        In drop mode what does not fit is counted and discarded, and the
        count is logged once at the end of the window.
        """
        relay = self.relay(base=300, peak=300, interval=5.0,
                           overflow="drop")
        self.send(relay, *[b"%099d" % i for i in range(7)])
        with capturedLogs() as events:
            self.pump(relay)
            self.assertIn(relay, self.reactor.readers)
            self.assertEqual(len(self.sink.sent), 3)
            self.assertEqual(relay.suppressed, 4)
            self.reactor.advance(5.0)
        reports = [e for e in events if "suppressed" in e["log_format"]]
        self.assertEqual(len(reports), 1)
        self.assertEqual(reports[0]["count"], 4)

    def test_countersStartAtZero(self):
        """
        Every socket starts with an empty budget (jailkit's second socket
        throttles its first message).
        """
        first = self.relay("a", base=200, peak=200)
        second = self.relay("b", base=200, peak=200)
        self.send(first, b"x" * 150)
        self.send(second, b"y" * 150)
        self.pump(first)
        self.pump(second)
        self.assertEqual((first.throttled, second.throttled), (0, 0))
        self.assertEqual(len(self.sink.sent), 2)

    def test_socketsIndependent(self):
        """
        One throttled socket does not slow another.
        """
        noisy = self.relay("a", base=100, peak=100)
        quiet = self.relay("b", base=100, peak=100)
        self.send(noisy, b"1" * 100, b"2" * 100)
        self.pump(noisy)
        self.assertNotIn(noisy, self.reactor.readers)
        self.send(quiet, b"3" * 50)
        self.pump(quiet)
        self.assertEqual(self.sink.sent[-1], b"3" * 50)

    def test_sinkFullHolds(self):
        """
        When the host syslog cannot take more, the socket holds its datagram
        and stops reading until there is room.
        """
        relay = self.relay(base=10 ** 6, peak=10 ** 6)
        self.sink.room = 2
        self.send(relay, b"a", b"b", b"c", b"d")
        self.pump(relay)
        self.assertEqual(self.sink.sent, [b"a", b"b"])
        self.assertNotIn(relay, self.reactor.readers)
        self.sink.makeRoom(10)
        self.pump(relay)
        self.assertEqual(self.sink.sent, [b"a", b"b", b"c", b"d"])

    def test_mark(self):
        relay = self.relay(base=10 ** 6, peak=10 ** 6, mark="web1")
        self.send(relay, b"<13>Nov 23 08:00:00 sshd[1]: hi")
        self.pump(relay)
        self.assertEqual(self.sink.sent,
                         [b"<13>Nov 23 08:00:00 web1/sshd[1]: hi"])


class MarkTests(SynchronousTestCase):
    def test_forms(self):
        self.assertEqual(markMessage(b"<13>Nov  3 08:00:00 tag: x", "j"),
                         b"<13>Nov  3 08:00:00 j/tag: x")
        self.assertEqual(markMessage(b"<13>1 2026-11-23T08:00:00Z h app "
                                     b"1 - - x", "j"),
                         b"<13>1 2026-11-23T08:00:00Z h j/app 1 - - x")
        self.assertEqual(markMessage(b"<13>tag: x", "j"), b"<13>j/tag: x")
        self.assertEqual(markMessage(b"plain", "j"), b"j/plain")
