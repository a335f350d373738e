"""
Tests for L{jailtwist.mmsg}: batched datagram I/O on real sockets.
"""

import socket

from twisted.trial.unittest import SynchronousTestCase

from jailtwist.mmsg import DatagramBatch


class DatagramBatchTests(SynchronousTestCase):
    def setUp(self):
        self.a, self.b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.c, self.d = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        for s in (self.a, self.b, self.c, self.d):
            self.addCleanup(s.close)
        self.batch = DatagramBatch(4, 16)

    def test_receiveAndSend(self):
        for data in (b"one", b"", b"three", b"0123456789abcdefTRUNC", b"5"):
            self.a.send(data)
        got = self.batch.receive(self.b.fileno())
        # A cut datagram reports its real length.
        self.assertEqual(got, [3, 0, 5, 21])
        self.assertEqual(bytes(self.batch.data(3, 21)), b"0123456789abcdef")
        self.batch.queue(2, 5)
        self.batch.queue(0, 3)
        self.assertEqual(self.batch.send(self.c.fileno()), 2)
        self.assertEqual([self.d.recv(64), self.d.recv(64)],
                         [b"three", b"one"])
        self.assertEqual(self.batch.receive(self.b.fileno()), [1])
        self.assertEqual(self.batch.receive(self.b.fileno()), [])

    def test_sendAll(self):
        """
        A whole batch goes out as it came in, lengths and order kept, also
        after L{DatagramBatch.queue} moved the send list and with slots
        that held longer datagrams before.
        """
        for data in (b"a" * 16, b"b" * 9, b"c"):
            self.a.send(data)
        self.assertEqual(self.batch.receive(self.b.fileno()), [16, 9, 1])
        self.batch.queue(1, 9)
        self.assertEqual(self.batch.send(self.c.fileno()), 1)
        self.assertEqual(self.d.recv(64), b"b" * 9)
        for data in (b"xy", b"z", b"0123"):
            self.a.send(data)
        self.assertEqual(self.batch.receive(self.b.fileno()), [2, 1, 4])
        self.assertEqual(self.batch.sendAll(self.c.fileno(), 3), 3)
        self.assertEqual([self.d.recv(64) for _ in range(3)],
                         [b"xy", b"z", b"0123"])

    def test_sendAllRefused(self):
        """
        A peer that is gone: nothing sent, and no exception.
        """
        self.a.send(b"x")
        self.batch.receive(self.b.fileno())
        self.d.close()
        self.assertEqual(self.batch.sendAll(self.c.fileno(), 1), 0)

    def test_sendNothing(self):
        self.assertEqual(self.batch.send(self.c.fileno()), 0)

    def test_badDescriptor(self):
        self.assertRaises(OSError, self.batch.receive, -1)
