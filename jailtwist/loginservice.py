# -*- test-case-name: tests.test_loginservice -*-
"""
The root login service: jailed logins where the kernel refuses the login
commands a user namespace (C{user.max_user_namespaces=0}, Ubuntu's AppArmor
restriction).  A login command that cannot enter its jail connects here
(L{jailtwist.loginclient}, protocol in L{jailtwist.loginwire}) and passes
its stdin, stdout and stderr, its arguments, environment and terminal size.

Who the caller is comes only from the kernel (C{SO_PEERCRED},
C{SO_PEERGROUPS}); the pid is logged, never trusted.  The service plans the
login with the very functions the login commands use
(L{jailtwist.login.planChrootsh} and its siblings, told the peer's ids):
the same checks, exit statuses and syslog texts, the jail's own jk_lsh
policy.  A refusal is one line and an exit status for the client.

A login that passes is started as a fresh interpreter
(L{jailtwist.loginexec}) that enters the jail through
L{jailtwist.enter.enterForAccount} and execs the program: no code of this
daemon runs between fork and exec but Twisted's own.  With a terminal the
service allocates a pty (the program's controlling terminal, in a session
of its own) and relays between it and the caller's descriptors, applying
window sizes; without one the caller's descriptors are the program's 0, 1
and 2.  The exit status goes back to the client (C{128+N} for signal N);
C{SIGHUP} and C{SIGTERM} from the client go to the program; a client that
goes away hangs the program up.

The reactor is never left waiting on a client: a request must arrive
within L{REQUEST_TIMEOUT} seconds, frames are bounded, and a caller may
hold only so many connections.  The reactor thread never inspects or
closes a descriptor a caller chose (a TCP socket with C{SO_LINGER}, a
file of a FUSE mount, a unix socket with such descriptors queued in it can
each make C{fstat} or C{close} wait as long as their owner likes): that
is done by L{DescriptorWorker}, one thread per uid at a time, so a stuck
descriptor costs only its own caller.

The program gets the caller's process state, not the daemon's: its
resource limits, audit login uid, cgroup, nice value and OOM score
adjustment are read from the peer (pinned by a pidfd) and applied by
L{jailtwist.loginexec} before it becomes the account; its session keyring
is a new, empty one.
"""

import collections
import ctypes
import ctypes.util
import fcntl
import json
import os
import pwd
import signal
import socket
import stat
import struct
import sys
import termios
import threading

from zope.interface import implementer

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IFileDescriptorReceiver
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from jailtwist import loginwire
from jailtwist.control import peerCredentials
from jailtwist.login import (
    ENTER_EXIT_CODES, AuthLog, Refused, UchrootUsage, parseUchrootArguments,
    planChrootsh, planProcmail, planUchroot)
from jailtwist.lsh import LshRefusal, printable

#: Seconds a connection may take to send its request (the login commands
#: send it right after connecting).
REQUEST_TIMEOUT = 2.0
#: Seconds to wait for the last output of a pty after its program ended.
DRAIN_TIMEOUT = 2.0
#: Connections (waiting or running a program) one uid may hold.
MAX_PER_UID = 32
#: Connections still waiting for their request, for all callers and for
#: one uid (so that a few accounts cannot hold every slot).
MAX_PENDING = 256
MAX_PENDING_PER_UID = 4
#: Threads inspecting and closing callers' descriptors (at most one per
#: uid at a time).
MAX_DESCRIPTOR_THREADS = 8
#: Exit status of a request that breaks the protocol.
PROTOCOL_ERROR = 2

_ALLOWED_TYPES = (stat.S_IFCHR, stat.S_IFIFO, stat.S_IFSOCK, stat.S_IFREG)

#: File systems whose "regular files" are not files: procfs
#: (C{/proc/self/mem}), nsfs (C{/proc/self/ns/*}), pidfs, anonymous inodes.
_PSEUDO_FILE_SYSTEMS = {0x9FA0: "procfs", 0x6E736673: "nsfs",
                        0x50494446: "pidfs", 0x09041934: "anon_inodefs"}
#: Character devices besides terminals: /dev/null, /dev/zero, /dev/full,
#: /dev/random and /dev/urandom (major 1; not /dev/mem or /dev/kmsg).
_MEMORY_DEVICES = {(1, 3), (1, 5), (1, 7), (1, 8), (1, 9)}

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


class BadDescriptor(Exception):
    pass


def fileSystemType(fd):
    """
    @return: C{f_type} of C{fstatfs(fd)} (the file system's magic number).
    """
    buffer = ctypes.create_string_buffer(256)
    if _libc.fstatfs(fd, buffer) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))
    return ctypes.c_long.from_buffer(buffer).value


def checkDescriptor(fd, pollable=False):
    """
    A passed descriptor may become a jailed program's stdin, stdout or
    stderr: it must be a terminal, a memory device (C{/dev/null}), a pipe,
    a unix socket or a regular file -- never a directory (C{fchdir} out of
    the chroot), an C{O_PATH} descriptor, an anonymous inode (pidfd,
    eventfd, epoll...), a procfs or nsfs file (C{/proc/self/mem},
    C{/proc/self/ns/*}), another character device, or a network socket
    (sshd and MTAs pass pipes, socketpairs and ptys; a TCP socket could
    make its last close linger).

    May block (a file of a FUSE mount): never call it in the reactor
    thread.

    @param pollable: whether the service itself reads or writes it (a pty
        session's relay): then only a terminal, a pipe or a unix socket.
    @raise BadDescriptor: naming what it is.
    """
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    if flags & os.O_PATH:
        raise BadDescriptor("an O_PATH descriptor")
    st = os.fstat(fd)
    kind = stat.S_IFMT(st.st_mode)
    if kind not in _ALLOWED_TYPES:
        raise BadDescriptor("a directory" if kind == stat.S_IFDIR else
                            f"a file of type {kind:o}")
    if kind == stat.S_IFSOCK:
        sock = socket.socket(fileno=fd)
        try:
            family = sock.getsockopt(socket.SOL_SOCKET, socket.SO_DOMAIN)
        finally:
            sock.detach()
        if family != socket.AF_UNIX:
            raise BadDescriptor(f"a socket of address family {family} (only "
                                f"unix sockets, pipes and terminals)")
    elif kind == stat.S_IFCHR:
        device = (os.major(st.st_rdev), os.minor(st.st_rdev))
        if device not in _MEMORY_DEVICES and not os.isatty(fd):
            raise BadDescriptor(f"the character device "
                                f"{os.major(st.st_rdev)}:"
                                f"{os.minor(st.st_rdev)} (only terminals "
                                f"and /dev/null-like devices)")
        if pollable and not os.isatty(fd):
            raise BadDescriptor("not a terminal, pipe or unix socket (a pty "
                                "session relays it)")
    elif kind == stat.S_IFREG:
        magic = fileSystemType(fd)
        if magic in _PSEUDO_FILE_SYSTEMS:
            raise BadDescriptor(f"a file of {_PSEUDO_FILE_SYSTEMS[magic]}")
        if pollable:
            raise BadDescriptor("a regular file (a pty session relays it: "
                                "only a terminal, pipe or unix socket)")


def checkDescriptors(fds, tty):
    """
    Check the three descriptors of a request (in a L{DescriptorWorker}
    thread).

    @return: C{None}, or the reason to refuse them.
    """
    for number, fd in enumerate(fds):
        try:
            checkDescriptor(fd, pollable=tty and number < 2)
        except (BadDescriptor, OSError) as e:
            return f"descriptor {number} cannot be used: {e}"
    if tty and not os.isatty(fds[0]):
        return "a terminal was asked for but stdin is not one"
    if not tty and any(os.isatty(fd) for fd in fds):
        # The program would get a terminal of the caller's (TIOCSTI could
        # type into it, as with su): only a pty of its own.
        return ("a terminal as stdout or stderr needs one as stdin too (the "
                "program gets a pty of its own)")
    return None


def closeDescriptors(fds):
    """
    Close a caller's descriptors (in a L{DescriptorWorker} thread): a
    socket's C{SO_LINGER} is switched off first, so that its close does
    not wait for a peer that never reads.
    """
    for fd in fds:
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            pass
        else:
            try:
                if sock.family in (socket.AF_INET, socket.AF_INET6):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                    struct.pack("ii", 0, 0))
            except OSError:
                pass
            finally:
                sock.detach()
        _closeQuietly(fd)


class DescriptorWorker:
    """
    Runs the blocking work on callers' descriptors (inspecting, closing)
    off the reactor thread: one job of a uid at a time, in a daemon thread
    of its own (so that a job stuck for ever holds neither the reactor nor
    the daemon's exit), at most C{maxThreads} at once.  A caller whose
    descriptor blocks delays only its own uid's later jobs.
    """

    def __init__(self, reactor, maxThreads=MAX_DESCRIPTOR_THREADS):
        self._reactor = reactor
        self.maxThreads = maxThreads
        self._queues = {}
        self._running = set()
        self._ready = collections.deque()

    def submit(self, uid, function, *args):
        """
        Run C{function(*args)} in a thread, after C{uid}'s earlier jobs.

        @return: a L{Deferred} firing (in the reactor thread) with its
            result.
        """
        d = Deferred()
        queue = self._queues.setdefault(uid, collections.deque())
        queue.append((d, function, args))
        if uid not in self._running and len(queue) == 1:
            self._ready.append(uid)
        self._startThreads()
        return d

    def queued(self, uid):
        """
        @return: how many jobs of C{uid} are running or waiting.
        """
        return len(self._queues.get(uid, ())) + (uid in self._running)

    def _startThreads(self):
        while self._ready and len(self._running) < self.maxThreads:
            uid = self._ready.popleft()
            d, function, args = self._queues[uid].popleft()
            self._running.add(uid)
            threading.Thread(target=self._work, args=(uid, d, function, args),
                             name="jailtwist-login-descriptors",
                             daemon=True).start()

    def _work(self, uid, d, function, args):
        try:
            result = function(*args)
        except BaseException:
            result = Failure()
        self._reactor.callFromThread(self._done, uid, d, result)

    def _done(self, uid, d, result):
        self._running.discard(uid)
        if self._queues.get(uid):
            self._ready.append(uid)
        else:
            self._queues.pop(uid, None)
        self._startThreads()
        if isinstance(result, Failure):
            d.errback(result)
        else:
            d.callback(result)


def exitStatus(reason):
    """
    The shell's status for a process end: its exit code, or 128+N.
    """
    value = reason.value
    signal = getattr(value, "signal", None)
    if signal:
        return 128 + signal
    return getattr(value, "exitCode", 1) or 0


class _Relay(Protocol):
    """
    One side of a pty session: what it reads goes to C{peer()}'s transport.
    """

    def __init__(self, peer, lost):
        self._peer = peer
        self._lost = lost

    def dataReceived(self, data):
        other = self._peer()
        if other is not None:
            other.write(data)

    def connectionLost(self, reason):
        self._lost()


class _Program(ProcessProtocol):

    def __init__(self, session):
        self.session = session

    def processEnded(self, reason):
        self.session.programEnded(exitStatus(reason))


@implementer(IFileDescriptorReceiver)
class LoginProtocol(Protocol):
    """
    One login: the request, then the running program.
    """

    log = Logger()

    def __init__(self, factory):
        self.factory = factory
        self.peer = None
        self.fds = []
        self.extraFds = 0
        self.request = None
        self.decoder = loginwire.FrameDecoder()
        self.timeout = None
        self.process = None
        self.master = ()
        self.masterIO = None
        self.counted = False
        self.clientIO = None
        self.status = None
        self.finished = False
        self.drain = None
        self.connectionCopy = None
        self.pidfd = None
        self.callerState = None
        self.admitted = 0

    # -- connection ----------------------------------------------------------

    def connectionMade(self):
        self.peer = self.factory.credentialsOf(self.transport)
        # Descriptors the caller sent that were never read are closed with
        # the connection: its last close must be the worker's.
        try:
            self.connectionCopy = os.dup(self.transport.fileno())
        except (AttributeError, OSError):
            pass
        if not self.factory.admit(self):
            return
        self.pidfd = peerPidfd(self.transport, self.peer)
        self.timeout = self.factory.clock.callLater(
            self.factory.requestTimeout, self._timedOut)

    def fileDescriptorReceived(self, fd):
        if self.request is not None or self.finished or \
                len(self.fds) >= loginwire.DESCRIPTORS:
            self.factory.closeDescriptors(self.peer, [fd])
            self.extraFds += 1
        else:
            self.fds.append(fd)

    def dataReceived(self, data):
        if self.finished:
            return
        try:
            frames = self.decoder.feed(data)
            for payload in frames:
                if self.finished:
                    return
                if self.request is None:
                    self._requestReceived(payload)
                else:
                    self._control(payload)
        except loginwire.ProtocolError as e:
            self.refuse(PROTOCOL_ERROR, f"malformed request: {e}")

    def connectionLost(self, reason):
        self.factory.release(self)
        self._cancelTimeout()
        self.finished = True
        if self.process is not None and self.status is None:
            # The caller went away (ssh hung up): hang the program up (on
            # a pty, closing the master hangs up its whole session too).
            self._signal("HUP")
        if self.masterIO is not None:
            self.masterIO.loseConnection()
        if self.clientIO is not None:
            self.clientIO.loseConnection()
        else:
            self._closeFds()
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
        if self.connectionCopy is not None:
            self.factory.closeDescriptors(self.peer, [self.connectionCopy])
            self.connectionCopy = None

    def _timedOut(self):
        self.timeout = None
        self.refuse(PROTOCOL_ERROR, f"no request within "
                                    f"{self.factory.requestTimeout:g} seconds")

    def _cancelTimeout(self):
        if self.timeout is not None and self.timeout.active():
            self.timeout.cancel()
        self.timeout = None

    def _closeFds(self):
        fds, self.fds = self.fds, []
        if fds:
            self.factory.closeDescriptors(self.peer, fds)

    def refuse(self, code, message):
        """
        End the connection with one line and an exit status.
        """
        if self.finished:
            return
        self.finished = True
        self._cancelTimeout()
        program = self.request.program if self.request else None
        self.log.info("login refused for uid {uid} (pid {pid}, {program}): "
                      "{message}", uid=self.peer.uid, pid=self.peer.pid,
                      program=program or "-", message=message)
        self.factory.events.publish(
            "login-refused", uid=self.peer.uid, pid=self.peer.pid,
            program=program, exitCode=code, reason=message)
        self.transport.write(loginwire.refusal(code, message))
        self.transport.loseConnection()
        if self.clientIO is None:
            # (A pty relay still reads them: it closes them when it ends.)
            self._closeFds()

    # -- the request ----------------------------------------------------------

    def _requestReceived(self, payload):
        self._cancelTimeout()
        self.factory.requestArrived(self)
        request = loginwire.parseRequest(payload)
        self.request = request
        if self.extraFds or len(self.fds) != loginwire.DESCRIPTORS:
            raise loginwire.ProtocolError(
                f"send exactly {loginwire.DESCRIPTORS} descriptors (stdin, "
                f"stdout, stderr) with the request, got "
                f"{len(self.fds) + self.extraFds}")
        # fstat and isatty of a caller's descriptor may block (FUSE).
        d = self.factory.descriptors.submit(self.peer.uid, checkDescriptors,
                                            list(self.fds), request.tty)
        d.addCallback(self._descriptorsChecked)
        d.addErrback(lambda f: self.log.failure("login of uid {uid} failed",
                                                f, uid=self.peer.uid))

    def _descriptorsChecked(self, problem):
        if self.finished:
            return
        if problem is not None:
            self.refuse(PROTOCOL_ERROR, f"malformed request: {problem}")
            return
        # The checks read files and ask the name service: in a thread, so
        # a slow one does not hold up the reactor.
        d = self.factory.planInThread(self.request, self.peer, self.pidfd)
        d.addCallbacks(self._planned, self._planFailed)
        d.addErrback(lambda f: self.log.failure("login of uid {uid} failed",
                                                f, uid=self.peer.uid))

    def _planFailed(self, failure):
        e = failure.value
        if isinstance(e, (Refused, LshRefusal)):
            ident = "jk_lsh" if isinstance(e, LshRefusal) else \
                getattr(e, "ident", None)
            self.factory.authLog(self.request.program).error(e.logMessage,
                                                             ident)
            self.refuse(e.exitCode, e.logMessage)
            return
        self.log.failure("planning a login for uid {uid} failed", failure,
                         uid=self.peer.uid)
        self.refuse(1, "the login service failed (see its log)")

    def _planned(self, planned):
        plan, self.callerState = planned
        if self.finished:
            # The caller went away meanwhile.
            os.close(plan.jailFd)
            return
        try:
            self._start(plan)
        except Exception:
            self.log.failure("starting a login for uid {uid} failed",
                             uid=self.peer.uid)
            self.refuse(1, "the login service failed (see its log)")
        finally:
            os.close(plan.jailFd)

    def _start(self, plan):
        request, peer = self.request, self.peer
        groups = sorted(set(peer.groups) | {peer.gid})
        if 0 in groups:
            self.refuse(PROTOCOL_ERROR, f"abort, uid {peer.uid} runs with "
                                        f"group 0 (root): the login service "
                                        f"never runs a program with it")
            return
        description = {
            "program": request.program, "jail": plan.jail.location,
            "home": plan.home, "uid": peer.uid, "gid": peer.gid,
            "groups": groups, "namespaces": list(plan.namespaces),
            "executable": plan.executable, "argv": list(plan.argv),
            "environment": plan.environment, "umask": plan.umask,
            "tty": request.tty, "stepCodes": ENTER_EXIT_CODES,
            "caller": self.callerState,
            "execFailure": [plan.execFailure[0],
                            (plan.execFailure[1] or
                             [f"exec {plan.executable}: {{error}}"])[-1]]}
        planFd = os.memfd_create("jailtwist-login-plan", os.MFD_CLOEXEC)
        slave = None
        try:
            os.write(planFd, json.dumps(description).encode())
            os.lseek(planFd, 0, os.SEEK_SET)
            if request.tty:
                master, slave = os.openpty()
                # Reader and writer need descriptors of their own (the
                # reactor keeps one object per descriptor).
                self.master = (master, os.dup(master))
                _setWindow(master, request.rows, request.columns)
                stdio = (slave, slave, slave)
            else:
                stdio = tuple(self.fds)
            childFDs = {0: stdio[0], 1: stdio[1], 2: stdio[2], 3: planFd,
                        4: plan.jailFd}
            self.process = self.factory.spawn(_Program(self), childFDs)
        finally:
            os.close(planFd)
            if slave is not None:
                os.close(slave)
        name = _accountName(peer.uid)
        command = " ".join(printable(a) for a in plan.argv)
        self.factory.authLog(request.program).info(
            f"login service: user {name} ({peer.uid}) from pid {peer.pid} "
            f"entered jail {plan.jail.location} running '{command}'"
            f"{' on a pty' if request.tty else ''}")
        self.factory.events.publish(
            "login", user=name, uid=peer.uid, pid=peer.pid,
            program=request.program, jail=plan.jail.location,
            command=list(plan.argv), pty=request.tty)
        if request.tty:
            self._relay()
        else:
            # The program has the caller's descriptors; ours are not needed.
            self._closeFds()

    def _relay(self):
        from twisted.internet.stdio import StandardIO
        reactor = self.factory.reactor
        self.masterIO = StandardIO(
            _Relay(lambda: self.clientIO, self._masterClosed),
            stdin=self.master[0], stdout=self.master[1], reactor=reactor)
        self.clientIO = StandardIO(
            _Relay(lambda: self.masterIO, self._clientClosed),
            stdin=self.fds[0], stdout=self.fds[1], reactor=reactor)
        # A slow side pauses the other instead of filling our memory.
        self.clientIO.registerProducer(self.masterIO, True)
        self.masterIO.registerProducer(self.clientIO, True)

    # -- after the start ------------------------------------------------------

    def _control(self, payload):
        kind = payload[:1]
        if kind == loginwire.WINDOW:
            rows, columns = loginwire.parseWindow(payload)
            if self.master and self.status is None:
                _setWindow(self.master[0], rows, columns)
        elif kind == loginwire.SIGNAL:
            number = loginwire.parseSignal(payload)
            self._signal({1: "HUP", 15: "TERM"}[number])
        else:
            raise loginwire.ProtocolError("unknown message")

    def _signal(self, name):
        if self.process is not None and self.status is None:
            try:
                self.process.signalProcess(name)
            except Exception:
                pass

    def programEnded(self, status):
        self.status = status
        if self.masterIO is None and self.clientIO is None:
            self._finish()
            return
        # Let the pty's last output through (its reader ends on EIO), but
        # not forever: a background process may hold the pty open.
        self.drain = self.factory.clock.callLater(DRAIN_TIMEOUT,
                                                  self._endRelay)

    def _endRelay(self):
        self.drain = None
        if self.masterIO is not None:
            self.masterIO.loseConnection()

    def _masterClosed(self):
        self.masterIO = None
        if self.drain is not None and self.drain.active():
            self.drain.cancel()
        self.drain = None
        for fd in self.master:
            _closeQuietly(fd)
        self.master = ()
        if self.clientIO is not None:
            self.clientIO.loseConnection()
        else:
            self._finish()

    def _clientClosed(self):
        # The caller's output is flushed (or gone).
        self.clientIO = None
        self._closeFds()
        if self.masterIO is not None:
            self.masterIO.loseConnection()
        else:
            self._finish()

    def _finish(self):
        if self.status is None or self.masterIO is not None \
                or self.clientIO is not None:
            return
        self._closeFds()
        if self.finished:
            return
        self.finished = True
        self.transport.write(loginwire.exited(self.status))
        self.transport.loseConnection()


#: C{SO_PEERPIDFD} (Linux 6.5): a pidfd of the process that connected.
SO_PEERPIDFD = getattr(socket, "SO_PEERPIDFD", 77)


def peerPidfd(transport, peer):
    """
    A pidfd of the connecting process, so that its state is read from it
    and not from a process that reused its pid: the kernel's
    C{SO_PEERPIDFD}, or on older kernels C{pidfd_open} of C{SO_PEERCRED}'s
    pid, kept only if that process still has the peer's uid.

    @return: the pidfd, or C{None} if the caller is gone.
    """
    try:
        sock = transport.getHandle()
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERPIDFD, 4)
        return struct.unpack("i", raw)[0]
    except (AttributeError, OSError):
        pass
    if not peer.pid:
        return None
    try:
        pidfd = os.pidfd_open(peer.pid)
    except OSError:
        return None
    try:
        if os.stat(f"/proc/{peer.pid}").st_uid == peer.uid:
            signal.pidfd_send_signal(pidfd, 0)
            return pidfd
    except OSError:
        pass
    os.close(pidfd)
    return None


#: The resource limits a login takes from its caller (pam_limits sets
#: them at the caller's login), by their names in C{/proc/PID/limits}
#: (readable without C{CAP_SYS_RESOURCE}, which C{prlimit} needs).
RLIMITS = {"Max cpu time": "RLIMIT_CPU", "Max file size": "RLIMIT_FSIZE",
           "Max data size": "RLIMIT_DATA", "Max stack size": "RLIMIT_STACK",
           "Max core file size": "RLIMIT_CORE",
           "Max resident set": "RLIMIT_RSS", "Max processes": "RLIMIT_NPROC",
           "Max open files": "RLIMIT_NOFILE",
           "Max locked memory": "RLIMIT_MEMLOCK",
           "Max address space": "RLIMIT_AS", "Max file locks": "RLIMIT_LOCKS",
           "Max pending signals": "RLIMIT_SIGPENDING",
           "Max msgqueue size": "RLIMIT_MSGQUEUE",
           "Max nice priority": "RLIMIT_NICE",
           "Max realtime priority": "RLIMIT_RTPRIO",
           "Max realtime timeout": "RLIMIT_RTTIME"}


def parseLimits(text):
    """
    @param text: C{/proc/PID/limits}.
    @return: C{{"RLIMIT_NOFILE": [soft, hard], ...}}, C{-1} for unlimited.
    """
    limits = {}
    for line in text.splitlines()[1:]:
        name = RLIMITS.get(line[:26].strip())
        fields = line[26:].split()
        if name is None or len(fields) < 2:
            continue
        limits[name] = [-1 if value == "unlimited" else int(value)
                        for value in fields[:2]]
    return limits


def callerState(pid, pidfd):
    """
    The process state a login takes from the caller (C{pid}, pinned by
    C{pidfd}): its resource limits, audit login uid, cgroup (v2), nice
    value and OOM score adjustment.  Read from C{/proc} and C{prlimit},
    then checked against the pidfd: a caller that exited meanwhile is
    refused (nobody is left to serve, and its pid may be another's).

    @rtype: C{dict} (JSON for L{jailtwist.loginexec})
    @raise Refused: exit 1, if the caller is gone.
    """
    gone = Refused(f"abort, the caller (pid {pid}) has exited: no login "
                   f"for it", 1)
    if pidfd is None:
        raise gone
    try:
        limits = parseLimits(_readProc(pid, "limits") or "")
        if len(limits) != len(RLIMITS):
            raise ValueError("unreadable limits")
        loginuid = _readProc(pid, "loginuid")
        cgroup = None
        for line in (_readProc(pid, "cgroup") or "").splitlines():
            if line.startswith("0::"):
                cgroup = line[3:]
        state = {"rlimits": limits,
                 "loginuid": None if loginuid is None else int(loginuid),
                 "cgroup": cgroup,
                 "nice": os.getpriority(os.PRIO_PROCESS, pid),
                 "oomScoreAdj": int(_readProc(pid, "oom_score_adj") or 0)}
        signal.pidfd_send_signal(pidfd, 0)
    except (OSError, ValueError):
        raise gone from None
    return state


def _readProc(pid, name):
    try:
        with open(f"/proc/{pid}/{name}") as f:
            return f.read().strip()
    except FileNotFoundError:
        return None


def _closeQuietly(fd):
    try:
        os.close(fd)
    except OSError:
        pass


def _setWindow(fd, rows, columns):
    try:
        fcntl.ioctl(fd, termios.TIOCSWINSZ,
                    struct.pack("HHHH", rows, columns, 0, 0))
    except OSError:
        pass


def _accountName(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


class LoginFactory(Factory):
    """
    The login service's connections and what they share.

    @ivar credentialsOf: how to learn a transport's peer (the kernel's
        answer; tests replace it only to check the refusals of ids they
        cannot log in as).
    @ivar configDirectory: where jailkit's ini files are.
    """

    protocol = LoginProtocol
    log = Logger()

    def __init__(self, events, reactor=None, clock=None,
                 requestTimeout=REQUEST_TIMEOUT, maxPerUid=MAX_PER_UID,
                 maxPending=MAX_PENDING,
                 maxPendingPerUid=MAX_PENDING_PER_UID, configDirectory=None,
                 python=sys.executable):
        if reactor is None:
            from twisted.internet import reactor
        self.events = events
        self.reactor = reactor
        self.clock = clock or reactor
        self.requestTimeout = requestTimeout
        self.maxPerUid = maxPerUid
        self.maxPending = maxPending
        self.maxPendingPerUid = maxPendingPerUid
        self.configDirectory = configDirectory
        self.python = python
        self.credentialsOf = peerCredentials
        self.descriptors = DescriptorWorker(reactor)
        self._perUid = {}
        self._pending = set()
        self._admitted = 0
        self._logs = {}

    def buildProtocol(self, addr):
        return self.protocol(self)

    def authLog(self, program):
        if program not in self._logs:
            self._logs[program] = AuthLog(program)
        return self._logs[program]

    def admit(self, connection):
        """
        Count a new connection; refuse it (and return C{False}) for a peer
        without credentials or over a limit.
        """
        peer = connection.peer
        if peer.uid is None:
            connection.refuse(PROTOCOL_ERROR, "no peer credentials")
            return False
        waiting = [c for c in self._pending if c.peer.uid == peer.uid]
        if len(waiting) >= self.maxPendingPerUid:
            connection.refuse(PROTOCOL_ERROR, "too many logins are starting: "
                                              "try again")
            return False
        if len(self._pending) >= self.maxPending:
            # Full: a uid that holds the most waiting connections loses
            # its oldest, so that a few uids cannot keep everyone out.
            byUid = collections.Counter(c.peer.uid for c in self._pending)
            most = max(byUid.values())
            oldest = min((c for c in self._pending
                          if byUid[c.peer.uid] == most),
                         key=lambda c: c.admitted)
            self._pending.discard(oldest)
            oldest.refuse(PROTOCOL_ERROR, "too many logins are starting: "
                                          "try again")
        if self._perUid.get(peer.uid, 0) >= self.maxPerUid:
            connection.refuse(PROTOCOL_ERROR, f"uid {peer.uid} has "
                                              f"{self.maxPerUid} logins "
                                              f"already")
            return False
        self._perUid[peer.uid] = self._perUid.get(peer.uid, 0) + 1
        self._admitted += 1
        connection.admitted = self._admitted
        self._pending.add(connection)
        connection.counted = True
        return True

    def release(self, connection):
        self._pending.discard(connection)
        if getattr(connection, "counted", False):
            connection.counted = False
            uid = connection.peer.uid
            self._perUid[uid] -= 1
            if not self._perUid[uid]:
                del self._perUid[uid]

    def requestArrived(self, connection):
        self._pending.discard(connection)

    def plan(self, request, peer):
        """
        Plan the login exactly as the login command would for C{peer}.

        @rtype: L{jailtwist.login.LoginPlan}
        @raise Refused: or L{LshRefusal}, as the command would.
        """
        extra = {} if self.configDirectory is None else \
            {"configDirectory": self.configDirectory}
        log = self.authLog(request.program)
        argv = [request.program] + request.arguments
        if request.program == "jk_chrootsh":
            return planChrootsh(argv, request.environment, log, caller=peer,
                                **extra)
        if request.program == "jk_uchroot":
            try:
                parsed = parseUchrootArguments(request.arguments)
            except UchrootUsage as e:
                raise Refused(e.logMessage, e.exitCode)
            if parsed is None:
                raise Refused("ERROR: --help is not a login", 1)
            jail, executable, args = parsed
            return planUchroot(jail, executable, args, request.environment,
                               log, caller=peer, **extra)
        plan, _ = planProcmail(argv, request.environment, log, caller=peer)
        return plan

    def planInThread(self, request, peer, pidfd):
        """
        L{plan} and the caller's L{callerState} in the reactor's thread
        pool.

        @return: a L{Deferred} firing with C{(plan, state)}.
        """
        from twisted.internet import threads

        def prepare():
            plan = self.plan(request, peer)
            try:
                return plan, callerState(peer.pid, pidfd)
            except BaseException:
                os.close(plan.jailFd)
                raise
        return threads.deferToThreadPool(
            self.reactor, self.reactor.getThreadPool(), prepare)

    def closeDescriptors(self, peer, fds):
        """
        Close a caller's descriptors in the L{DescriptorWorker}.
        """
        d = self.descriptors.submit(peer.uid, closeDescriptors, fds)
        d.addErrback(lambda f: self.log.failure("closing descriptors of uid "
                                                "{uid} failed", f,
                                                uid=peer.uid))

    def spawn(self, processProtocol, childFDs):
        """
        Start L{jailtwist.loginexec} with C{childFDs}.  Without a uid, gid,
        working directory or pty, Twisted uses C{posix_spawn}: no Python
        code runs between fork and exec (the jail is entered after the
        exec, in the new interpreter).
        """
        return self.reactor.spawnProcess(
            processProtocol, self.python,
            [self.python, "-I", "-m", "jailtwist.loginexec"], env={},
            childFDs=childFDs)


def checkSocketDirectory(path):
    """
    Make the socket's directory (root-owned, 0755) if it is missing, and
    refuse one that anybody but root could change: whoever can replace the
    socket gets the descriptors of every login that falls back to it.

    @raise JailtwistError: for an unsafe directory.
    """
    from jailtwist.errors import JailtwistError
    os.makedirs(path, mode=0o755, exist_ok=True)
    current = "/"
    parts = [p for p in path.split("/") if p]
    for i, part in enumerate(parts):
        current = os.path.join(current, part)
        st = os.lstat(current)
        # A sticky parent (/tmp) is tolerated, not as the socket's own.
        sticky = st.st_mode & stat.S_ISVTX and i < len(parts) - 1
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or \
                st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not sticky:
            raise JailtwistError(
                f"{current} must be a root-owned directory that only root "
                f"can write to (it holds the login service's socket)")


def makeService(endpoint, events, reactor=None):
    """
    @return: the login service listening on C{endpoint} (its socket's
        directory is made, root-owned 0755, if missing).
    """
    from twisted.application import strports

    from jailtwist.control import claimSocket
    path = loginwire.endpointPath(endpoint)
    if path:
        checkSocketDirectory(os.path.dirname(path))
        claimSocket(endpoint)
    factory = LoginFactory(events, reactor)
    service = strports.service(endpoint, factory, reactor=reactor)
    service.setName("login")
    # When the suite stops, the reactor's shutdown loses every connection,
    # and a lost connection hangs its program up.
    return service
