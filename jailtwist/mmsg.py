# -*- test-case-name: tests.test_mmsg -*-
"""
Batched datagram I/O: C{recvmmsg(2)} and C{sendmmsg(2)} through ctypes, so
a relay moves a whole kernel queue of datagrams with two system calls and
no per-datagram Python objects.

Python 3.11 has neither call.  The buffers live in one anonymous mapping,
so slots that are never used never become resident memory.  Everything a
call needs is set up once: a receive reuses its headers as they are (the
kernel rewrites what it fills in), lengths are read through one strided
memoryview, and forwarding a whole batch copies them into the send list
with one slice assignment.
"""

import ctypes
import mmap
import os
import socket
import sys

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


# Arrays are passed by address: ctypes converts a plain int for a c_void_p
# argument far faster than it checks a POINTER argument.
_recvmmsg = _libc.recvmmsg
_recvmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint,
                      ctypes.c_int, ctypes.c_void_p]
_recvmmsg.restype = ctypes.c_int
_sendmmsg = _libc.sendmmsg
_sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint,
                      ctypes.c_int]
_sendmmsg.restype = ctypes.c_int

# With MSG_TRUNC a datagram socket reports a datagram's real length, so a
# length above the slot size means it was cut: no flags to read or reset.
_RECV_FLAGS = int(socket.MSG_DONTWAIT | socket.MSG_TRUNC)
_AGAIN = (11, 4)  # EAGAIN, EINTR
# msg_len is the 15th 32-bit word of a 64-byte mmsghdr; iov_len the 3rd of
# a 16-byte iovec (its low half on a little-endian machine).
_LENGTH_WORD = _MMsgHdr.length.offset // 4
_HDR_WORDS = ctypes.sizeof(_MMsgHdr) // 4
_IOV_WORDS = ctypes.sizeof(_IOVec) // 4
_IOV_LENGTH_WORD = _IOVec.length.offset // 4
_LITTLE = sys.byteorder == "little"


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
            # Send slot i points at receive slot i until queue() moves it.
            self._sendIov[i].base = base + i * size
            self._sendHdr[i].hdr.iov = ctypes.pointer(self._sendIov[i])
            self._sendHdr[i].hdr.iovlen = 1
        self._recvAddress = ctypes.addressof(self._recvHdr)
        self._sendAddress = ctypes.addressof(self._sendHdr)
        self._lengths = memoryview(self._recvHdr).cast("B").cast("I")[
            _LENGTH_WORD::_HDR_WORDS]
        self._sendLengths = memoryview(self._sendIov).cast("B").cast("I")[
            _IOV_LENGTH_WORD::_IOV_WORDS]
        self._queued = 0
        self._moved = False

    def receive(self, fd):
        """
        Read up to C{slots} datagrams without waiting.

        @return: a list of their lengths, empty if none was queued.  A
            length above C{size} is the real length of a datagram that was
            cut to C{size} bytes.
        @raise OSError: for errors other than "nothing to read".
        """
        count = _recvmmsg(fd, self._recvAddress, self.slots, _RECV_FLAGS,
                          None)
        if count > 0:
            return self._lengths[:count].tolist()
        if count == 0:
            return []
        error = ctypes.get_errno()
        if error in _AGAIN:
            return []
        raise OSError(error, os.strerror(error))

    def data(self, slot, length):
        """
        @return: a memoryview of the first C{length} bytes of C{slot} (at
            most C{size}).
        """
        start = slot * self.size
        return self.view[start:start + min(length, self.size)]

    def sendAll(self, fd, count):
        """
        Send slots 0 to C{count - 1} as they were received, in order, on a
        connected socket (none of them may have been cut).

        @return: how many were sent; the rest (if any) were not.
        """
        if self._moved:
            self._restore()
        if _LITTLE:
            self._sendLengths[:count] = self._lengths[:count]
        else:
            for i in range(count):
                self._sendIov[i].length = self._recvHdr[i].length
        count = _sendmmsg(fd, self._sendAddress, count, 0)
        return count if count > 0 else 0

    def queue(self, slot, length):
        """
        Add C{length} bytes of C{slot} to the next L{send}.
        """
        iov = self._sendIov[self._queued]
        iov.base = self._base + slot * self.size
        iov.length = min(length, self.size)
        self._queued += 1
        self._moved = True

    def send(self, fd):
        """
        Send what L{queue} collected, in order, on a connected socket.

        @return: how many were sent; the rest (if any) were not.
        """
        queued, self._queued = self._queued, 0
        if not queued:
            return 0
        count = _sendmmsg(fd, self._sendAddress, queued, 0)
        return count if count > 0 else 0

    def _restore(self):
        base, size = self._base, self.size
        for i in range(self.slots):
            self._sendIov[i].base = base + i * size
        self._moved = False
