"""
Shared test fixtures: the installed console scripts, short socket paths,
jail directories with safe parents, and a real rsyslogd.

The suite is meant to run under C{tests/isolated} (a private mount namespace
with /etc as an overlay and /mnt a private tmpfs); tests that change the
machine check L{isolated} first and refuse to run outside it.
"""

import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from twisted.python.filepath import FilePath

ISOLATED = os.environ.get("JAILTWIST_ISOLATED") == "1"
BIN = FilePath(os.path.dirname(os.path.abspath(sys.executable)))


def isolated(testCase):
    """
    Fail (not skip) a test that would change the machine outside
    C{tests/isolated}: the README's test command always provides it.
    """
    if not ISOLATED:
        testCase.fail("run the suite through tests/isolated "
                      "(see the README's test command)")
    if os.geteuid() != 0:
        testCase.fail("the integration tests need root")


def script(name):
    """
    @return: the path of the installed console script C{name}.
    """
    path = BIN.child(name)
    if not path.exists():
        raise AssertionError(
            f"{path.path} is missing: install the package (pip install .) "
            f"into the interpreter that runs trial")
    return path.path


def run(name, *args, **kw):
    """
    Run the installed console script C{name}; return the CompletedProcess.
    """
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 120)
    return subprocess.run([script(name)] + list(args), **kw)


def shortTempDir(testCase, mode=0o755):
    """
    A fresh directory with a path short enough for unix sockets (108
    bytes), removed when the test ends.
    """
    path = tempfile.mkdtemp(prefix="jt", dir="/tmp")
    os.chmod(path, mode)
    testCase.addCleanup(shutil.rmtree, path, True)
    return FilePath(path)


def jailParent(testCase):
    """
    A fresh root-owned 0755 directory under /mnt (the private tmpfs of
    C{tests/isolated}), so jails built in it have safe parents.
    """
    isolated(testCase)
    path = tempfile.mkdtemp(prefix="j", dir="/mnt")
    os.chmod(path, 0o755)
    testCase.addCleanup(shutil.rmtree, path, True)
    return FilePath(path)


def readLine(stream, timeout=15.0):
    """
    One line from a pipe of a real process, or an assertion after timeout
    (a plain C{readline} would hang the whole run if the line never came).
    """
    deadline = time.monotonic() + timeout
    line = b""
    fd = stream.fileno()
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError(f"no line within {timeout}s (got {line!r})")
        chunk = os.read(fd, 1)
        if not chunk:
            raise AssertionError(f"EOF before a full line (got {line!r})")
        line += chunk
    return line.decode()


def waitFor(predicate, timeout=15.0, what="condition"):
    """
    Poll C{predicate} for an external process (rsyslogd, sshd) that the test
    cannot drive with a fake clock.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def waitForSocket(path, kind=socket.SOCK_STREAM, timeout=15.0, what=None,
                  alive=None):
    """
    Wait until something answers on the unix socket C{path}: a connect that
    succeeds, not a file that appears (the file exists between C{bind} and
    C{listen}, and a connect then is refused).

    @param kind: C{SOCK_STREAM} or C{SOCK_DGRAM} (a datagram connect succeeds
        once a socket is bound there).
    @param alive: optional callable; when it returns false (the server
        exited) waiting stops early and the caller's own check reports why.
    """
    def answers():
        if alive is not None and not alive():
            return True
        probe = socket.socket(socket.AF_UNIX, kind)
        try:
            probe.connect(path)
        except OSError:
            return False
        finally:
            probe.close()
        return True
    return waitFor(answers, timeout, what or f"a listener on {path}")


class Rsyslog:
    """
    A real rsyslogd with its own config, its own imuxsock socket and its own
    output file, started and stopped by a test.

    @ivar socket: the path of its log socket (what a relay sends to).
    @ivar output: the L{FilePath} every message is written to, one per line,
        as C{TAG MESSAGE}.
    """

    def __init__(self, directory):
        self.directory = directory
        self.socket = directory.child("log").path
        self.output = directory.child("out.log")
        self.conf = directory.child("rsyslog.conf")
        self.pidfile = directory.child("rsyslogd.pid")
        self.process = None
        workdir = directory.child("work")
        workdir.makedirs(ignoreExistingDirectory=True)
        self.conf.setContent(f"""\
global(workDirectory="{workdir.path}" maxMessageSize="64k")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="{self.socket}" RateLimit.Interval="0"
      UseSpecialParser="off" ParseHostname="off")
template(name="jailtwistRaw" type="string" string="%syslogtag%%msg%\\n")
*.* action(type="omfile" file="{self.output.path}" template="jailtwistRaw")
""".encode())

    def start(self):
        binary = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
        if not os.path.exists(binary):
            raise AssertionError("rsyslogd is not installed: run the README's "
                                 "test command, which installs rsyslog")
        self.process = subprocess.Popen(
            [binary, "-n", "-f", self.conf.path, "-i", self.pidfile.path],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        waitForSocket(self.socket, socket.SOCK_DGRAM, what="rsyslogd's socket")

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None
        if os.path.exists(self.socket):
            os.unlink(self.socket)

    def lines(self):
        """
        @return: the lines rsyslogd has written so far.
        """
        if not self.output.exists():
            return []
        return self.output.getContent().decode("utf-8", "replace").splitlines()

    def waitForLines(self, count, timeout=15.0):
        return waitFor(lambda: len(self.lines()) >= count and self.lines(),
                       timeout, f"{count} lines from rsyslogd")


def startRsyslog(testCase):
    """
    Start a private L{Rsyslog} for C{testCase}; it is stopped afterwards.
    """
    syslog = Rsyslog(shortTempDir(testCase))
    syslog.start()
    testCase.addCleanup(syslog.stop)
    return syslog


class NotifySocket:
    """
    What systemd gives a C{Type=notify} service: a datagram socket named by
    C{NOTIFY_SOCKET} (a path, or C{@name} in the abstract namespace), here
    bound by the test, which reads the daemon's C{sd_notify} messages.

    @ivar environ: the variable to add to the daemon's environment.
    """

    def __init__(self, testCase, abstract=False):
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        testCase.addCleanup(self.socket.close)
        if abstract:
            name = f"jailtwist-notify-{os.getpid()}-{id(self)}"
            self.socket.bind("\0" + name)
            self.address = "@" + name
        else:
            self.address = shortTempDir(testCase).child("notify").path
            self.socket.bind(self.address)
        self.environ = {"NOTIFY_SOCKET": self.address}
        self.messages = []

    def receive(self, timeout=15.0):
        """
        @return: the next message as a C{dict} of its C{KEY=VALUE} lines, or
            L{None} when nothing came within C{timeout}.
        """
        if not select.select([self.socket], [], [], timeout)[0]:
            return None
        data = self.socket.recv(4096).decode()
        message = dict(line.split("=", 1) for line in data.splitlines()
                       if "=" in line)
        self.messages.append(message)
        return message

    def waitFor(self, key, value="1", timeout=15.0, process=None):
        """
        Wait for a message with C{key=value} (C{READY=1}), failing when the
        daemon exits first or nothing comes in time.

        @return: that message.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.receive(min(0.2, deadline - time.monotonic()))
            if message is not None and message.get(key) == value:
                return message
            if process is not None and process.poll() is not None:
                message = self.receive(0)
                if message is not None and message.get(key) == value:
                    return message
                raise AssertionError(
                    f"the daemon exited ({process.returncode}) before "
                    f"{key}={value}; got {self.messages}")
        raise AssertionError(f"no {key}={value} within {timeout}s; got "
                             f"{self.messages}")


def waitRegistered(name, timeout=15.0):
    """
    Wait until a launched jail named C{name} is in the registry of running
    jails: C{jk_chrootlaunch} registers it once it is set up (its pidfile
    is written before that, so the pidfile is no sign of readiness).

    @return: its L{jailtwist.registry.JailRecord}.
    """
    from jailtwist.registry import JailRegistry
    registry = JailRegistry()

    def registered():
        for record in registry.entries():
            if record.name == name:
                return record
        return None
    return waitFor(registered, timeout, f"jail {name!r} to be registered")


def recordBindList(jail):
    """
    Make the host's record of C{jail}'s bind list (/etc/jailkit/bind.d) the
    jail's list as it is now: what an admin's edit through jk_init --bind
    would leave, for tests of what the ways in check beyond the record.
    """
    from jailtwist import bindlist
    with open(os.path.join(jail, bindlist.LIST), "rb") as f:
        data = f.read()
    os.makedirs(bindlist.RECORDS, mode=0o755, exist_ok=True)
    with open(os.path.join(bindlist.RECORDS, bindlist.recordName(jail)),
              "wb") as f:
        f.write(data)
