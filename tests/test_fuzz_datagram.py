"""
Property tests (hypothesis) for the datagram path of the jk_socketd relay:
empty, large, NUL-filled and non-UTF-8 datagrams, with and without a
C{mark}, through real unix sockets.  Every datagram read is relayed
byte for byte (marked if asked) in order, or counted (empty, dropped);
nothing raises.
"""

import os
import socket

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from jailtwist.mmsg import DatagramBatch
from jailtwist.relay import RelaySocket, SocketSettings, markMessage
from jailtwist.syslogsink import SyslogSink
from tests.harness import shortTempDir
from tests.test_relay import FakeSink
from tests.test_syslogsink import Receiver

FUZZ = settings(
    max_examples=int(os.environ.get("JAILTWIST_FUZZ_EXAMPLES", 60)),
    deadline=None, suppress_health_check=[
        HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

DATAGRAMS = st.one_of(
    st.just(b""),
    st.binary(max_size=300),
    st.integers(1, 3000).map(lambda n: b"\0" * n),
    st.binary(min_size=1, max_size=60).map(lambda b: b"\xff\xfe" + b),
    st.tuples(st.integers(0, 191), st.text(max_size=40)).map(
        lambda t: b"<%d>Nov 23 08:00:00 tag[1]: " % t[0] + t[1].encode()),
    st.tuples(st.integers(0, 191), st.binary(max_size=30)).map(
        lambda t: b"<%d>1 2026-11-23T08:00:00Z host app 1 - - " % t[0]
        + t[1]),
    st.integers(10000, 150000).map(lambda n: b"<13>big: " + b"B" * n),
)
# Datagrams a throttled socket leaves unread must fit the sender's buffer.
SMALL = DATAGRAMS.filter(lambda d: len(d) <= 3000)
MARKS = st.sampled_from([None, "web1", "a", "j.x@y+z-0_"])


class DatagramPathTests(SynchronousTestCase):
    def setUp(self):
        self.dir = shortTempDir(self)
        self.count = 0

    def relay(self, sink, reactor, mark, overflow="block", base=10 ** 9,
              batch=None):
        self.count += 1
        settings = SocketSettings(self.dir.child(f"s{self.count}").path,
                                  base, base, 1.0, overflow, mark)
        relay = RelaySocket(settings, sink, reactor, batch)
        relay.privilegedStartService()
        relay.startService()
        return relay

    def pushAll(self, relay, datagrams, receive=None):
        """
        Send C{datagrams} in bursts the kernel queue holds, letting the
        relay read after each burst.

        @return: what C{receive()} collected meanwhile.
        """
        got = []
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
            # A relay that stopped reading fails the test, not hangs it.
            sender.settimeout(10)
            sender.connect(relay.settings.path)
            bursts, burst, size = [], [], 0
            for data in datagrams:
                burst.append(data)
                size += len(data)
                # Unread datagrams count against the queue (10) and the
                # sender's buffer: a unix socket may send only while less
                # than a quarter of it (52 KiB) is unread.
                if len(burst) == 8 or size > 30000:
                    bursts.append(burst)
                    burst, size = [], 0
            bursts.append(burst)
            for burst in bursts:
                for data in burst:
                    sender.send(data)
                while relay._reading and relay._readBatch():
                    pass
                if receive is not None:
                    got += receive()
                    while relay._reading and relay._readBatch():
                        got += receive()
        return got

    def expected(self, datagrams, mark):
        return [markMessage(d, mark) if mark else d for d in datagrams if d]

    @FUZZ
    @given(st.lists(DATAGRAMS, max_size=25), MARKS)
    def test_directPath(self, datagrams, mark):
        """
        Through a real syslog socket (batches go out with sendmmsg): all
        arrive, in order, byte for byte.
        """
        reactor = MemoryReactorClock()
        path = self.dir.child(f"syslog{self.count}").path
        receiver = Receiver(path)
        sink = SyslogSink(path, reactor)
        sink.connect()
        relay = self.relay(sink, reactor, mark)
        def receive():
            # The test is the host syslog's reader and the reactor
            # telling the sink its socket is writable again.
            got = receiver.drain()
            while sink.queued:
                sink.doWrite()
                got += receiver.drain()
            return got
        try:
            got = self.pushAll(relay, datagrams, receive)
            self.assertEqual(got, self.expected(datagrams, mark))
            books = relay.books()
            self.assertTrue(books["balanced"], books)
            self.assertEqual(books["read"], len(datagrams))
            self.assertEqual(books["empty"], datagrams.count(b""))
        finally:
            relay.stopService()
            sink.close()
            receiver.close()

    @FUZZ
    @given(st.lists(SMALL, max_size=25), MARKS,
           st.sampled_from(["block", "drop"]), st.integers(0, 10))
    def test_overBudget(self, datagrams, mark, overflow, room):
        """
        With a limit that binds, and a host syslog that takes only C{room}
        datagrams before it fills, C{block} relays everything in order over
        the windows that follow; C{drop} relays a part, in order, and
        counts the rest.
        """
        reactor = MemoryReactorClock()
        sink = FakeSink(room)
        relay = self.relay(sink, reactor, mark, overflow, base=400)
        try:
            with capturedLogs():
                self.pushAll(relay, datagrams[:8])
                sink.makeRoom(10 ** 6)
                for _ in range(200):
                    if not relay.books()["held"]:
                        break
                    reactor.advance(1.0)
            expected = self.expected(datagrams[:8], mark)
            books = relay.books()
            self.assertTrue(books["balanced"], books)
            if overflow == "block":
                self.assertEqual(sink.sent, expected)
            else:
                self.assertEqual(books["dropped"],
                                 len(expected) - len(sink.sent))
                remaining = iter(expected)
                self.assertTrue(all(any(s == e for e in remaining)
                                    for s in sink.sent))
        finally:
            relay.stopService()

    @FUZZ
    @given(st.lists(st.binary(max_size=2000), min_size=1, max_size=8),
           MARKS)
    def test_cut(self, datagrams, mark):
        """
        A datagram longer than a slot is relayed cut to the slot, counted,
        and logged in one line (the real slots hold 256 KiB, more than a
        sender's default socket buffer lets it send).
        """
        reactor = MemoryReactorClock()
        sink = FakeSink()
        relay = self.relay(sink, reactor, mark, batch=DatagramBatch(4, 512))
        try:
            with capturedLogs() as events:
                self.pushAll(relay, datagrams)
            cut = [d[:512] for d in datagrams]
            self.assertEqual(sink.sent, self.expected(cut, mark))
            long = sum(len(d) > 512 for d in datagrams)
            self.assertEqual(relay.truncated, long)
            warnings = [e for e in events if "was cut" in e["log_format"]]
            self.assertEqual(len(warnings), long)
            self.assertTrue(relay.books()["balanced"])
        finally:
            relay.stopService()


class MarkTests(SynchronousTestCase):
    @FUZZ
    @given(st.binary(max_size=300), MARKS.filter(lambda m: m is not None))
    def test_insertsOnlyThePrefix(self, data, mark):
        """
        The prefix is inserted once; nothing else changes.
        """
        marked = markMessage(data, mark)
        prefix = mark.encode() + b"/"
        self.assertEqual(len(marked), len(data) + len(prefix))
        self.assertTrue(any(marked == data[:i] + prefix + data[i:]
                            for i in range(len(data) + 1)))
