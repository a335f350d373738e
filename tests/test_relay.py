"""
Tests for L{jailtwist.relay}: settings, safe binding and the relay socket,
with real unix sockets, a fake sink and a fake reactor clock.
"""

import os
import socket
import stat

from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from jailtwist.config import ConfigError, parseIni
from jailtwist.errors import JailtwistError
from jailtwist.relay import (RelayService, RelaySocket, SocketSettings,
                             _bindDatagram, markMessage, readSocketSettings,
                             settingsFromSection)
from jailtwist.syslogsink import IMessageSink, SyslogSink
from tests.harness import shortTempDir
from tests.test_syslogsink import Receiver


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

    def test_sinkFullMarked(self):
        """
        What waits for room in the sink is marked like the rest: a full
        host syslog is no way around the mark.
        """
        relay = self.relay(base=10 ** 6, peak=10 ** 6, mark="web1")
        self.sink.room = 1
        self.send(relay, *[b"<13>tag: %d" % i for i in range(4)])
        self.pump(relay)
        self.sink.makeRoom(10)
        self.assertEqual(self.sink.sent,
                         [b"<13>web1/tag: %d" % i for i in range(4)])

    def test_heldMarkedAtShutdown(self):
        """
        Stopping hands what the budget held to the sink, marked.
        """
        relay = self.relay(base=100, peak=100, interval=10.0, mark="web1")
        self.send(relay, *[b"<13>tag: %097d" % i for i in range(3)])
        self.pump(relay)
        self.assertEqual(len(self.sink.sent), 1)
        relay.stopService()
        self.assertEqual(self.sink.sent,
                         [b"<13>web1/tag: %097d" % i for i in range(3)])

    def test_mark(self):
        relay = self.relay(base=10 ** 6, peak=10 ** 6, mark="web1")
        self.send(relay, b"<13>Nov 23 08:00:00 sshd[1]: hi")
        self.pump(relay)
        self.assertEqual(self.sink.sent,
                         [b"<13>Nov 23 08:00:00 web1/sshd[1]: hi"])


class FloodTests(SynchronousTestCase):
    """
    A sender that keeps the kernel queue full (as a blocking one does),
    pauses, and floods again, over many windows of a fake clock: after the
    first window it gets C{base} per window, and C{peak} only again after a
    window whose demand stayed at or below C{base}.
    """

    def setUp(self):
        self.dir = shortTempDir(self)
        self.reactor = MemoryReactorClock()
        self.sink = FakeSink()
        self.sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sender.setblocking(False)
        self.addCleanup(self.sender.close)

    def relay(self, overflow):
        settings = SocketSettings(self.dir.child("log").path, base=2000,
                                  peak=8000, interval=1.0, overflow=overflow)
        relay = RelaySocket(settings, self.sink, self.reactor)
        relay.privilegedStartService()
        relay.startService()
        self.addCleanup(relay.stopService)
        return relay

    def window(self, relay, flooding):
        """
        One window: while flooding, top the kernel queue up and let the
        relay read whenever it reads; then the clock moves to the next
        window.

        @return: the bytes the sink got in this window.
        """
        for _ in range(20):
            if flooding:
                try:
                    while True:
                        self.sender.sendto(b"x" * 1000, relay.settings.path)
                except BlockingIOError:
                    pass
            if relay not in self.reactor.readers:
                break
            relay.doRead()
        # What the window boundary released belongs to the next window:
        # count up to just before it.
        total = sum(map(len, self.sink.sent))
        got, self.counted = total - self.counted, total
        self.reactor.advance(1.0)
        return got

    def pattern(self, overflow, windows):
        relay = self.relay(overflow)
        self.counted = 0
        got = [self.window(relay, flooding) for flooding in windows]
        books = relay.books()
        self.assertTrue(books["balanced"], books)
        return relay, got

    def test_blockFloodPauseFlood(self):
        flood, pause = [True] * 6, [False] * 10
        relay, got = self.pattern("block", flood + pause + flood)
        # Window 0 peaks; what waits (held, and the kernel queue the relay
        # does not read while throttled) keeps every flood window at base.
        self.assertEqual(got[:6], [8000] + [2000] * 5)
        # The pause drains that backlog at base, then windows are empty.
        drained = got[6:16]
        self.assertEqual(drained, sorted(drained, reverse=True))
        self.assertEqual(drained[0], 2000)
        self.assertEqual(drained[-2:], [0, 0])
        # Only then may the next flood peak.
        self.assertEqual(got[16:], [8000] + [2000] * 5)
        self.assertGreater(relay.throttled, 8)
        self.assertEqual(relay.suppressed, 0)

    def test_dropFloodPauseFlood(self):
        flood, pause = [True] * 5, [False] * 2
        relay, got = self.pattern("drop", flood + pause + flood)
        self.assertEqual(got, [8000] + [2000] * 4 + [0, 0]
                         + [8000] + [2000] * 4)
        self.assertGreater(relay.suppressed, 0)
        self.assertEqual(relay.throttled, 0)


class BooksTests(SynchronousTestCase):
    """
    Every datagram read is accounted for: handed on, held, dropped or
    empty.
    """

    def setUp(self):
        self.dir = shortTempDir(self)
        self.reactor = MemoryReactorClock()
        self.sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(self.sender.close)

    def test_books(self):
        settings = [
            SocketSettings(self.dir.child("a").path, 100, 100, 10.0),
            SocketSettings(self.dir.child("b").path, 100, 100, 10.0,
                           overflow="drop"),
        ]
        service = RelayService(settings, self.reactor,
                               syslogPath=self.dir.child("none").path,
                               confine=False)
        service.privilegedStartService()
        service.startService()
        block, drop = service.sockets
        for relay in (block, drop):
            for data in (b"1" * 60, b"", b"2" * 60, b"3" * 60):
                self.sender.sendto(data, relay.settings.path)
            relay.doRead()
        books = service.books()
        self.assertEqual(block.books(), {
            "socket": block.name, "read": 4, "handed": 1, "held": 2,
            "dropped": 0, "empty": 1, "balanced": True})
        self.assertEqual(drop.books(), {
            "socket": drop.name, "read": 4, "handed": 1, "held": 0,
            "dropped": 2, "empty": 1, "balanced": True})
        self.assertEqual(
            {key: books[key] for key in ("read", "handed", "held",
                                         "dropped", "empty", "balanced")},
            {"read": 8, "handed": 2, "held": 2, "dropped": 2, "empty": 2,
             "balanced": True})
        # No host syslog: both handed-on datagrams wait in the sink.
        self.assertEqual(books["queued"], 2)
        with capturedLogs() as events:
            service.stopService()
        texts = [formatEvent(e) for e in events]
        # Stopping hands what was held to the sink's queue.
        self.assertIn("books of 2 sockets: 8 read = 4 handed to the host "
                      "syslog + 0 held + 2 dropped + 2 empty (balanced); 4 "
                      "of those handed on still queued", " ".join(texts))

    def test_overControlChannel(self):
        """
        The control channel answers L{RelayBooks} with the same books, to
        root and event readers only.
        """
        from twisted.test.iosim import connectedServerAndClient

        from jailtwist.control import (ControlClient, ControlFactory,
                                       EventStream, IRelayBooks,
                                       NotAuthorized, PeerCredentials,
                                       RelayBooks)
        settings = [SocketSettings(self.dir.child("a").path)]
        service = RelayService(settings, self.reactor,
                               syslogPath=self.dir.child("none").path,
                               confine=False)
        verifyObject(IRelayBooks, service)
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)
        self.sender.sendto(b"<13>hello", settings[0].path)
        service.sockets[0].doRead()
        for peer, expected in ((PeerCredentials(1, 0, 0), None),
                               (PeerCredentials(1, 1000, 1000),
                                NotAuthorized)):
            factory = ControlFactory(EventStream(self.reactor),
                                     relays=service,
                                     credentialsOf=lambda t, peer=peer: peer)
            client, server, pump = connectedServerAndClient(
                lambda: factory.buildProtocol(None), ControlClient)
            outcome = []
            client.callRemote(RelayBooks).addBoth(outcome.append)
            pump.flush()
            if expected is None:
                answer = outcome[0]
                self.assertEqual((answer["read"], answer["handed"],
                                  answer["balanced"]), (1, 1, True))
                self.assertEqual(answer["sockets"][0]["socket"],
                                 settings[0].path)
            else:
                self.assertTrue(outcome[0].check(expected), outcome[0])


class DirectPathTests(SynchronousTestCase):
    """
    With a real syslog socket the relay sends whole batches with one
    sendmmsg; when the syslog's queue fills mid-batch the rest goes to the
    sink's queue, in order, and nothing is lost.
    """

    def setUp(self):
        self.dir = shortTempDir(self)
        self.reactor = MemoryReactorClock()
        self.receiver = Receiver(self.dir.child("syslog").path)
        self.addCleanup(self.receiver.close)
        self.sink = SyslogSink(self.dir.child("syslog").path, self.reactor)
        # Do not wait for room in the syslog's queue (the test is the one
        # draining it).
        self.sink.sendWait = 1
        self.sink.connect()
        self.addCleanup(self.sink.close)
        self.sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(self.sender.close)
        settings = SocketSettings(self.dir.child("log").path, 10 ** 6,
                                  10 ** 6, 1.0)
        self.relay = RelaySocket(settings, self.sink, self.reactor)
        self.relay.privilegedStartService()
        self.relay.startService()
        self.addCleanup(self.relay.stopService)

    def drain(self):
        return self.receiver.drain()

    def test_wholeBatch(self):
        sent = [b"<13>m%02d" % i + b"." * i for i in range(8)]
        for data in sent:
            self.sender.sendto(data, self.relay.settings.path)
        self.relay.doRead()
        self.assertEqual(self.drain(), sent)
        self.assertEqual(self.relay.books()["handed"], 8)

    def test_syslogQueueFull(self):
        """
        More than the syslog's queue holds: the rest waits in the sink and
        arrives, in order, once the syslog reads.
        """
        sent = []
        for rounds in range(3):
            for i in range(10):
                data = b"<13>r%d-%02d" % (rounds, i)
                sent.append(data)
                self.sender.sendto(data, self.relay.settings.path)
            self.relay.doRead()
        self.assertGreater(self.sink.queued, 0)
        got = self.drain()
        while self.sink.queued:
            self.sink.doWrite()
            got += self.drain()
        self.assertEqual(got, sent)
        self.assertTrue(self.relay.books()["balanced"])


class MarkTests(SynchronousTestCase):
    def test_forms(self):
        self.assertEqual(markMessage(b"<13>Nov  3 08:00:00 tag: x", "j"),
                         b"<13>Nov  3 08:00:00 j/tag: x")
        self.assertEqual(markMessage(b"<13>1 2026-11-23T08:00:00Z h app "
                                     b"1 - - x", "j"),
                         b"<13>1 2026-11-23T08:00:00Z h j/app 1 - - x")
        self.assertEqual(markMessage(b"<13>tag: x", "j"), b"<13>j/tag: x")
        self.assertEqual(markMessage(b"plain", "j"), b"j/plain")
