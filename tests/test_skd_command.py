"""
The installed C{skd} and C{twistd skd}, checked with real clients on
127.0.0.1, ::1 and unix sockets, real handlers (cat, env, sh, python3, a
static busybox in a chroot), and every bad-input case.
"""

import os
import select
import shutil
import signal
import socket
import subprocess

from twisted.trial.unittest import TestCase

from tests import harness

PYTHON = "/usr/bin/python3"

# Handler: report how descriptors 0..N point (what a child inherited).
FDS = r"""
import os
for name in sorted(os.listdir('/proc/self/fd'), key=int):
    try:
        print(name, os.readlink('/proc/self/fd/' + name))
    except OSError:
        pass
"""

# Handler addition: the socket-activation variables a child sees.
ENV_LISTEN = r"""
print('LISTEN', ' '.join(k for k in os.environ if k.startswith('LISTEN_'))
      or 'none')
"""

# Handler: TCP_NODELAY on the connection (stdin).
NODELAY = r"""
import socket
s = socket.socket(fileno=0)
print(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
s.detach()
"""

# Handler for datagram sockets: answer every datagram until idle.
DATAGRAM = r"""
import os, socket
s = socket.socket(fileno=0)
s.settimeout(3.0)
n = 0
while n < 3:
    try:
        data, sender = s.recvfrom(1000)
    except socket.timeout:
        break
    n += 1
    reply = f"{os.getpid()} {n} {os.environ['PROTO']} {data.decode()}"
    s.sendto(reply.encode(), sender)
s.detach()
"""


def freePort(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def connects(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False




def talk(address, data=b"", family=None, timeout=10.0, shutdown=True):
    """
    Connect, send C{data}, half-close, read to EOF.
    """
    if family is None:
        family = socket.AF_UNIX if isinstance(address, str) else (
            socket.AF_INET6 if ":" in address[0] else socket.AF_INET)
    with socket.socket(family) as s:
        s.settimeout(timeout)
        s.connect(address)
        local = s.getsockname()
        if data:
            s.sendall(data)
        if shutdown:
            s.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks), local


class Skd:
    """
    A running installed C{skd}, stopped when the test ends.
    """

    def __init__(self, testCase, *args, env=None, command="skd", prefix=()):
        self.process = subprocess.Popen(
            list(prefix) + [harness.script(command)] + list(args),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self.pid = self.process.pid
        self._stderr = None
        self.stdout = ""
        testCase.addCleanup(self.stop)

    def port(self):
        return int(harness.readLine(self.process.stdout))

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
        try:
            out, err = self.process.communicate(timeout=15)
        except ValueError:
            out = err = b""
        if self._stderr is None:
            self._stderr = err.decode("utf-8", "replace")
            self.stdout = out.decode("utf-8", "replace")
        return self._stderr


def environment(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("UID", "GID", "ROOT")}
    env.update(extra)
    return env


def parseEnv(text):
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


class StreamTests(TestCase):
    """
    Stream sockets: echo with cat, the child's environment, its descriptors,
    -n, -c.
    """

    def test_echoIPv4(self):
        skd = Skd(self, "-t", "127.0.0.1:0", "cat")
        port = skd.port()
        for text in (b"hello", b"x" * 200000):
            self.assertEqual(talk(("127.0.0.1", port), text)[0], text)

    def test_echoIPv6(self):
        skd = Skd(self, "-t", "[::1]:0", "cat")
        port = skd.port()
        self.assertEqual(talk(("::1", port), b"over six")[0], b"over six")

    def test_echoUnix(self):
        path = harness.shortTempDir(self).child("cat.sock").path
        skd = Skd(self, "-vl", path, "cat")
        harness.waitForSocket(path, what="skd's socket")
        self.assertEqual(talk(path, b"local")[0], b"local")
        skd.stop()
        self.assertFalse(os.path.exists(path))

    def test_environmentTcp(self):
        """
        The UCSPI variables skd sets, nothing stale from skd's own
        environment, the rest inherited.
        """
        skd = Skd(self, "-t", "127.0.0.1:0", "env",
                  env=environment(PROTO="stale", PEERPID="1", KEEP="yes"))
        port = skd.port()
        output, local = talk(("127.0.0.1", port))
        env = parseEnv(output.decode())
        self.assertEqual(
            {k: env.get(k) for k in ("PROTO", "TCPLOCALIP", "TCPLOCALPORT",
                                     "TCPREMOTEIP", "TCPREMOTEPORT",
                                     "PEERPID", "KEEP")},
            {"PROTO": "TCP", "TCPLOCALIP": "127.0.0.1",
             "TCPLOCALPORT": str(port), "TCPREMOTEIP": "127.0.0.1",
             "TCPREMOTEPORT": str(local[1]), "PEERPID": None, "KEEP": "yes"})

    def test_environmentIPv6(self):
        skd = Skd(self, "-t", "[::1]:0", "env")
        port = skd.port()
        output, local = talk(("::1", port))
        env = parseEnv(output.decode())
        self.assertEqual((env["PROTO"], env["TCPLOCALIP"], env["TCPREMOTEIP"],
                          env["TCPREMOTEPORT"]),
                         ("TCP", "::1", "::1", str(local[1])))

    def test_environmentUnix(self):
        path = harness.shortTempDir(self).child("env.sock").path
        Skd(self, "-l", path, "env", env=environment(TCPREMOTEIP="stale"))
        harness.waitForSocket(path, what="skd's socket")
        env = parseEnv(talk(path)[0].decode())
        self.assertEqual(
            {k: env.get(k) for k in ("PROTO", "PEERPID", "PEERUID", "PEERGID",
                                     "TCPREMOTEIP")},
            {"PROTO": "UNIX-STREAM", "PEERPID": str(os.getpid()),
             "PEERUID": str(os.getuid()), "PEERGID": str(os.getgid()),
             "TCPREMOTEIP": None})

    def test_onlyStdioInherited(self):
        """
        The child's 0 and 1 are the connection itself, 2 is skd's stderr,
        and nothing else is open in it: not the listening socket (skd
        leaked it as fd 3), not a descriptor skd inherited itself.
        """
        stray = os.open(os.devnull, os.O_RDONLY)
        self.addCleanup(os.close, stray)
        os.set_inheritable(stray, True)
        process = subprocess.Popen(
            [harness.script("skd"), "-t", "127.0.0.1:0", PYTHON, "-S", "-c",
             FDS], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            pass_fds=(stray,))
        self.addCleanup(lambda: (process.poll() is None and process.kill(),
                                 process.communicate()))
        port = int(harness.readLine(process.stdout))
        output, _ = talk(("127.0.0.1", port))
        fds = dict(line.split(" ", 1) for line in output.decode().splitlines())
        self.assertTrue(fds["0"].startswith("socket:"), fds)
        self.assertEqual(fds["0"], fds["1"])
        extra = {n: target for n, target in fds.items()
                 if n not in ("0", "1", "2")
                 and not target.endswith("/fd")}
        self.assertEqual(extra, {})

    def test_noDelayEveryConnection(self):
        skd = Skd(self, "-n", "-t", "127.0.0.1:0", PYTHON, "-S", "-c",
                  NODELAY)
        port = skd.port()
        answers = [talk(("127.0.0.1", port))[0] for _ in range(3)]
        self.assertEqual(answers, [b"1\n"] * 3)

    def test_maxClients(self):
        """
        -c 2: two clients are served at once; a third waits (its connection
        is queued, nothing runs for it) until one of the first two leaves.
        """
        skd = Skd(self, "-c", "2", "-t", "127.0.0.1:0", "sh", "-c",
                  "echo hi; read line; echo bye")
        port = skd.port()
        clients = []
        for _ in range(3):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            self.addCleanup(s.close)
            clients.append(s)
        first, second, third = clients
        self.assertEqual(first.recv(10), b"hi\n")
        self.assertEqual(second.recv(10), b"hi\n")
        self.assertEqual(select.select([third], [], [], 1.0)[0], [])
        first.sendall(b"done\n")
        self.assertEqual(first.recv(10), b"bye\n")
        third.settimeout(10)
        self.assertEqual(third.recv(10), b"hi\n")
        third.sendall(b"done\n")
        self.assertEqual(third.recv(10), b"bye\n")
        second.sendall(b"done\n")
        self.assertEqual(second.recv(10), b"bye\n")

    def test_backlog(self):
        """
        -b sets the listen backlog (ss shows it as the listener's Send-Q);
        skd's default is 10.
        """
        for args, expected in ((["-b", "7"], "7"), ([], "10")):
            skd = Skd(self, *args, "-t", "127.0.0.1:0", "cat")
            port = skd.port()
            result = subprocess.run(["ss", "-Hltn", f"sport = :{port}"],
                                    capture_output=True, text=True, check=True)
            self.assertEqual(result.stdout.split()[2], expected, result.stdout)
            skd.stop()

    def test_helpAndVersion(self):
        result = harness.run("skd", "--help")
        self.assertEqual(result.returncode, 0)
        for option in ("-i, --inet=", "-t, --tcp=", "-u, --udp=", "-L, --log=",
                       "-U, --drop-privileges", "--jail="):
            self.assertIn(option, result.stdout)
        result = harness.run("skd", "-V")
        self.assertEqual((result.returncode, result.stdout.split()[0]),
                         (0, "skd"))

    def test_manyConcurrent(self):
        """
        skd does not wait for one child before accepting the next: twenty
        clients held open at once are all served.
        """
        skd = Skd(self, "-t", "127.0.0.1:0", "sh", "-c",
                  "echo hi; read line")
        port = skd.port()
        clients = [socket.create_connection(("127.0.0.1", port), timeout=10)
                   for _ in range(20)]
        for s in clients:
            self.addCleanup(s.close)
        self.assertEqual([s.recv(10) for s in clients], [b"hi\n"] * 20)


class DatagramTests(TestCase):
    """
    Datagram sockets: one handler on the listening socket itself, no look at
    the socket until it exits.
    """

    def check(self, skd, send, expectProto):
        first = send(b"a1")
        second = send(b"a2")
        third = send(b"b1", other=True)
        pids = {first.split()[0], second.split()[0], third.split()[0]}
        self.assertEqual(len(pids), 1)
        self.assertEqual([first.split()[1:], second.split()[1:],
                          third.split()[1:]],
                         [["1", expectProto, "a1"], ["2", expectProto, "a2"],
                          ["3", expectProto, "b1"]])
        # The handler exits when idle; the next datagram starts a new one.
        pid = pids.pop()
        harness.waitFor(lambda: not os.path.exists(f"/proc/{pid}"),
                        what="the datagram handler to exit")
        fourth = send(b"c1")
        self.assertNotIn(fourth.split()[0], {first.split()[0]})
        self.assertEqual(fourth.split()[1:], ["1", expectProto, "c1"])

    def test_udp(self):
        skd = Skd(self, "-v", "-u", "127.0.0.1:0", PYTHON, "-S", "-c",
                  DATAGRAM)
        port = skd.port()
        clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                   for _ in range(2)]
        for c in clients:
            c.settimeout(10)
            self.addCleanup(c.close)

        def send(data, other=False):
            c = clients[1 if other else 0]
            c.sendto(data, ("127.0.0.1", port))
            return c.recv(1000).decode()
        self.check(skd, send, "UDP")
        log = skd.stop()
        self.assertIn("Received initial datagram from [127.0.0.1]:"
                      f"{clients[0].getsockname()[1]}", log)

    def test_udpIPv6(self):
        skd = Skd(self, "-u", "[::1]:0", PYTHON, "-S", "-c", DATAGRAM)
        port = skd.port()
        c = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self.addCleanup(c.close)
        c.settimeout(10)
        c.sendto(b"six", ("::1", port))
        self.assertEqual(c.recv(1000).decode().split()[1:], ["1", "UDP", "six"])

    def test_unixDatagram(self):
        directory = harness.shortTempDir(self)
        path = directory.child("dg.sock").path
        skd = Skd(self, "-d", "-l", path, PYTHON, "-S", "-c", DATAGRAM)
        harness.waitForSocket(path, socket.SOCK_DGRAM, what="skd's socket")
        clients = []
        for name in ("a", "b"):
            c = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            c.bind(directory.child(name).path)
            c.settimeout(10)
            self.addCleanup(c.close)
            clients.append(c)

        def send(data, other=False):
            c = clients[1 if other else 0]
            c.sendto(data, path)
            return c.recv(1000).decode()
        self.check(skd, send, "UNIX-DGRAM")


class DaemonTests(TestCase):
    """
    -P, -L, -B, -U, -S, --jail, the no-socket mode and twistd.
    """

    def test_pidfile(self):
        pidfile = harness.shortTempDir(self).child("skd.pid")
        skd = Skd(self, "-P", pidfile.path, "-t", "127.0.0.1:0", "cat")
        skd.port()
        self.assertEqual(pidfile.getContent(), f"{skd.pid}\n".encode())
        skd.stop()
        self.assertFalse(pidfile.exists())

    def test_logAppend(self):
        """
        -v -L >>FILE: skd's reports and the children's stderr are appended.
        """
        log = harness.shortTempDir(self).child("skd.log")
        log.setContent(b"earlier line\n")
        skd = Skd(self, "-v", "-L", ">>" + log.path, "-t", "127.0.0.1:0",
                  "sh", "-c", "echo from-child >&2; cat")
        port = skd.port()
        _, local = talk(("127.0.0.1", port), b"x")
        harness.waitFor(lambda: b"exited" in log.getContent(),
                        what="the exit report")
        lines = log.getContent().decode().splitlines()
        self.assertEqual(lines[0], "earlier line")
        self.assertIn(f"Accepted connection from [127.0.0.1]:{local[1]}",
                      lines)
        self.assertIn("from-child", lines)
        started = [l for l in lines if l.startswith("Started sh (pid ")]
        self.assertEqual(len(started), 1)
        pid = started[0].split("pid ")[1].rstrip(")")
        self.assertIn(f"sh (pid {pid}) exited with status 0", lines)
        self.assertEqual(skd.stop(), "")

    def test_logSyslog(self):
        """
        -L TAG:FAC.PRI: skd's reports and the children's stderr reach a real
        rsyslogd through /dev/log (here, in a private mount namespace, a
        /dev overlay whose log is that rsyslogd's socket).
        """
        harness.isolated(self)
        syslog = harness.startRsyslog(self)
        scratch = harness.shortTempDir(self)
        upper, work = scratch.child("u"), scratch.child("w")
        upper.makedirs()
        work.makedirs()
        setup = (f"mount -t overlay overlay -o lowerdir=/dev,"
                 f"upperdir={upper.path},workdir={work.path} /dev && "
                 f"ln -sfn {syslog.socket} /dev/log && exec \"$@\"")
        skd = Skd(self, "-v", "-L", "skdtag:local3.warning",
                  "-t", "127.0.0.1:0", "sh", "-c", "echo from-child >&2; cat",
                  prefix=["unshare", "-m", "--propagation", "private",
                          "sh", "-c", setup, "sh"])
        port = skd.port()
        _, local = talk(("127.0.0.1", port), b"x")
        lines = syslog.waitForLines(4)
        self.assertIn(
            f"skdtag: Accepted connection from [127.0.0.1]:{local[1]}", lines)
        self.assertIn("skdtag: from-child", lines)

    def test_logTruncate(self):
        log = harness.shortTempDir(self).child("skd.log")
        log.setContent(b"earlier line\n")
        skd = Skd(self, "-v", "-L", ">" + log.path, "-t", "127.0.0.1:0",
                  "true")
        port = skd.port()
        talk(("127.0.0.1", port))
        harness.waitFor(lambda: b"exited" in log.getContent(),
                        what="the exit report")
        self.assertNotIn(b"earlier line", log.getContent())

    def test_background(self):
        """
        -B returns once the socket is serving; the daemon is another
        process, a session leader, whose pid is in the pidfile.
        """
        directory = harness.shortTempDir(self)
        pidfile = directory.child("skd.pid")
        result = harness.run("skd", "-B", "-P", pidfile.path,
                             "-L", ">>" + directory.child("log").path,
                             "-t", "127.0.0.1:0", "cat", timeout=30)
        self.assertEqual((result.returncode, result.stderr), (0, ""))
        port = int(result.stdout)
        pid = int(pidfile.getContent())
        self.addCleanup(self.killDaemon, pid)
        self.assertEqual(os.getsid(pid), pid)
        self.assertEqual(talk(("127.0.0.1", port), b"bg")[0], b"bg")
        self.assertEqual(os.readlink(f"/proc/{pid}/fd/0"), "/dev/null")
        self.assertEqual(os.readlink(f"/proc/{pid}/fd/1"), "/dev/null")

    def killDaemon(self, pid):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        harness.waitFor(lambda: not os.path.exists(f"/proc/{pid}")
                        or open(f"/proc/{pid}/stat").read().split()[2] == "Z",
                        what="the background skd to exit")

    def test_backgroundFailureReported(self):
        """
        A failure after the fork (here: the port is taken) still reaches the
        invoker as one line and a non-zero status.
        """
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = harness.run("skd", "-B", "-t", f"127.0.0.1:{port}", "cat")
        self.assertNotEqual(result.returncode, 0)
        self.assertEqual(result.stderr.count("\n"), 1)
        self.assertIn("Address already in use", result.stderr)

    def test_noSocketExecs(self):
        """
        Without a socket PROG replaces skd after the pidfile and log steps.
        """
        directory = harness.shortTempDir(self)
        pidfile, log = directory.child("pid"), directory.child("log")
        result = harness.run("skd", "-P", pidfile.path, "-L", ">" + log.path,
                             "sh", "-c", "echo $$; echo to-log >&2")
        self.assertEqual(result.returncode, 0)
        self.assertEqual(result.stdout, pidfile.getContent().decode())
        self.assertEqual(log.getContent(), b"to-log\n")

    def test_noSocketPassesDescriptors(self):
        """
        Without a socket skd is a wrapper: a descriptor it inherited (say,
        from socket activation) reaches PROG, with the LISTEN_ variables.
        """
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        os.write(w, b"through\n")
        os.close(w)
        result = subprocess.run(
            [harness.script("skd"), "sh", "-c",
             f"cat /dev/fd/{r}; echo $LISTEN_FDS"],
            pass_fds=(r,), capture_output=True, text=True, timeout=60,
            env=environment(LISTEN_FDS="1"))
        self.assertEqual((result.returncode, result.stdout),
                         (0, "through\n1\n"))

    def test_superviseRestarts(self):
        directory = harness.shortTempDir(self)
        runs = directory.child("runs")
        skd = Skd(self, "-v", "-S", "sh", "-c", f"echo run >> {runs.path}")
        harness.waitFor(lambda: runs.exists()
                        and runs.getContent().count(b"run") >= 2,
                        what="a restart")
        log = skd.stop()
        self.assertIn("Started sh", log)
        self.assertIn("exited with status 0", log)

    def busyboxRoot(self):
        """
        A root-owned directory holding only a static busybox.
        """
        busybox = shutil.which("busybox")
        if busybox is None:
            raise AssertionError("busybox is not installed: run the README's "
                                 "test command (it installs busybox-static)")
        root = harness.jailParent(self)
        root.child("bin").makedirs()
        shutil.copy(busybox, root.child("bin").child("busybox").path)
        return root

    def test_dropPrivileges(self):
        """
        -U with UID, GID and ROOT: skd binds as root, then chroots and drops;
        the child runs as that uid with only that group inside that root.
        """
        harness.isolated(self)
        root = self.busyboxRoot()
        skd = Skd(self, "-U", "-t", "127.0.0.1:0", "/bin/busybox", "sh",
                  "-c", "/bin/busybox id -u; /bin/busybox id -g; "
                        "/bin/busybox id -G; /bin/busybox ls /",
                  env=environment(UID="65534", GID="65534", ROOT=root.path))
        port = skd.port()
        output = talk(("127.0.0.1", port))[0].decode().split()
        self.assertEqual(output, ["65534", "65534", "65534", "bin"])
        status = open(f"/proc/{skd.pid}/status").read()
        self.assertIn("\nUid:\t65534\t65534\t65534\t65534\n", status)
        self.assertEqual(os.readlink(f"/proc/{skd.pid}/root"), root.path)

    def test_jail(self):
        """
        --jail: each PROG is chrooted into the jail and, with -U, runs as
        $UID/$GID there; skd itself stays root outside.
        """
        harness.isolated(self)
        root = self.busyboxRoot()
        skd = Skd(self, "--jail", root.path, "-U", "--no-new-privs",
                  "-t", "127.0.0.1:0", "/bin/busybox", "sh", "-c",
                  "/bin/busybox id -u; /bin/busybox id -G; /bin/busybox ls /",
                  env=environment(UID="65534", GID="65534"))
        port = skd.port()
        output = talk(("127.0.0.1", port))[0].decode().split()
        self.assertEqual(output, ["65534", "65534", "bin"])
        status = open(f"/proc/{skd.pid}/status").read()
        self.assertIn("\nUid:\t0\t0\t0\t0\n", status)
        self.assertEqual(os.readlink(f"/proc/{skd.pid}/root"), "/")

    def test_jailWithCeiling(self):
        """
        --caps: a jailed root handler keeps only the ceiling and gets the
        syscall filter: it cannot make a setuid file.
        """
        harness.isolated(self)
        root = self.busyboxRoot()
        root.child("tmp").makedirs(ignoreExistingDirectory=True)
        skd = Skd(self, "--jail", root.path, "--caps", "default",
                  "-t", "127.0.0.1:0", "/bin/busybox", "sh", "-c",
                  "/bin/busybox cp /bin/busybox /tmp/s; "
                  "/bin/busybox chmod 4755 /tmp/s 2>/dev/null; echo suid=$?; "
                  "/bin/busybox chmod 755 /tmp/s; echo plain=$?")
        port = skd.port()
        output = talk(("127.0.0.1", port))[0].decode().split()
        self.assertEqual(output, ["suid=1", "plain=0"])
        self.assertEqual(os.stat(root.child("tmp").child("s").path).st_mode
                         & 0o7777, 0o755)

    def test_jailWithoutNetwork(self):
        """
        --unshare net: the jailed handler still talks over its connection,
        but cannot reach anything else, not even a host service on
        127.0.0.1.
        """
        harness.isolated(self)
        root = self.busyboxRoot()
        host = socket.socket()
        self.addCleanup(host.close)
        host.bind(("127.0.0.1", 0))
        host.listen(1)
        hostPort = host.getsockname()[1]
        skd = Skd(self, "--jail", root.path, "--unshare", "net,ipc,uts",
                  "-t", "127.0.0.1:0", "/bin/busybox", "sh", "-c",
                  f"echo hello; if echo x | /bin/busybox nc 127.0.0.1 "
                  f"{hostPort}; then echo reached; else echo isolated; fi")
        port = skd.port()
        output = talk(("127.0.0.1", port))[0].decode().split()
        self.assertEqual(output[0], "hello")
        self.assertEqual(output[-1], "isolated")
        host.settimeout(0)
        self.assertRaises(BlockingIOError, host.accept)

    def test_jailRefusesUnsafeDirectory(self):
        harness.isolated(self)
        root = self.busyboxRoot()
        root.chmod(0o777)
        result = harness.run("skd", "--jail", root.path, "-t", "127.0.0.1:0",
                             "/bin/busybox")
        self.assertNotEqual(result.returncode, 0)
        self.assertEqual(result.stderr.count("\n"), 1, result.stderr)
        self.assertIn(root.path, result.stderr)

    def test_twistd(self):
        port = freePort()
        twistd = Skd(self, "-n", "--pidfile=", "skd", "-v", "-t",
                     f"127.0.0.1:{port}", "cat", command="twistd")
        harness.waitFor(lambda: connects(port), what="twistd skd")
        output, local = talk(("127.0.0.1", port), b"twisted")
        self.assertEqual(output, b"twisted")
        twistd.stop()
        self.assertIn(f"Accepted connection from [127.0.0.1]:{local[1]}",
                      twistd.stdout)


class EndpointTests(TestCase):
    """
    Stream sockets given as Twisted endpoint strings.
    """

    def test_unixEndpoint(self):
        path = harness.shortTempDir(self).child("ep.sock").path
        Skd(self, "-l", f"unix:{path}:mode=600", "env")
        harness.waitForSocket(path, what="skd's socket")
        env = parseEnv(talk(path)[0].decode())
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        self.assertEqual((env["PROTO"], env["PEERPID"]),
                         ("UNIX-STREAM", str(os.getpid())))

    def test_tcpEndpoint(self):
        port = freePort()
        Skd(self, "-t", f"tcp:{port}:interface=127.0.0.1", "cat")
        harness.waitFor(lambda: connects(port),
                        what="skd on a tcp endpoint")
        self.assertEqual(talk(("127.0.0.1", port), b"ep")[0], b"ep")

    def test_systemdSocketActivation(self):
        """
        C{systemd:domain=INET:index=0} adopts the socket passed as fd 3 with
        LISTEN_FDS/LISTEN_PID; the passed descriptor never reaches a child.
        """
        listening = socket.socket()
        self.addCleanup(listening.close)
        listening.bind(("127.0.0.1", 0))
        listening.listen(8)
        port = listening.getsockname()[1]
        fd = listening.fileno()
        process = subprocess.Popen(
            # bash, not dash: dash cannot redirect from a descriptor above 9.
            ["bash", "-c",
             f'export LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=web; '
             f'exec "$0" "$@" 3<&{fd}',
             harness.script("skd"), "-t", "systemd:domain=INET:index=0",
             PYTHON, "-S", "-c", FDS + ENV_LISTEN],
            pass_fds=(fd,), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.addCleanup(lambda: (process.poll() is None and process.kill(),
                                 process.communicate()))
        listening.close()
        output, _ = talk(("127.0.0.1", port))
        fds = dict(line.split(" ", 1) for line in output.decode().splitlines())
        self.assertEqual(fds.pop("LISTEN"), "none")
        self.assertEqual(sorted(n for n, t in fds.items()
                                if not t.endswith("/fd")), ["0", "1", "2"])


class BadInputTests(TestCase):
    """
    Every bad command line: one line on stderr naming the problem, a
    non-zero status, nothing left running.
    """

    def assertOneLine(self, args, expected, env=None):
        result = harness.run("skd", *args, env=env)
        self.assertNotEqual(result.returncode, 0, (args, result))
        self.assertTrue(result.stderr.startswith("skd: "), result.stderr)
        self.assertEqual(result.stderr.count("\n"), 1, result.stderr)
        self.assertIn(expected, result.stderr)
        return result

    def test_unknownOption(self):
        self.assertOneLine(["-z", "cat"], "option -z not recognized")

    def test_missingProgram(self):
        self.assertOneLine(["-t", "127.0.0.1:0"], "missing PROG")
        self.assertOneLine([], "missing PROG")

    def test_programNotFound(self):
        self.assertOneLine(["-t", "127.0.0.1:0", "no-such-handler"],
                           "no-such-handler: not found in PATH")

    def test_portInUse(self):
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        self.assertOneLine(["-t", f"127.0.0.1:{port}", "cat"],
                           "Address already in use")

    def test_pathTooLong(self):
        self.assertOneLine(["-l", "/tmp/" + "p" * 200, "cat"],
                           "unix socket path too long")

    def test_badNumbers(self):
        self.assertOneLine(["-c", "many", "-t", "1", "cat"],
                           "-c takes a positive integer argument")
        self.assertOneLine(["-b", "0", "-t", "1", "cat"],
                           "-b takes a positive integer argument")

    def test_badAddresses(self):
        self.assertOneLine(["-t", "[::1:80", "cat"], "unbalanced '['")
        self.assertOneLine(["-t", "no-such-host.invalid:80", "cat"],
                           "does not exist")
        self.assertOneLine(["-t", "tcp:notaport", "cat"], "endpoint")
        self.assertOneLine(["-t", "systemd:domain=INET:index=0", "cat"],
                           "no inherited socket")

    def test_badLog(self):
        self.assertOneLine(["-L", "tag:nowhere.info", "cat"],
                           "invalid log specification")
        self.assertOneLine(["-L", ">/nonexistent/dir/log", "cat"],
                           "cannot open log file")

    def test_dropWithoutIds(self):
        env = environment()
        self.assertOneLine(["-U", "-t", "127.0.0.1:0", "cat"],
                           "$GID not set", env=env)
        self.assertOneLine(["-U", "-t", "127.0.0.1:0", "cat"],
                           "$UID has invalid value 'nobody'",
                           env=dict(env, GID="1", UID="nobody"))

    def test_notASocket(self):
        path = harness.shortTempDir(self).child("file")
        path.setContent(b"keep")
        self.assertOneLine(["-l", path.path, "cat"], "not a socket")
        self.assertEqual(path.getContent(), b"keep")
