"""
Tests for the installed login commands run as real unprivileged accounts
(without sshd): jk_chrootsh's checks and exit statuses, jk_lsh on its own,
jk_uchroot, jk_procmailwrapper, jk_jailuser and jk_addjailuser.  Every
refusal is checked in the output of a real rsyslogd that the commands reach
through their own /dev/log.

Also the fixtures the sshd tests share: a walkthrough jail, accounts, and
running a command as an account with a private /dev/log.
"""

import os
import shutil
import socket
import stat
import subprocess
import textwrap

from twisted.trial.unittest import SynchronousTestCase

from jailtwist import login
from tests import harness

LSH_INI = """\
[DEFAULT]
paths = /usr/bin, /usr/lib/openssh
executables = /usr/lib/openssh/sftp-server, /usr/bin/scp
umask = 022
"""

# What the manual jail builder copies when jk_init is not installed (the
# jk_lsh, sftp and scp sections of jk_init.ini, for this machine).
_PROGRAMS = ["/usr/lib/openssh/sftp-server", "/usr/bin/scp"]


def _libraries(path):
    out = subprocess.run(["ldd", path], capture_output=True, text=True).stdout
    libs = []
    for line in out.splitlines():
        line = line.strip()
        if "=>" in line:
            target = line.split("=>")[1].split("(")[0].strip()
            if target.startswith("/"):
                libs.append(target)
        elif line.startswith("/"):
            libs.append(line.split()[0])
    return libs


def _copy(jail, path):
    target = jail + os.path.realpath(path)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copy2(os.path.realpath(path), target)
    os.chmod(target, os.stat(target).st_mode & 0o755)


def buildJail(testCase, name="sftproot", bind=False):
    """
    The walkthrough jail: C{jk_init -j JAIL jk_lsh sftp scp} (with the
    installed jk_init, or an equivalent copy where it is not installed yet),
    the jail's jk_lsh.ini allowing sftp-server and scp, plus a static
    busybox at /usr/bin/busybox that is in the jail but not allowed.

    @param bind: build it with C{jk_init --bind} (assembled from read-only
        binds of the host's files when entered).
    @return: the jail's path.
    """
    jail = harness.jailParent(testCase).child(name).path
    os.mkdir(jail, 0o755)
    if bind:
        result = harness.run("jk_init", "--bind", "-j", jail, "jk_lsh",
                             "sftp", "scp")
        testCase.assertEqual(result.returncode, 0, result.stderr)
    elif harness.BIN.child("jk_init").exists():
        result = harness.run("jk_init", "-j", jail, "jk_lsh", "sftp", "scp")
        testCase.assertEqual(result.returncode, 0, result.stderr)
    else:
        for d in ["usr/bin", "usr/lib", "usr/lib64", "dev", "etc/jailkit"]:
            os.makedirs(os.path.join(jail, d), mode=0o755, exist_ok=True)
        for link, target in [("bin", "usr/bin"), ("lib", "usr/lib"),
                             ("lib64", "usr/lib64")]:
            os.symlink(target, os.path.join(jail, link))
        for program in _PROGRAMS:
            _copy(jail, program)
            for lib in _libraries(program):
                _copy(jail, lib)
        for node, minor in [("null", 3), ("urandom", 9)]:
            path = os.path.join(jail, "dev", node)
            os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, minor))
            os.chmod(path, 0o666)
        with open(os.path.join(jail, "etc/passwd"), "w") as f:
            f.write("root:x:0:0:root:/root:/bin/bash\n")
        with open(os.path.join(jail, "etc/group"), "w") as f:
            f.write("root:x:0:\n")
    os.makedirs(os.path.join(jail, "etc/jailkit"), exist_ok=True)
    with open(os.path.join(jail, "etc/jailkit/jk_lsh.ini"), "w") as f:
        f.write(LSH_INI)
    shutil.copy("/bin/busybox", os.path.join(jail, "usr/bin/busybox"))
    return jail


def freeId():
    """
    A uid (and gid) for a test account that no process on the machine runs
    as: other suites create accounts in their own /etc overlays at the same
    time, and C{useradd}'s first free uid would be theirs too (and their
    processes would then look like the account's to jk_jailuser).
    """
    used = set()
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith(("Uid:", "Gid:")):
                        used.update(int(n) for n in line.split()[1:])
        except (OSError, ValueError):
            continue
    taken = {int(line.split(":")[2]) for path in ("/etc/passwd", "/etc/group")
             for line in open(path) if line.count(":") >= 2}
    start = 20000 + (os.getpid() * 7) % 30000
    for candidate in range(start, start + 1000):
        if candidate not in used and candidate not in taken:
            return candidate
    raise AssertionError("no free uid for a test account")


def addAccount(testCase, name, home=None):
    """
    Create an account (password field C{*}, so sshd without PAM accepts
    key logins) with a home holding one file.
    """
    home = home or f"/home/{name}"
    uid = str(freeId())
    result = subprocess.run(["groupadd", "-g", uid, name],
                            capture_output=True, text=True)
    testCase.assertEqual(result.returncode, 0, result.stderr)
    testCase.addCleanup(subprocess.run, ["groupdel", name],
                        capture_output=True)
    # No subordinate ids: usermod refuses an account while any process
    # runs with one of them (other suites' user namespaces use 100000+).
    result = subprocess.run(["useradd", "-K", "SUB_UID_COUNT=0", "-K",
                             "SUB_GID_COUNT=0", "-p", "*", "-m", "-d", home,
                             "-u", uid, "-g", uid, name],
                            capture_output=True, text=True)
    testCase.assertEqual(result.returncode, 0, result.stderr)
    testCase.addCleanup(subprocess.run, ["userdel", "-f", "-r", name],
                        capture_output=True)
    with open(os.path.join(home, "notes.txt"), "w") as f:
        f.write(f"{name}'s notes\n")
    entry = _entry(name)
    os.chown(os.path.join(home, "notes.txt"), entry[2], entry[3])
    return entry


def _entry(name):
    with open("/etc/passwd") as f:
        for line in f:
            fields = line.rstrip("\n").split(":")
            if fields[0] == name:
                fields[2], fields[3] = int(fields[2]), int(fields[3])
                return fields
    raise AssertionError(f"no user {name}")


_DEVLOG = """\
set -e
mount -t overlay overlay -o "lowerdir=/dev,upperdir=$1/u,workdir=$1/w" /dev
rm -f /dev/log
ln -s "$2" /dev/log
shift 2
exec "$@"
"""


def withDevLog(testCase, syslog, command):
    """
    C{command} prefixed so that it runs in its own mount namespace whose
    /dev/log is C{syslog}'s socket (the host has none, and /dev is shared).
    """
    scratch = harness.shortTempDir(testCase)
    for d in ("u", "w"):
        scratch.child(d).makedirs()
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            _DEVLOG, "sh", scratch.path, syslog.socket] + list(command)


def replaceConfig(testCase, name, text):
    """
    Write C{/etc/jailkit/NAME} (inside the test's /etc overlay) for one
    test; what was there before is put back afterwards.
    """
    path = os.path.join("/etc/jailkit", name)
    os.makedirs("/etc/jailkit", exist_ok=True)
    try:
        with open(path) as f:
            old = f.read()
    except FileNotFoundError:
        testCase.addCleanup(os.unlink, path)
    else:
        def restore():
            with open(path, "w") as f:
                f.write(old)
        testCase.addCleanup(restore)
    with open(path, "w") as f:
        f.write(text)


def asUser(name, command, env=None):
    """
    C{command} run as account C{name} (its uid, gid and groups) with an
    environment like the one sshd gives a session.
    """
    environment = {"USER": name, "LOGNAME": name, "PATH": "/usr/bin:/bin"}
    environment.update(env or {})
    return (["env", "-i"] + [f"{k}={v}" for k, v in environment.items()]
            + ["setpriv", "--reuid", name, "--regid", name, "--init-groups",
               "--"] + list(command))


def deliverMail(testCase, procmailrc):
    """
    Give the jailed account of a L{LoginTestCase} the C{.procmailrc}
    C{procmailrc} (which must deliver to C{$HOME/jailed-mbox}), deliver a
    message to it through jk_procmailwrapper, and check that it arrived.
    """
    home = os.path.join(testCase.jail, "home", testCase.user)
    rc = os.path.join(home, ".procmailrc")
    with open(rc, "w") as f:
        f.write(procmailrc)
    os.chown(rc, testCase.entry[2], testCase.entry[3])
    os.chmod(rc, 0o644)
    command = withDevLog(testCase, testCase.syslog, asUser(
        testCase.user, [harness.script("jk_procmailwrapper")]))
    result = subprocess.run(
        command, input="From: a@b\nSubject: hi\n\nbody\n",
        capture_output=True, text=True, cwd="/")
    testCase.assertEqual(result.returncode, 0, result.stderr)
    with open(os.path.join(home, "jailed-mbox")) as f:
        testCase.assertIn("Subject: hi", f.read())


class HomeTests(SynchronousTestCase):
    """
    The jail and the home from a passwd home directory.
    """

    def account(self, home):
        return login.Account("u", 1001, 1001, "u", home, "/bin/sh")

    def test_lastSeparator(self):
        """
        The jail is the text before the I{last} C{/./} (jailkit's rule); the
        jail part then still holds a C{/./}, which the working-directory
        check refuses later.
        """
        self.assertEqual(login.splitHome(self.account("/srv/j/./home/u")),
                         ("/srv/j", "/home/u"))
        self.assertEqual(
            login.splitHome(self.account("/media/./jk/./home/u")),
            ("/media/./jk", "/home/u"))

    def test_refused(self):
        for home, code in [("", 16), ("/home/u", 17), ("./home/u", 17)]:
            e = self.assertRaises(login.Refused, login.splitHome,
                                  self.account(home))
            self.assertEqual(e.exitCode, code, home)

    def test_environment(self):
        self.assertEqual(login.keepEnvironment(
            {"TERM": "x", "LD_PRELOAD": "y", "LANG": "C"}, ["TERM", "LANG"]),
            {"TERM": "x", "LANG": "C"})


class ImportTests(SynchronousTestCase):
    """
    What a login imports: every login pays for it before doing anything.
    """

    def test_noTwisted(self):
        """
        The installed login commands' modules import nothing from Twisted or
        zope (the reactor alone costs a quarter of a second), nor getopt,
        which only jk_uchroot needs.
        """
        python = os.path.join(os.path.dirname(harness.script("jk_chrootsh")),
                              "python3")
        result = subprocess.run(
            [python, "-I", "-c", "import sys, jailtwist.tools.login, "
             "jailtwist.enter; print(' '.join(sorted(sys.modules)))"],
            capture_output=True, text=True, cwd="/")
        self.assertEqual(result.returncode, 0, result.stderr)
        modules = result.stdout.split()
        self.assertIn("jailtwist.login", modules)
        self.assertEqual(
            [m for m in modules if m.split(".")[0] in
             ("twisted", "zope", "getopt", "gettext")], [])


class TracedWhileEnteringTests(SynchronousTestCase):
    """
    L{login.execute} refuses to run the program when a tracer attached
    while the jail was being entered (L{jailtwist.enter.enterAsUser} makes
    the process dumpable for a moment to write its user namespace maps).
    """

    def test_tracerAttachedDuringEntering(self):
        import ctypes
        from jailtwist import enter
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            status = 0
            try:
                os.close(read)
                libc = ctypes.CDLL(None, use_errno=True)

                def traced(*args, **kwargs):
                    # The parent becomes the tracer, as a process of the
                    # account would by attaching in that moment.
                    libc.ptrace(0, 0, None, None)
                enter.enterAsUser = traced
                from jailtwist.jail import Jail
                plan = login.LoginPlan(Jail("/"), os.open("/", os.O_PATH),
                                       "/", "/bin/true", ["true"], {})
                try:
                    login.execute(plan, login.AuthLog("test"))
                except login.Refused as e:
                    os.write(write, f"{e.exitCode} {e}".encode())
            finally:
                os._exit(status)
        os.close(write)
        self.addCleanup(os.close, read)
        # The child stops at nothing (PTRACE_TRACEME alone does not stop
        # it); reap it and, should it stop on a signal, let it go on.
        while True:
            _, status = os.waitpid(pid, 0)
            if os.WIFSTOPPED(status):
                ctypes.CDLL(None).ptrace(7, pid, None, None)
                continue
            break
        report = os.read(read, 4096).decode()
        self.assertTrue(report.startswith(f"{login.TRACED} "), report)
        self.assertIn("traced", report)


class LoginTestCase(SynchronousTestCase):
    """
    A walkthrough jail, an account jailed in it with jk_jailuser -m, and a
    private rsyslogd.
    """

    user = "jtlogin1"
    #: Build the jail with C{jk_init --bind}.
    bind = False

    def setUp(self):
        harness.isolated(self)
        replaceConfig(self, "jk_chrootsh.ini", "")
        self.syslog = harness.startRsyslog(self)
        self.jail = buildJail(self, bind=self.bind)
        self.entry = addAccount(self, self.user)
        result = harness.run("jk_jailuser", "-m", "-n", "-j", self.jail,
                             self.user)
        self.assertEqual(result.returncode, 0, result.stderr)

    def login(self, *args, env=None, program="jk_chrootsh", pass_fds=()):
        command = withDevLog(self, self.syslog, asUser(
            self.user, [harness.script(program)] + list(args), env))
        return subprocess.run(command, capture_output=True, text=True,
                              timeout=60, pass_fds=pass_fds, cwd="/",
                              stdin=subprocess.DEVNULL)

    def assertLogged(self, text):
        lines = harness.waitFor(
            lambda: [l for l in self.syslog.lines() if text in l],
            what=f"a log line with {text!r}")
        return lines[0]

    def assertRefused(self, result, code, text, tag="jk_chrootsh"):
        self.assertEqual(result.returncode, code,
                         (result.stdout, result.stderr))
        self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)
        self.assertIn(text, result.stderr)
        line = self.assertLogged(text)
        self.assertTrue(line.startswith(f"{tag}["), line)

    def setShell(self, shell):
        path = os.path.join(self.jail, "etc/passwd")
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text.replace(":/usr/sbin/jk_lsh", f":{shell}"))
        os.symlink("busybox", os.path.join(self.jail, "usr/bin/sh"))


class JailUserTests(LoginTestCase):
    """
    What jk_jailuser did, and what it refuses.
    """

    def test_moved(self):
        """
        The home moved into the jail with its file and owners; the host
        passwd points at the jail and the installed jk_chrootsh; the jail's
        passwd and group have the account with jk_lsh.
        """
        name, _, uid, gid = self.entry[:4]
        inner = os.path.join(self.jail, "home", name)
        self.assertFalse(os.path.exists(f"/home/{name}"))
        notes = os.path.join(inner, "notes.txt")
        self.assertEqual(open(notes).read(), f"{name}'s notes\n")
        self.assertEqual((os.stat(notes).st_uid, os.stat(inner).st_uid),
                         (uid, uid))
        host = _entry(name)
        self.assertEqual(host[5], f"{self.jail}/./home/{name}")
        self.assertEqual(host[6], harness.script("jk_chrootsh"))
        with open(os.path.join(self.jail, "etc/passwd")) as f:
            self.assertIn(f"{name}:x:{uid}:{gid}::/home/{name}:"
                          f"/usr/sbin/jk_lsh\n", f.read())
        with open(os.path.join(self.jail, "etc/group")) as f:
            self.assertIn(f"{name}:x:{gid}:", f.read())
        self.assertEqual(os.stat(os.path.join(self.jail, "etc/passwd"))
                         .st_mode & 0o777, 0o644)

    def snapshot(self):
        files = ["/etc/passwd", "/etc/group", "/etc/shadow",
                 os.path.join(self.jail, "etc/passwd"),
                 os.path.join(self.jail, "etc/group")]
        return {f: open(f, "rb").read() for f in files}

    def assertNothingChanged(self, before, result, code, text):
        self.assertEqual(result.returncode, code, result.stderr)
        self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)
        self.assertIn(text, result.stderr)
        self.assertEqual(self.snapshot(), before)

    def test_loginDuringMove(self):
        """
        An account that logs in while its home is being copied (after the
        check for running processes) keeps its old home: what that session
        writes there after the copy would otherwise be lost.  The account
        is jailed; the command says what to compare and exits non-zero.
        """
        from jailtwist.errors import JailtwistError
        from jailtwist.tools import jailuser
        addAccount(self, "jtlogin2")
        calls = []

        def running(uid):
            calls.append(uid)
            # The check finds nothing; the session starts during the copy.
            return [] if len(calls) == 1 else [4242]
        self.patch(jailuser, "runningProcesses", running)
        options = jailuser.parseJailUser(["-m", "-n", "-j", self.jail,
                                          "jtlogin2"])
        e = self.assertRaises(JailtwistError, jailuser.jailAccounts,
                              options, out=open(os.devnull, "w"))
        self.assertEqual(e.exitCode, 2)
        self.assertIn("/home/jtlogin2 was kept", str(e))
        self.assertTrue(os.path.exists("/home/jtlogin2/notes.txt"))
        self.assertTrue(os.path.exists(
            os.path.join(self.jail, "home/jtlogin2/notes.txt")))
        self.assertEqual(_entry("jtlogin2")[5],
                         f"{self.jail}/./home/jtlogin2")

    def test_staleCopyRemoved(self):
        """
        The half-copied home a killed jk_jailuser -m left in the jail is
        removed by the next run.
        """
        addAccount(self, "jtlogin2")
        stale = os.path.join(self.jail, "home", ".jtlogin2.jailtwist-new-1")
        os.makedirs(os.path.join(stale, "half"))
        result = harness.run("jk_jailuser", "-m", "-n", "-j", self.jail,
                             "jtlogin2")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(sorted(os.listdir(os.path.join(self.jail, "home"))),
                         ["jtlogin1", "jtlogin2"])

    def test_unknownUser(self):
        before = self.snapshot()
        result = harness.run("jk_jailuser", "-n", "-j", self.jail, "nosuch")
        self.assertNothingChanged(before, result, 2, "user nosuch does not "
                                                     "exist")

    def test_missingJail(self):
        addAccount(self, "jtlogin2")
        before = self.snapshot()
        result = harness.run("jk_jailuser", "--noninteractive", "-m", "-j",
                             "/mnt/nosuchjail", "jtlogin2")
        self.assertNothingChanged(before, result, 33, "/mnt/nosuchjail")
        self.assertTrue(os.path.exists("/home/jtlogin2/notes.txt"))

    def test_unsafeJail(self):
        addAccount(self, "jtlogin2")
        before = self.snapshot()
        os.chmod(self.jail, 0o775)
        result = harness.run("jk_jailuser", "-n", "-m", "-j", self.jail,
                             "jtlogin2")
        self.assertNothingChanged(before, result, 33,
                                  "writable by group or others")
        self.assertTrue(os.path.exists("/home/jtlogin2/notes.txt"))

    def test_runningProcess(self):
        """
        An account with a running process is not half-moved.
        """
        addAccount(self, "jtlogin2")
        sleeper = subprocess.Popen(asUser("jtlogin2", ["sleep", "60"]))
        self.addCleanup(sleeper.wait)
        self.addCleanup(sleeper.kill)
        harness.waitFor(lambda: os.stat(f"/proc/{sleeper.pid}").st_uid != 0,
                        what="the account's process")
        before = self.snapshot()
        result = harness.run("jk_jailuser", "-n", "-m", "-j", self.jail,
                             "jtlogin2")
        self.assertNothingChanged(before, result, 2, "running processes")
        self.assertTrue(os.path.exists("/home/jtlogin2/notes.txt"))

    def test_addjailuser(self):
        result = harness.run("jk_addjailuser", "-j", self.jail, "-p", "*",
                             "jtlogin3")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.addCleanup(subprocess.run, ["userdel", "-f", "jtlogin3"],
                        capture_output=True)
        host = _entry("jtlogin3")
        self.assertEqual(host[5], f"{self.jail}/./home/jtlogin3")
        self.assertEqual(os.stat(os.path.join(self.jail, "home/jtlogin3"))
                         .st_uid, host[2])
        before = self.snapshot()
        result = harness.run("jk_addjailuser", "-j", self.jail, "jtlogin3")
        self.assertNothingChanged(before, result, 2, "already exists")


class ChrootshTests(LoginTestCase):
    """
    jk_chrootsh run as the account: entering, and jailkit's refusals.
    """

    def test_lshCommand(self):
        """
        An allowed command runs inside the jail as the account; the entry
        and the command are logged under jailkit's tags.
        """
        result = self.login("-c", "scp -t .")
        # scp's server end starts by acknowledging with a NUL byte.
        self.assertEqual(result.stdout, "\0", result.stderr)
        self.assertLogged(f"now entering jail {self.jail} for user "
                          f"{self.user} ({self.entry[2]}) with arguments "
                          f"-c scp -t .")
        line = self.assertLogged("executing command '/usr/bin/scp -t .'")
        self.assertTrue(line.startswith("jk_lsh["), line)

    def test_shellInJail(self):
        """
        With a real shell in the jail's passwd, it runs in the jail, in the
        home, as the account, with only HOME USER USERNAME SHELL (and what
        env= keeps) in the environment and no inherited descriptor > 2.
        """
        self.setShell("/usr/bin/sh")
        read, write = os.pipe()
        self.addCleanup(os.close, read)
        self.addCleanup(os.close, write)
        result = self.login(
            "-c", "id -u; pwd; ls /; env | sort; echo x >&%d || echo closed"
            % write, env={"SECRET": "1", "TERM": "xterm"},
            pass_fds=(write,))
        lines = result.stdout.splitlines()
        self.assertEqual(lines[0], str(self.entry[2]), result.stderr)
        self.assertEqual(lines[1], f"/home/{self.user}")
        self.assertIn("etc", lines)
        self.assertNotIn("root", lines)
        env = [l for l in lines if "=" in l]
        # PWD, SHLVL and (when absent) PATH are set by busybox sh itself.
        self.assertEqual(sorted(k.split("=")[0] for k in env
                                if k.split("=")[0] not in ("PWD", "SHLVL",
                                                           "PATH")),
                         ["HOME", "SHELL", "USER", "USERNAME"])
        self.assertEqual(lines[-1], "closed")

    def test_descriptorAboveLimit(self):
        """
        A descriptor above the soft C{RLIMIT_NOFILE} (lowered after it was
        opened) is closed too.
        """
        self.setShell("/usr/bin/sh")
        high = 60
        os.dup2(1, high)
        self.addCleanup(os.close, high)
        command = withDevLog(self, self.syslog, asUser(
            self.user, ["prlimit", "--nofile=20:4096", "--",
                        harness.script("jk_chrootsh"), "-c",
                        "exec /usr/bin/busybox sleep 30"]))
        process = subprocess.Popen(command, pass_fds=(high,), cwd="/",
                                   stdin=subprocess.DEVNULL)
        self.addCleanup(process.wait)
        self.addCleanup(process.kill)

        def sleeping():
            try:
                return os.readlink(f"/proc/{process.pid}/exe").endswith(
                    "/busybox")
            except OSError:
                return False
        harness.waitFor(sleeping, what="the jailed program")
        self.assertEqual(sorted(map(int, os.listdir(
            f"/proc/{process.pid}/fd"))), [0, 1, 2])

    def test_relativeShell(self):
        """
        A shell in the jail's passwd that is not an absolute path would be
        looked up in the home, where the account puts what it likes:
        refused.
        """
        self.setShell("sh")
        home = os.path.join(self.jail, "home", self.user)
        os.symlink("/usr/bin/busybox", os.path.join(home, "sh"))
        self.assertRefused(self.login("-c", "echo ran"), 111,
                           "is not an absolute path")

    def test_envWhitelist(self):
        self.setShell("/usr/bin/sh")
        with open("/etc/jailkit/jk_chrootsh.ini", "w") as f:
            f.write("[DEFAULT]\nenv = TERM\n")
        result = self.login("-c", "echo $TERM$SECRET",
                            env={"SECRET": "s", "TERM": "xterm"})
        self.assertEqual(result.stdout, "xterm\n", result.stderr)

    def test_unshareNetwork(self):
        """
        C{unshare = net} (here for the jail, in a C{[jail PATH]} section)
        gives the login a network of its own, holding only C{lo}; without it
        the login sees the host's interfaces.
        """
        self.setShell("/usr/bin/sh")
        hostLinks = len(subprocess.run(["ip", "-o", "link"],
                                       capture_output=True, text=True)
                        .stdout.splitlines())
        command = ("busybox ip -o link | busybox wc -l; "
                   "busybox ip -o link | busybox grep -c ' lo:'")
        result = self.login("-c", command)
        self.assertEqual(result.stdout.split(), [str(hostLinks), "1"],
                         result.stderr)
        with open("/etc/jailkit/jk_chrootsh.ini", "w") as f:
            f.write(f"[jail {self.jail}]\nunshare = net, ipc, uts\n")
        result = self.login("-c", command)
        self.assertEqual(result.stdout.split(), ["1", "1"], result.stderr)

    def test_injailShell(self):
        """
        C{injail_shell} replaces the jail passwd's shell, and with
        C{skip_injail_passwd_check} the account need not be in the jail's
        passwd.
        """
        os.symlink("busybox", os.path.join(self.jail, "usr/bin/sh"))
        path = os.path.join(self.jail, "etc/passwd")
        with open(path) as f:
            lines = [l for l in f if not l.startswith(self.user + ":")]
        with open(path, "w") as f:
            f.writelines(lines)
        with open("/etc/jailkit/jk_chrootsh.ini", "w") as f:
            f.write(f"[{self.user}]\ninjail_shell = /usr/bin/sh\n"
                    f"skip_injail_passwd_check = 1\n")
        result = self.login("-c", "echo $SHELL")
        self.assertEqual(result.stdout, "/usr/bin/sh\n", result.stderr)

    def test_badConfig(self):
        """
        A misspelt key in jk_chrootsh.ini refuses logins instead of being
        ignored.
        """
        with open("/etc/jailkit/jk_chrootsh.ini", "w") as f:
            f.write("[DEFAULT]\nrelax_home_owner_ = 1\n")
        self.assertRefused(self.login("-c", "scp -t ."), 14,
                           "relax_home_owner_")

    def test_interactive(self):
        self.assertRefused(self.login(), 7, "tried to get an interactive "
                           "shell session", tag="jk_lsh")

    def test_notAllowed(self):
        self.assertRefused(self.login("-c", "/usr/bin/busybox sh"), 4,
                           "which is not allowed according to", tag="jk_lsh")

    def test_groupWritableJail(self):
        os.chmod(self.jail, 0o775)
        self.assertRefused(self.login("-c", "scp -t ."), 53,
                           "is not a safe jail")

    def test_groupWritableParent(self):
        """
        Whoever can write the jail's parent can swap the jail: refused.
        """
        os.chmod(os.path.dirname(self.jail), 0o775)
        self.assertRefused(self.login("-c", "scp -t ."), 53,
                           "is writable by group or others")

    def test_groupWritableUsr(self):
        os.chmod(os.path.join(self.jail, "usr"), 0o775)
        self.assertRefused(self.login("-c", "scp -t ."), 53,
                           "is not a safe jail")

    def test_policyWritableByAccount(self):
        """
        A jk_lsh.ini the account could edit is not used.
        """
        os.chown(os.path.join(self.jail, "etc/jailkit/jk_lsh.ini"),
                 self.entry[2], -1)
        self.assertRefused(self.login("-c", "scp -t ."), 1,
                           "is not available", tag="jk_lsh")

    def test_passwdWritableByAccount(self):
        """
        A jail passwd or group the account could edit (to give itself
        another shell or home) is not used; neither is one that is a
        symlink (even to a root-owned file of the jail).
        """
        passwd = os.path.join(self.jail, "etc/passwd")
        os.chown(passwd, self.entry[2], -1)
        self.assertRefused(self.login("-c", "scp -t ."), 35,
                           "is not owned by root or is writable")
        os.chown(passwd, 0, -1)
        os.chmod(os.path.join(self.jail, "etc/group"), 0o666)
        self.assertRefused(self.login("-c", "scp -t ."), 35,
                           "/etc/group is not owned by root or is writable")
        os.chmod(os.path.join(self.jail, "etc/group"), 0o644)
        os.rename(passwd, passwd + ".real")
        os.symlink("passwd.real", passwd)
        self.assertRefused(self.login("-c", "scp -t ."), 35, "is a symlink")

    def test_symlinkedJail(self):
        """
        A jail reached through a symlink fails the working-directory check.
        """
        link = os.path.join(os.path.dirname(self.jail), "link")
        os.symlink(self.jail, link)
        subprocess.run(["usermod", "-d", f"{link}/./home/{self.user}",
                        self.user], check=True)
        self.assertRefused(self.login("-c", "scp -t ."), 21,
                           "but it should be")

    def test_homePathTricks(self):
        """
        A home with C{..}, a jail part holding another C{/./}, and a home
        that is a symlink (even to a directory of the account in the jail)
        are refused before anything is entered.
        """
        parent, name = os.path.split(self.jail)
        home = os.path.join(self.jail, "home", self.user)
        for passwdHome, code, text in [
                (f"{self.jail}/./home/../home/{self.user}", 53,
                 "is not a plain path"),
                (f"{parent}/./{name}/./home/{self.user}", 21,
                 "but it should be"),
                (f"{self.jail}/./home/{self.user}/../../etc", 53,
                 "is not a plain path")]:
            subprocess.run(["usermod", "-d", passwdHome, self.user],
                           check=True)
            self.assertRefused(self.login("-c", "scp -t ."), code, text)
        subprocess.run(["usermod", "-d", f"{self.jail}/./home/{self.user}",
                        self.user], check=True)
        os.rename(home, home + ".real")
        os.symlink(f"{self.user}.real", home)
        self.assertRefused(self.login("-c", "scp -t ."), 53, "is a symlink")

    def test_noSeparator(self):
        subprocess.run(["usermod", "-d", f"{self.jail}/home/{self.user}",
                        self.user], check=True)
        self.assertRefused(self.login("-c", "scp -t ."), 17,
                           "does not contain the jail separator")

    def test_homeNotOwned(self):
        os.chown(os.path.join(self.jail, "home", self.user), 0, -1)
        self.assertRefused(self.login("-c", "scp -t ."), 53,
                           "is not owned by")

    def test_homeNotSearchable(self):
        """
        A home the account cannot enter (mode 000) is refused with
        jailkit's status 41, as jailkit refuses it: the capabilities a new
        user namespace hands out while entering must not open it.
        """
        os.chmod(os.path.join(self.jail, "home", self.user), 0)
        self.assertRefused(self.login("-c", "scp -t ."), 41,
                           f"chdir(/home/{self.user}) failed inside the jail")

    def test_notInJailPasswd(self):
        path = os.path.join(self.jail, "etc/passwd")
        with open(path) as f:
            lines = [l for l in f if not l.startswith(self.user + ":")]
        with open(path, "w") as f:
            f.writelines(lines)
        self.assertRefused(self.login("-c", "scp -t ."), 35,
                           "failed to get user information in the jail")

    def stalledLogin(self, *args):
        """
        Start jk_chrootsh as the account with a /dev/log whose queue is full,
        so that it stops in its first log line ("now entering jail", written
        after every check and before entering): the state a process of the
        account's other sessions would find it in.

        @return: the login's pid (it is killed at cleanup).
        """
        d = harness.shortTempDir(self)
        path = d.child("log").path
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        receiver.bind(path)
        self.addCleanup(receiver.close)
        os.chmod(path, 0o666)
        sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sender.setblocking(False)
        self.addCleanup(sender.close)
        try:
            while True:
                sender.sendto(b"<13>filler", path)
        except BlockingIOError:
            pass

        class Log:
            socket = path
        process = subprocess.Popen(
            withDevLog(self, Log, asUser(
                self.user, [harness.script("jk_chrootsh")] + list(args))),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, cwd="/")
        self.addCleanup(process.wait)
        self.addCleanup(process.kill)

        # sendto and sendmsg, the calls syslog(3) may block in.
        calls = {"x86_64": ("44", "46"), "aarch64": ("206", "211")}[
            os.uname().machine]

        def stalled():
            try:
                with open(f"/proc/{process.pid}/syscall") as f:
                    return f.read().split()[0] in calls
            except (OSError, IndexError):
                return False
        harness.waitFor(stalled, what="jk_chrootsh blocked in syslog()")
        with open(f"/proc/{process.pid}/cmdline", "rb") as f:
            self.assertIn(b"jk_chrootsh", f.read())
        return process.pid

    def test_notTraceable(self):
        """
        While it checks the jail, jk_chrootsh runs on the host as the
        account: a process of the account in the host's user namespace (a
        daemon jk_chrootlaunch started in the jail as the account, a cron
        job) must not be able to ptrace it, or it would take over a process
        outside the jail.  jailkit's jk_chrootsh is protected by being
        setuid; jailtwist's login makes itself non-dumpable.
        """
        pid = self.stalledLogin("-c", "scp -t .")
        attach = ("import ctypes, sys\n"
                  "libc = ctypes.CDLL(None, use_errno=True)\n"
                  "libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, "
                  "ctypes.c_void_p, ctypes.c_void_p]\n"
                  f"r = libc.ptrace(16, {pid}, None, None)\n"
                  "print(r, ctypes.get_errno())\n")
        result = subprocess.run(
            asUser(self.user, ["/usr/bin/python3", "-c", attach]),
            capture_output=True, text=True)
        # EPERM: the login is not dumpable.
        self.assertEqual(result.stdout.split(), ["-1", "1"], result.stderr)

    def test_neverDumpableOnHost(self):
        """
        The login never becomes dumpable (ptraceable by the account's other
        processes) to make its user namespace: a forked child does, only
        once it has changed root into the jail, closed every descriptor but
        its two pipes, set no_new_privs and dropped every capability; the
        login writes the maps from outside and joins the namespace.
        """
        script = r"""
import json, mmap, os, sys
from jailtwist import enter
jail = sys.argv[1]
login = os.getpid()
enter.setDumpable(False)   # as the login commands start (python-login)
shared = mmap.mmap(-1, 4096)
calls = []
setDumpable = enter.setDumpable
def spy(dumpable):
    if dumpable and os.getpid() != login:
        st = os.stat("/")
        fds = []
        for fd in range(256):
            try:
                os.fstat(fd)
                fds.append(fd)
            except OSError:
                pass
        e, p, i = enter.getCapabilities()
        state = {"root": [st.st_dev, st.st_ino], "fds": fds,
                 "caps": sorted(e | p | i),
                 "nnp": enter.prctl(enter.PR_GET_NO_NEW_PRIVS)}
        shared[:] = json.dumps(state).encode().ljust(4096)
    calls.append((os.getpid(), dumpable))
    setDumpable(dumpable)
enter.setDumpable = spy
fd, child = enter.mappedUserNamespace(jail, os.getuid(), os.getgid())
os.waitpid(child, 0)
enter.setns(fd, enter.CLONE_NEWUSER)
enter._checkOwnMaps(os.getuid(), os.getgid())
st = os.stat(jail)
print(json.dumps({"calls": [d for pid, d in calls if pid == login],
                  "dumpable": enter.prctl(enter.PR_GET_DUMPABLE),
                  "jail": [st.st_dev, st.st_ino],
                  "child": json.loads(shared[:].rstrip())}))
"""
        import json
        result = subprocess.run(
            asUser(self.user, [harness.BIN.child("python").path, "-I", "-c",
                               script, self.jail]),
            capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        report = json.loads(result.stdout)
        # The login itself: never made dumpable, and not dumpable after.
        self.assertEqual(report["calls"], [])
        self.assertEqual(report["dumpable"], 0)
        child = report["child"]
        self.assertEqual(child["root"], report["jail"])
        self.assertEqual(len(child["fds"]), 5, child["fds"])
        self.assertEqual(child["fds"][:3], [0, 1, 2])
        self.assertEqual(child["caps"], [])
        self.assertEqual(child["nnp"], 1)

    def test_confinedAccountCannotJoinLogin(self):
        """
        A program that jk_chrootlaunch runs as the account in a jail (in the
        host's user namespace) cannot join a running login's user
        namespace: the kernel would allow it (the account owns that
        namespace) and give it CAP_SYS_CHROOT there to leave its own
        chroot, so every program jailtwist confines as an account runs with
        setns refused.
        """
        compiler = shutil.which("cc") or shutil.which("gcc")
        if compiler is None:
            raise AssertionError("no C compiler: install gcc and libc6-dev "
                                 "(bootstrap.sh's TEST_PACKAGES)")
        probe = os.path.join(self.jail, "usr/bin/joinprobe")
        subprocess.run([compiler, "-static", "-O", "-o", probe,
                        os.path.join(os.path.dirname(__file__),
                                     "joinprobe.c")], check=True)
        os.chmod(probe, 0o755)
        self.setShell("/usr/bin/sh")
        session = subprocess.Popen(
            withDevLog(self, self.syslog, asUser(
                self.user, [harness.script("jk_chrootsh"), "-c",
                            "exec /usr/bin/busybox sleep 60"])),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, cwd="/")
        self.addCleanup(session.wait)
        self.addCleanup(session.kill)

        def sleeping():
            try:
                with open(f"/proc/{session.pid}/cmdline", "rb") as f:
                    return f.read().startswith(b"/usr/bin/busybox\0sleep")
            except OSError:
                return False
        harness.waitFor(sleeping, what="the jailed session's program")
        inside, jail = os.stat(f"/proc/{session.pid}/root"), os.stat(self.jail)
        self.assertEqual((inside.st_dev, inside.st_ino),
                         (jail.st_dev, jail.st_ino))
        result = harness.run("jk_chrootlaunch", "--plain", "-j", self.jail,
                             "-u", str(self.entry[2]), "-x",
                             "/usr/bin/joinprobe", "--", str(session.pid))
        self.assertEqual(result.stdout, "join EPERM\n", result.stderr)

    def test_tracedFromStart(self):
        """
        A login that a process of the account already traces (attached
        while the interpreter started, before the login could make itself
        non-dumpable) refuses to go on.
        """
        command = withDevLog(self, self.syslog, asUser(
            self.user, ["strace", "-o", "/dev/null", "-f",
                        harness.script("jk_chrootsh"), "-c", "scp -t ."]))
        result = subprocess.run(command, capture_output=True, text=True,
                                timeout=60, cwd="/", stdin=subprocess.DEVNULL)
        self.assertRefused(result, login.TRACED, "is traced by")

    def test_root(self):
        result = subprocess.run(
            withDevLog(self, self.syslog,
                       [harness.script("jk_chrootsh"), "-c", "true"]),
            capture_output=True, text=True, cwd="/")
        self.assertRefused(result, 12, "is run by root")


class LshTests(LoginTestCase):
    """
    jk_lsh on its own, for an account that is not jailed.
    """

    user = "jtlogin4"

    def setUp(self):
        harness.isolated(self)
        self.syslog = harness.startRsyslog(self)
        self.entry = addAccount(self, self.user)
        replaceConfig(self, "jk_lsh.ini",
                      f"[{self.user}]\npaths = /usr/bin, /bin\n"
                      f"executables = /usr/bin/id\n")

    def test_allowed(self):
        result = self.login("-c", "id -u", program="jk_lsh")
        self.assertEqual(result.stdout, f"{self.entry[2]}\n", result.stderr)
        self.assertLogged(f"executing command '/usr/bin/id -u' for user "
                          f"{self.user}")

    def test_refused(self):
        self.assertRefused(self.login("-c", "cat /etc/shadow",
                                      program="jk_lsh"), 4,
                           "not allowed according to /etc/jailkit/jk_lsh.ini",
                           tag="jk_lsh")
        self.assertRefused(self.login("-c", "id;cat /etc/shadow",
                                      program="jk_lsh"), 6,
                           "illegal word expansion", tag="jk_lsh")
        self.assertRefused(self.login(program="jk_lsh"), 7, "interactive",
                           tag="jk_lsh")


class UchrootTests(LoginTestCase):
    """
    jk_uchroot: only the jails jk_uchroot.ini allows.
    """

    def setUp(self):
        LoginTestCase.setUp(self)
        self.other = buildJail(self, "other")
        replaceConfig(self, "jk_uchroot.ini",
                      f"[{self.user}]\nallowed_jails = {self.other}\n")
        path = os.path.join(self.other, "etc/passwd")
        with open(path, "a") as f:
            f.write(f"{self.user}:x:{self.entry[2]}:{self.entry[3]}::/:"
                    f"/usr/sbin/jk_lsh\n")
        with open(os.path.join(self.other, "etc/group"), "a") as f:
            f.write(f"{self.user}:x:{self.entry[3]}:\n")

    def uchroot(self, jail):
        return self.login("-j", jail, "-x", "/usr/bin/busybox", "--", "ls",
                          "/usr/lib/openssh", program="jk_uchroot")

    def test_allowed(self):
        result = self.uchroot(self.other)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout, "sftp-server\n")
        self.assertLogged(f"entering jail {self.other} for user {self.user}")

    def test_notAllowed(self):
        self.assertRefused(self.uchroot(self.jail), 21,
                           f"is not allowed in jail {self.jail}",
                           tag="jk_uchroot")

    def test_noSection(self):
        with open("/etc/jailkit/jk_uchroot.ini", "w") as f:
            f.write("[someoneelse]\nallowed_jails = /\n")
        self.assertRefused(self.uchroot(self.other), 1,
                           "no relevant section", tag="jk_uchroot")


class ProcmailTests(LoginTestCase):
    """
    jk_procmailwrapper delivers inside the recipient's jail with the jailed
    .procmailrc.
    """

    def test_jailed(self):
        for lib in _libraries("/usr/bin/procmail") + ["/usr/bin/procmail"]:
            _copy(self.jail, lib)
        deliverMail(self, textwrap.dedent("""\
            DEFAULT=$HOME/jailed-mbox
            LOGFILE=$HOME/procmail.log
            """))
        self.assertLogged(f"now entering jail {self.jail} for user "
                          f"{self.entry[2]}")


class IsolatedInterpreterTests(SynchronousTestCase):
    """
    The installed login commands run their interpreter with C{-I} (and
    C{-S}), so a C{PYTHONPATH} that reaches a login shell cannot load the
    account's own code outside the jail (bootstrap.sh sets it).
    """

    def test_shebang(self):
        for name in ("jk_chrootsh", "jk_lsh", "jk_uchroot",
                     "jk_procmailwrapper"):
            with open(harness.script(name)) as f:
                first = f.readline().split()
            self.assertEqual(first[1:], ["-IS"], name)


#: Run as an account: start a login command, and from the moment it has
#: exec'd until it exits, try to attach to it with ptrace.
_TRACER = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    os.execv(sys.argv[1], [sys.argv[1], "-c", "true"])
os.close(w)
os.read(r, 1)   # EOF: the pipe closed on exec
refused = 0
while True:
    if libc.ptrace(0x4206, pid, None, None) == 0:   # PTRACE_SEIZE
        print("attached", refused)
        libc.ptrace(0x11, pid, None, None)          # PTRACE_DETACH
        break
    if ctypes.get_errno() == 1:                      # EPERM
        refused += 1
    if os.waitpid(pid, os.WNOHANG)[0]:
        print("refused", refused)
        sys.exit(0)
os.waitpid(pid, 0)
"""


class NonDumpableFromExecTests(SynchronousTestCase):
    """
    A login command is non-dumpable from its exec on: its interpreter is a
    copy the account may run but not read, so no process of the account
    (outside the jails) can ptrace it while the interpreter starts, before
    the login could protect itself.
    """

    def test_interpreterUnreadable(self):
        for name in ("jk_chrootsh", "jk_lsh", "jk_uchroot",
                     "jk_procmailwrapper"):
            with open(harness.script(name)) as f:
                interpreter = f.readline()[2:].split()[0]
            self.assertEqual(os.path.basename(interpreter), "python-login",
                             name)
            st = os.stat(interpreter)
            self.assertEqual((st.st_uid, stat.S_IMODE(st.st_mode)),
                             (0, 0o711), name)

    def test_noTracerAttaches(self):
        """
        An account's own process never attaches to the account's login:
        every try from exec to exit is refused.
        """
        for attempt in range(3):
            result = subprocess.run(
                ["/usr/bin/python3", "-I", "-c", _TRACER,
                 harness.script("jk_chrootsh")],
                user=65534, group=65534, extra_groups=[], cwd="/",
                capture_output=True, text=True, timeout=60)
            self.assertEqual(result.returncode, 0, result.stderr)
            verdict, tries = result.stdout.split()
            self.assertEqual(verdict, "refused", result.stdout)
            self.assertGreater(int(tries), 0)
