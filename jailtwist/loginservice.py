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
hold only so many connections.
"""

import fcntl
import json
import os
import pwd
import stat
import struct
import sys
import termios

from zope.interface import implementer

from twisted.internet.interfaces import IFileDescriptorReceiver
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol
from twisted.logger import Logger

from jailtwist import loginwire
from jailtwist.control import peerCredentials
from jailtwist.login import (
    ENTER_EXIT_CODES, AuthLog, Refused, UchrootUsage, parseUchrootArguments,
    planChrootsh, planProcmail, planUchroot)
from jailtwist.lsh import LshRefusal, printable

#: Seconds a connection may take to send its request.
REQUEST_TIMEOUT = 10.0
#: Seconds to wait for the last output of a pty after its program ended.
DRAIN_TIMEOUT = 2.0
#: Connections (waiting or running a program) one uid may hold.
MAX_PER_UID = 32
#: Connections still waiting for their request, for all callers and for
#: one uid (so that a few accounts cannot hold every slot).
MAX_PENDING = 64
MAX_PENDING_PER_UID = 4
#: Exit status of a request that breaks the protocol.
PROTOCOL_ERROR = 2

_ALLOWED_TYPES = (stat.S_IFCHR, stat.S_IFIFO, stat.S_IFSOCK, stat.S_IFREG)


class BadDescriptor(Exception):
    pass


def checkDescriptor(fd):
    """
    A passed descriptor may become a jailed program's stdin, stdout or
    stderr: it must be a terminal or other character device, a pipe, a
    socket or a regular file -- never a directory (C{fchdir} out of the
    chroot), an C{O_PATH} descriptor, or an anonymous inode (pidfd,
    eventfd, epoll...).

    @raise BadDescriptor: naming what it is.
    """
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    if flags & os.O_PATH:
        raise BadDescriptor("an O_PATH descriptor")
    mode = os.fstat(fd).st_mode
    if stat.S_IFMT(mode) not in _ALLOWED_TYPES:
        kind = "a directory" if stat.S_ISDIR(mode) else \
            f"a file of type {stat.S_IFMT(mode):o}"
        raise BadDescriptor(kind)


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

    # -- connection ----------------------------------------------------------

    def connectionMade(self):
        self.peer = self.factory.credentialsOf(self.transport)
        if not self.factory.admit(self):
            return
        self.timeout = self.factory.clock.callLater(
            self.factory.requestTimeout, self._timedOut)

    def fileDescriptorReceived(self, fd):
        if self.request is not None or len(self.fds) >= loginwire.DESCRIPTORS:
            os.close(fd)
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
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass

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
        for number, fd in enumerate(self.fds):
            try:
                checkDescriptor(fd)
            except (BadDescriptor, OSError) as e:
                raise loginwire.ProtocolError(
                    f"descriptor {number} cannot be used: {e}")
        if request.tty and not os.isatty(self.fds[0]):
            raise loginwire.ProtocolError("a terminal was asked for but "
                                          "stdin is not one")
        if not request.tty and any(os.isatty(fd) for fd in self.fds):
            # The program would get a terminal of the caller's (TIOCSTI
            # could type into it, as with su): only a pty of its own.
            raise loginwire.ProtocolError(
                "a terminal as stdout or stderr needs one as stdin too (the "
                "program gets a pty of its own)")
        # The checks read files and ask the name service: in a thread, so
        # a slow one does not hold up the reactor.
        d = self.factory.planInThread(request, self.peer)
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

    def _planned(self, plan):
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
        self._perUid = {}
        self._pending = set()
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
        waiting = sum(1 for c in self._pending if c.peer.uid == peer.uid)
        if len(self._pending) >= self.maxPending or \
                waiting >= self.maxPendingPerUid:
            connection.refuse(PROTOCOL_ERROR, "too many logins are starting: "
                                              "try again")
            return False
        if self._perUid.get(peer.uid, 0) >= self.maxPerUid:
            connection.refuse(PROTOCOL_ERROR, f"uid {peer.uid} has "
                                              f"{self.maxPerUid} logins "
                                              f"already")
            return False
        self._perUid[peer.uid] = self._perUid.get(peer.uid, 0) + 1
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

    def planInThread(self, request, peer):
        """
        L{plan} in the reactor's thread pool.

        @return: a L{Deferred} firing with the plan.
        """
        from twisted.internet import threads
        return threads.deferToThreadPool(
            self.reactor, self.reactor.getThreadPool(), self.plan, request,
            peer)

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
