"""
Unit tests for L{jailtwist.skd} and L{jailtwist.tap.skd}: option parsing,
address and log specifications, the child's environment, and the accept
and datagram loops driven on a L{MemoryReactorClock} with real sockets and
fake children.
"""

import os
import signal
import socket

from twisted.application.service import IService
from twisted.internet.interfaces import IReadDescriptor
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from jailtwist.errors import JailtwistError
from jailtwist.skd import (
    ChildWatch, EndpointListener, LibcSpawn, IListener, IProgramLauncher, InetListener, JailLauncher,
    PidFile, SigchldReaper, SocketDaemon, SpawnLauncher, StderrLog,
    Supervisor, watchChildExit, InheritedListener,
    UnixListener, baseEnvironment, connectionEnvironment,
    datagramEnvironment, describeExit, parseInetAddress, parseLogSpec,
    privilegeTarget, resolveProgram, _Readable)
from jailtwist.tap.skd import Options, makeService

from tests import harness


def readAll(sock, timeout=10):
    """
    Everything a real child writes to C{sock} until it closes it.
    """
    sock.settimeout(timeout)
    chunks = []
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def parse(*argv):
    options = Options()
    options.parseOptions(list(argv))
    return options


class OptionsTests(SynchronousTestCase):
    """
    skd's command line, with options ending at the first non-option word.
    """

    def test_optionsEndAtProgram(self):
        """
        PROG's own options are PROG's: no C{--} is needed (skd's GNU getopt
        swallowed them).
        """
        options = parse("-U", "-t", "3000", "busybox", "sh", "-c", "echo")
        self.assertEqual(options["argv"], ["busybox", "sh", "-c", "echo"])
        self.assertTrue(options["drop"])
        self.assertEqual(options["maxclients"], 0)

    def test_doubleDashStillAccepted(self):
        options = parse("-t", "3000", "--", "cat", "-n")
        self.assertEqual(options["argv"], ["cat", "-n"])

    def test_combinedFlags(self):
        """
        C{-vt 3000 -BP FILE -L SPEC} as in skd's README.
        """
        options = parse("-vt", "3000", "-BP", "/run/motd.pid",
                        "-L", "testsrv:daemon.info", "cat", "/etc/motd")
        self.assertEqual(
            (options["verbose"], options["namespace"], options["address"],
             options["stream"], options["background"], options["pidfile"],
             options["log"]),
            (True, "inet", "3000", True, True, "/run/motd.pid",
             ("syslog", "testsrv", "daemon", "info")))

    def test_styleLastWins(self):
        """
        C{-t} is C{-s -i}, C{-u} is C{-d -i}; a later C{-s}/C{-d} wins.
        """
        self.assertFalse(parse("-t", "1", "-d", "x")["stream"])
        self.assertTrue(parse("-u", "1", "-s", "x")["stream"])
        self.assertFalse(parse("-d", "-l", "/p", "x")["stream"])
        self.assertEqual(parse("-x", "/p", "x")["namespace"], "local")

    def test_endpointStrings(self):
        for address in ("tcp:3000:interface=::1", "unix:/run/s:mode=660",
                        "systemd:domain=INET:index=0", "tcp6:80"):
            options = parse("-t", address, "cat")
            self.assertEqual(options["namespace"], "endpoint")

    def test_badInput(self):
        """
        Each bad command line is one clear L{usage.UsageError}.
        """
        cases = [
            (["-z", "cat"], "option -z not recognized"),
            (["-t", "3000"], "missing PROG"),
            ([], "missing PROG"),
            (["-b", "ten", "cat"], "-b takes a positive integer argument"),
            (["-c", "0", "cat"], "-c takes a positive integer argument"),
            (["-L", "tag:nofacility.info", "cat"], "invalid log spec"),
            (["-u", "tcp:53", "cat"], "endpoint strings describe stream"),
            (["-t", "[::1:80", "cat"], "unbalanced '['"),
            (["-t", "[::1]80", "cat"], "must be in form PORT"),
            (["-t", "host:", "cat"], "must be in form PORT"),
            (["-S", "-t", "3000", "cat"], "-S restarts PROG only"),
            (["--caps", "default", "cat"], "apply to --jail"),
            (["--jail", "/j", "--caps", "bogus", "cat"],
             "unknown capability"),
            (["--jail", "/j", "--unshare", "net,pid", "cat"],
             "unknown namespace 'pid'"),
            (["--unshare", "net", "cat"], "apply to --jail"),
        ]
        for argv, message in cases:
            e = self.assertRaises(usage.UsageError, parse, *argv)
            self.assertIn(message, str(e), argv)
            self.assertNotIn("\n", str(e))


class AddressTests(SynchronousTestCase):

    def test_forms(self):
        self.assertEqual(parseInetAddress("3000"), (None, "3000", False))
        self.assertEqual(parseInetAddress("127.0.0.1:3000"),
                         ("127.0.0.1", "3000", False))
        self.assertEqual(parseInetAddress("[::1]:3000"),
                         ("::1", "3000", True))
        self.assertEqual(parseInetAddress(":3000"), (None, "3000", False))
        self.assertEqual(parseInetAddress("[]:3000"), (None, "3000", True))

    def test_bindAnnouncesPortZero(self):
        """
        Port 0 binds a free port; once listening, the daemon hands it to
        C{announce} (skd printed it before listening, and never flushed it).
        """
        listener = InetListener("127.0.0.1:0")
        announced = []
        daemon = SocketDaemon(listener, SpawnLauncher(["true"]),
                              announce=announced.append,
                              reactor=MemoryReactorClock())
        daemon.privilegedStartService()
        self.addCleanup(daemon.stopService)
        self.assertEqual(announced, [])
        daemon.startService()
        self.assertEqual(announced, [listener.socket.getsockname()[1]])
        self.assertNotEqual(announced, [0])

    def test_ipv6(self):
        listener = InetListener("[::1]:0")
        listener.bind()
        self.addCleanup(listener.close)
        self.assertEqual(listener.socket.family, socket.AF_INET6)
        self.assertEqual(listener.socket.getsockname()[0], "::1")

    def test_portInUse(self):
        first = InetListener("127.0.0.1:0")
        first.bind()
        first.listen()
        self.addCleanup(first.close)
        second = InetListener(f"127.0.0.1:{first.boundPort}")
        self.addCleanup(second.close)
        e = self.assertRaises(JailtwistError, second.bind)
        self.assertIn("Address already in use", str(e))
        self.assertIn(f"127.0.0.1:{first.boundPort}", str(e))

    def test_unknownHost(self):
        e = self.assertRaises(JailtwistError,
                              InetListener("no-such-host.invalid:80").bind)
        self.assertIn("does not exist", str(e))

    def test_unixPathTooLong(self):
        path = "/tmp/" + "x" * 120
        e = self.assertRaises(JailtwistError, UnixListener(path).bind)
        self.assertIn("too long", str(e))

    def test_unixReplacesOnlySockets(self):
        """
        A stale socket file is replaced; any other file is left alone and
        refused.  The file is removed on close.
        """
        directory = harness.shortTempDir(self)
        path = directory.child("s").path
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(path)
        stale.close()
        listener = UnixListener(path)
        listener.bind()
        listener.listen()
        self.assertTrue(os.path.exists(path))
        listener.close()
        self.assertFalse(os.path.exists(path))
        regular = directory.child("f")
        regular.setContent(b"data")
        e = self.assertRaises(JailtwistError, UnixListener(regular.path).bind)
        self.assertIn("not a socket", str(e))
        self.assertEqual(regular.getContent(), b"data")

    def test_interfaces(self):
        verifyObject(IListener, InetListener("3000"))
        verifyObject(IListener, UnixListener("/tmp/x"))
        verifyObject(IListener, EndpointListener("tcp:3000"))
        verifyObject(IListener, InheritedListener())
        verifyObject(IProgramLauncher, SpawnLauncher(["cat"]))
        verifyObject(IProgramLauncher, JailLauncher(["cat"], "/srv/jail"))
        verifyObject(IService, SocketDaemon(InetListener("1"),
                                            SpawnLauncher(["cat"])))
        verifyObject(IService, Supervisor(SpawnLauncher(["cat"])))


class LogSpecTests(SynchronousTestCase):

    def test_forms(self):
        self.assertEqual(parseLogSpec(">/var/log/x"), ("truncate", "/var/log/x"))
        self.assertEqual(parseLogSpec(">> /var/log/x"),
                         ("append", "/var/log/x"))
        self.assertEqual(parseLogSpec("tag"),
                         ("syslog", "tag", "daemon", "notice"))
        self.assertEqual(parseLogSpec("mytag:local3.warning"),
                         ("syslog", "mytag", "local3", "warning"))
        self.assertEqual(parseLogSpec("t:LOCAL0.ERROR"),
                         ("syslog", "t", "local0", "err"))
        self.assertEqual(parseLogSpec("t:152.4"),
                         ("syslog", "t", "local3", "warning"))

    def test_bad(self):
        for spec in ("t:daemon", "t:bogus.info", "t:daemon.loud", ":x.y",
                     "t:19.4", "t:daemon.8", ">", ">>"):
            self.assertRaises(JailtwistError, parseLogSpec, spec)

    def test_logFileAppends(self):
        """
        C{>>FILE} appends; C{>FILE} truncates; a symlink is refused.
        """
        directory = harness.shortTempDir(self)
        target = directory.child("log")
        target.setContent(b"old\n")
        for spec, expected in ((">>", b"old\nnew\n"), (">", b"new\n")):
            target.setContent(b"old\n")
            log = StderrLog(parseLogSpec(spec + target.path), redirect=False)
            log.privilegedStartService()
            os.write(log.fd, b"new\n")
            os.close(log.fd)
            self.assertEqual(target.getContent(), expected)
        link = directory.child("link")
        os.symlink(target.path, link.path)
        log = StderrLog(parseLogSpec(">>" + link.path), redirect=False)
        e = self.assertRaises(JailtwistError, log.privilegedStartService)
        self.assertIn(link.path, str(e))

    def test_syslogThroughLogger(self):
        """
        C{-L TAG:FAC.PRI} feeds a C{logger(1)} process: a real rsyslogd gets
        each line with the tag (empty lines skipped).
        """
        syslog = harness.startRsyslog(self)
        log = StderrLog(parseLogSpec("skdtest:local3.warning"),
                        syslogSocket=syslog.socket, redirect=False)
        log.privilegedStartService()
        os.write(log.fd, b"first line\n\nsecond line\n")
        os.close(log.fd)
        self.assertEqual(log.logger.wait(10), 0)
        lines = syslog.waitForLines(2)
        self.assertEqual(lines, ["skdtest: first line", "skdtest: second line"])


class EnvironmentTests(SynchronousTestCase):

    def connectedPair(self, family, address):
        server = socket.socket(family)
        self.addCleanup(server.close)
        server.bind(address)
        server.listen(1)
        client = socket.socket(family)
        self.addCleanup(client.close)
        client.connect(server.getsockname())
        connection, remote = server.accept()
        self.addCleanup(connection.close)
        return client, connection, remote

    def test_tcp(self):
        client, connection, remote = self.connectedPair(
            socket.AF_INET, ("127.0.0.1", 0))
        env, (message, fields) = connectionEnvironment(connection, remote)
        self.assertEqual(env, {
            "PROTO": "TCP", "TCPLOCALIP": "127.0.0.1",
            "TCPLOCALPORT": str(connection.getsockname()[1]),
            "TCPREMOTEIP": "127.0.0.1",
            "TCPREMOTEPORT": str(client.getsockname()[1])})
        self.assertEqual(message.format(**fields),
                         f"Accepted connection from [127.0.0.1]:"
                         f"{client.getsockname()[1]}")

    def test_tcp6(self):
        client, connection, remote = self.connectedPair(
            socket.AF_INET6, ("::1", 0))
        env, _ = connectionEnvironment(connection, remote)
        self.assertEqual((env["PROTO"], env["TCPLOCALIP"], env["TCPREMOTEIP"]),
                         ("TCP", "::1", "::1"))

    def test_unix(self):
        path = harness.shortTempDir(self).child("s").path
        client, connection, remote = self.connectedPair(socket.AF_UNIX, path)
        env, (message, fields) = connectionEnvironment(connection, remote)
        self.assertEqual(env, {
            "PROTO": "UNIX-STREAM", "PEERPID": str(os.getpid()),
            "PEERUID": str(os.getuid()), "PEERGID": str(os.getgid())})
        self.assertEqual(
            message.format(**fields),
            f"Accepted local connection from pid {os.getpid()} "
            f"(uid = {os.getuid()}, gid = {os.getgid()})")

    def test_datagram(self):
        env, (message, fields) = datagramEnvironment(
            socket.AF_INET, ("127.0.0.1", 5353))
        self.assertEqual(env, {"PROTO": "UDP"})
        self.assertEqual(message.format(**fields),
                         "Received initial datagram from [127.0.0.1]:5353")
        env, (message, _) = datagramEnvironment(socket.AF_UNIX, "")
        self.assertEqual(env, {"PROTO": "UNIX-DGRAM"})
        self.assertEqual(message, "Received initial local datagram")

    def test_staleVariablesRemoved(self):
        """
        Connection variables in skd's own environment never reach a child.
        """
        base = baseEnvironment({"PATH": "/bin", "PROTO": "X", "PEERPID": "1",
                                "TCPREMOTEHOST": "h", "UID": "5",
                                "LISTEN_FDS": "1", "LISTEN_PID": "9",
                                "NOTIFY_SOCKET": "/run/systemd/notify",
                                "WATCHDOG_USEC": "1"})
        self.assertEqual(base, {"PATH": "/bin", "UID": "5"})

    def test_privilegeTarget(self):
        self.assertEqual(privilegeTarget({"UID": "10", "GID": "20"}),
                         (10, 20, None))
        self.assertEqual(
            privilegeTarget({"UID": "1", "GID": "2", "ROOT": "/srv/r"}),
            (1, 2, "/srv/r"))
        for environ, message in (({"UID": "1"}, "$GID not set"),
                                 ({"GID": "1"}, "$UID not set"),
                                 ({"UID": "x", "GID": "1"}, "invalid value"),
                                 ({"UID": "1", "GID": "-1"}, "invalid")):
            e = self.assertRaises(JailtwistError, privilegeTarget, environ)
            self.assertIn(message, str(e))

    def test_resolveProgram(self):
        self.assertEqual(resolveProgram("sh", {"PATH": "/nowhere:/bin"}),
                         "/bin/sh")
        e = self.assertRaises(JailtwistError, resolveProgram,
                              "no-such-program-here", {"PATH": "/bin"})
        self.assertIn("not found in PATH", str(e))
        self.assertRaises(JailtwistError, resolveProgram, "/no/such", {})

    def test_describeExit(self):
        message, fields = describeExit("cat", 7, 3 << 8)
        self.assertEqual(message.format(**fields),
                         "cat (pid 7) exited with status 3")
        message, fields = describeExit("cat", 7, 9)
        self.assertEqual(message.format(**fields),
                         "cat (pid 7) was terminated by signal 9")


@implementer(IProgramLauncher)
class FakeLauncher:
    """
    Records launches and hands out pids; can be told to fail.
    """

    program = "fake"

    def __init__(self):
        self.launched = []
        self.failWith = None
        self.prepared = False

    def prepare(self):
        self.prepared = True

    def launch(self, stdio, environ):
        if self.failWith is not None:
            raise self.failWith
        peer = None
        if stdio is not None:
            probe = socket.socket(fileno=os.dup(stdio))
            try:
                peer = probe.getpeername()
            except OSError:
                peer = None
            probe.close()
        self.launched.append((stdio, environ, peer))
        return 1000 + len(self.launched)

    def execute(self):
        raise JailtwistError("not in these tests")


class FakeWatch:
    def __init__(self, reactor, pid, onExit):
        self.pid = pid
        self.onExit = onExit
        self.closed = False

    def close(self):
        self.closed = True

    def exit(self, status=0):
        self.onExit(self.pid, status)


class AcceptTests(SynchronousTestCase):
    """
    The accept loop, on a memory reactor with a real listening socket.
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.launcher = FakeLauncher()
        self.listener = InetListener("127.0.0.1:0")

    def startDaemon(self, **kw):
        daemon = SocketDaemon(self.listener, self.launcher,
                              reactor=self.reactor, watchChild=FakeWatch,
                              environ={"PATH": "/bin", "PROTO": "stale"},
                              **kw)
        daemon.privilegedStartService()
        daemon.startService()
        self.addCleanup(daemon.stopService)
        return daemon

    def connect(self):
        client = socket.create_connection(
            ("127.0.0.1", self.listener.boundPort))
        self.addCleanup(client.close)
        return client

    def reader(self):
        readers = self.reactor.getReaders()
        listening = [r for r in readers
                     if r.fileno() == self.listener.socket.fileno()]
        return listening[0] if listening else None

    def test_readerProvidesInterface(self):
        self.startDaemon()
        verifyObject(IReadDescriptor, self.reader())

    def test_acceptsEveryWaitingConnection(self):
        """
        One readiness event accepts every waiting connection; each child
        gets the connection as its stdio and skd's environment plus the
        connection's variables; the parent keeps no connection open.
        """
        self.startDaemon()
        self.assertTrue(self.launcher.prepared)
        clients = [self.connect() for _ in range(3)]
        self.reader().doRead()
        self.assertEqual(len(self.launcher.launched), 3)
        for client, (stdio, environ, peer) in zip(clients,
                                                  self.launcher.launched):
            self.assertEqual(peer, client.getsockname())
            self.assertEqual(environ["PATH"], "/bin")
            self.assertEqual(environ["PROTO"], "TCP")
            self.assertEqual(environ["TCPREMOTEPORT"],
                             str(client.getsockname()[1]))
        for client in clients:
            client.settimeout(5)
            self.assertEqual(client.recv(1), b"")

    def test_maxClientsDefersAccept(self):
        """
        At MAXCLIENTS children skd stops accepting (the third client waits
        in the backlog) and accepts again when one exits.
        """
        daemon = self.startDaemon(maxClients=2)
        for _ in range(3):
            self.connect()
        self.reader().doRead()
        self.assertEqual(len(self.launcher.launched), 2)
        self.assertIsNone(self.reader())
        daemon.children[1001].exit()
        self.assertIsNotNone(self.reader())
        self.reader().doRead()
        self.assertEqual(len(self.launcher.launched), 3)
        self.assertIsNone(self.reader())

    def test_noDelayOnEveryConnection(self):
        """
        -n sets TCP_NODELAY on each accepted socket (skd set it on the
        listener after the first accept).
        """
        seen = []
        launch = self.launcher.launch

        def check(stdio, environ):
            probe = socket.socket(fileno=os.dup(stdio))
            seen.append(probe.getsockopt(socket.IPPROTO_TCP,
                                         socket.TCP_NODELAY))
            probe.close()
            return launch(stdio, environ)
        self.launcher.launch = check
        self.startDaemon(noDelay=True)
        self.connect()
        self.reader().doRead()
        self.connect()
        self.reader().doRead()
        self.assertEqual(seen, [1, 1])

    def test_spawnFailureLogged(self):
        """
        A child that cannot be started is reported; the connection is
        closed and skd keeps accepting.
        """
        from twisted.logger import capturedLogs
        self.launcher.failWith = FileNotFoundError(2, "No such file")
        self.startDaemon()
        client = self.connect()
        with capturedLogs() as events:
            self.reader().doRead()
        self.assertEqual(
            [e["log_format"].format(**e) for e in events],
            ["Exec failed: fake: No such file"])
        client.settimeout(5)
        self.assertEqual(client.recv(1), b"")
        self.assertIsNotNone(self.reader())

    def test_verboseReports(self):
        from twisted.logger import capturedLogs
        daemon = self.startDaemon(verbose=True)
        client = self.connect()
        with capturedLogs() as events:
            self.reader().doRead()
            daemon.children[1001].exit(1 << 8)
        port = client.getsockname()[1]
        self.assertEqual(
            [e["log_format"].format(**e) for e in events],
            [f"Accepted connection from [127.0.0.1]:{port}",
             "Started fake (pid 1001)",
             "fake (pid 1001) exited with status 1"])

    def test_acceptFailureRetriesAfterASecond(self):
        """
        An accept error other than a vanished client (here: out of file
        descriptors) pauses accepting for one second instead of spinning.
        """
        daemon = self.startDaemon()
        real = self.listener.socket

        class Exhausted:
            family = real.family

            def fileno(self):
                return real.fileno()

            def accept(self):
                raise OSError(24, "Too many open files")
        self.listener.socket = Exhausted()
        self.connect()
        self.reader().doRead()
        self.assertIsNone(self.reader())
        self.listener.socket = real
        self.reactor.advance(0.9)
        self.assertIsNone(self.reader())
        self.reactor.advance(0.1)
        self.assertIsNotNone(self.reader())
        self.reader().doRead()
        self.assertEqual(len(self.launcher.launched), 1)
        self.assertTrue(daemon.running)

    def test_stopClosesListener(self):
        daemon = self.startDaemon()
        fd = self.listener.socket.fileno()
        daemon.stopService()
        self.assertEqual(self.reactor.getReaders(), [])
        self.assertRaises(OSError, os.fstat, fd)


class DatagramTests(SynchronousTestCase):
    """
    inetd "wait" semantics for datagram sockets.
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.launcher = FakeLauncher()
        self.listener = InetListener("127.0.0.1:0", stream=False)
        self.daemon = SocketDaemon(self.listener, self.launcher,
                                   reactor=self.reactor, watchChild=FakeWatch)
        self.daemon.privilegedStartService()
        self.daemon.startService()
        self.addCleanup(self.daemon.stopService)
        self.client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(self.client.close)
        self.client.bind(("127.0.0.1", 0))
        self.address = ("127.0.0.1", self.listener.boundPort)

    def test_waitSemantics(self):
        """
        The first datagram starts one child on the listening socket itself,
        unread; skd does not look again until that child exits.
        """
        self.client.sendto(b"one", self.address)
        [reader] = self.reactor.getReaders()
        reader.doRead()
        [(stdio, environ, _)] = self.launcher.launched
        self.assertEqual(stdio, self.listener.socket.fileno())
        self.assertEqual(environ["PROTO"], "UDP")
        self.assertEqual(self.reactor.getReaders(), [])
        data, sender = self.listener.socket.recvfrom(100, socket.MSG_DONTWAIT)
        self.assertEqual((data, sender), (b"one", self.client.getsockname()))
        self.daemon.children[1001].exit()
        self.assertEqual(len(self.reactor.getReaders()), 1)

    def test_failedSpawnDropsDatagram(self):
        self.launcher.failWith = PermissionError(13, "Permission denied")
        self.client.sendto(b"one", self.address)
        [reader] = self.reactor.getReaders()
        reader.doRead()
        self.assertEqual(len(self.reactor.getReaders()), 1)
        self.assertRaises(BlockingIOError, self.listener.socket.recv, 10,
                          socket.MSG_DONTWAIT)


class SupervisorTests(SynchronousTestCase):

    def test_restartsNotFasterThanOncePerSecond(self):
        reactor = MemoryReactorClock()
        launcher = FakeLauncher()
        watches = []

        def watch(reactor, pid, onExit):
            watches.append(FakeWatch(reactor, pid, onExit))
            return watches[-1]
        import jailtwist.skd as skd
        self.patch(skd, "watchChildExit", watch)
        supervisor = Supervisor(launcher, restart=True, reactor=reactor,
                                environ={"A": "1"})
        supervisor.startService()
        self.assertEqual(len(launcher.launched), 1)
        self.assertEqual(launcher.launched[0][0], None)
        reactor.advance(0.25)
        watches[0].exit(1 << 8)
        self.assertEqual(len(launcher.launched), 1)
        reactor.advance(0.75)
        self.assertEqual(len(launcher.launched), 2)
        reactor.advance(5)
        watches[1].exit(0)
        reactor.advance(0)
        self.assertEqual(len(launcher.launched), 3)
        supervisor.stopService()
        self.assertTrue(watches[2].closed)

    def test_oneShotStopsReactor(self):
        reactor = MemoryReactorClock()
        import jailtwist.skd as skd
        watches = []
        self.patch(skd, "watchChildExit",
                   lambda r, p, o: watches.append(FakeWatch(r, p, o))
                   or watches[-1])
        supervisor = Supervisor(FakeLauncher(), reactor=reactor)
        reactor.running = True
        supervisor.startService()
        watches[0].exit(3 << 8)
        self.assertFalse(reactor.running)
        self.assertEqual(supervisor.exitStatus, 3)


class PidFileTests(SynchronousTestCase):

    def test_writtenAndRemoved(self):
        path = harness.shortTempDir(self).child("skd.pid")
        pidfile = PidFile(path.path, getpid=lambda: 4242)
        pidfile.privilegedStartService()
        self.assertEqual(path.getContent(), b"4242\n")
        pidfile.startService()
        pidfile.stopService()
        self.assertFalse(path.exists())

    def test_symlinkRefused(self):
        directory = harness.shortTempDir(self)
        target = directory.child("target")
        target.setContent(b"keep")
        os.symlink(target.path, directory.child("pid").path)
        e = self.assertRaises(JailtwistError,
                              PidFile(directory.child("pid").path)
                              .privilegedStartService)
        self.assertIn("cannot write pidfile", str(e))
        self.assertEqual(target.getContent(), b"keep")


class MakeServiceTests(SynchronousTestCase):

    def test_order(self):
        """
        The services run in skd's order: socket, pidfile, log, drop; the
        readiness notice for a service manager comes after them all.
        """
        options = parse("-t", "3000", "-P", "/run/p", "-L", ">>/tmp/l", "-U",
                        "cat")
        names = [type(s).__name__ for s in makeService(options)]
        self.assertEqual(names, ["SocketDaemon", "PidFile", "StderrLog",
                                 "PrivilegeDrop", "ReadinessService"])

    def test_activated(self):
        """
        --activated serves the socket systemd passed, whatever its kind.
        """
        options = parse("--activated", "cat")
        main = makeService(options).getServiceNamed("skd")
        self.assertIsInstance(main.listener, InheritedListener)
        self.assertRaises(usage.UsageError, parse, "--activated", "-S",
                          "cat")

    def test_execNotifies(self):
        """
        With no socket and no -S, PROG replaces skd and is the service: the
        service manager's variables stay for it, and skd sends nothing.
        """
        self.patch(os, "environ", {"NOTIFY_SOCKET": "/run/x"})
        [main] = list(makeService(parse("sleep", "1")))
        self.assertIsInstance(main, Supervisor)
        self.assertEqual(os.environ, {"NOTIFY_SOCKET": "/run/x"})

    def test_noSocket(self):
        options = parse("-S", "sleep", "1")
        [main, _] = list(makeService(options))
        self.assertIsInstance(main, Supervisor)
        self.assertTrue(main.restart)

    def test_jailTakesDrop(self):
        """
        With --jail, -U's uid and gid are PROG's; skd itself stays root.
        """
        options = parse("--jail", "/srv/j", "-U", "--no-new-privs",
                        "--caps", "net_bind_service", "-t", "1", "cat")
        self.patch(os, "environ", {"UID": "7", "GID": "8"})
        [main, _] = list(makeService(options))
        launcher = main.launcher
        self.assertEqual((launcher.uid, launcher.gid, launcher.noNewPrivs,
                          launcher.capabilities),
                         (7, 8, True, frozenset({"NET_BIND_SERVICE"})))
        self.patch(os, "environ", {"UID": "7", "GID": "8", "ROOT": "/x"})
        e = self.assertRaises(JailtwistError, makeService, options)
        self.assertIn("unset $ROOT", str(e))

    def test_backgroundUnderTwistdNodaemon(self):
        from twisted.scripts.twistd import ServerOptions
        config = ServerOptions()
        config.parseOptions(["-n", "skd", "-B", "-t", "1", "cat"])
        e = self.assertRaises(usage.UsageError, makeService,
                              config.subOptions)
        self.assertIn("twistd -n", str(e))


class ChildWatchTests(SynchronousTestCase):
    """
    Children are reaped through a pidfd on the reactor, or by polling when
    no pidfd can be had.
    """

    def test_pidfd(self):
        reactor = MemoryReactorClock()
        pid = spawnExited(3)
        exits = []
        watch = ChildWatch(reactor, pid, lambda *a: exits.append(a))
        [reader] = reactor.getReaders()
        verifyObject(IReadDescriptor, reader)
        reader.doRead()
        self.assertEqual(exits, [(pid, 3 << 8)])
        self.assertEqual(reactor.getReaders(), [])
        watch.close()

    def test_pollWithoutPidfd(self):
        reactor = MemoryReactorClock()

        def refuse(pid):
            raise OSError(24, "Too many open files")
        self.patch(os, "pidfd_open", refuse)
        pid = spawnExited(0)
        exits = []
        ChildWatch(reactor, pid, lambda *a: exits.append(a))
        self.assertEqual((reactor.getReaders(), exits), ([], []))
        reactor.advance(ChildWatch.pollInterval)
        self.assertEqual(exits, [(pid, 0)])
        self.assertEqual(reactor.getDelayedCalls(), [])

    def test_readerSurvivesErrors(self):
        """
        An unexpected error in a callback is logged, not raised into the
        reactor (which would drop the listening socket's reader).
        """
        def broken():
            raise RuntimeError("boom")
        reader = _Readable(0, broken, "skd")
        self.assertIsNone(reader.doRead())
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


def spawnExited(status):
    """
    A real child that has exited with C{status} and is not reaped yet.
    """
    pid = os.posix_spawn("/bin/sh", ["sh", "-c", f"exit {status}"],
                         os.environ)
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    return pid


class SigchldReaperTests(SynchronousTestCase):
    """
    The reactor's C{SIGCHLD} wake-up reaps every watched child that has
    exited, and only those.
    """

    def setUp(self):
        from twisted.internet import process
        self.handlers = process.reapProcessHandlers
        self.reaper = SigchldReaper()
        self.addCleanup(lambda: self.handlers.pop(SigchldReaper.key, None))

    def test_reapsWatchedChildren(self):
        exits = []
        first, second = spawnExited(3), spawnExited(0)
        self.reaper.watch(first, lambda *a: exits.append(a))
        self.reaper.watch(second, lambda *a: exits.append(a))
        self.assertIs(self.handlers[SigchldReaper.key], self.reaper)
        self.reaper.reapProcess()
        self.assertEqual(sorted(exits), sorted([(first, 3 << 8),
                                                (second, 0)]))
        self.assertEqual(self.reaper.watched, {})
        self.assertNotIn(SigchldReaper.key, self.handlers)

    def test_othersLeftAlone(self):
        """
        A child that is not watched here is neither reaped nor in the way of
        a watched one that exited after it.
        """
        stranger = spawnExited(5)
        self.addCleanup(os.waitpid, stranger, 0)
        ours = spawnExited(1)
        exits = []
        self.reaper.watch(ours, lambda *a: exits.append(a))
        self.reaper.reapProcess()
        self.assertEqual(exits, [(ours, 1 << 8)])
        info = os.waitid(os.P_PID, stranger, os.WEXITED | os.WNOHANG
                         | os.WNOWAIT)
        self.assertEqual((info.si_pid, info.si_status), (stranger, 5))

    def test_runningChildWaits(self):
        running = os.posix_spawn("/bin/sleep", ["sleep", "30"], os.environ)
        self.addCleanup(lambda: (os.kill(running, signal.SIGKILL),
                                 os.waitpid(running, 0)))
        exits = []
        self.reaper.watch(running, lambda *a: exits.append(a))
        self.reaper.reapProcess()
        self.assertEqual(exits, [])
        self.assertIn(running, self.reaper.watched)

    def test_errorInCallback(self):
        """
        A callback that fails is logged and the other children are still
        reaped in the same pass.
        """
        exits = []

        def broken(pid, status):
            raise RuntimeError("boom")
        self.reaper.watch(spawnExited(0), broken)
        self.reaper.watch(spawnExited(2), lambda *a: exits.append(a[1]))
        self.reaper.reapProcess()
        self.assertEqual(exits, [2 << 8])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_close(self):
        pid = spawnExited(0)
        self.addCleanup(os.waitpid, pid, 0)
        exits = []
        self.reaper.watch(pid, lambda *a: exits.append(a)).close()
        self.reaper.reapProcess()
        self.assertEqual(exits, [])
        self.assertNotIn(SigchldReaper.key, self.handlers)

    def test_choice(self):
        """
        Children are left to a L{ChildWatch} unless the reactor is running
        with its C{SIGCHLD} handler installed.
        """
        reactor = MemoryReactorClock()
        pid = spawnExited(0)
        watch = watchChildExit(reactor, pid, lambda *a: None)
        self.assertIsInstance(watch, ChildWatch)
        watch.close()
        os.waitpid(pid, 0)


class LibcSpawnTests(SynchronousTestCase):
    """
    posix_spawn through ctypes: the connection on 0 and 1, the environment
    given, signals at their defaults, nothing else inherited.
    """

    def test_spawn(self):
        spawn = LibcSpawn()
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        pid = spawn("/bin/sh", ["sh", "-c",
                                "echo $X; grep SigIgn /proc/self/status; "
                                "ls /proc/self/fd; exit 3"],
                    {"X": "one", "PATH": "/bin:/usr/bin"}, theirs.fileno())
        theirs.close()
        output = readAll(ours)
        _, status = os.waitpid(pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 3)
        lines = output.decode().split()
        self.assertEqual(lines[:2], ["one", "SigIgn:"])
        # SIGPIPE, which this Python process ignores, is back at default.
        self.assertFalse(int(lines[2], 16) & (1 << (13 - 1)))
        # sh's 0, 1, 2 and the descriptor ls uses to list them.
        self.assertEqual(lines[3:6], ["0", "1", "2"])
        self.assertLessEqual(len(lines), 7)

    def test_execFailure(self):
        e = self.assertRaises(OSError, LibcSpawn(), "/no/such/program",
                              ["x"], {}, None)
        self.assertEqual(e.errno, 2)


class LayeredEnvironmentTests(SynchronousTestCase):
    """
    The reused C{envp} of L{LibcSpawn} always holds exactly the current
    connection's variables.
    """

    def spawnEnv(self, spawn, environ):
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        pid = spawn("/usr/bin/env", ["env"], environ, theirs.fileno())
        theirs.close()
        output = readAll(ours)
        os.waitpid(pid, 0)
        return sorted(output.decode().splitlines())

    def test_reuse(self):
        from jailtwist.skd import ConnectionEnvironment
        spawn = LibcSpawn()
        base = {"A": "1", "PATH": "/bin"}
        self.assertEqual(
            self.spawnEnv(spawn, ConnectionEnvironment(
                base, {"PROTO": "TCP", "TCPREMOTEPORT": "1"})),
            ["A=1", "PATH=/bin", "PROTO=TCP", "TCPREMOTEPORT=1"])
        self.assertEqual(
            self.spawnEnv(spawn, ConnectionEnvironment(base,
                                                       {"PROTO": "UDP"})),
            ["A=1", "PATH=/bin", "PROTO=UDP"])
        self.assertEqual(
            self.spawnEnv(spawn, ConnectionEnvironment({"B": "2"},
                                                       {"PROTO": "X"})),
            ["B=2", "PROTO=X"])
        self.assertEqual(self.spawnEnv(spawn, {"C": "3"}), ["C=3"])
