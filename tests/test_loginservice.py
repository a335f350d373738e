"""
Tests for the root login service (L{jailtwist.loginservice}), its client
(L{jailtwist.loginclient}) and their wire format (L{jailtwist.loginwire}):
the request protocol (with property tests), the refusals of hostile
callers on a real socket, and real logins of a real account whose login
command cannot make a user namespace.
"""

import array
import json
import os
import shutil
import socket
import struct
import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from twisted.internet import reactor, threads
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from jailtwist import loginclient, loginwire
from jailtwist.control import EventStream
from jailtwist.loginservice import (
    BadDescriptor, DescriptorWorker, LoginFactory, checkDescriptor)
from tests import harness
from tests.test_login import LoginTestCase, replaceConfig, withDevLog, asUser

NOUSERNS = os.path.join(os.path.dirname(__file__), "nouserns.py")


def withoutUserNamespaces(command):
    """
    C{command} run in a user namespace (identity-mapped, so the kernel
    reports the same uids to the service) whose C{user.max_user_namespaces}
    is 0: the login commands there cannot make a user namespace, as on a
    hardened host, without changing the machine-wide sysctl.
    """
    return [sys.executable, NOUSERNS] + list(command)


#: A command prefix that gives a process in C{withDevLog}'s namespace (whose
#: /dev is an overlay, hiding the host's /dev/pts) a devpts of its own, so
#: it can allocate ptys.
WITH_PTYS = ["sh", "-c", "mount -t devpts -o newinstance,ptmxmode=0666,"
             "mode=0620 devpts /dev/pts && rm -f /dev/ptmx && "
             "ln -s pts/ptmx /dev/ptmx && exec \"$@\"", "sh"]


# -- the wire format --------------------------------------------------------

text = st.text(st.characters(blacklist_characters="\0",
                             blacklist_categories=("Cs",)), max_size=40)
requests = st.builds(
    loginwire.Request,
    program=st.sampled_from(loginwire.PROGRAMS),
    tty=st.booleans(),
    rows=st.integers(0, 0xFFFF), columns=st.integers(0, 0xFFFF),
    arguments=st.lists(text, max_size=20),
    environment=st.dictionaries(
        st.text(st.characters(blacklist_characters="\0=",
                              blacklist_categories=("Cs",)),
                min_size=1, max_size=10), text, max_size=10))


class WireTests(SynchronousTestCase):

    @given(requests)
    @settings(max_examples=300, deadline=None)
    def test_roundTrip(self, request):
        """
        Every request the client can make is parsed back as sent.
        """
        data = loginwire.serialiseRequest(request)
        frames = loginwire.FrameDecoder().feed(data)
        self.assertEqual([loginwire.parseRequest(f) for f in frames],
                         [request])

    @given(st.binary(max_size=2048))
    @settings(max_examples=2000, deadline=None)
    def test_garbageRequest(self, payload):
        """
        Any bytes as a request either parse or raise L{ProtocolError}.
        """
        for candidate in (payload, b"Q" + payload,
                          b"Q1\0jk_chrootsh\0-\0" + payload):
            try:
                request = loginwire.parseRequest(candidate)
            except loginwire.ProtocolError:
                continue
            self.assertIn(request.program, loginwire.PROGRAMS)
            self.assertLessEqual(len(request.arguments),
                                 loginwire.MAX_ARGUMENTS)

    @given(st.binary(max_size=4096), st.integers(1, 64))
    @settings(max_examples=1000, deadline=None)
    def test_garbageStream(self, data, chunk):
        """
        A stream of any bytes, cut anywhere, yields bounded frames or a
        L{ProtocolError}; the buffer never holds more than one frame.
        """
        decoder = loginwire.FrameDecoder()
        try:
            for i in range(0, len(data), chunk):
                for frame in decoder.feed(data[i:i + chunk]):
                    self.assertLessEqual(len(frame), loginwire.MAX_REQUEST)
                self.assertLessEqual(decoder.pending,
                                     loginwire.MAX_REQUEST + 4)
        except loginwire.ProtocolError:
            pass

    @given(st.binary(max_size=64))
    @settings(max_examples=500, deadline=None)
    def test_garbageControl(self, payload):
        for parse in (loginwire.parseWindow, loginwire.parseSignal,
                      loginwire.parseResult):
            try:
                parse(payload)
            except loginwire.ProtocolError:
                pass

    def test_limits(self):
        """
        Oversized frames, too many arguments and variables are refused.
        """
        decoder = loginwire.FrameDecoder()
        self.assertRaises(loginwire.ProtocolError, decoder.feed,
                          struct.pack(">I", loginwire.MAX_REQUEST + 1))
        self.assertRaises(loginwire.ProtocolError,
                          loginwire.FrameDecoder().feed, b"\0\0\0\0")
        decoder = loginwire.FrameDecoder()
        decoder.feed(loginwire.frame(b"Q", b"x"))
        self.assertRaises(loginwire.ProtocolError, decoder.feed,
                          struct.pack(">I", loginwire.MAX_CONTROL + 1))
        big = loginwire.Request("jk_chrootsh", arguments=["x" * 300000])
        self.assertRaises(loginwire.ProtocolError,
                          loginwire.serialiseRequest, big)
        many = b"\0".join([b"Q1", b"jk_chrootsh", b"-", b"0", b"0",
                           b"%d" % (loginwire.MAX_ARGUMENTS + 1)]
                          + [b"a"] * (loginwire.MAX_ARGUMENTS + 1) + [b"0"])
        self.assertRaises(loginwire.ProtocolError, loginwire.parseRequest,
                          many)
        self.assertRaises(loginwire.ProtocolError, loginwire.serialiseRequest,
                          loginwire.Request("jk_chrootsh", arguments=["a\0"]))
        self.assertRaises(loginwire.ProtocolError, loginwire.parseSignal,
                          b"S\x09")

    def test_refusalIsOneLine(self):
        code, message = loginwire.parseResult(
            loginwire.refusal(13, "two\nlines\x1b[31m")[4:])
        self.assertEqual((code, message), (13, "two?lines?[31m"))

    def test_socketPath(self):
        directory = harness.shortTempDir(self)
        ini = directory.child("j.ini")
        ini.setContent(b"[login]\nendpoint = unix:/run/x\\:y/l.sock:mode=0666"
                       b"\n")
        self.assertEqual(loginwire.socketPath(ini.path), "/run/x:y/l.sock")
        self.assertEqual(loginwire.socketPath(directory.child("no").path),
                         loginwire.DEFAULT_SOCKET)

    def test_unavailableNamesBothWaysOut(self):
        message = loginclient.unavailableMessage(
            "/run/jailtwist/login.sock", "No such file or directory",
            "user.max_user_namespaces=0 forbids them (set it above 0)")
        self.assertNotIn("\n", message)
        for part in ("user.max_user_namespaces", "AppArmor",
                     "twistd jailtwist", "/run/jailtwist/login.sock"):
            self.assertIn(part, message)

    def test_noTwistedInClient(self):
        """
        The client and the wire format import no Twisted (nor
        configparser, argparse): they are on the login start-up path.
        """
        code = ("import sys; import jailtwist.loginclient, "
                "jailtwist.loginwire; jailtwist.loginwire.socketPath(); "
                "bad = [m for m in sys.modules if m.split('.')[0] in "
                "('twisted', 'configparser', 'argparse', 'elftools')]; "
                "print(bad)")
        out = subprocess.run([sys.executable, "-I", "-c", code],
                             capture_output=True, text=True, cwd="/")
        self.assertEqual(out.stdout.strip(), "[]", out.stderr)


class DescriptorTests(SynchronousTestCase):
    """
    Which passed descriptors may become a jailed program's stdio.
    """

    def test_refused(self):
        for path, flags in (("/", os.O_RDONLY | os.O_DIRECTORY),
                            ("/etc/passwd", os.O_PATH),
                            ("/", os.O_PATH)):
            fd = os.open(path, flags)
            self.addCleanup(os.close, fd)
            self.assertRaises(BadDescriptor, checkDescriptor, fd)
        fd = os.eventfd(0)
        self.addCleanup(os.close, fd)
        self.assertRaises(BadDescriptor, checkDescriptor, fd)

    def test_pseudoFiles(self):
        """
        procfs and nsfs files are not regular files, whatever their mode
        says.
        """
        for path in ("/proc/self/mem", "/proc/self/ns/net",
                     "/proc/self/status"):
            fd = os.open(path, os.O_RDONLY)
            self.addCleanup(os.close, fd)
            error = self.assertRaises(BadDescriptor, checkDescriptor, fd)
            self.assertIn("fs", str(error))

    def test_networkSocket(self):
        """
        Only unix sockets: a TCP socket is refused (its last close could
        linger).
        """
        for family in (socket.AF_INET, socket.AF_INET6):
            sock = socket.socket(family, socket.SOCK_STREAM)
            self.addCleanup(sock.close)
            error = self.assertRaises(BadDescriptor, checkDescriptor,
                                      sock.fileno())
            self.assertIn("address family", str(error))

    def test_relayed(self):
        """
        What a pty session's relay reads or writes must be pollable: not a
        regular file or /dev/null (a file of a FUSE mount would block the
        reactor).
        """
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        self.addCleanup(os.close, w)
        checkDescriptor(r, pollable=True)
        for path in ("/etc/passwd", "/dev/null"):
            fd = os.open(path, os.O_RDONLY)
            self.addCleanup(os.close, fd)
            checkDescriptor(fd)
            self.assertRaises(BadDescriptor, checkDescriptor, fd,
                              pollable=True)

    def test_allowed(self):
        r, w = os.pipe()
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (r, w, a.fileno(), null):
            checkDescriptor(fd)
        for fd in (r, w, null):
            os.close(fd)


# -- the service on a real socket, hostile callers ----------------------------

def _exchange(path, data, fds=(0, 1, 2), shutdown=False):
    """
    Connect, send C{data} with C{fds}, return everything the service sends
    until it closes.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(20)
    try:
        sock.connect(path)
        if data is not None:
            ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                          array.array("i", fds))] if fds else []
            sock.sendmsg([data], ancillary)
        if shutdown:
            sock.shutdown(socket.SHUT_WR)
        received = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return received
            received += chunk
    finally:
        sock.close()


def _result(data):
    frames = loginwire.FrameDecoder(2048, 2048).feed(data)
    return loginwire.parseResult(frames[0])


class ServiceProtocolTests(TestCase):
    """
    The service in this process (an injected clock for its timeouts),
    clients on a real unix socket in threads.
    """

    def setUp(self):
        self.clock = Clock()
        self.events = EventStream(self.clock)
        self.published = []
        self.events.subscribe(self.published.append)
        self.factory = LoginFactory(self.events, reactor, clock=self.clock)
        self.path = harness.shortTempDir(self).child("l.sock").path
        port = reactor.listenUNIX(self.path, self.factory)
        self.addCleanup(port.stopListening)

    def exchange(self, *args, **kw):
        return threads.deferToThread(_exchange, self.path, *args, **kw)

    @inlineCallbacks
    def assertRefusal(self, data, text, code=2, **kw):
        received = yield self.exchange(data, **kw)
        result = _result(received)
        self.assertEqual(result[0], code, result)
        self.assertIn(text, result[1])
        self.assertNotIn("\n", result[1])
        self.assertEqual(self.published[-1].kind, "login-refused")
        self.assertEqual(self.published[-1].fields["pid"] is not None, True)

    def request(self, program="jk_chrootsh", **kw):
        return loginwire.serialiseRequest(loginwire.Request(program, **kw))

    def test_garbage(self):
        return self.assertRefusal(b"\x00\x00\x00\x05hello", "malformed")

    def test_oversized(self):
        return self.assertRefusal(b"\x7f\xff\xff\xff" + b"A" * 100,
                                  "2147483647 bytes")

    def test_noDescriptors(self):
        return self.assertRefusal(self.request(), "exactly 3 descriptors",
                                  fds=())

    def test_tooManyDescriptors(self):
        return self.assertRefusal(self.request(), "got 4", fds=(0, 1, 2, 2))

    @inlineCallbacks
    def test_weirdDescriptors(self):
        directory = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
        self.addCleanup(os.close, directory)
        opath = os.open("/etc", os.O_PATH)
        self.addCleanup(os.close, opath)
        yield self.assertRefusal(self.request(), "a directory",
                                 fds=(0, directory, 2))
        yield self.assertRefusal(self.request(), "O_PATH",
                                 fds=(opath, 1, 2))

    def test_ttyWithoutTerminal(self):
        null = os.open("/dev/null", os.O_RDWR)
        self.addCleanup(os.close, null)
        return self.assertRefusal(self.request(tty=True), "not a terminal",
                                  fds=(null, null, null))

    def test_rootRefused(self):
        """
        The caller here is root (the test process): jk_chrootsh's refusal.
        """
        null = os.open("/dev/null", os.O_RDWR)
        self.addCleanup(os.close, null)
        return self.assertRefusal(
            self.request(arguments=["-c", "id"]),
            "jk_chrootsh is run by root", code=12, fds=(null, null, null))

    @inlineCallbacks
    def test_slowClient(self):
        """
        A client that never sends its request is refused when the
        (injected) clock passes the timeout; the reactor is never blocked.
        """
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(sock.close)
        yield threads.deferToThread(sock.connect, self.path)
        sock.sendall(b"\x00\x00\x01")   # part of a length, then nothing
        yield _until(lambda: len(self.factory._pending) == 1)
        self.clock.advance(loginservice_timeout())
        sock.settimeout(10)
        data = yield threads.deferToThread(sock.recv, 4096)
        code, message = _result(data)
        self.assertIn("no request within", message)
        self.assertEqual(len(self.factory._pending), 0)

    @inlineCallbacks
    def test_perUidLimit(self):
        self.factory.maxPerUid = 2
        socks = []
        for _ in range(2):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.addCleanup(s.close)
            yield threads.deferToThread(s.connect, self.path)
            socks.append(s)
        yield self.assertRefusal(None, "has 2 logins already")

    @inlineCallbacks
    def test_pendingPerUid(self):
        """
        One uid may keep only a few connections waiting for their request.
        """
        self.factory.maxPendingPerUid = 2
        for _ in range(2):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.addCleanup(s.close)
            yield threads.deferToThread(s.connect, self.path)
        yield self.assertRefusal(None, "too many logins are starting")


    @inlineCallbacks
    def test_pendingFullEvictsGreediest(self):
        """
        When every pending slot is taken, the uid holding the most loses
        its oldest connection: two uids cannot keep a third one out.
        """
        self.factory.maxPending = 4
        self.factory.maxPendingPerUid = 2
        uids = iter([1001, 1001, 1002, 1002, 1003])

        def credentials(transport):
            from jailtwist.control import PeerCredentials
            return PeerCredentials(os.getpid(), next(uids), 1000, ())
        self.factory.credentialsOf = credentials
        socks = []
        for _ in range(4):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.addCleanup(s.close)
            yield threads.deferToThread(s.connect, self.path)
            socks.append(s)
        yield _until(lambda: len(self.factory._pending) == 4)
        newcomer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(newcomer.close)
        yield threads.deferToThread(newcomer.connect, self.path)
        yield _until(lambda: 1003 in {c.peer.uid
                                      for c in self.factory._pending})
        socks[0].settimeout(10)
        data = yield threads.deferToThread(socks[0].recv, 4096)
        self.assertIn("too many logins are starting", _result(data)[1])
        self.assertEqual(len(self.factory._pending), 4)

    def test_requestTimeoutIsShort(self):
        """
        The login commands send their request at once: an idle connection
        holds its slot for two seconds at most.
        """
        from jailtwist.loginservice import REQUEST_TIMEOUT
        self.assertLessEqual(REQUEST_TIMEOUT, 2)

    def attack(self, fds, data):
        """
        Connect and send C{data} with C{fds}; the caller closes its copies
        of the fds afterwards, so that the service holds the last ones.

        @return: a L{Deferred} firing with the connected socket.
        """
        def connect():
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(20)
            sock.connect(self.path)
            sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                   array.array("i", fds))])
            return sock
        return threads.deferToThread(connect)

    @inlineCallbacks
    def assertStillAnswering(self):
        """
        The reactor answers another caller (in real time: a reactor
        stuck in a lingering close would not answer within _exchange's 20
        seconds, the linger being 60).
        """
        yield self.assertRefusal(b"\x00\x00\x00\x05hello", "malformed")

    @inlineCallbacks
    def test_lingeringExtraDescriptor(self):
        """
        Red team finding 1: a TCP socket whose close lingers (SO_LINGER,
        unsent data to a peer that never reads), sent as a 4th descriptor
        and left to the service, neither blocks the reactor nor its
        worker.
        """
        null = os.open("/dev/null", os.O_RDWR)
        self.addCleanup(os.close, null)
        lingering = lingeringSocket(self, 60)
        sock = yield self.attack([null, null, null, lingering.fileno()],
                                 b"\0")
        self.addCleanup(sock.close)
        lingering.close()
        yield self.assertStillAnswering()
        yield _until(lambda: not self.factory.descriptors.queued(0))

    @inlineCallbacks
    def test_lingeringRefusedStdin(self):
        """
        The same as a request's stdin: refused (not a unix socket), and
        closed without waiting.
        """
        null = os.open("/dev/null", os.O_RDWR)
        self.addCleanup(os.close, null)
        lingering = lingeringSocket(self, 60)
        sock = yield self.attack([lingering.fileno(), null, null],
                                 self.request(arguments=["-c", "true"]))
        self.addCleanup(sock.close)
        lingering.close()
        yield self.assertStillAnswering()
        data = yield threads.deferToThread(sock.recv, 4096)
        self.assertIn("address family", _result(data)[1])
        yield _until(lambda: not self.factory.descriptors.queued(0))

    @inlineCallbacks
    def test_lingeringInsideUnixSocket(self):
        """
        A unix socket (allowed) with a lingering TCP socket queued in it:
        its close blocks until the linger ends, but in the worker's thread
        for the caller's uid only -- the reactor and other uids go on.
        """
        null = os.open("/dev/null", os.O_RDWR)
        self.addCleanup(os.close, null)
        lingering = lingeringSocket(self, 60)
        inner, outer = socket.socketpair()
        inner.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                array.array("i", [lingering.fileno()]))])
        lingering.close()
        inner.close()
        sock = yield self.attack([outer.fileno(), null, null],
                                 self.request(arguments=["-c", "true"]))
        self.addCleanup(sock.close)
        outer.close()
        data = yield threads.deferToThread(sock.recv, 4096)
        self.assertIn("is run by root", _result(data)[1])
        yield self.assertStillAnswering()
        self.assertTrue(self.factory.descriptors.queued(0))
        other = yield self.factory.descriptors.submit(4242, lambda: "done")
        self.assertEqual(other, "done")
        # The reader goes: the linger ends (a reset), and so does the job.
        lingering.reader.close()
        yield _until(lambda: not self.factory.descriptors.queued(0))

    @inlineCallbacks
    def test_planningDoesNotBlock(self):
        """
        The checks before a login run in a thread: while one hangs (a slow
        name service), other callers are answered; a plan finished for a
        caller that went away is dropped and its jail descriptor closed.
        """
        import threading
        from jailtwist.login import LoginPlan, Refused
        entered, release = threading.Event(), threading.Event()
        planned = []

        def slowPlan(request, peer):
            entered.set()
            release.wait(30)
            fd = os.open("/", os.O_PATH)
            planned.append((fd, os.fstat(fd)))
            if len(planned) == 1:
                raise Refused("abort, slow but refused", 13)
            return LoginPlan(None, fd, "/", "/bin/true", ["true"], {})
        self.factory.plan = slowPlan
        null = os.open("/dev/null", os.O_RDWR)
        self.addCleanup(os.close, null)
        first = self.exchange(self.request(), fds=(null, null, null))
        yield threads.deferToThread(entered.wait, 30)
        yield self.assertRefusal(b"\x00\x00\x00\x01Z", "malformed")
        release.set()
        code, message = _result((yield first))
        self.assertEqual((code, message), (13, "abort, slow but refused"))
        # A second caller leaves before its plan is ready.
        entered.clear()
        release.clear()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        yield threads.deferToThread(sock.connect, self.path)
        sock.sendmsg([self.request()], [(socket.SOL_SOCKET,
                                         socket.SCM_RIGHTS,
                                         array.array("i", [null] * 3))])
        yield threads.deferToThread(entered.wait, 30)
        sock.close()
        yield _until(lambda: not self.factory._perUid)
        release.set()
        yield _until(lambda: len(planned) == 2)
        fd, opened = planned[1]
        # Dropped in the reactor thread right after the plan is handed over.
        yield _until(lambda: _notOpen(fd, opened))

    def test_spawnWithoutFork(self):
        """
        The program is started by C{posix_spawn} (no fork, so no Python
        code of this daemon runs in the child); the helper refuses to run
        without a plan.
        """
        from twisted.internet.protocol import ProcessProtocol

        def noFork():
            raise AssertionError("forked")
        self.patch(os, "fork", noFork)
        ended = Deferred()
        output = []

        class Collect(ProcessProtocol):
            def errReceived(self, data):
                output.append(data)

            def processEnded(self, reason):
                ended.callback(reason.value.exitCode)
        self.factory.spawn(Collect(), {0: "w", 1: "r", 2: "r"})

        def check(code):
            self.assertEqual(code, 1)
            self.assertIn(b"cannot read the plan", b"".join(output))
        return ended.addCallback(check)


class _Lingering:
    def __init__(self, sock, reader):
        self.sock = sock
        self.reader = reader

    def fileno(self):
        return self.sock.fileno()

    def close(self):
        self.sock.close()


def lingeringSocket(testCase, seconds):
    """
    A loopback TCP socket whose last close waits up to C{seconds}: data
    queued towards a reader that never reads, and C{SO_LINGER} on.  The
    wait ends when C{reader} is closed (a reset).
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    testCase.addCleanup(listener.close)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    sock = socket.create_connection(listener.getsockname())
    reader, _ = listener.accept()
    testCase.addCleanup(reader.close)
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    try:
        while True:
            sock.send(b"x" * 65536)
    except BlockingIOError:
        pass
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                    struct.pack("ii", 1, seconds))
    return _Lingering(sock, reader)


class DescriptorWorkerTests(TestCase):
    """
    The worker that inspects and closes callers' descriptors.
    """

    @inlineCallbacks
    def test_stuckUidDelaysOnlyItself(self):
        """
        A job that never ends holds its uid's later jobs, not other uids';
        the threads are bounded.
        """
        import threading
        worker = DescriptorWorker(reactor, maxThreads=2)
        release = threading.Event()
        self.addCleanup(release.set)
        stuck = worker.submit(1001, release.wait, 30)
        later = worker.submit(1001, lambda: "later")
        self.assertEqual((yield worker.submit(1002, lambda: "other")),
                         "other")
        self.assertFalse(later.called)
        self.assertEqual(worker.queued(1001), 2)
        worker.maxThreads = 1
        bounded = worker.submit(1003, lambda: "bounded")
        self.assertFalse(bounded.called)
        release.set()
        self.assertTrue((yield stuck))
        self.assertEqual((yield later), "later")
        self.assertEqual((yield bounded), "bounded")
        self.assertEqual(worker.queued(1001), 0)

    @inlineCallbacks
    def test_failure(self):
        worker = DescriptorWorker(reactor)
        d = worker.submit(1, os.close, -1)
        yield self.assertFailure(d, OSError)
        self.assertEqual(worker.queued(1), 0)


class ClientRefusalTests(SynchronousTestCase):
    """
    Red team finding 5: a service that refuses before reading (its
    answer queued, the connection closed) is reported with its own words.
    """

    def test_refusalAfterBrokenPipe(self):
        client, service = socket.socketpair()
        self.addCleanup(client.close)
        service.sendall(loginwire.refusal(2, "too many logins are starting: "
                                             "try again"))
        service.close()
        self.patch(loginclient, "connect", lambda path: client)
        self.patch(os, "isatty", lambda fd: False)
        from jailtwist.errors import JailtwistError
        error = self.assertRaises(JailtwistError, loginclient.login,
                                  "jk_chrootsh", ["-c", "true"], {},
                                  path="/nonexistent")
        self.assertNotIsInstance(error, loginclient.ServiceUnavailable)
        self.assertIn("too many logins are starting", str(error))

    def test_nothingQueued(self):
        client, service = socket.socketpair()
        self.addCleanup(client.close)
        service.close()
        self.patch(loginclient, "connect", lambda path: client)
        self.patch(os, "isatty", lambda fd: False)
        error = self.assertRaises(loginclient.ServiceUnavailable,
                                  loginclient.login, "jk_chrootsh",
                                  ["-c", "true"], {}, path="/nonexistent")
        self.assertIn("not reachable", str(error))


def _notOpen(fd, opened):
    try:
        st = os.fstat(fd)
    except OSError:
        return True
    return (st.st_dev, st.st_ino) != (opened.st_dev, opened.st_ino)


def _until(predicate, timeout=20.0):
    """
    A Deferred that fires once C{predicate()} holds (polled on the
    reactor, for work done in other threads); fails after C{timeout}.
    """
    from twisted.internet.task import LoopingCall
    from twisted.python.failure import Failure
    started = reactor.seconds()
    done = Deferred()

    def check():
        if predicate():
            loop.stop()
        elif reactor.seconds() - started > timeout:
            loop.stop()
            done.errback(Failure(AssertionError("condition never held")))
    loop = LoopingCall(check)
    loop.start(0.01).addCallback(
        lambda _: None if done.called else done.callback(None))
    return done


def loginservice_timeout():
    from jailtwist.loginservice import REQUEST_TIMEOUT
    return REQUEST_TIMEOUT + 1


# -- real logins through a real suite -----------------------------------------

class ServiceLoginTests(LoginTestCase):
    """
    A real account jailed with jk_jailuser -m, its login commands run
    where no user namespace can be made, and the real suite
    (C{twistd jailtwist}) with its login service.
    """

    user = "jtlsvc1"

    def setUp(self):
        super().setUp()
        self.service = startSuite(self, self.syslog)

    def login(self, *args, env=None, program="jk_chrootsh", pass_fds=(),
              input=None):
        command = withDevLog(self, self.syslog, withoutUserNamespaces(asUser(
            self.user, [harness.script(program)] + list(args), env)))
        return subprocess.run(command, capture_output=True, text=True,
                              timeout=60, pass_fds=pass_fds, cwd="/",
                              input=input or "")

    def startSession(self, program, stdin=subprocess.DEVNULL):
        """
        Start a login whose shell runs C{echo $$; exec PROGRAM} (killed at
        cleanup).

        @return: the process of the login command and the jailed program's
            pid.
        """
        self.setShell("/usr/bin/sh")
        process = subprocess.Popen(
            withDevLog(self, self.syslog, withoutUserNamespaces(asUser(
                self.user, [harness.script("jk_chrootsh"), "-c",
                            f"echo $$; exec {program}"]))),
            stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            cwd="/")
        self.addCleanup(process.wait)
        self.addCleanup(process.kill)
        return process, int(harness.readLine(process.stdout))

    def test_lshThroughService(self):
        """
        jk_lsh's policy of the jail applies: an allowed command runs in the
        jail as the account, a refused one is jk_lsh's one-line refusal.
        """
        result = self.login("-c", "/usr/lib/openssh/sftp-server -h")
        self.assertIn("usage: sftp-server", result.stderr + result.stdout)
        self.assertLogged("login service: user jtlsvc1")
        result = self.login("-c", "/usr/bin/busybox id")
        self.assertRefused(result, 4, "not allowed", tag="jk_lsh")
        event = self.service.events("login")
        self.assertEqual(event["user"], self.user)
        self.assertEqual(event["jail"], self.jail)
        self.assertEqual(event["command"][0], "/usr/lib/openssh/sftp-server")

    def test_loggedOnce(self):
        """
        A login handed to the service is logged once, by the service: the
        command's own "now entering" and jk_lsh's "executing command" are
        held back until it has made a user namespace, which it could not.
        """
        result = self.login("-c", "/usr/lib/openssh/sftp-server -h")
        self.assertIn("usage: sftp-server", result.stderr + result.stdout)
        self.assertLogged("login service: user jtlsvc1")
        self.assertLogged("asking the login service")
        for text in (f"now entering jail {self.jail} for user {self.user}",
                     "executing command '/usr/lib/openssh/sftp-server -h'"):
            harness.waitFor(lambda: any(text in line
                                        for line in self.syslog.lines()),
                            what=text)
            lines = [line for line in self.syslog.lines() if text in line]
            self.assertEqual(len(lines), 1, lines)

    def test_shellExitStatusAndIdentity(self):
        self.setShell("/usr/bin/sh")
        result = self.login(
            "-c", "id -u; id -g; pwd; ls /; cat /proc/self/status 2>&1 | "
            "grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs)'; exit 7",
            env={"SECRET": "1", "LD_PRELOAD": "/x.so"})
        lines = result.stdout.splitlines()
        self.assertEqual(result.returncode, 7, result.stderr)
        self.assertEqual(lines[:3], [str(self.entry[2]), str(self.entry[3]),
                                     f"/home/{self.user}"], result.stderr)
        self.assertIn("etc", lines)
        self.assertNotIn("root", lines)
        result = self.login("-c", "kill -TERM $$")
        self.assertEqual(result.returncode, 128 + 15, result.stderr)
        result = self.login("-c", "env")
        self.assertNotIn("SECRET", result.stdout)
        self.assertNotIn("LD_PRELOAD", result.stdout)

    def test_noNewPrivsNoCapabilities(self):
        # Kept running by an open stdin, inspected from outside (the jail
        # has no /proc).
        process, pid = self.startSession("busybox cat", stdin=subprocess.PIPE)
        status = open(f"/proc/{pid}/status").read()
        fields = dict(line.split(":\t", 1) for line in status.splitlines()
                      if ":\t" in line)
        self.assertEqual(fields["NoNewPrivs"].strip(), "1")
        for name in ("CapEff", "CapPrm", "CapBnd", "CapAmb", "CapInh"):
            self.assertEqual(int(fields[name], 16), 0, name)
        uid = str(self.entry[2])
        self.assertEqual(fields["Uid"].split(), [uid] * 4)
        self.assertEqual(os.readlink(f"/proc/{pid}/root"), self.jail)
        process.stdin.close()
        self.assertEqual(process.wait(30), 0)

    def test_hangupWhenClientGoes(self):
        """
        When the client dies, the jailed program gets SIGHUP.
        """
        process, pid = self.startSession("busybox sleep 600")
        for each in _descendants(process.pid):
            if _name(each) == "jk_chrootsh":
                os.kill(each, 9)
        harness.waitFor(lambda: not os.path.exists(f"/proc/{pid}"),
                        what="the jailed program to be hung up")

    def test_hangupWhenServiceStops(self):
        """
        When the suite stops, the programs it started are hung up.
        """
        process, pid = self.startSession("busybox sleep 600")
        self.service.stop()
        harness.waitFor(lambda: not os.path.exists(f"/proc/{pid}"),
                        what="the jailed program to be hung up")
        self.assertEqual(process.wait(30), 33)
        self.assertIn("closed the connection without a result",
                      process.stderr.read().decode())

    def test_terminalOnlyAsStdout(self):
        """
        A terminal of the caller's never reaches the program (TIOCSTI):
        one as stdout with another stdin is refused.
        """
        import pty
        master, slave = pty.openpty()
        self.addCleanup(os.close, master)
        self.addCleanup(os.close, slave)
        command = withDevLog(self, self.syslog, withoutUserNamespaces(asUser(
            self.user, [harness.script("jk_chrootsh"), "-c",
                        "/usr/lib/openssh/sftp-server -h"])))
        result = subprocess.run(command, stdin=subprocess.DEVNULL,
                                stdout=slave, stderr=subprocess.PIPE,
                                cwd="/", timeout=60)
        self.assertEqual(result.returncode, 2)
        self.assertIn(b"needs one as stdin too", result.stderr)

    def rawLogin(self, program, arguments, environ, user=None):
        """
        Ask the service directly (not through a login command, so nothing
        is checked on the client side) as C{user} (the account by
        default), with any environment.
        """
        code = ("import sys; from jailtwist import loginclient; "
                "from jailtwist.command import runCommand; "
                "runCommand(lambda argv: loginclient.login(%r, %r, %r, "
                "path=%r), name='raw')" % (program, arguments, environ,
                                           loginwire.DEFAULT_SOCKET))
        command = [sys.executable, "-I", "-c", code]
        if user != "root":
            command = asUser(user or self.user, command)
        return subprocess.run(command, capture_output=True, text=True,
                              timeout=60, cwd="/", stdin=subprocess.DEVNULL)

    def test_hostileEnvironment(self):
        """
        The identity is the socket's: C{USER} naming root or another
        account changes nothing, and variables outside jk_chrootsh.ini's
        env= never reach the program.
        """
        self.setShell("/usr/bin/sh")
        result = self.rawLogin("jk_chrootsh", ["-c", "id -u; env"],
                               {"USER": "root", "LD_PRELOAD": "/evil.so",
                                "HOME": "/root", "SHELL": "/bin/bash"})
        self.assertEqual(result.returncode, 0, result.stderr)
        lines = result.stdout.splitlines()
        self.assertEqual(lines[0], str(self.entry[2]))
        self.assertIn(f"USER={self.user}", lines)
        self.assertIn(f"HOME=/home/{self.user}", lines)
        self.assertNotIn("LD_PRELOAD=/evil.so", lines)
        result = self.rawLogin("jk_chrootsh", ["-c", "id -u"],
                               {"USER": self.user}, user="root")
        self.assertEqual(result.returncode, 12, result.stderr)

    def test_serviceChecksItself(self):
        """
        The service makes the login command's checks again (a caller need
        not be a login command): jk_lsh's policy, the jail's safety and
        jk_uchroot's allow list, with their exit statuses and log texts.
        """
        result = self.rawLogin("jk_chrootsh", ["-c", "/usr/bin/busybox id"],
                               {})
        self.assertEqual(result.returncode, 4, result.stderr)
        self.assertIn("tried to run '/usr/bin/busybox id', which is not "
                      "allowed", result.stderr)
        self.assertLogged("tried to run '/usr/bin/busybox id'")
        replaceConfig(self, "jk_uchroot.ini",
                      "[DEFAULT]\nallowed_jails = /nowhere\n")
        result = self.rawLogin("jk_uchroot", ["-j", self.jail, "-x",
                                              "/usr/bin/busybox"], {})
        self.assertEqual(result.returncode, 21, result.stderr)
        self.assertIn("is not allowed in jail", result.stderr)
        os.chmod(self.jail, 0o775)
        result = self.rawLogin("jk_chrootsh", ["-c", "scp -t ."], {})
        self.assertEqual(result.returncode, 53, result.stderr)
        self.assertIn("is not a safe jail", result.stderr)

    def test_undecodableArguments(self):
        """
        Bytes that are not UTF-8 (sent as they are) get jk_lsh's answer,
        escaped in the one line and the log, never a crash.
        """
        result = self.rawLogin("jk_chrootsh",
                               ["-c", "/usr/bin/busybox \udcff\x1b[2J"], {})
        self.assertEqual(result.returncode, 4, result.stderr)
        self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)
        self.assertNotIn("\x1b", result.stderr)
        self.assertLogged("which is not allowed")

    def test_undecodableOptionLogged(self):
        """
        Red team finding 4: an option that is not UTF-8 (jk_uchroot's
        getopt quotes it) still gets its refusal, and the syslog line
        (escaped: syslog refuses such text, and the line was lost).
        """
        result = self.rawLogin("jk_uchroot", ["--\udcff"], {})
        self.assertNotEqual(result.returncode, 0, result.stderr)
        self.assertIn("not recognized", result.stderr)
        self.assertLogged("--\\udcff not recognized")

    def test_newlineEscapedInSyslog(self):
        """
        A line break in caller-chosen text reaches syslog escaped (as
        C{\\n}), whatever the receiver does with raw ones: no forged line.
        """
        result = self.rawLogin(
            "jk_uchroot", ["--x\nFORGED: login service: user root"], {})
        self.assertNotEqual(result.returncode, 0, result.stderr)
        self.assertLogged("--x\\nFORGED")
        for line in self.syslog.lines():
            self.assertNotIn("#012", line)

    def test_callerProcessState(self):
        """
        Red team finding 3: the program has the caller's resource limits
        (pam_limits), audit login uid (pam_loginuid), nice value and
        cgroup, not the root daemon's.
        """
        self.setShell("/usr/bin/sh")
        command = ["sh", "-c", "echo 4242 > /proc/self/loginuid && "
                               "exec \"$@\"", "sh"] + asUser(
            self.user, ["nice", "-n", "7", "prlimit", "--nproc=40:40",
                        "--nofile=64:64", "--core=0:0",
                        harness.script("jk_chrootsh"), "-c",
                        "echo $$; exec busybox cat"])
        process = subprocess.Popen(
            withDevLog(self, self.syslog, withoutUserNamespaces(command)),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, cwd="/")
        self.addCleanup(process.wait)
        self.addCleanup(process.kill)
        pid = int(harness.readLine(process.stdout))
        self.assertEqual(open(f"/proc/{pid}/loginuid").read(), "4242")
        limits = open(f"/proc/{pid}/limits").read()
        from jailtwist.loginservice import parseLimits
        parsed = parseLimits(limits)
        self.assertEqual(parsed["RLIMIT_NPROC"], [40, 40], limits)
        self.assertEqual(parsed["RLIMIT_NOFILE"], [64, 64], limits)
        self.assertEqual(parsed["RLIMIT_CORE"], [0, 0], limits)
        self.assertEqual(os.getpriority(os.PRIO_PROCESS, pid), 7)
        clients = [p for p in _descendants(process.pid)
                   if _name(p) == "jk_chrootsh"]
        self.assertEqual(open(f"/proc/{pid}/cgroup").read(),
                         open(f"/proc/{clients[0]}/cgroup").read())
        process.stdin.close()
        self.assertEqual(process.wait(30), 0)

    def test_symlinkedJail(self):
        """
        A jail path with a symlink in it is refused by the service too
        (the kernel's name for the opened directory must be the path).
        """
        link = os.path.join(os.path.dirname(self.jail), "link")
        os.symlink(self.jail, link)
        subprocess.run(["usermod", "-d", f"{link}/./home/{self.user}",
                        self.user], check=True)
        result = self.rawLogin("jk_chrootsh", ["-c", "scp -t ."], {})
        self.assertEqual(result.returncode, 21, result.stderr)
        self.assertIn(f"but it should be {link}", result.stderr)

    def test_credentialsFromConnect(self):
        """
        The caller is who connected, whatever the process that sends the
        request has become since (or whoever now has its pid): a socket
        root connected and handed to a process of the account is root's.
        """
        code = (
            "import os, socket, sys\n"
            "from jailtwist import loginclient, loginwire\n"
            "s = loginclient.connect(%r)\n"
            "os.setgroups([]); os.setresgid(%d, %d, %d); "
            "os.setresuid(%d, %d, %d)\n"
            "loginclient.sendRequest(s, loginwire.Request("
            "'jk_chrootsh', arguments=['-c', 'id -u']))\n"
            "print(loginclient.session(s))\n"
            % ((loginwire.DEFAULT_SOCKET,) + (self.entry[3],) * 3
               + (self.entry[2],) * 3))
        result = subprocess.run([sys.executable, "-I", "-c", code],
                                capture_output=True, text=True, timeout=60,
                                cwd="/", stdin=subprocess.DEVNULL)
        self.assertIn("(12, 'abort, jk_chrootsh is run by root", result.stdout,
                      result.stderr)

    def test_notJailedRefused(self):
        """
        An account whose shell is not jk_chrootsh gets nothing.
        """
        subprocess.run(["usermod", "-s", "/bin/sh", self.user], check=True)
        result = self.login("-c", "/usr/lib/openssh/sftp-server -h")
        self.assertRefused(result, 13, "the login service serves only "
                                       "jailed accounts")

    def test_uchroot(self):
        """
        jk_uchroot through the service: only what its allow list names.
        """
        other = os.path.dirname(self.jail)
        replaceConfig(self, "jk_uchroot.ini",
                      f"[DEFAULT]\nallowed_jails = {other}/nowhere\n")
        result = self.login("-j", self.jail, "-x", "/usr/bin/busybox",
                            "--", "true", program="jk_uchroot")
        self.assertRefused(result, 21, "is not allowed in jail",
                           tag="jk_uchroot")
        replaceConfig(self, "jk_uchroot.ini",
                      f"[DEFAULT]\nallowed_jails = {self.jail}\n")
        result = self.login("-j", self.jail, "-x", "/usr/bin/busybox",
                            "--", "sh", "-c", "id -u; exit 3",
                            program="jk_uchroot")
        self.assertEqual(result.returncode, 3, result.stderr)
        self.assertEqual(result.stdout.split(), [str(self.entry[2])])

    def test_procmail(self):
        """
        jk_procmailwrapper through the service: the jail's procmail runs
        in the jail as the recipient, with the message on its stdin.
        """
        procmail = os.path.join(self.jail, "usr/bin/procmail")
        with open(procmail, "w") as f:
            f.write("#!/usr/bin/busybox sh\n"
                    "echo delivered $(/usr/bin/busybox id -u) "
                    "$(/usr/bin/busybox cat) in $PWD\n")
        os.chmod(procmail, 0o755)
        result = self.login("-d", self.user, input="a message",
                            program="jk_procmailwrapper")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.strip(),
                         f"delivered {self.entry[2]} a message in "
                         f"/home/{self.user}")
        self.assertLogged("login service: user jtlsvc1")

    def test_serviceNotRunning(self):
        self.service.stop()
        result = self.login("-c", "/usr/lib/openssh/sftp-server -h")
        self.assertEqual(result.returncode, 33, result.stderr)
        self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)
        for part in ("user.max_user_namespaces=0", "AppArmor",
                     "twistd jailtwist"):
            self.assertIn(part, result.stderr)


class KeyringTests(LoginTestCase):
    """
    Red team finding 2: the suite runs in a session keyring holding a key
    of root's (as pam_keyinit or systemd's C{KeyringMode=private} give
    it); logins through the service must see neither it nor each other's
    keys.  A static probe (tests/keyprobe.c) reads the keyring in the jail.
    """

    user = "jtlsvc2"

    def setUp(self):
        super().setUp()
        compiler = shutil.which("cc") or shutil.which("gcc")
        if compiler is None:
            raise AssertionError("no C compiler: install gcc and libc6-dev "
                                 "(bootstrap.sh's TEST_PACKAGES)")
        probe = harness.shortTempDir(self).child("keyprobe").path
        subprocess.run([compiler, "-static", "-O", "-o", probe,
                        os.path.join(os.path.dirname(__file__),
                                     "keyprobe.c")], check=True)
        target = os.path.join(self.jail, "usr/bin/keyprobe")
        shutil.copy(probe, target)
        os.chmod(target, 0o755)
        self.patch(sys.modules[__name__], "WITH_PTYS",
                   [probe, "wrap", "rootsecret", "TOPSECRET"] + WITH_PTYS)
        self.service = startSuite(self, self.syslog)
        self.setShell("/usr/bin/sh")

    def login(self, command, **kw):
        return withDevLog(self, self.syslog, withoutUserNamespaces(asUser(
            self.user, [harness.script("jk_chrootsh"), "-c", command])))

    def test_ownSessionKeyring(self):
        result = subprocess.run(self.login("keyprobe get rootsecret"),
                                capture_output=True, text=True, timeout=60,
                                cwd="/", stdin=subprocess.DEVNULL)
        self.assertEqual(result.stdout, "get rootsecret: (not found)\n",
                         result.stderr)
        # One login keeps a key in its keyring; another does not see it.
        holder = subprocess.Popen(
            self.login("keyprobe put password hunter2; exec busybox cat"),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, cwd="/")
        self.addCleanup(holder.wait)
        self.addCleanup(holder.kill)
        self.assertEqual(harness.readLine(holder.stdout).strip(),
                         "put password: done")
        result = subprocess.run(self.login("keyprobe get password"),
                                capture_output=True, text=True, timeout=60,
                                cwd="/", stdin=subprocess.DEVNULL)
        self.assertEqual(result.stdout, "get password: (not found)\n",
                         result.stderr)
        holder.stdin.close()
        self.assertEqual(holder.wait(30), 0)


class ServiceFuzzTests(SynchronousTestCase):
    """
    Garbage at the real service (the suite as a separate process): every
    complete frame gets exactly one one-line refusal, and the service
    keeps serving.
    """

    def setUp(self):
        harness.isolated(self)
        self.syslog = harness.startRsyslog(self)
        self.suite = startSuite(self, self.syslog)
        self.null = os.open("/dev/null", os.O_RDWR)
        self.addCleanup(os.close, self.null)

    @given(st.binary(max_size=512), st.booleans(), st.integers(0, 5))
    @settings(max_examples=150, deadline=None)
    def test_garbage(self, payload, framed, fdCount):
        data = (loginwire.frame(b"Q", payload) if framed else payload) \
            or b"\0"
        received = _exchange(loginwire.DEFAULT_SOCKET, data,
                             fds=(self.null,) * fdCount, shutdown=True)
        if not received:
            # Only a frame that never completed goes without an answer.
            try:
                complete = loginwire.FrameDecoder().feed(data)
            except loginwire.ProtocolError:
                self.fail(f"a bad frame went unanswered: {data!r}")
            self.assertEqual(complete, [], data)
            return
        frames = loginwire.FrameDecoder(2048, 2048).feed(received)
        self.assertEqual(len(frames), 1, received)
        code, message = loginwire.parseResult(frames[0])
        self.assertIsNotNone(message)
        self.assertNotIn("\n", message)
        self.assertNotEqual(code, 0)
        self.assertIsNone(self.suite.process.poll())


def _descendants(pid):
    found = []
    for each in os.listdir("/proc"):
        if each.isdigit():
            try:
                stat = open(f"/proc/{each}/stat").read()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                found.append(int(each))
                found += _descendants(int(each))
    return found


def _name(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return None
    return next((os.path.basename(a.decode()) for a in argv
                 if a.endswith((b"jk_chrootsh", b"jk_uchroot"))), None)


class Suite:
    """
    A real C{twistd jailtwist} (control channel and login service) started
    by a test, and an event reader on its control channel.
    """

    def __init__(self, testCase, syslog, prefix=()):
        """
        @param prefix: words to run twistd under (a unit's confinement).
        """
        self.testCase = testCase
        directory = harness.shortTempDir(testCase)
        self.control = directory.child("ctl").path
        self.socket = loginwire.DEFAULT_SOCKET
        ini = directory.child("jailtwist.ini")
        ini.setContent(
            f"[control]\nipc = unix:{self.control}:mode=600\n\n"
            f"[probes]\nenabled = no\n\n[login]\n"
            f"endpoint = unix:{self.socket}:mode=0666\n".encode())
        self.log = directory.child("twistd.log").path
        notify = harness.NotifySocket(testCase)
        self.process = subprocess.Popen(
            withDevLog(testCase, syslog, WITH_PTYS + list(prefix) +
                       [harness.script("twistd"), "-n", "--pidfile=",
                        "--logfile", self.log, "jailtwist", "--config",
                        ini.path]), env=dict(os.environ, **notify.environ))
        testCase.addCleanup(self.stop)
        # READY=1 (sd_notify): the control channel and the login service
        # listen.
        try:
            notify.waitFor("READY", process=self.process)
        except AssertionError as e:
            raise AssertionError(f"{e}: {open(self.log).read()}")
        self.reader = subprocess.Popen(
            [harness.script("jailtwist"), "-f", self.control, "events",
             "--json"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        testCase.addCleanup(self.reader.wait)
        testCase.addCleanup(self.reader.terminate)
        harness.waitFor(lambda: "follows events" in open(self.log).read(),
                        what="the subscription")

    def events(self, kind):
        while True:
            event = json.loads(harness.readLine(self.reader.stdout))
            if event["kind"] == kind:
                return event

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def startSuite(testCase, syslog):
    return Suite(testCase, syslog)


class SocketDirectoryTests(SynchronousTestCase):

    def test_unsafe(self):
        """
        The service refuses to put its socket where anybody but root could
        replace it.
        """
        from jailtwist.errors import JailtwistError
        from jailtwist.loginservice import checkSocketDirectory
        directory = harness.shortTempDir(self)
        safe = directory.child("safe")
        checkSocketDirectory(safe.path)
        self.assertEqual(os.stat(safe.path).st_mode & 0o777, 0o755)
        os.chmod(safe.path, 0o777)
        self.assertRaises(JailtwistError, checkSocketDirectory, safe.path)
        os.chmod(safe.path, 0o755)
        os.chown(safe.path, 1, 1)
        self.assertRaises(JailtwistError, checkSocketDirectory, safe.path)


class SuiteOptionsTests(SynchronousTestCase):
    """
    The login service's settings in C{twistd jailtwist}.
    """

    def options(self, text, *argv):
        from jailtwist.tap import suite
        ini = harness.shortTempDir(self).child("j.ini")
        ini.setContent(text.encode())
        options = suite.Options()
        options.parseOptions(["--config", ini.path] + list(argv))
        return options

    def test_default(self):
        self.assertEqual(self.options("")["loginEndpoint"],
                         loginwire.DEFAULT_ENDPOINT)

    def test_configured(self):
        text = "[login]\nendpoint = unix:/run/l.sock:mode=0666\n"
        self.assertEqual(self.options(text)["loginEndpoint"],
                         "unix:/run/l.sock:mode=0666")
        self.assertIsNone(self.options("[login]\nenabled = no\n")
                          ["loginEndpoint"])
        self.assertIsNone(self.options(text, "--no-login")["loginEndpoint"])
        self.assertEqual(self.options(text, "--login", "unix:/run/o")
                         ["loginEndpoint"], "unix:/run/o")

    def test_refused(self):
        from twisted.python import usage
        for text, argv, message in (
                ("[login]\nendpoint = tcp:22\n", (), "unix: endpoint"),
                ("", ("--login", "tcp:22"), "unix: endpoint"),
                ("[login]\nport = 1\n", (), "unknown key")):
            error = self.assertRaises(usage.UsageError, self.options, text,
                                      *argv)
            self.assertIn(message, str(error))
