"""
Entering jails assembled from read-only binds (C{jk_init --bind}), through
every way in, with the installed commands on real jails built from this
host's files: the login path through a user namespace (C{jk_chrootsh},
C{jk_uchroot}), C{jk_chrootlaunch} with and without C{--fs} and
C{--isolate}, C{skd --jail}, and a probe joining a running bind jail.  The
sshd walkthrough on a bind jail (also through the root login service) is in
L{tests.test_sshd}.
"""

import os
import shutil
import subprocess
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from jailtwist import bindlist
from tests import harness
from tests.test_login import (
    LoginTestCase, _libraries, deliverMail, replaceConfig)
from tests.test_skd_command import Skd, talk

SHELL = "/usr/bin/bash"


def hostDirectory(testCase):
    """
    A root-owned 0755 directory under /opt (on the safe list) for host
    files a test binds and changes; removed afterwards.
    """
    directory = tempfile.mkdtemp(prefix="jt-bind-", dir="/opt")
    testCase.addCleanup(shutil.rmtree, directory, True)
    os.chmod(directory, 0o755)
    return directory


def writeHost(path, data, mode=0o644):
    """
    Replace the host file C{path} as a package manager does: a new file
    renamed over the old one (a new inode).
    """
    temporary = path + ".new"
    with open(temporary, "wb") as f:
        f.write(data)
    os.chmod(temporary, mode)
    os.rename(temporary, path)


def addEntry(jail, path, directory=False):
    """
    Add the host path C{path} to C{jail}'s bind list with its mount point,
    as C{jk_init --bind} would.
    """
    point = jail + path
    os.makedirs(os.path.dirname(point), mode=0o755, exist_ok=True)
    if directory:
        os.makedirs(point, mode=0o755, exist_ok=True)
    else:
        open(point, "a").close()
        os.chmod(point, 0o644)
    with open(os.path.join(jail, bindlist.LIST), "ab") as f:
        f.write(os.fsencode(path) + b"\n")
    harness.recordBindList(jail)


def mountProbe(testCase, directory):
    """
    Compile C{tests/mountprobe.c} (static) into the host directory
    C{directory}, to be bound into a jail.

    @return: its path.
    """
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise AssertionError("no C compiler: install gcc and libc6-dev "
                             "(bootstrap.sh's TEST_PACKAGES)")
    probe = os.path.join(directory, "mountprobe")
    subprocess.run([compiler, "-static", "-O", "-o", probe,
                    os.path.join(os.path.dirname(__file__), "mountprobe.c")],
                   check=True)
    os.chmod(probe, 0o755)
    return probe


def probeResults(output):
    """
    The attempts of C{tests/mountprobe.c}: C{{name: "ok" or errno name}}.
    """
    return dict(line.split(" ", 1) for line in output.splitlines()
                if line.split(" ", 1)[0] in ("write", "remount", "umount",
                                             "userns"))


def mountinfo():
    """
    This process's mounts (the host side for the jails the test enters),
    without the mount ids, which say nothing about leaks.
    """
    with open("/proc/self/mountinfo") as f:
        return sorted(" ".join(line.split()[2:]) for line in f)


class _LaunchBindTestCase(SynchronousTestCase):
    """
    A C{jk_init --bind} jail of C{basicshell} with a host directory under
    /opt bound in (a file C{data} and a directory C{tree}), and the jail's
    own static busybox.
    """

    def setUp(self):
        harness.isolated(self)
        self.jail = harness.jailParent(self).child("jail").path
        os.mkdir(self.jail, 0o755)
        result = harness.run("jk_init", "--bind", "-j", self.jail,
                             "basicshell")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.host = hostDirectory(self)
        self.data = os.path.join(self.host, "data")
        writeHost(self.data, b"one\n")
        os.mkdir(os.path.join(self.host, "tree"), 0o755)
        writeHost(os.path.join(self.host, "tree", "leaf"), b"leaf\n")
        addEntry(self.jail, self.data)
        addEntry(self.jail, os.path.join(self.host, "tree"), directory=True)
        shutil.copy("/bin/busybox", self.jail + "/usr/bin/busybox")

    def launch(self, *options, script, status=0, **kw):
        result = harness.run("jk_chrootlaunch", "-j", self.jail, *options,
                             "-x", SHELL, "--", "-c", script, **kw)
        if status is not None:
            self.assertEqual(result.returncode, status,
                             (options, result.stdout, result.stderr))
        return result


class LaunchTests(_LaunchBindTestCase):
    """
    C{jk_chrootlaunch} on a bind jail.
    """

    def test_everyWayRunsBoundPrograms(self):
        """
        Plain, C{--fs}, C{--isolate} and C{--net=none}: the bound shell
        runs, reads a bound file and lists a bound directory with the bound
        C{ls}, and nothing is mounted on the host side.
        """
        before = mountinfo()
        for options in ([], ["--fs"], ["--isolate"], ["--net=none"]):
            result = self.launch(*options, script=(
                f"echo $(<{self.data}); /usr/bin/ls {self.host}/tree"))
            self.assertEqual(result.stdout, "one\nleaf\n",
                             (options, result.stderr))
            self.assertEqual(result.stderr, "")
        self.assertEqual(mountinfo(), before)
        # The jail's mount points are still empty on the host.
        self.assertEqual(os.path.getsize(self.jail + SHELL), 0)
        self.assertEqual(os.listdir(self.jail + self.host + "/tree"), [])

    def test_hostUpdateSeenWithoutUpdate(self):
        """
        A host file replaced after the jail was built (by rename, as dpkg
        does) is the new one inside, with no jk_update.
        """
        self.assertEqual(self.launch(script=f"echo $(<{self.data})").stdout,
                         "one\n")
        writeHost(self.data, b"two\n")
        for options in ([], ["--isolate"]):
            self.assertEqual(
                self.launch(*options, script=f"echo $(<{self.data})").stdout,
                "two\n")

    def test_jailedRootCannotChangeBinds(self):
        """
        As jailed root in C{--isolate}: nothing bound can be written, made
        read-write by a remount, or unmounted, and no namespace can be made
        to try again from there; the binds are read-only, nosuid and nodev;
        no mount leaks to the host.
        """
        probe = mountProbe(self, self.host)
        addEntry(self.jail, probe)
        before = mountinfo()
        B = "/usr/bin/busybox"
        for path in (self.data, "/usr/bin/ls", self.host + "/tree"):
            result = self.launch("--isolate", script=(
                f"{probe} {path}; "
                f"echo x > {self.host}/tree/new && echo CREATED; "
                f"{B} grep -F ' {path} ' /proc/self/mountinfo"))
            lines = result.stdout.splitlines()
            self.assertNotIn("CREATED", lines, result.stderr)
            self.assertEqual(probeResults(result.stdout), {
                "write": "EISDIR" if path.endswith("tree") else "EROFS",
                "remount": "EPERM", "umount": "EPERM", "userns": "EPERM"},
                result.stdout + result.stderr)
            options = lines[-1].split()[5].split(",")
            for option in ("ro", "nosuid", "nodev"):
                self.assertIn(option, options, lines[-1])
        with open(self.data, "rb") as f:
            self.assertEqual(f.read(), b"one\n")
        self.assertFalse(os.path.exists(self.host + "/tree/new"))
        self.assertEqual(mountinfo(), before)

    def test_jailedRootCannotWidenList(self):
        """
        A jailed root (C{--isolate}, uid 0) that rewrites its jail's own
        bind list to bind all of /opt gains nothing: the list differs from
        the host's record, so the next entry stops with one line and the
        root-only host file under /opt is never read; C{jk_update} restores
        the recorded list.
        """
        secretDir = hostDirectory(self)
        secret = os.path.join(secretDir, "key")
        writeHost(secret, b"HOST-SECRET\n", mode=0o600)
        self.launch("--isolate", script=(
            "echo /opt >> /etc/jailkit/bind.list"))
        for options in ([], ["--isolate"]):
            result = self.launch(*options, script=f"cat {secret}; echo RAN",
                                 status=25)
            self.assertEqual(result.stdout, "")
            self.assertEqual(len(result.stderr.splitlines()), 1,
                             result.stderr)
            self.assertIn("differs from the host's record", result.stderr)
            self.assertIn(f"run jk_update -j {self.jail}", result.stderr)
        update = harness.run("jk_update", "-j", self.jail)
        self.assertEqual(update.returncode, 0, update.stderr)
        self.assertIn("the record is used", update.stderr)
        with open(os.path.join(self.jail, bindlist.LIST), "rb") as f:
            self.assertNotIn(b"/opt\n", f.read())
        result = self.launch("--isolate", script=(
            f"cat {secret} || echo UNREAD; cat {self.data}"))
        self.assertEqual(result.stdout, "UNREAD\none\n")

    def test_movedJailRefusedUntilUpdated(self):
        """
        A bind jail moved elsewhere has no host record under its new path:
        its entry stops with one line saying to run jk_update, which
        records it.
        """
        moved = self.jail + "-moved"
        os.rename(self.jail, moved)
        self.addCleanup(shutil.rmtree, moved, True)
        self.jail = moved
        result = self.launch(script="echo RAN", status=25)
        self.assertEqual(result.stdout, "")
        self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)
        self.assertIn("no record of its bind list", result.stderr)
        self.assertIn(f"run jk_update -j {moved}", result.stderr)
        update = harness.run("jk_update", "-j", moved)
        self.assertEqual(update.returncode, 0, update.stderr)
        self.assertEqual(self.launch(script=f"cat {self.data}").stdout,
                         "one\n")

    def test_submountRefused(self):
        """
        A bound host directory with a mount below it stops the entry with
        one line (a bind would carry neither the submount nor hide what it
        covers); nothing runs.
        """
        under = os.path.join(self.host, "tree", "hidden")
        os.mkdir(under, 0o755)
        writeHost(os.path.join(under, "shadowed"), b"UNDER\n")
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755", "none",
                        under], check=True)
        self.addCleanup(subprocess.run, ["umount", "-l", under])
        for options in ([], ["--isolate"]):
            result = self.launch(*options, script=f"ls {under}; echo RAN",
                                 status=25)
            self.assertEqual(result.stdout, "")
            self.assertEqual(len(result.stderr.splitlines()), 1,
                             result.stderr)
            self.assertIn(f"{self.host}/tree: refused, {under} is a mount "
                          f"point below it", result.stderr)

    def test_setuidBoundFileGivesNothing(self):
        """
        A setuid-root program bound from the host runs without its setuid
        bit (nosuid), even in a plain launch with no no_new_privs.
        """
        program = os.path.join(self.host, "suid-id")
        shutil.copy("/usr/bin/id", program)
        os.chmod(program, 0o4755)
        addEntry(self.jail, program)
        result = self.launch("--user", "65534", "--group", "65534",
                             script=f"{program} -u; {program} -ru")
        self.assertEqual(result.stdout.split(), ["65534", "65534"],
                         result.stderr)

    def test_refusedListStopsEntry(self):
        """
        A list tampered after it was built -- a symlink entry, /etc/shadow,
        a relative path -- stops the entry with one line naming the entry;
        nothing runs.
        """
        os.symlink(self.data, os.path.join(self.host, "link"))
        listPath = os.path.join(self.jail, bindlist.LIST)
        with open(listPath, "rb") as f:
            original = f.read()
        for entry, reason in [(os.path.join(self.host, "link"), "symlink"),
                              ("/etc/shadow", "never bound"),
                              ("usr/bin/ls", "not an absolute path")]:
            with open(listPath, "wb") as f:
                f.write(original + entry.encode() + b"\n")
            harness.recordBindList(self.jail)
            for options in ([], ["--isolate"]):
                result = self.launch(*options, script="echo RAN", status=25)
                self.assertEqual(result.stdout, "")
                self.assertEqual(len(result.stderr.splitlines()), 1,
                                 result.stderr)
                self.assertIn(entry, result.stderr)
                self.assertIn(reason, result.stderr)

    def test_untrustedListStopsEntry(self):
        """
        A list writable by others is not used: the entry stops.
        """
        os.chmod(os.path.join(self.jail, bindlist.LIST), 0o666)
        result = self.launch(script="echo RAN", status=25)
        self.assertEqual(result.stdout, "")
        self.assertIn("cannot be trusted", result.stderr)

    def test_mountPointSwappedForSymlink(self):
        """
        A mount point replaced by a symlink (to somewhere the binds must
        not go) stops the entry.
        """
        point = self.jail + self.data
        os.unlink(point)
        os.symlink("/etc", point)
        result = self.launch(script="echo RAN", status=25)
        self.assertEqual(result.stdout, "")
        self.assertIn("symlink", result.stderr)

    def test_missingReportedAndSkipped(self):
        """
        A listed path the host does not have is reported in one line and
        skipped; the program runs.
        """
        addEntry(self.jail, os.path.join(self.host, "gone"))
        result = self.launch(script=f"echo $(<{self.data})")
        self.assertEqual(result.stdout, "one\n")
        self.assertEqual(result.stderr.splitlines(), [
            f"jk_chrootlaunch: {self.jail}: {self.host}/gone: not on this "
            f"host, skipped"])


class SkdTests(_LaunchBindTestCase):
    """
    C{skd --jail} on a bind jail: each connection's handler runs in the
    jail assembled for it.
    """

    def test_boundHandler(self):
        before = mountinfo()
        skd = Skd(self, "--jail", self.jail, "-t", "127.0.0.1:0", SHELL,
                  "-c", f"echo $(<{self.data}); /usr/bin/ls {self.host}/tree")
        port = skd.port()
        self.assertEqual(talk(("127.0.0.1", port))[0], b"one\nleaf\n")
        # Read again for each connection: the host's update is seen.
        writeHost(self.data, b"two\n")
        self.assertEqual(talk(("127.0.0.1", port))[0], b"two\nleaf\n")
        self.assertEqual(mountinfo(), before)
        self.assertEqual(os.readlink(f"/proc/{skd.pid}/root"), "/")


class ProbeJoinTests(_LaunchBindTestCase):
    """
    A probe (L{jailtwist.enter.joinJail}, as jaildaemon's probes join) into
    a running bind jail sees the jail's binds: it joins the mount namespace
    the jail was assembled in.
    """

    def test_joinSeesBinds(self):
        from jailtwist import enter
        before = mountinfo()
        launcher = subprocess.Popen(
            [harness.script("jk_chrootlaunch"), "-j", self.jail, "--fs",
             "-x", SHELL, "--", "-c", "echo ready; read x"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)
        self.addCleanup(launcher.wait)
        self.addCleanup(launcher.stdin.close)
        self.assertEqual(harness.readLine(launcher.stdout), "ready\n")
        with open(f"/proc/{launcher.pid}/task/{launcher.pid}/children") as f:
            jailed = int(f.read().split()[0])
        process = enter.pinProcess(jailed)
        self.addCleanup(process.close)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(read)
                enter.joinJail(process, namespaces=("mnt",), chroot=True)
                with open(self.data, "rb") as f:
                    os.write(write, f.read())
            finally:
                os._exit(0)
        os.close(write)
        with os.fdopen(read, "rb") as f:
            seen = f.read()
        os.waitpid(pid, 0)
        self.assertEqual(seen, b"one\n")
        self.assertEqual(mountinfo(), before)


class LoginBindTests(LoginTestCase):
    """
    The login path through a user namespace (the account runs
    C{jk_chrootsh} itself) on a bind jail.
    """

    bind = True

    def setUp(self):
        super().setUp()
        self.host = hostDirectory(self)
        self.data = os.path.join(self.host, "data")
        writeHost(self.data, b"one\n")
        addEntry(self.jail, self.data)
        self.setShell("/usr/bin/sh")

    def test_boundAndUpdated(self):
        """
        The bound sftp-server and a bound host file are there; the file
        replaced on the host is the new one inside at the next login.
        """
        B = "/usr/bin/busybox"
        before = mountinfo()
        result = self.login("-c", f"{B} cat {self.data}; {B} ls -l "
                                  f"/usr/lib/openssh/sftp-server")
        self.assertEqual(mountinfo(), before)
        lines = result.stdout.splitlines()
        self.assertEqual(lines[0], "one", result.stderr)
        size = os.path.getsize("/usr/lib/openssh/sftp-server")
        self.assertEqual(int(lines[1].split()[4]), size)
        writeHost(self.data, b"two\n")
        result = self.login("-c", f"{B} cat {self.data}")
        self.assertEqual(result.stdout, "two\n", result.stderr)

    def test_accountCannotChangeBinds(self):
        """
        The account cannot write, remount read-write or unmount a bind (the
        binds are not locked in the login's own user namespace: it is the
        capabilities dropped before the exec that stop it), nor make a
        user and mount namespace of its own to try again there.
        """
        probe = mountProbe(self, self.host)
        addEntry(self.jail, probe)
        for path in (self.data, "/usr/lib/openssh/sftp-server"):
            result = self.login("-c", f"{probe} {path}")
            self.assertEqual(probeResults(result.stdout), {
                "write": "EACCES", "remount": "EPERM", "umount": "EPERM",
                "userns": "EPERM"}, result.stdout + result.stderr)
        with open(self.data, "rb") as f:
            self.assertEqual(f.read(), b"one\n")

    def test_tamperedListRefused(self):
        """
        An entry added to the list after it was built that must not be
        bound stops the login with one line, logged.
        """
        with open(os.path.join(self.jail, bindlist.LIST), "ab") as f:
            f.write(b"/etc/shadow\n")
        harness.recordBindList(self.jail)
        result = self.login("-c", "echo RAN")
        self.assertRefused(result, 53, "/etc/shadow: refused, /etc/shadow "
                                       "is never bound into a jail")

    def test_uchroot(self):
        """
        jk_uchroot into an allowed bind jail runs a bound program on a
        bound file.
        """
        replaceConfig(self, "jk_uchroot.ini",
                      f"[{self.user}]\nallowed_jails = {self.jail}\n")
        result = self.login("-j", self.jail, "-x",
                            "/usr/lib/openssh/sftp-server", "--", "-h",
                            program="jk_uchroot")
        # sftp-server -h prints its usage and exits 1: it ran, bound.
        self.assertIn("usage: sftp-server", result.stderr)
        self.assertLogged(f"entering jail {self.jail} for user {self.user}")

    def test_programInsideBoundDirectory(self):
        """
        A program that exists only inside a directory the jail binds whole
        (its mount point is empty before entry) is found: by jk_chrootsh's
        jk_lsh policy, by its name on C{paths}, through a symlink beside it,
        and by jk_uchroot; one there that is not allowed is still refused.
        """
        tools = os.path.join(self.host, "tools")
        os.mkdir(tools, 0o755)
        for name in ("hello", "other"):
            writeHost(os.path.join(tools, name),
                      b"#!/usr/bin/sh\necho BOUND $0 $*\n", 0o755)
        os.symlink("hello", os.path.join(tools, "hi"))
        addEntry(self.jail, tools, directory=True)
        with open(os.path.join(self.jail, "etc/jailkit/jk_lsh.ini"),
                  "w") as f:
            f.write(f"[DEFAULT]\npaths = /usr/bin, {tools}\n"
                    f"executables = {tools}/hello\n")
        # setUp made the account's shell sh: jk_lsh again.
        passwd = os.path.join(self.jail, "etc/passwd")
        with open(passwd) as f:
            text = f.read()
        with open(passwd, "w") as f:
            f.write(text.replace(":/usr/bin/sh\n", ":/usr/sbin/jk_lsh\n"))
        result = self.login("-c", "hello world")
        self.assertEqual(result.stdout, f"BOUND {tools}/hello world\n",
                         result.stderr)
        result = self.login("-c", f"{tools}/hi there")
        self.assertEqual(result.stdout, f"BOUND {tools}/hello there\n",
                         result.stderr)
        self.assertRefused(self.login("-c", "other"), 4,
                           "not allowed according to", tag="jk_lsh")
        replaceConfig(self, "jk_uchroot.ini",
                      f"[{self.user}]\nallowed_jails = {self.jail}\n")
        result = self.login("-j", self.jail, "-x", f"{tools}/other", "--",
                            "x", program="jk_uchroot")
        self.assertEqual(result.stdout, f"BOUND {tools}/other x\n",
                         result.stderr)
        self.assertRefused(
            self.login("-j", self.jail, "-x", f"{tools}/missing",
                       program="jk_uchroot"), 1,
            f"Executable path {self.jail}/{tools}/missing does not exist",
            tag="jk_uchroot")

    def test_procmail(self):
        """
        jk_procmailwrapper delivers inside the recipient's bind jail with
        procmail and its libraries bound from the host.
        """
        with open(os.path.join(self.jail, bindlist.LIST), "rb") as f:
            listed = {path for _, path in bindlist.parseBindList(f.read())}
        for path in _libraries("/usr/bin/procmail") + ["/usr/bin/procmail"]:
            # Listed by real path (the jail mirrors the host's usrmerge
            # symlinks).
            real = os.path.realpath(path)
            if real not in listed:
                addEntry(self.jail, real)
        deliverMail(self, "DEFAULT=$HOME/jailed-mbox\n")
        self.assertEqual(os.path.getsize(self.jail + "/usr/bin/procmail"), 0)
