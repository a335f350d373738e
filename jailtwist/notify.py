# -*- test-case-name: tests.test_notify -*-
"""
Readiness for a service manager: systemd's C{sd_notify} protocol (one
datagram of C{KEY=VALUE} lines to the unix socket C{$NOTIFY_SOCKET}),
written here rather than taken from a library (it is a few lines, and the
libraries either need libsystemd or are no longer kept).

L{ServiceNotifier} takes C{NOTIFY_SOCKET} out of the process environment
when it is made, so that no child (an skd handler, a probe's command, a
login program) can talk to the service manager as this daemon, and connects
its socket at once: a daemon that later changes root or user (jk_socketd's
relay, skd C{-U}) can still reach it.

L{ReadinessService} is added last to a daemon's C{MultiService}: its
C{startService} runs after every other service's, and it sends C{READY=1}
only once every listening port of its siblings is really listening (an
endpoint's C{listen()} is a L{Deferred}); C{STOPPING=1} when the daemon
stops.  Without C{NOTIFY_SOCKET} both are no-ops.
"""

import os
import socket

from twisted.application import service
from twisted.logger import Logger

#: Variables a service manager sets for the daemon itself; none of them may
#: reach a child.
MANAGER_VARIABLES = frozenset(
    ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"])


def notifyAddress(value):
    """
    The socket address of a C{NOTIFY_SOCKET} value.

    @param value: an absolute path, or C{@name} for the abstract namespace.
    @return: a C{str} path or C{bytes} abstract address for C{connect}, or
        L{None} for a value that is neither (systemd's C{vsock:} addresses
        are for virtual machines and not supported here).
    """
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return b"\0" + os.fsencode(value[1:])
    return None


class ServiceNotifier:
    """
    The service manager's notification socket, or nothing.

    @ivar address: what C{NOTIFY_SOCKET} named, or L{None}.
    """

    log = Logger()

    def __init__(self, environ=None, getpid=os.getpid):
        """
        @param environ: the environment to take C{NOTIFY_SOCKET} (and the
            watchdog variables) out of; C{os.environ} by default.
        """
        if environ is None:
            environ = os.environ
        value = environ.get("NOTIFY_SOCKET")
        for name in MANAGER_VARIABLES:
            environ.pop(name, None)
        self._getpid = getpid
        self._startPid = getpid()
        self.address = value
        self._socket = None
        if not value:
            return
        address = notifyAddress(value)
        if address is None:
            self.log.warn("NOTIFY_SOCKET={value!r} is not a unix socket "
                          "path or @abstract name: not notifying",
                          value=value)
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM
                             | socket.SOCK_CLOEXEC)
        try:
            sock.connect(address)
        except OSError as e:
            sock.close()
            self.log.warn("cannot reach the service manager at "
                          "NOTIFY_SOCKET={value}: {error}", value=value,
                          error=e.strerror)
            return
        self._socket = sock

    @property
    def enabled(self):
        return self._socket is not None

    def notify(self, **fields):
        """
        Send one notification, such as C{notify(READY=1, STATUS="...")}.
        A daemon that forked after the notifier was made (C{twistd} without
        C{-n}) also names its new pid as C{MAINPID}.

        @return: whether it was sent.
        """
        if self._socket is None:
            return False
        if self._getpid() != self._startPid and "MAINPID" not in fields:
            fields["MAINPID"] = self._getpid()
        message = "".join(f"{key}={value}\n" for key, value in fields.items()
                          if "\n" not in str(value))
        try:
            self._socket.send(message.encode("utf-8", "replace"))
        except OSError as e:
            self.log.warn("cannot notify the service manager: {error}",
                          error=e.strerror)
            return False
        return True

    def close(self):
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def listeningPorts(parent):
    """
    The endpoint services under C{parent}, depth first.
    """
    from twisted.application.internet import StreamServerEndpointService
    for each in parent:
        if isinstance(each, StreamServerEndpointService):
            yield each
        elif isinstance(each, service.MultiService):
            yield from listeningPorts(each)


def whenListening(endpointService):
    """
    A L{Deferred} that fires with the service's listening port, or with
    L{None} when it could not listen (the service logged why), without
    changing the result its own C{stopService} waits for.
    """
    from twisted.internet import defer
    from twisted.python.failure import Failure
    # Twisted documents this attribute (C{@ivar}) but offers no public way.
    waiting = getattr(endpointService, "_waitingForPort", None)
    if waiting is None:
        return defer.succeed(None)
    result = defer.Deferred()

    def passOn(port):
        result.callback(None if isinstance(port, Failure) else port)
        return port
    waiting.addBoth(passOn)
    return result


class ReadinessService(service.Service):
    """
    Tell the service manager when the daemon is ready and when it stops.
    Add it to the daemon's top C{MultiService} after everything else.

    @ivar ready: a L{Deferred} that fires with C{True} once C{READY=1} was
        due (sent, or no manager to send it to), C{False} when a port could
        not listen (and the reactor was stopped).
    """

    name = "readiness"
    log = Logger()

    def __init__(self, notifier, status="serving", reactor=None):
        """
        @param status: the C{STATUS=} text sent with C{READY=1}, or a
            callable returning it (asked only once ready).
        """
        self.notifier = notifier
        self.status = status
        # Imported now: a daemon may change root before it starts.
        from twisted.application import internet  # noqa: F401
        from twisted.internet import defer
        self._reactor = reactor
        self.ready = defer.Deferred()

    def startService(self):
        from twisted.internet import defer
        service.Service.startService(self)
        ports = list(listeningPorts(self.parent)) if self.parent else []
        waiting = [whenListening(each) for each in ports]
        defer.gatherResults(waiting).addCallback(self._listening, ports)

    def _listening(self, results, ports):
        failed = [each for each, port in zip(ports, results) if port is None]
        if failed:
            where = ", ".join(each.name or str(each.endpoint)
                              for each in failed)
            self.notifier.notify(STATUS=f"could not listen: {where}")
            self.log.error("not ready: could not listen on {where}; "
                           "stopping", where=where)
            reactor = self._reactor
            if reactor is None:
                from twisted.internet import reactor
            reactor.callWhenRunning(reactor.stop)
            self.ready.callback(False)
            return
        status = self.status() if callable(self.status) else self.status
        self.notifier.notify(READY=1, STATUS=status)
        self.ready.callback(True)

    def stopService(self):
        service.Service.stopService(self)
        self.notifier.notify(STOPPING=1, STATUS="stopping")
