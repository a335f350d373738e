# -*- test-case-name: tests.test_loginservice -*-
"""
The client side of the root login service: what a login command does when
the kernel refuses it a user namespace.  It hands its stdin, stdout and
stderr, its arguments, environment and terminal size to the service
(L{jailtwist.loginservice}), which checks everything again for the uid the
kernel names and starts the program in the jail; the client then only
passes on window-size changes and SIGHUP/SIGTERM, and exits with the
program's status.

Standard library only (and L{jailtwist.loginwire}): this is the start-up
path of a login.
"""

import array
import os
import select
import signal
import socket
import struct

from jailtwist import loginwire
from jailtwist.errors import JailtwistError

#: Exit status when the service cannot be reached or breaks the protocol.
UNAVAILABLE = 33

_TIOCGWINSZ = 0x5413


class ServiceUnavailable(JailtwistError):
    """
    The login service is not there (or broke the protocol); the message is
    the one line to show, naming both ways out.
    """


def windowSize(fd):
    """
    @return: C{(rows, columns)} of the terminal C{fd}, or C{(0, 0)}.
    """
    import fcntl
    try:
        raw = fcntl.ioctl(fd, _TIOCGWINSZ, b"\0" * 8)
    except OSError:
        return 0, 0
    rows, columns = struct.unpack("HHHH", raw)[:2]
    return rows, columns


def unavailableMessage(path, error, reason=None):
    why = f"{reason}; " if reason else ""
    return (f"{why}the jailtwist login service is not reachable at {path} "
            f"({error}): allow user namespaces for the login commands (the "
            f"sysctl named above, or jailtwist's AppArmor profile in "
            f"/etc/apparmor.d) or start the login service (`twistd jailtwist`"
            f", [login] in {loginwire.SUITE_CONFIG})")


def connect(path):
    """
    @return: a connected unix stream socket.
    @raise OSError: if nothing listens at C{path}.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM
                         | socket.SOCK_CLOEXEC)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        raise
    return sock


def sendRequest(sock, request, fds=(0, 1, 2)):
    """
    Send the request frame with C{fds} attached.
    """
    data = loginwire.serialiseRequest(request)
    sent = sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                  array.array("i", fds))])
    if sent < len(data):
        sock.sendall(data[sent:])


def session(sock, ttyFd=None):
    """
    Relay window-size changes and signals until the service reports the
    result.

    @return: C{(exitCode, message or None)}.
    @raise ServiceUnavailable: if the service closes without a result.
    """
    previous = {}

    def forward(signum, frame):
        try:
            if signum == signal.SIGWINCH:
                sock.sendall(loginwire.window(*windowSize(ttyFd)))
            else:
                sock.sendall(loginwire.signalFrame(signum))
        except OSError:
            pass
    signals = list(loginwire.SIGNALS)
    if ttyFd is not None:
        signals.append(signal.SIGWINCH)
    for signum in signals:
        previous[signum] = signal.signal(signum, forward)
    decoder = loginwire.FrameDecoder(first=2048, later=2048)
    try:
        while True:
            select.select([sock], [], [])
            data = sock.recv(4096)
            if not data:
                raise ServiceUnavailable(
                    "the login service closed the connection without a "
                    "result", UNAVAILABLE)
            try:
                for payload in decoder.feed(data):
                    return loginwire.parseResult(payload)
            except loginwire.ProtocolError as e:
                raise ServiceUnavailable(f"the login service broke the "
                                         f"protocol: {e}", UNAVAILABLE)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def queuedRefusal(sock):
    """
    After a failed send: the result frame the service sent before it
    closed, if one is waiting.

    @return: C{(exitCode, message)}, or C{(None, None)}.
    """
    decoder = loginwire.FrameDecoder(first=2048, later=2048)
    try:
        while True:
            data = sock.recv(4096, socket.MSG_DONTWAIT)
            if not data:
                return None, None
            for payload in decoder.feed(data):
                return loginwire.parseResult(payload)
    except (OSError, loginwire.ProtocolError):
        return None, None


def login(program, arguments, environ, path=None, reason=None):
    """
    Run C{program}'s login through the service.

    @param arguments: C{argv[1:]} of the login command.
    @return: the exit status of the jailed program.
    @raise ServiceUnavailable: no service (the message names both ways
        out).
    @raise JailtwistError: the service refused (its line and status).
    """
    if path is None:
        path = loginwire.socketPath()
    try:
        sock = connect(path)
    except OSError as e:
        raise ServiceUnavailable(unavailableMessage(path, e.strerror, reason),
                                 UNAVAILABLE)
    tty = os.isatty(0)
    rows, columns = windowSize(0) if tty else (0, 0)
    request = loginwire.Request(program, tty, rows, columns, arguments,
                                environ)
    saved = None
    try:
        if tty:
            # The service's pty does the line discipline: ours must pass
            # every byte through untouched (as ssh does on its side).
            import termios
            import tty as ttyModule
            saved = termios.tcgetattr(0)
            ttyModule.setraw(0)
        try:
            sendRequest(sock, request)
        except loginwire.ProtocolError as e:
            raise JailtwistError(f"cannot ask the login service: {e}", 1)
        except OSError as e:
            # The service may have refused before reading (too many logins
            # starting): its answer is then already here, and is the one
            # to show.
            code, message = queuedRefusal(sock)
            if message is None:
                raise ServiceUnavailable(unavailableMessage(
                    path, e.strerror, reason), UNAVAILABLE)
        else:
            code, message = session(sock, 0 if tty else None)
    finally:
        if saved is not None:
            import termios
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
        sock.close()
    if message is not None:
        raise JailtwistError(message, code)
    return code

