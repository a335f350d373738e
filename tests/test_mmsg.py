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
        self.assertEqual(got, [(3, False), (0, False), (5, False),
                               (16, True)])
        self.assertEqual(bytes(self.batch.data(3, 16)), b"0123456789abcdef")
        self.batch.queue(2, 5)
        self.batch.queue(0, 3)
        self.assertEqual(self.batch.send(self.c.fileno()), 2)
        self.assertEqual([self.d.recv(64), self.d.recv(64)],
                         [b"three", b"one"])
        self.assertEqual(self.batch.receive(self.b.fileno()), [(1, False)])
        self.assertEqual(self.batch.receive(self.b.fileno()), [])

    def test_sendNothing(self):
        self.assertEqual(self.batch.send(self.c.fileno()), 0)

    def test_badDescriptor(self):
        self.assertRaises(OSError, self.batch.receive, -1)
