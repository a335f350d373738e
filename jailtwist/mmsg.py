# -*- test-case-name: tests.test_mmsg -*-
"""
Batched datagram I/O: C{recvmmsg(2)} and C{sendmmsg(2)} through ctypes, so
a relay moves a whole kernel queue of datagrams with two system calls and
no per-datagram Python objects.

Python 3.11 has neither call.  The buffers live in one anonymous mapping,
so slots that are never used never become resident memory.
"""

import ctypes
import mmap
import os
import socket

_libc = ctypes.CDLL(None, use_errno=True)


class _IOVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("length", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint),
                ("iov", ctypes.POINTER(_IOVec)), ("iovlen", ctypes.c_size_t),
                ("control", ctypes.c_void_p),
                ("controllen", ctypes.c_size_t), ("flags", ctypes.c_int)]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("hdr", _MsgHdr), ("length", ctypes.c_uint)]


_recvmmsg = _libc.recvmmsg
_recvmmsg.argtypes = [ctypes.c_int, ctypes.POINTER(_MMsgHdr), ctypes.c_uint,
                      ctypes.c_int, ctypes.c_void_p]
_recvmmsg.restype = ctypes.c_int
_sendmmsg = _libc.sendmmsg
_sendmmsg.argtypes = [ctypes.c_int, ctypes.POINTER(_MMsgHdr), ctypes.c_uint,
                      ctypes.c_int]
_sendmmsg.restype = ctypes.c_int

MSG_TRUNC = socket.MSG_TRUNC


class DatagramBatch:
    """
    C{slots} receive buffers of C{size} bytes each, and a send list that
    points into them.

    @ivar view: a memoryview of all slots; slot I{i} starts at I{i * size}.
    """

    def __init__(self, slots=16, size=64 * 1024):
        self.slots = slots
        self.size = size
        self._memory = mmap.mmap(-1, slots * size)
        self.view = memoryview(self._memory)
        base = ctypes.addressof(ctypes.c_char.from_buffer(self._memory))
        self._base = base
        self._recvIov = (_IOVec * slots)()
        self._recvHdr = (_MMsgHdr * slots)()
        self._sendIov = (_IOVec * slots)()
        self._sendHdr = (_MMsgHdr * slots)()
        for i in range(slots):
            self._recvIov[i].base = base + i * size
            self._recvIov[i].length = size
            self._recvHdr[i].hdr.iov = ctypes.pointer(self._recvIov[i])
            self._recvHdr[i].hdr.iovlen = 1
            self._sendHdr[i].hdr.iov = ctypes.pointer(self._sendIov[i])
            self._sendHdr[i].hdr.iovlen = 1
        self._queued = 0

    def receive(self, fd):
        """
        Read up to C{slots} datagrams without waiting.

        @return: a list of C{(length, truncated)}, empty if none was queued.
        @raise OSError: for errors other than "nothing to read".
        """
        for hdr in self._recvHdr:
            hdr.hdr.flags = 0
        count = _recvmmsg(fd, self._recvHdr, self.slots, socket.MSG_DONTWAIT,
                          None)
        if count < 0:
            error = ctypes.get_errno()
            if error in (11, 4):  # EAGAIN, EINTR
                return []
            raise OSError(error, os.strerror(error))
        headers = self._recvHdr
        return [(headers[i].length, bool(headers[i].hdr.flags & MSG_TRUNC))
                for i in range(count)]

    def data(self, slot, length):
        """
        @return: a memoryview of the first C{length} bytes of C{slot}.
        """
        start = slot * self.size
        return self.view[start:start + length]

    def queue(self, slot, length):
        """
        Add C{length} bytes of C{slot} to the next L{send}.
        """
        iov = self._sendIov[self._queued]
        iov.base = self._base + slot * self.size
        iov.length = length
        self._queued += 1

    def send(self, fd):
        """
        Send what L{queue} collected, in order, on a connected socket.

        @return: how many were sent; the rest (if any) were not.
        """
        queued, self._queued = self._queued, 0
        if not queued:
            return 0
        count = _sendmmsg(fd, self._sendHdr, queued, 0)
        if count < 0:
            return 0
        return count
