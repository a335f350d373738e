"""
The jailkit walkthrough end to end with a real OpenSSH server and the real
sftp, scp and ssh clients: a jail built like C{jk_init -j JAIL jk_lsh sftp
scp}, an account created with C{jk_addjailuser} and one moved in with
C{jk_jailuser -m}, and logins through the installed C{jk_chrootsh} -- with
no setuid file and no Python inside the jail.

One sshd per test class (each class has a single test method that goes
through its scenario step by step), listening on 127.0.0.1 with its own
host key and key authentication only.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from jailtwist.tools.jailuser import runningProcesses
from tests import harness
from tests.test_login import (
    _copy, _libraries, addAccount, buildJail, freeId, withDevLog)

SSHD = "/usr/sbin/sshd"


def freePort():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sshd:
    """
    A real sshd started by a test, in its own mount namespace whose
    /dev/log is the test's rsyslogd.
    """

    def __init__(self, testCase, syslog, users):
        if not os.path.exists(SSHD):
            testCase.fail(f"{SSHD} is missing: install openssh-server (the "
                          f"README's test command does)")
        self.testCase = testCase
        self.dir = harness.shortTempDir(testCase)
        d = self.dir.path
        for name in ("host", "client"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "",
                            "-f", f"{d}/{name}"], check=True)
        keys = self.dir.child("keys")
        keys.makedirs()
        public = self.dir.child("client.pub").getContent()
        for user in users:
            keys.child(user).setContent(public)
            os.chmod(keys.child(user).path, 0o644)
        os.chmod(f"{d}/client", 0o600)
        self.port = freePort()
        self.dir.child("sshd_config").setContent(f"""\
Port {self.port}
ListenAddress 127.0.0.1
HostKey {d}/host
PidFile {d}/sshd.pid
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AuthorizedKeysFile {d}/keys/%u
StrictModes no
PermitRootLogin no
Subsystem sftp /usr/lib/openssh/sftp-server
AcceptEnv LANG LC_*
LogLevel VERBOSE
""".encode())
        self.log = open(f"{d}/sshd.log", "w")
        self.process = subprocess.Popen(
            withDevLog(testCase, syslog,
                       list(getattr(testCase, "sshdWrapper", ()))
                       + [SSHD, "-D", "-e", "-f", f"{d}/sshd_config"]),
            stdout=self.log, stderr=subprocess.STDOUT)
        testCase.addCleanup(self.stop)
        harness.waitFor(self._listening, what="sshd listening")

    def _listening(self):
        if self.process.poll() is not None:
            raise AssertionError("sshd exited: " +
                                 open(self.log.name).read())
        try:
            socket.create_connection(("127.0.0.1", self.port), 1).close()
            return True
        except OSError:
            return False

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.log.close()

    def options(self):
        return ["-i", self.dir.child("client").path,
                "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]

    def ssh(self, user, *command, input=None, options=(), env=None):
        return subprocess.run(
            ["ssh", "-T", "-p", str(self.port)] + self.options()
            + list(options) + [f"{user}@127.0.0.1"] + list(command),
            input=input or "", capture_output=True, text=True, timeout=60,
            env=env)

    def rsync(self, *args, cwd):
        shell = " ".join(["ssh", "-p", str(self.port)] + self.options())
        return subprocess.run(["rsync", "-e", shell] + list(args),
                              capture_output=True, text=True, timeout=60,
                              cwd=cwd)

    def sftp(self, user, batch, cwd):
        return subprocess.run(
            ["sftp", "-P", str(self.port), "-b", "-"] + self.options()
            + [f"{user}@127.0.0.1"], input=batch, capture_output=True,
            text=True, timeout=60, cwd=cwd)

    def scp(self, *args, cwd):
        return subprocess.run(
            ["scp", "-P", str(self.port)] + self.options() + list(args),
            capture_output=True, text=True, timeout=60, cwd=cwd)


class WalkthroughTestCase(SynchronousTestCase):

    #: Build the jail with C{jk_init --bind}.
    bind = False

    def setUp(self):
        harness.isolated(self)
        self.syslog = harness.startRsyslog(self)
        self.jail = buildJail(self, bind=self.bind)
        result = harness.run("jk_addjailuser", "-j", self.jail, "-p", "*",
                             "-u", str(freeId()), "jtssh1")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.addCleanup(subprocess.run, ["userdel", "-f", "jtssh1"],
                        capture_output=True)
        self.moved = addAccount(self, "jtssh2")
        result = harness.run("jk_jailuser", "-m", "-n", "-j", self.jail,
                             "jtssh2")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.addCleanup(self.reap, ["jtssh1", "jtssh2"])
        self.sshd = Sshd(self, self.syslog, ["jtssh1", "jtssh2"])
        self.local = harness.shortTempDir(self)

    def reap(self, users):
        """
        After sshd stopped: wait for the sessions of the test accounts to
        end (their uids are reused by the next test's accounts), killing by
        pid whatever is left after a few seconds.
        """
        uids = [int(line.split(":")[2]) for line in open("/etc/passwd")
                if line.split(":")[0] in users]
        def left():
            return [pid for uid in uids for pid in runningProcesses(uid)]
        try:
            harness.waitFor(lambda: not left(), timeout=5,
                            what="the test accounts' sessions to end")
        except AssertionError:
            for pid in left():
                os.kill(pid, signal.SIGKILL)

    def assertLogged(self, text):
        return harness.waitFor(
            lambda: [l for l in self.syslog.lines() if text in l],
            what=f"a log line with {text!r}")[0]

    def noSetuidFiles(self):
        """
        Neither the jail nor the installed package has a setuid or setgid
        file, and the jail holds no Python.
        """
        for top in (self.jail, os.path.dirname(os.path.dirname(
                harness.script("jk_chrootsh")))):
            for dirpath, dirs, files in os.walk(top):
                for name in files:
                    path = os.path.join(dirpath, name)
                    st = os.lstat(path)
                    self.assertFalse(st.st_mode & 0o6000, path)
                    if top == self.jail:
                        self.assertNotIn("python", name, path)


class TransferTests(WalkthroughTestCase):

    def test_walkthrough(self):
        """
        sftp upload and download, C{ls /} showing the jail, scp upload (over
        sftp and with the legacy protocol), files owned by the account with
        the jail's umask, and the logins logged.
        """
        self.noSetuidFiles()
        local = self.local.path
        self.local.child("up.txt").setContent(b"uploaded\n")
        # sftp creates the file with the local mode; the umask of the
        # jail's jk_lsh.ini (022) takes the group and other write bits off.
        os.chmod(self.local.child("up.txt").path, 0o666)
        result = self.sshd.sftp(
            "jtssh1", "put up.txt\nget up.txt down.txt\npwd\nls -1 /\n"
                      "ls -1 /usr/lib/openssh\n", local)
        self.assertEqual(result.returncode, 0, result.stderr + open(
            self.sshd.log.name).read())
        home = os.path.join(self.jail, "home/jtssh1")
        with open(os.path.join(home, "up.txt")) as f:
            self.assertEqual(f.read(), "uploaded\n")
        st = os.stat(os.path.join(home, "up.txt"))
        uid = int(open("/etc/passwd").read().split("\njtssh1:x:")[1]
                  .split(":")[0])
        self.assertEqual(st.st_uid, uid)
        self.assertEqual(st.st_mode & 0o777, 0o644)
        self.assertEqual(self.local.child("down.txt").getContent(),
                         b"uploaded\n")
        self.assertIn("Remote working directory: /home/jtssh1",
                      result.stdout)
        listing = result.stdout.split("ls -1 /\n")[1].split("sftp>")[0]
        self.assertEqual(
            sorted(line.strip().lstrip("/") for line in listing.split()),
            sorted(os.listdir(self.jail)))
        self.assertIn("sftp-server", result.stdout)

        result = self.sshd.scp("up.txt", "jtssh2@127.0.0.1:scp-sftp.txt",
                               cwd=local)
        self.assertEqual(result.returncode, 0, result.stderr)
        result = self.sshd.scp("-O", "up.txt",
                               "jtssh2@127.0.0.1:scp-legacy.txt", cwd=local)
        self.assertEqual(result.returncode, 0, result.stderr)
        home2 = os.path.join(self.jail, "home/jtssh2")
        for name in ("scp-sftp.txt", "scp-legacy.txt", "notes.txt"):
            with open(os.path.join(home2, name)) as f:
                self.assertIn("\n", f.read())
            self.assertEqual(os.stat(os.path.join(home2, name)).st_uid,
                             self.moved[2])
        result = self.sshd.scp("-O", "jtssh2@127.0.0.1:notes.txt",
                               "notes-copy.txt", cwd=local)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(self.local.child("notes-copy.txt").getContent(),
                         b"jtssh2's notes\n")

        line = self.assertLogged(f"now entering jail {self.jail} for user "
                                 f"jtssh1")
        self.assertTrue(line.startswith("jk_chrootsh["), line)
        self.assertLogged("executing command '/usr/lib/openssh/sftp-server'"
                          " for user jtssh1")
        self.assertLogged("executing command '/usr/bin/scp -t "
                          "scp-legacy.txt' for user jtssh2")


class RefusalTests(WalkthroughTestCase):

    def refused(self, code, text, *command, tag="jk_lsh"):
        result = self.sshd.ssh("jtssh1", *command)
        self.assertEqual(result.returncode, code,
                         (command, result.stdout, result.stderr))
        self.assertEqual(result.stdout, "")
        self.assertIn(text, result.stderr)
        line = self.assertLogged(text)
        self.assertTrue(line.startswith(f"{tag}["), line)
        return line

    def test_refusals(self):
        """
        Shell commands, interactive logins, word expansion, a program in the
        jail that is not allowed and an allowed path with C{..} leading
        elsewhere are refused and logged with user and command; a
        group-writable jail is refused.
        """
        self.refused(4, "tried to run 'cat /etc/passwd', which is not "
                        "allowed", "cat /etc/passwd")
        self.refused(7, "tried to get an interactive shell session")
        for command in ["scp -t $(id)", "scp -t `id`", "scp -t x;id",
                        "scp -t x|id", "scp -t x && id"]:
            self.refused(6, f"tried to run '{command}', which is an illegal "
                            f"word expansion", command)
        self.refused(4, "tried to run '/usr/bin/busybox sh'",
                     "/usr/bin/busybox sh")
        self.refused(4, "tried to run '/usr/lib/openssh/../../bin/busybox "
                        "sh'", "/usr/lib/openssh/../../bin/busybox sh")
        self.refused(4, "tried to run '/usr/bin/../../../../usr/bin/busybox'",
                     "/usr/bin/../../../../usr/bin/busybox")
        self.refused(4, "scp runs only as a server",
                     "scp -S /usr/bin/busybox x localhost:y")
        os.chmod(self.jail, 0o775)
        self.refused(53, "is not a safe jail", "scp -t .", tag="jk_chrootsh")


_PROBE = """\
B=/usr/bin/busybox
for fd in 3 4 5 6 7 8 9; do
  if ( : <&$fd ) 2>/dev/null; then echo "open fd $fd"; fi
done
$B unshare -r $B true 2>/dev/null && echo "nested user namespace"
$B mkdir -p /home/jtssh2/m
$B mount -t tmpfs none /home/jtssh2/m 2>/dev/null && echo "mounted"
$B chroot / $B true 2>/dev/null && echo "chroot"
echo x 2>/dev/null >>/etc/passwd && echo "jail passwd writable"
$B ls /proc/1 >/dev/null 2>&1 && echo "proc visible"
$B env | $B sort
echo done
"""


class BypassTests(WalkthroughTestCase):
    """
    Attempts to get more than jk_lsh allows, with the real clients: rsync
    as a client or daemon, word splitting games, very long commands,
    variables sent by the client; and what an account that may run a
    program of its choice (a shell account) can reach from the jail.
    """

    def setUp(self):
        WalkthroughTestCase.setUp(self)
        _copy(self.jail, "/usr/bin/rsync")
        for lib in _libraries("/usr/bin/rsync"):
            # Under the name the program asks for (a symlink on the host).
            target = self.jail + os.path.join(
                os.path.realpath(os.path.dirname(lib)), os.path.basename(lib))
            if not os.path.exists(target):
                os.makedirs(os.path.dirname(target), exist_ok=True)
                shutil.copy(lib, target)
        with open(os.path.join(self.jail, "etc/jailkit/jk_lsh.ini"),
                  "a") as f:
            f.write("\n[jtssh1]\npaths = /usr/bin, /usr/lib/openssh\n"
                    "executables = /usr/lib/openssh/sftp-server, "
                    "/usr/bin/scp, /usr/bin/rsync\numask = 022\n"
                    "\n[jtssh2]\npaths = /usr/bin\n"
                    "executables = /usr/bin/busybox\n")

    def plant(self, user, name, text):
        path = os.path.join(self.jail, "home", user, name)
        with open(path, "w") as f:
            f.write(text)
        uid = int([l for l in open("/etc/passwd")
                   if l.startswith(user + ":")][0].split(":")[2])
        os.chown(path, uid, uid)
        return path

    def test_bypasses(self):
        home = os.path.join(self.jail, "home/jtssh1")
        pwned = os.path.join(home, "pwned")
        # rsync as a client: -e names the "remote shell", here busybox sh,
        # which would run the script 'rsync' planted in the home.
        self.plant("jtssh1", "rsync",
                   "/usr/bin/busybox id -u > /home/jtssh1/pwned\n")
        for command in ["rsync -e/usr/bin/busybox sh:x .",
                        "rsync --rsh=/usr/bin/busybox sh:x ."]:
            result = self.sshd.ssh("jtssh1", command)
            self.assertFalse(os.path.exists(pwned), command)
            self.assertEqual(result.returncode, 4, result.stderr)
            self.assertIn("rsync runs only as a server", result.stderr)
        # rsync as a daemon over ssh reads rsyncd.conf from the home.
        self.plant("jtssh1", "rsyncd.conf",
                   "[m]\npath = /home/jtssh1\nuse chroot = no\n"
                   "pre-xfer exec = /usr/bin/busybox touch "
                   "/home/jtssh1/pwned\n")
        result = self.sshd.rsync("jtssh1@127.0.0.1::m/", cwd=self.local.path)
        self.assertNotEqual(result.returncode, 0, result.stdout)
        self.assertFalse(os.path.exists(pwned))
        self.assertLogged("not as a daemon (--daemon)")
        # rsync as the server end works, files owned by the account.
        self.local.child("r.txt").setContent(b"rsynced\n")
        result = self.sshd.rsync("-a", "r.txt", "jtssh1@127.0.0.1:r.txt",
                                 cwd=self.local.path)
        self.assertEqual(result.returncode, 0, result.stderr)
        with open(os.path.join(home, "r.txt")) as f:
            self.assertEqual(f.read(), "rsynced\n")

        for command, code in [("scp -t x\nid", 6), ("scp\t-t .", 4),
                              ("scp -t 'a b'", 6), ("scp -t a\\ b", 6),
                              ("scp -t ${HOME}", 6),
                              ("/usr/lib/openssh//../../bin/scp -t -S "
                               "/usr/bin/busybox x", 4)]:
            result = self.sshd.ssh("jtssh1", command)
            self.assertEqual(result.returncode, code, (command, result))
        # A command close to the kernel's limit for one argument.
        result = self.sshd.ssh("jtssh1", "scp -t " + "A" * 120000)
        self.assertNotIn("Traceback", result.stderr)
        self.assertEqual((result.returncode, result.stdout), (0, "\0"),
                         result.stderr[-300:])

        # What a program of the account's choice reaches from the jail:
        # no inherited descriptor, no namespace, mount or chroot of its
        # own, no write to root's files, no /proc; and of the variables
        # the client sent (sshd accepts LANG and LC_*), none; and what
        # would act on the login shell itself (LD_PRELOAD, PYTHON*: it runs
        # as the account, outside the jail, until it enters) does not reach
        # it: ld.so and python -v would say so on stderr.
        self.plant("jtssh2", "probe.sh", _PROBE)
        env = dict(os.environ, LC_ALL="C", LANG="C", LC_EVIL="1")
        result = self.sshd.ssh(
            "jtssh2", "busybox sh /home/jtssh2/probe.sh",
            options=["-o", "SendEnv=LANG LC_*", "-o",
                     "SetEnv=LD_PRELOAD=/nonexistent.so PYTHONVERBOSE=1 "
                     "PYTHONPATH=/home/jtssh2"], env=env)
        self.assertEqual((result.returncode, result.stderr), (0, ""),
                         result.stdout)
        lines = result.stdout.splitlines()
        self.assertEqual(lines[-1], "done", result.stdout)
        self.assertEqual(
            sorted(l.split("=")[0] for l in lines[:-1]),
            # PATH, PWD and SHLVL are busybox sh's own.
            ["HOME", "PATH", "PWD", "SHELL", "SHLVL", "USER", "USERNAME"],
            result.stdout)


# -- where no user namespace can be made: the root login service --------------

MAX_USER_NAMESPACES = "/proc/sys/user/max_user_namespaces"


def sysctlWritable(path=MAX_USER_NAMESPACES):
    try:
        os.close(os.open(path, os.O_WRONLY))
    except OSError:
        return False
    return True


def forbidUserNamespaces(testCase):
    """
    Set the machine's C{user.max_user_namespaces} to 0 for this test only;
    it is put back when the test ends, passed or failed.  (Machine-wide:
    this is the last step of the set-up, to keep the window short, and
    trial runs the tests one after the other.)
    """
    with open(MAX_USER_NAMESPACES) as f:
        old = f.read().strip()

    def restore():
        with open(MAX_USER_NAMESPACES, "w") as f:
            f.write(old)
    testCase.addCleanup(restore)
    with open(MAX_USER_NAMESPACES, "w") as f:
        f.write("0")


class ServiceMixin:
    """
    The walkthrough with C{user.max_user_namespaces=0} and the suite
    (C{twistd jailtwist}) running: every login goes through its login
    service.

    Where the machine-wide sysctl cannot be written (a container whose
    /proc/sys/user is read-only even for root, like this project's test
    machine), sshd runs in a user namespace of its own that maps every id
    to itself and whose C{user.max_user_namespaces} is 0
    (C{tests/nouserns.py}): the logins under it meet exactly the refusal
    of a hardened host, and the service still sees their real uids.
    """

    def setUp(self):
        from tests.test_loginservice import NOUSERNS, WITH_PTYS, startSuite
        realSysctl = sysctlWritable()
        self.sshdWrapper = list(WITH_PTYS)
        if not realSysctl:
            self.sshdWrapper += [sys.executable, NOUSERNS]
        super().setUp()
        self.suite = startSuite(self, self.syslog)
        if realSysctl:
            forbidUserNamespaces(self)


class ServiceTransferTests(ServiceMixin, TransferTests):

    def test_walkthrough(self):
        TransferTests.test_walkthrough(self)
        self.assertLogged("login service: user jtssh1")
        self.assertLogged("login service: user jtssh2")
        self.assertLogged("user.max_user_namespaces=0 forbids them")


class ServiceRefusalTests(ServiceMixin, RefusalTests):
    pass


class ServiceBypassTests(ServiceMixin, BypassTests):
    pass


class ServicePtyTests(ServiceMixin, WalkthroughTestCase):
    """
    An interactive C{ssh -t} session in a jail through the login service:
    a pty, window size changes, the exit status, and a hangup when the
    connection drops.
    """

    def setUp(self):
        super().setUp()
        path = os.path.join(self.jail, "etc/passwd")
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text.replace("/home/jtssh2:/usr/sbin/jk_lsh",
                                 "/home/jtssh2:/usr/bin/sh"))
        os.symlink("busybox", os.path.join(self.jail, "usr/bin/sh"))

    def session(self, command, rows=24, columns=80):
        import fcntl
        import termios
        master, slave = os.openpty()
        self.addCleanup(os.close, master)
        _setSize(master, rows, columns)

        def controllingTerminal():
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        process = subprocess.Popen(
            ["ssh", "-t", "-p", str(self.sshd.port)] + self.sshd.options()
            + ["jtssh2@127.0.0.1", command], stdin=slave, stdout=slave,
            stderr=slave, start_new_session=True,
            preexec_fn=controllingTerminal)
        os.close(slave)
        self.addCleanup(process.wait)
        self.addCleanup(_kill, process)
        return process, master

    def test_interactive(self):
        process, master = self.session(
            '[ -t 0 ] && echo ON-A-TTY; stty size; '
            'while read x; do stty size; [ "$x" = q ] && exit 5; done')
        output = _readUntil(master, "24 80")
        self.assertIn("ON-A-TTY", output)
        _setSize(master, 30, 100)
        # Each line makes the shell print the size it sees; the new size
        # travels ssh, sshd, jk_chrootsh and the service, so it may take a
        # few lines to arrive.
        sizes = []
        for _ in range(20):
            os.write(master, b"x\r")
            output = _readUntil(master, "\n", after="x\r\n")
            sizes.append(output.split("x\r\n", 1)[1].split()[0:2])
            if sizes[-1] == ["30", "100"]:
                break
        self.assertEqual(sizes[-1], ["30", "100"], sizes)
        os.write(master, b"q\r")
        self.assertEqual(process.wait(30), 5)
        self.assertLogged("login service: user jtssh2")
        self.assertLogged("on a pty")

    def test_hangup(self):
        process, master = self.session("echo PID $$; exec busybox sleep 600")
        output = _readUntil(master, "\n", after="PID ")
        pid = int(output.split("PID ")[1].split()[0])
        self.assertTrue(os.path.exists(f"/proc/{pid}"))
        process.kill()
        harness.waitFor(lambda: not os.path.exists(f"/proc/{pid}"),
                        what="the jailed shell to be hung up")


def _setSize(fd, rows, columns):
    import fcntl
    import struct
    import termios
    fcntl.ioctl(fd, termios.TIOCSWINSZ,
                struct.pack("HHHH", rows, columns, 0, 0))


def _kill(process):
    if process.poll() is None:
        process.kill()


def _readUntil(fd, text, timeout=20.0, after=""):
    """
    Read from the pty master C{fd} until C{text} has come (after
    C{after}, if given).
    """
    import select
    import time
    deadline = time.monotonic() + timeout
    data = ""
    while True:
        tail = data.split(after, 1)[1] if after and after in data else \
            (None if after else data)
        if tail is not None and text in tail:
            return data
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError(f"no {text!r} within {timeout}s: {data!r}")
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            raise AssertionError(f"pty closed before {text!r}: {data!r}")
        data += chunk.decode("utf-8", "replace")


# -- the walkthrough on a jail assembled from binds (jk_init --bind) ----------

class _BindWalkthrough:
    """
    The walkthrough's jail built with C{jk_init --bind}: no copy of a host
    program in it, the jail directory well under 1 MB, and every login
    assembles it from read-only binds in the login's own mount namespace.
    """

    bind = True

    def assertBindJail(self):
        total = 0
        for dirpath, dirs, files in os.walk(self.jail):
            for name in files:
                path = os.path.join(dirpath, name)
                # The test's own busybox (not allowed by jk_lsh) aside.
                if path != os.path.join(self.jail, "usr/bin/busybox"):
                    total += os.lstat(path).st_size
        self.assertLess(total, 1024 * 1024)
        # The mount point of the sftp server stays empty on the host.
        self.assertEqual(os.path.getsize(
            os.path.join(self.jail, "usr/lib/openssh/sftp-server")), 0)


class BindTransferTests(_BindWalkthrough, TransferTests):

    def test_walkthrough(self):
        """
        The walkthrough on a bind jail; no mount is left on the host side
        (sshd and the login service run in this test's mount namespace).
        """
        from tests.test_bindenter import mountinfo
        before = mountinfo()
        self.assertBindJail()
        TransferTests.test_walkthrough(self)
        self.assertEqual(mountinfo(), before)


class BindRefusalTests(_BindWalkthrough, RefusalTests):

    def test_refusals(self):
        """
        jk_lsh's refusals as on a copied jail; then an entry added to the
        bind list by hand that must never be bound stops the login with
        one line (exit 53), and nothing runs.
        """
        RefusalTests.test_refusals(self)
        os.chmod(self.jail, 0o755)
        with open(os.path.join(self.jail, "etc/jailkit/bind.list"),
                  "ab") as f:
            f.write(b"/etc/shadow\n")
        harness.recordBindList(self.jail)
        result = self.sshd.ssh("jtssh1", "scp -t .")
        self.assertEqual(result.returncode, 53, result.stderr)
        self.assertEqual(result.stdout, "")
        self.assertEqual(len(result.stderr.strip().splitlines()), 1,
                         result.stderr)
        self.assertIn("/etc/shadow: refused, /etc/shadow is never bound",
                      result.stderr)


class ServiceBindTransferTests(ServiceMixin, BindTransferTests):

    def test_walkthrough(self):
        BindTransferTests.test_walkthrough(self)
        self.assertLogged("login service: user jtssh1")
        self.assertLogged("user.max_user_namespaces=0 forbids them")


class ServiceBindRefusalTests(ServiceMixin, BindRefusalTests):
    pass
