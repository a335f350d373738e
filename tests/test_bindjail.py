"""
Tests for jails assembled from binds, through the installed commands:
C{jk_init --bind}, C{jk_check}, C{jk_update} and the registry, on real
jails built from this host's files.
"""

import os
import shutil
import stat
import subprocess
import tempfile

from twisted.python.filepath import FilePath

from jailtwist import bindlist
from jailtwist.jail import Jail
from jailtwist.processes import formatRegistered
from jailtwist.registry import JailRegistry
from tests import harness
from tests.test_build import _BuildTestCase

HOSTING = ("basicshell", "jk_lsh", "sftp", "scp", "rsync", "extendedshell",
           "netutils", "git", "ssh")

#: Files a bind jail holds with content: its own, not the host's.
OWN = {"etc/passwd", "etc/group", "etc/jailkit/bind.list",
       "etc/jailkit/jk_lsh.ini"}


class _BindTestCase(_BuildTestCase):

    def bind(self, *sections, status=0, config=None, options=()):
        result = harness.run("jk_init", "-c", (config or self.shipped).path,
                             "--bind", *options, "-j", self.jail.path,
                             *sections)
        self.assertEqual(result.returncode, status,
                         result.stdout + result.stderr)
        return result

    def setUp(self):
        super().setUp()
        from tests.test_build import SHIPPED
        self.shipped = SHIPPED

    def listed(self):
        with open(self.jail.path + "/" + bindlist.LIST, "rb") as f:
            return [path for _, path in bindlist.parseBindList(f.read())]

    def listBytes(self):
        with open(self.jail.path + "/" + bindlist.LIST, "rb") as f:
            return f.read()

    def optDirectory(self):
        """
        A root-owned directory under /opt (on the safe list) for host
        files a test changes; removed afterwards.
        """
        directory = tempfile.mkdtemp(prefix="jt-bind-", dir="/opt")
        self.addCleanup(shutil.rmtree, directory, True)
        os.chmod(directory, 0o755)
        return directory


class InitBindTests(_BindTestCase):
    """
    C{jk_init --bind}: the list, the mount points, what stays the jail's.
    """

    def test_hostingSet(self):
        self.bind(*HOSTING)
        jail = self.jail.path
        st = os.stat(jail + "/" + bindlist.LIST)
        self.assertEqual((st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)),
                         (0, 0, 0o644))
        listed = self.listed()
        for path in ("/usr/bin/bash", "/usr/lib/openssh/sftp-server",
                     "/usr/lib/git-core", "/etc/ld.so.cache",
                     "/etc/nsswitch.conf",
                     os.path.realpath("/lib/x86_64-linux-gnu/libc.so.6")):
            self.assertIn(path, listed)
        for path in listed:
            bindlist.checkHostPath(path, jail)
        self.assertNotIn("/bin/bash", listed)
        self.assertNotIn("/etc/jailkit/jk_lsh.ini", listed)
        # No copies: every regular file with content is the jail's own.
        sizes = 0
        for directory, dirs, files in os.walk(jail):
            for name in files:
                path = os.path.join(directory, name)
                st = os.lstat(path)
                sizes += st.st_size
                if stat.S_ISREG(st.st_mode) and st.st_size:
                    self.assertIn(os.path.relpath(path, jail), OWN)
        self.assertLess(sizes, 1024 * 1024)
        self.assertEqual(os.readlink(jail + "/bin"), "usr/bin")
        self.assertTrue(stat.S_ISCHR(os.stat(jail + "/dev/null").st_mode))
        self.assertIn(b"\nroot:", b"\n" + FilePath(
            jail + "/etc/passwd").getContent())
        # Every mount point is there, of the right kind, root's.
        plan, checked = bindlist.loadPlan(Jail(jail))
        self.assertEqual((checked.refused, checked.missing), ([], []))
        self.assertGreater(len(plan), 20)
        root = os.open(jail, os.O_PATH | os.O_DIRECTORY)
        try:
            for mount in plan:
                os.close(bindlist.openMountPoint(root, mount))
        finally:
            os.close(root)
        check = harness.run("jk_check", jail)
        self.assertEqual((check.returncode, check.stdout), (0, ""))

    def test_rerunAddsSections(self):
        self.bind("basicshell")
        first = self.listed()
        self.assertIn("/usr/bin/bash", first)
        self.assertNotIn("/usr/lib/openssh/sftp-server", first)
        self.bind("sftp")
        second = self.listed()
        self.assertIn("/usr/lib/openssh/sftp-server", second)
        self.assertTrue(set(first) < set(second))
        content = self.listBytes()
        self.bind("basicshell", "sftp")
        self.assertEqual(self.listBytes(), content)

    def test_copiedJailRefused(self):
        self.init("basicshell")
        result = self.bind("sftp", status=3)
        self.assertIn("holds copies of host files", result.stderr)
        self.assertEqual(len(result.stderr.splitlines()), 1)
        self.assertFalse(os.path.exists(self.jail.path + "/"
                                        + bindlist.LIST))

    def test_bindJailRefusesCopies(self):
        self.bind("basicshell")
        content = self.listBytes()
        result = self.init("sftp", status=3)
        self.assertIn("assembled from binds", result.stderr)
        self.assertIn("--bind", result.stderr)
        self.assertEqual(len(result.stderr.splitlines()), 1)
        self.assertFalse(os.path.exists(
            self.jail.path + "/usr/lib/openssh/sftp-server"))
        self.assertEqual(self.listBytes(), content)

    def test_copyRefused(self):
        """
        jk_cp copies nothing into a bind jail (a copy would be hidden by a
        bind, or drift from the host): one line pointing at jk_init --bind.
        """
        self.bind("basicshell")
        self.assertNotIn("/usr/bin/xargs", self.listed())
        result = harness.run("jk_cp", "-j", self.jail.path, "/usr/bin/xargs")
        self.assertEqual(result.returncode, 6, result.stderr)
        self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)
        self.assertIn("assembled from binds", result.stderr)
        self.assertIn("jk_init --bind", result.stderr)
        self.assertFalse(os.path.exists(self.jail.path + "/usr/bin/xargs"))

    def test_accountsOnlyJailAccepted(self):
        """
        A jail with only accounts and home (from jk_jailuser) can become
        a bind jail.
        """
        os.makedirs(self.jail.path + "/etc")
        os.makedirs(self.jail.path + "/home/u")
        self.bind("basicshell")
        self.assertIn("/usr/bin/bash", self.listed())

    def test_staleRecordNotTakenOver(self):
        """
        A new bind jail at a path where another once was does not take
        over that jail's record; its own replaces it.
        """
        os.makedirs(bindlist.RECORDS, mode=0o755, exist_ok=True)
        record = os.path.join(bindlist.RECORDS,
                              bindlist.recordName(self.jail.path))
        with open(record, "wb") as f:
            f.write(b"/opt\n")
        result = self.bind("basicshell")
        self.assertEqual(result.stderr, "")
        self.assertNotIn("/opt", self.listed())
        with open(record, "rb") as f:
            self.assertEqual(f.read(), self.listBytes())

    def test_unsafeListRefused(self):
        self.bind("basicshell")
        path = self.jail.path + "/" + bindlist.LIST
        with open(path, "ab") as f:
            f.write(b"/etc/shadow\nusr/bin/x\n")
        harness.recordBindList(self.jail.path)
        content = self.listBytes()
        result = self.bind("sftp", status=3)
        lines = result.stderr.splitlines()
        self.assertEqual(len(lines), 3, lines)
        self.assertIn("/etc/shadow: refused, /etc/shadow is never bound",
                      lines[0])
        self.assertIn("not an absolute path", lines[1])
        self.assertIn("nothing was changed", lines[2])
        self.assertEqual(self.listBytes(), content)
        self.assertFalse(os.path.exists(
            self.jail.path + "/usr/lib/openssh/sftp-server"))
        os.chmod(path, 0o666)
        result = self.bind("sftp", status=1)
        self.assertEqual(len(result.stderr.splitlines()), 1)
        self.assertIn("cannot be trusted", result.stderr)

    def test_mountPointConflict(self):
        """
        A directory where a file is to be bound stops the run with one line,
        and the list is not extended with a path that has no mount point.
        """
        self.bind("basicshell")
        content = self.listBytes()
        os.makedirs(self.jail.path + "/usr/lib/openssh/sftp-server")
        result = self.bind("sftp", status=1)
        self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)
        self.assertIn("/usr/lib/openssh/sftp-server", result.stderr)
        self.assertIn("remove it", result.stderr)
        self.assertEqual(self.listBytes(), content)

    def test_refusedAndMissingPaths(self):
        config = self.ini("[odd]\npaths = /usr/bin/env, /var/lib/dpkg, "
                          "/usr/bin/no-such-program-x\n")
        result = self.bind("odd", config=config)
        self.assertIn("/var/lib/dpkg: refused, /var is never bound",
                      result.stderr)
        self.assertIn("/usr/bin/no-such-program-x (does not exist",
                      result.stderr)
        listed = self.listed()
        self.assertIn("/usr/bin/env", listed)
        self.assertNotIn("/var/lib/dpkg", listed)
        self.bind("odd", config=config, options=["--strict"], status=4)


class CheckBindTests(_BindTestCase):
    """
    C{jk_check} on a tampered bind jail.
    """

    def check(self):
        result = harness.run("jk_check", self.jail.path)
        return result.returncode, result.stdout.splitlines()

    def test_clean(self):
        self.bind("basicshell", "git")
        self.assertEqual(self.check(), (0, []))

    def test_tampered(self):
        self.bind("basicshell", "git")
        jail = self.jail.path
        listPath = jail + "/" + bindlist.LIST
        with open(listPath, "ab") as f:
            f.write(b"/proc/self\n")
        harness.recordBindList(jail)
        os.unlink(jail + "/usr/bin/ls")
        os.symlink("/tmp/x", jail + "/usr/bin/ls")
        os.chown(jail + "/usr/bin/cat", 1000, 1000)
        os.chmod(jail + "/usr/lib/git-core", 0o777)
        os.rmdir(jail + "/usr/share/git-core")
        with open(jail + "/usr/share/git-core", "w") as f:
            f.write("planted")
        status, lines = self.check()
        self.assertEqual(status, 1)
        bind = [line for line in lines if ": bind: " in line]
        self.assertIn(f"{listPath}: bind: line", bind[0])
        self.assertIn("/proc/self: refused", bind[0])
        found = {line.split(":")[0] for line in bind[1:]}
        self.assertEqual(found, {jail + "/usr/bin/ls", jail + "/usr/bin/cat",
                                 jail + "/usr/lib/git-core",
                                 jail + "/usr/share/git-core"})
        self.assertIn(f"{jail}/usr/bin/ls: bind: mount point for "
                      f"/usr/bin/ls: /usr/bin/ls is a symlink", bind)
        # Mount points are never compared with the host's files.
        self.assertEqual([line for line in lines if "modified" in line
                          and "/usr/bin/ls" not in line], [])

    def test_listDiffersFromRecord(self):
        """
        A list changed without jk_init --bind or jk_update (inside the
        jail, by its root) is reported; jk_update restores the record.
        """
        self.bind("basicshell")
        listPath = self.jail.path + "/" + bindlist.LIST
        with open(listPath, "ab") as f:
            f.write(b"/opt\n")
        status, lines = self.check()
        self.assertEqual(status, 1)
        self.assertIn(f"{listPath}: bind: {listPath} differs from the "
                      f"host's record", lines[0])
        update = harness.run("jk_update", "-j", self.jail.path)
        self.assertEqual(update.returncode, 0, update.stderr)
        self.assertNotIn("/opt", self.listed())
        self.assertEqual(self.check(), (0, []))

    def test_untrustedList(self):
        self.bind("basicshell")
        os.chmod(self.jail.path + "/" + bindlist.LIST, 0o646)
        status, lines = self.check()
        self.assertEqual(status, 1)
        self.assertIn("cannot be trusted", "\n".join(lines))
        self.assertEqual([line for line in lines if "modified" in line], [])


class UpdateBindTests(_BindTestCase):
    """
    C{jk_update} on a bind jail refreshes the list only.
    """

    def test_newLibrary(self):
        directory = self.optDirectory()
        program = directory + "/app"
        shutil.copy("/usr/bin/true", program)
        config = self.ini(f"[app]\npaths = {program}\n")
        self.bind("app", config=config)
        selinux = os.path.realpath("/lib/x86_64-linux-gnu/libselinux.so.1")
        self.assertIn(program, self.listed())
        self.assertNotIn(selinux, self.listed())
        # The host is upgraded: the program now needs libselinux.
        shutil.copy("/usr/bin/ls", program)
        where = f"{self.jail.path}/{bindlist.LIST}"
        content = self.listBytes()
        dry = harness.run("jk_update", "-d", "-j", self.jail.path)
        self.assertEqual(dry.returncode, 0, dry.stderr)
        self.assertIn(f"will add {selinux} to {where}",
                      dry.stdout.splitlines())
        self.assertEqual(self.listBytes(), content)
        self.assertFalse(os.path.exists(self.jail.path + selinux))
        update = harness.run("jk_update", "-j", self.jail.path)
        self.assertEqual(update.returncode, 0, update.stderr)
        self.assertIn(f"added {selinux} to {where}",
                      update.stdout.splitlines())
        self.assertIn(selinux, self.listed())
        self.assertTrue(os.path.isfile(self.jail.path + selinux))
        self.assertEqual(os.path.getsize(self.jail.path + selinux), 0)
        self.assertEqual(harness.run("jk_update", "-j",
                                     self.jail.path).stdout, "")
        # The program leaves the host: it leaves the list.
        os.unlink(program)
        update = harness.run("jk_update", "-j", self.jail.path)
        self.assertIn(f"removed {program} from {where} (no longer on this "
                      f"host)", update.stdout.splitlines())
        self.assertNotIn(program, self.listed())


    def test_becameSymlink(self):
        """
        A listed host file that an upgrade turned into a symlink: jk_check
        reports it, jk_update gives the jail the symlink and lists its
        target instead.
        """
        directory = self.optDirectory()
        program = directory + "/app"
        shutil.copy("/usr/bin/true", program)
        config = self.ini(f"[app]\npaths = {program}\n")
        self.bind("app", config=config)
        os.rename(program, program + ".real")
        os.symlink("app.real", program)
        check = harness.run("jk_check", self.jail.path)
        self.assertEqual(check.returncode, 1)
        self.assertIn(f"{program}: refused, host path untrusted: {program} "
                      f"is a symlink (jk_update resolves it again)",
                      check.stdout)
        where = f"{self.jail.path}/{bindlist.LIST}"
        update = harness.run("jk_update", "-j", self.jail.path)
        self.assertEqual(update.returncode, 0, update.stderr)
        lines = update.stdout.splitlines()
        self.assertIn(f"added {program}.real to {where}", lines)
        self.assertIn(f"removed {program} from {where} (host path "
                      f"untrusted: {program} is a symlink)", lines)
        self.assertEqual(os.readlink(self.jail.path + program), "app.real")
        self.assertEqual(os.path.getsize(self.jail.path + program + ".real"),
                         0)
        self.assertEqual(harness.run("jk_check", self.jail.path).returncode,
                         0)


class RegistryBindTests(_BindTestCase):
    """
    The registry and jk_list say which jails are assembled from binds.
    """

    def test_registered(self):
        self.bind("basicshell")
        copied = self.parent.child("copied")
        self.init("basicshell", jail=copied)
        process = subprocess.Popen(["sleep", "30"])
        self.addCleanup(process.wait)
        self.addCleanup(process.kill)
        registry = JailRegistry(FilePath(self.mktemp()))
        bound = registry.register(self.jail.path, process.pid, [])
        other = registry.register(copied.path, process.pid, [])
        self.assertTrue(bound.bind)
        self.assertFalse(other.bind)
        self.assertEqual([r.bind for r in registry.entries()], [True, False])
        lines = formatRegistered(registry.entries())
        self.assertEqual(lines[0].split()[-1], "Files")
        self.assertEqual([line.split()[-1] for line in lines[1:]],
                         ["bound", "copied"])
