"""
Tests for L{jailtwist.syslogsink}: delivery, holding and reconnecting,
with real unix sockets and a fake reactor clock.
"""

import os
import socket

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from jailtwist.syslogsink import IMessageSink, SyslogSink, formatSyslog
from tests.harness import shortTempDir


class Receiver:
    """
    A stand-in host syslog socket.
    """

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setblocking(False)

    def drain(self):
        got = []
        while True:
            try:
                got.append(self.sock.recv(1 << 20))
            except BlockingIOError:
                return got

    def close(self):
        self.sock.close()
        if os.path.exists(self.path):
            os.unlink(self.path)


class SyslogSinkTests(SynchronousTestCase):
    def setUp(self):
        self.path = shortTempDir(self).child("log").path
        self.receiver = Receiver(self.path)
        self.addCleanup(lambda: self.receiver.close())
        self.reactor = MemoryReactorClock()
        self.sink = SyslogSink(self.path, self.reactor, maxQueued=5)
        self.addCleanup(self.sink.close)
        self.sink.connect()

    def test_interface(self):
        verifyObject(IMessageSink, self.sink)

    def test_delivers(self):
        self.assertTrue(self.sink.send(b"<13>hello"))
        self.assertEqual(self.receiver.drain(), [b"<13>hello"])

    def test_syslogRestart(self):
        """
        When the syslog daemon replaces its socket, messages are held and
        delivered in order after reconnecting by itself.
        """
        self.receiver.close()
        for i in range(3):
            self.assertTrue(self.sink.send(b"m%d" % i))
        self.assertEqual(self.sink.queued, 3)
        self.reactor.advance(0)
        self.assertEqual(self.sink.queued, 3)
        self.receiver = Receiver(self.path)
        self.reactor.advance(self.sink.maxDelay)
        self.assertEqual(self.receiver.drain(), [b"m0", b"m1", b"m2"])
        self.assertEqual(self.sink.queued, 0)
        self.assertTrue(self.sink.send(b"after"))
        self.assertEqual(self.receiver.drain(), [b"after"])

    def test_boundedQueue(self):
        """
        A full queue refuses; waiters are called once it drains.
        """
        self.receiver.close()
        for i in range(5):
            self.assertTrue(self.sink.send(b"x"))
        self.assertFalse(self.sink.send(b"too many"))
        woken = []
        self.sink.whenRoom(lambda: woken.append(True))
        self.receiver = Receiver(self.path)
        self.reactor.advance(self.sink.maxDelay)
        self.assertEqual(woken, [True])
        self.assertEqual(len(self.receiver.drain()), 5)

    def test_busyReceiver(self):
        """
        When the receiver's queue is full, the sink waits for the socket to
        become writable instead of spinning or dropping.
        """
        sent = 0
        while not self.sink.queued:
            self.sink.send(b"fill %d" % sent)
            sent += 1
        self.assertIn(self.sink, self.reactor.writers)
        got = self.receiver.drain()
        self.sink.doWrite()
        got += self.receiver.drain()
        self.assertEqual(got, [b"fill %d" % i for i in range(sent)])
        self.assertNotIn(self.sink, self.reactor.writers)


class FormatTests(SynchronousTestCase):
    def test_format(self):
        line = formatSyslog("started", tag="jk_socketd", pid=42, now=0)
        self.assertTrue(line.startswith(b"<30>"))
        self.assertTrue(line.endswith(b" jk_socketd[42]: started"))
