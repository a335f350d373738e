# -*- test-case-name: tests.test_syslogsink -*-
"""
The host syslog as seen by a relay: a connected unix datagram socket that
reconnects by itself when the syslog daemon replaces its socket, and holds
what it cannot deliver yet in a bounded queue.

When the queue is full, L{SyslogSink.send} refuses; the caller keeps its
datagram and waits with L{SyslogSink.whenRoom}, which is how a blocking
sender inside a jail gets slowed down instead of losing messages.
"""

import collections
import errno
import os
import socket
import struct
import time

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import Attribute, Interface, implementer

# The peer went away or its socket file was replaced: connect again.
_RECONNECT = {errno.ECONNREFUSED, errno.ENOENT, errno.ENOTCONN, errno.EPIPE,
              errno.ECONNRESET, errno.EDESTADDRREQ}
# The peer is alive but its queue is full: wait until it is writable.
_BUSY = {errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS}


class IMessageSink(Interface):
    """
    Somewhere relayed datagrams go.
    """

    queued = Attribute("Datagrams accepted but not delivered yet.")

    def send(data):
        """
        Deliver or queue C{data}.

        @return: C{False} if the queue is full and C{data} was not taken.
        """

    def whenRoom(callback):
        """
        Call C{callback()} once the queue has room again.
        """

    def directFd():
        """
        @return: the connected socket's descriptor, for a caller that sends
            a batch straight to it (and hands what it could not send to
            L{send}, in order); or C{None} while messages are queued.
        """


@implementer(IMessageSink)
class SyslogSink:
    """
    A reconnecting client of the host syslog's unix datagram socket.

    @ivar path: the socket's path; it is given relative to the working
        directory once the process has been confined (see L{relocate}).
    """

    log = Logger()
    minDelay = 0.05
    maxDelay = 5.0
    # Microseconds a send may block waiting for room in the daemon's queue.
    sendWait = 20000

    def __init__(self, path, reactor, maxQueued=1024, maxBytes=1 << 20):
        self.path = path
        self._reactor = reactor
        self._clock = IReactorTime(reactor)
        self.maxQueued = maxQueued
        self.maxBytes = maxBytes
        self._queue = collections.deque()
        self._queuedBytes = 0
        self._waiters = collections.deque()
        self._socket = None
        self._writing = False
        self._retry = None
        self._delay = self.minDelay
        self._downSince = None
        self.delivered = 0
        self.refused = 0
        self.reconnects = 0

    @property
    def queued(self):
        return len(self._queue)

    def relocate(self, path):
        """
        Use C{path} from now on (after a chroot the old path is gone).
        """
        self.path = path

    # The reactor's view of us, while we wait for the socket to drain.
    def fileno(self):
        return self._socket.fileno() if self._socket is not None else -1

    def logPrefix(self):
        return "SyslogSink"

    def connectionLost(self, reason):
        self._writing = False

    def doWrite(self):
        self._stopWriting()
        self._flush()

    def connect(self):
        """
        Connect now.

        @raise OSError: if the syslog socket cannot be reached.
        """
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            # A send may wait this long for the syslog daemon to drain its
            # (10-datagram) queue, as jailkit's blocking send does; only a
            # daemon slower than that makes messages queue here.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                            struct.pack("ll", 0, self.sendWait))
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        self._closeSocket()
        self._socket = sock
        self._delay = self.minDelay

    def close(self):
        """
        Stop reconnecting and close the socket; queued datagrams stay queued.
        """
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        self._closeSocket()

    def send(self, data):
        if not self._queue and self._socket is not None:
            try:
                self._socket.send(data)
                self.delivered += 1
                return True
            except OSError as e:
                if e.errno not in _BUSY and e.errno not in _RECONNECT:
                    return self._undeliverable(data, e)
                self._enqueue(data)
                self._trouble(e)
                return True
        if (len(self._queue) >= self.maxQueued
                or self._queuedBytes + len(data) > self.maxBytes):
            return False
        self._enqueue(data)
        if self._socket is None and self._retry is None:
            self._scheduleReconnect(0)
        return True

    def whenRoom(self, callback):
        self._waiters.append(callback)

    def directFd(self):
        if self._queue or self._socket is None:
            return None
        return self._socket.fileno()

    def _undeliverable(self, data, error):
        # Only EMSGSIZE and friends end here: the syslog daemon can never
        # take this datagram, and holding it would stall the jail forever.
        self.refused += 1
        self.log.error(
            "host syslog {path} refused a {size}-byte message: {error}",
            path=self.path, size=len(data), error=os.strerror(error.errno))
        return True

    def _enqueue(self, data):
        data = bytes(data)
        self._queue.append(data)
        self._queuedBytes += len(data)

    def _trouble(self, error):
        if error.errno in _BUSY:
            self._startWriting()
            return
        if self._downSince is None:
            self._downSince = self._clock.seconds()
            self.log.warn(
                "host syslog {path} went away ({error}); holding messages "
                "and reconnecting", path=self.path,
                error=os.strerror(error.errno))
        self._closeSocket()
        self._scheduleReconnect(0)

    def _flush(self):
        while self._queue:
            data = self._queue[0]
            try:
                self._socket.send(data)
            except OSError as e:
                if e.errno in _BUSY or e.errno in _RECONNECT:
                    self._trouble(e)
                    return
                self._undeliverable(data, e)
            else:
                self.delivered += 1
            self._queue.popleft()
            self._queuedBytes -= len(data)
        self._wakeWaiters()

    def _wakeWaiters(self):
        while self._waiters and self.queued < self.maxQueued:
            self._waiters.popleft()()

    def _scheduleReconnect(self, delay):
        if self._retry is None or not self._retry.active():
            self._retry = self._clock.callLater(delay, self._reconnect)

    def _reconnect(self):
        self._retry = None
        try:
            self.connect()
        except OSError as e:
            if self._downSince is None:
                self._downSince = self._clock.seconds()
                self.log.warn(
                    "cannot reach host syslog {path}: {error}; holding "
                    "messages and retrying", path=self.path,
                    error=os.strerror(e.errno))
            delay, self._delay = self._delay, min(self._delay * 2,
                                                  self.maxDelay)
            self._scheduleReconnect(delay)
            return
        self.reconnects += 1
        if self._downSince is not None:
            self.log.info(
                "host syslog {path} is back after {seconds:.1f}s; "
                "sending {count} held messages", path=self.path,
                seconds=self._clock.seconds() - self._downSince,
                count=len(self._queue))
            self._downSince = None
        self._flush()

    def _startWriting(self):
        if not self._writing and self._socket is not None:
            self._writing = True
            self._reactor.addWriter(self)

    def _stopWriting(self):
        if self._writing:
            self._writing = False
            self._reactor.removeWriter(self)

    def _closeSocket(self):
        self._stopWriting()
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def formatSyslog(text, facility=3, severity=6, tag="jk_socketd",
                 pid=None, now=None):
    """
    A local (RFC 3164) syslog datagram, as glibc's C{syslog()} writes it.

    @param facility: the facility number (3 is daemon).
    """
    stamp = time.strftime("%b %d %H:%M:%S", time.localtime(now))
    if pid is None:
        pid = os.getpid()
    line = f"<{facility * 8 + severity}>{stamp} {tag}[{pid}]: {text}"
    return line.encode("utf-8", "replace")
