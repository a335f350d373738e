"""
Tests for L{jailtwist.audit} and the installed jk_check command, on real
jails built under L{harness.jailParent}.
"""

import json
import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from jailtwist import audit
from jailtwist.audit import CheckPolicy, JailAudit, Kind
from jailtwist.config import parseIni
from tests import harness

# Host files copied into the test jails at the same paths: a program, a
# library (through the host's usrmerge link), a config file.
HOST_FILES = ("/usr/bin/true", "/usr/bin/busybox", "/etc/hosts",
              "/usr/lib/x86_64-linux-gnu/libc.so.6")
DEVICES = {"null": (1, 3), "zero": (1, 5), "random": (1, 8),
           "urandom": (1, 9), "tty": (5, 0)}


def hostSetuidProgram():
    """
    A setuid program on the host (Debian always has /usr/bin/passwd).
    """
    for name in ("passwd", "su", "mount", "chsh", "newgrp"):
        path = "/usr/bin/" + name
        if os.path.exists(path) and os.stat(path).st_mode & stat.S_ISUID:
            return path
    raise AssertionError("no setuid program in /usr/bin on this host")


def copyIn(jail, path, mode=None):
    target = jail + path
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copy2(path, target)
    if mode is not None:
        os.chmod(target, mode)
    return target


def buildJail(testCase, name="jail"):
    """
    A clean jail, built directly: host files at their host paths, the
    host's usrmerge links, the harmless devices, root's accounts, the
    jail's own ld.so.cache and jailkit config, a sticky tmp, a user's home
    with loose modes inside (the user's business), a dev/log socket.

    @return: the jail's path (a C{str}).
    """
    jail = harness.jailParent(testCase).child(name).path
    os.mkdir(jail, 0o755)
    for path in HOST_FILES:
        copyIn(jail, os.path.realpath(path) if path.startswith("/usr/lib")
               else path)
    for link in ("bin", "lib", "lib64", "sbin"):
        if os.path.islink("/" + link):
            os.symlink(os.readlink("/" + link), os.path.join(jail, link))
    os.makedirs(jail + "/dev", 0o755)
    for device, (major, minor) in DEVICES.items():
        os.mknod(f"{jail}/dev/{device}", stat.S_IFCHR | 0o666,
                 os.makedev(major, minor))
        os.chmod(f"{jail}/dev/{device}", 0o666)
    log = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    log.bind(jail + "/dev/log")
    log.close()
    os.chmod(jail + "/dev/log", 0o666)
    os.makedirs(jail + "/etc/jailkit", 0o755)
    with open("/etc/passwd") as f:
        root = [line for line in f if line.startswith("root:")]
    with open(jail + "/etc/passwd", "w") as f:
        f.writelines(root)
    with open(jail + "/etc/group", "w") as f:
        f.write("root:x:0:\n")
    with open(jail + "/etc/ld.so.cache", "wb") as f:
        f.write(b"the jail's own cache")
    with open(jail + "/etc/jailkit/jk_lsh.ini", "w") as f:
        f.write("[DEFAULT]\nexecutables = /usr/bin/true\n")
    os.mkdir(jail + "/tmp")
    os.chmod(jail + "/tmp", 0o1777)
    os.makedirs(jail + "/home/u/private")
    os.chown(jail + "/home/u", 1000, 1000)
    os.chmod(jail + "/home/u/private", 0o777)
    with open(jail + "/home/u/notes", "w") as f:
        f.write("mine\n")
    os.chmod(jail + "/home/u/notes", 0o666)
    with open(jail + "/tmp/scratch", "w") as f:
        f.write("scratch\n")
    os.chown(jail + "/tmp/scratch", 1000, 1000)
    return jail


def addAccount(testCase, name, home, shell):
    """
    Add a host account (in the private /etc of tests/isolated), removed
    when the test ends.  Its uid is one no process runs as: userdel
    refuses to remove an account with running processes (exit 8), and
    other tests may run processes as uid 1000.
    """
    harness.isolated(testCase)
    used = {entry.pw_uid for entry in pwd.getpwall()}
    uid = next(uid for uid in range(47100, 47200) if uid not in used)
    subprocess.run(["useradd", "-M", "-u", str(uid), "-d", home, "-s", shell,
                    name], check=True)
    testCase.addCleanup(subprocess.run, ["userdel", "-f", name], check=True)
    if not hasattr(testCase, "jailedAccounts"):
        testCase.jailedAccounts = set()
    testCase.jailedAccounts.add(name)


def checkAll(testCase, *args):
    """
    Run the installed jk_check without a JAIL argument, so that it checks
    the configured jails and the jails named by accounts' homes, seeing
    only the jailed accounts this test added: the command runs in its own
    mount namespace with an /etc/passwd from which other /./ accounts
    (left behind by other tests in this run) are left out.
    """
    own = getattr(testCase, "jailedAccounts", set())
    with open("/etc/passwd") as f:
        lines = [line for line in f
                 if line.split(":")[0] in own
                 or "/./" not in "".join(line.split(":")[5:6])]
    passwd = testCase.mktemp()
    with open(passwd, "w") as f:
        f.writelines(lines)
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         'mount --bind "$0" /etc/passwd && exec "$@"', passwd,
         harness.script("jk_check")] + list(args),
        capture_output=True, text=True, timeout=120)


def copyAccountIntoJail(name, jail, home):
    """
    Append the host's passwd entry of C{name} to the jail's, with C{home}
    as its home in the jail.
    """
    entry = subprocess.run(["getent", "passwd", name], capture_output=True,
                           text=True, check=True).stdout
    fields = entry.strip().split(":")
    fields[5] = home
    with open(jail + "/etc/passwd", "a") as f:
        f.write(":".join(fields) + "\n")


def replaceDefaultConfig(testCase, text):
    """
    Replace /etc/jailkit/jk_check.ini (C{None}: remove it) for one test.
    """
    harness.isolated(testCase)
    path = "/etc/jailkit/jk_check.ini"
    os.makedirs("/etc/jailkit", exist_ok=True)
    saved = None
    if os.path.exists(path):
        with open(path) as f:
            saved = f.read()
        os.unlink(path)

    def restore():
        if os.path.exists(path):
            os.unlink(path)
        if saved is not None:
            with open(path, "w") as f:
                f.write(saved)
    testCase.addCleanup(restore)
    if text is not None:
        with open(path, "w") as f:
            f.write(text)


def checkHelpAndBadOption(testCase, name, mentioned):
    """
    The installed command C{name} shows its help for C{-h} and C{--help}
    (mentioning C{mentioned}) and refuses an unknown option with exit 2.
    """
    for option in ("-h", "--help"):
        result = harness.run(name, option)
        testCase.assertEqual(result.returncode, 0)
        testCase.assertIn(mentioned, result.stdout)
    result = harness.run(name, "--nonsense")
    testCase.assertEqual(result.returncode, 2)
    testCase.assertIn(f"{name} --help", result.stderr)


def kinds(report):
    return sorted((f.kind, f.path) for f in report.findings)


def check(*args):
    return harness.run("jk_check", *args)


class CleanJailTests(SynchronousTestCase):
    """
    A clean jail gives no finding, no output and exit status 0.
    """

    def test_library(self):
        jail = buildJail(self)
        report = JailAudit(jail).run()
        self.assertEqual(report.findings, [])
        self.assertTrue(report.clean)
        # Every host copy was compared (true, busybox, hosts, libc and the
        # four usrmerge links).
        self.assertEqual(report.compared, 8)

    def test_command(self):
        jail = buildJail(self)
        result = check(jail)
        self.assertEqual((result.returncode, result.stdout, result.stderr),
                         (0, "", ""))

    def test_verbose(self):
        jail = buildJail(self)
        result = check("-v", jail)
        self.assertEqual(result.returncode, 0)
        self.assertIn(f"{jail}: ", result.stdout)
        self.assertIn("0 findings", result.stdout)

    def test_freshJkInitJail(self):
        """
        A jail fresh from the installed jk_init (jailtwist's jk_init.ini)
        is clean: no noise from its own etc/passwd, etc/group, ld.so.cache
        or jailkit config.  Then a setuid bit and one changed byte in a
        binary are found.
        """
        jail = harness.jailParent(self).child("built").path
        config = os.path.join(sys.prefix, "share/jailtwist/etc/jailkit",
                              "jk_init.ini")
        built = harness.run("jk_init", "-c", config, "-j", jail, "uidbasics",
                            "netbasics", "basicshell", "jk_lsh", "sftp",
                            "scp", "editors")
        self.assertEqual(built.returncode, 0, built.stderr)
        self.assertTrue(os.path.exists(jail + "/etc/ld.so.cache"))
        self.assertTrue(os.path.exists(jail + "/etc/passwd"))
        result = check(jail)
        self.assertEqual((result.returncode, result.stdout, result.stderr),
                         (0, "", ""))
        self.assertGreater(JailAudit(jail).run().compared, 50)

        os.chmod(jail + "/usr/bin/bash", 0o4755)
        with open(jail + "/usr/bin/ls", "r+b") as f:
            f.seek(5000)
            byte = f.read(1)
            f.seek(5000)
            f.write(bytes([byte[0] ^ 0x40]))
        result = check(jail)
        self.assertEqual(result.returncode, 1)
        self.assertEqual(sorted(line.split(":")[:2]
                                for line in result.stdout.splitlines()),
                         [[jail + "/usr/bin/bash", " setuid"],
                          [jail + "/usr/bin/ls", " modified"]])

    def test_symlinksNotFollowed(self):
        """
        Symlinks planted in the jail toward the host's setuid programs are
        not followed: the host's files are neither reported nor compared.
        """
        jail = buildJail(self)
        os.symlink("/usr/bin", jail + "/usr/evil")
        os.symlink("../../../../../../usr/bin", jail + "/etc/evil")
        os.symlink(hostSetuidProgram(), jail + "/etc/evil2")
        report = JailAudit(jail).run()
        self.assertEqual(report.findings, [])
        self.assertEqual(check(jail).returncode, 0)

    def test_directorySwappedForSymlink(self):
        """
        A directory replaced by a symlink to the host's /usr/bin between
        its lstat and its opening is not followed (the host's setuid
        programs there are not reported as the jail's).
        """
        jail = buildJail(self)
        libs = jail + "/usr/lib"

        class Racing(JailAudit):
            def _checkDirectory(self, rel, st, flags, inUserTree):
                super()._checkDirectory(rel, st, flags, inUserTree)
                if rel == "usr/lib":
                    os.rename(libs, libs + ".old")
                    os.symlink("/usr/bin", libs)

        hostSetuidProgram()
        report = Racing(jail).run()
        self.assertEqual(report.findings, [])
        self.assertTrue(os.path.islink(libs))

    def test_fileSwappedForSymlink(self):
        """
        A file replaced by a symlink to a host file between its lstat and
        its comparison is not read through the symlink.
        """
        jail = buildJail(self)
        target = jail + "/usr/bin/true"

        class Racing(JailAudit):
            def _compareFile(self, dirFd, name, rel, st):
                if rel == "usr/bin/true":
                    os.unlink(target)
                    os.symlink("/etc/passwd", target)
                super()._compareFile(dirFd, name, rel, st)

        report = Racing(jail).run()
        self.assertEqual(report.findings, [])
        self.assertTrue(os.path.islink(target))

    def test_pseudoFileSystemSkipped(self):
        """
        A proc file system mounted in the jail is not walked.
        """
        jail = buildJail(self)
        os.mkdir(jail + "/proc")
        subprocess.run(["mount", "-t", "proc", "proc", jail + "/proc"],
                       check=True)
        self.addCleanup(subprocess.run, ["umount", "-l", jail + "/proc"])
        report = JailAudit(jail).run()
        self.assertEqual(report.findings, [])
        self.assertEqual(report.skipped, [jail + "/proc"])
        # Also when the jail is named through a symlink (reported as
        # unsafe, and still walked without descending into proc).
        link = harness.jailParent(self).child("link").path
        os.symlink(os.path.dirname(jail), link)
        named = os.path.join(link, os.path.basename(jail))
        report = JailAudit(named).run()
        self.assertEqual(kinds(report), [(Kind.UNSAFE, link)])
        self.assertEqual(report.skipped, [named + "/proc"])


class FindingTests(SynchronousTestCase):
    """
    Each planted problem is found, and the command exits non-zero.
    """

    def assertFoundAfterAppend(self, jail, inner, text, kind, detail):
        """
        Append C{text} to the jail's file C{inner}: the one finding is of
        C{kind} for that file and its detail contains C{detail}.
        """
        with open(jail + inner, "a") as f:
            f.write(text)
        report = self.assertFound(jail, kind, jail + inner)
        self.assertEqual(len(report.findings), 1)
        self.assertIn(detail, report.findings[0].detail)

    def assertFound(self, jail, kind, path):
        report = JailAudit(jail).run()
        self.assertIn((kind, path), kinds(report))
        result = check(jail)
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        self.assertIn(f"{path}: {kind}: ", result.stdout)
        return report

    def test_setuid(self):
        jail = buildJail(self)
        program = copyIn(jail, hostSetuidProgram())
        os.chmod(program, 0o4755)
        report = self.assertFound(jail, Kind.SETUID, program)
        (finding,) = report.findings
        self.assertIn("executable by user, group, others", finding.detail)

    def test_setgid(self):
        jail = buildJail(self)
        program = copyIn(jail, "/usr/bin/true")
        os.chown(program, 0, 5)
        os.chmod(program, 0o2711)
        report = self.assertFound(jail, Kind.SETGID, program)
        self.assertEqual(len(report.findings), 1)

    def test_fileCapabilities(self):
        """
        A file with capabilities is as privileged as a setuid one: found,
        with the capabilities named, and ignored with the same keys.
        """
        jail = buildJail(self)
        program = copyIn(jail, "/usr/bin/true")
        # cap_net_raw+ep and cap_sys_admin+p (revision 2).
        os.setxattr(program, "security.capability", bytes.fromhex(
            "01000002" "00200000" "00000000" "00000000" "00000000"))
        self.assertEqual(os.getxattr(program, "security.capability")[:4],
                         bytes.fromhex("01000002"))
        report = self.assertFound(jail, Kind.CAPABILITIES, program)
        self.assertEqual(report.findings[0].detail,
                         "file capabilities cap_net_raw=ep, executable by"
                         " user, group, others")
        os.setxattr(program, "security.capability", bytes.fromhex(
            "00000002" "00002000" "00000000" "00000000" "00000000"))
        self.assertEqual(JailAudit(jail).run().findings[0].detail,
                         "file capabilities cap_sys_admin=p, executable by"
                         " user, group, others")
        policy = CheckPolicy(
            ignoreSetuidExecuteForUser=frozenset({"usr/bin/true"}),
            ignoreSetuidExecuteForGroup=frozenset({"usr/bin/true"}),
            ignoreSetuidExecuteForOthers=frozenset({"usr/bin/true"}))
        self.assertEqual(JailAudit(jail, policy).run().findings, [])

    def test_describeCapabilities(self):
        self.assertEqual(audit.describeCapabilities(bytes.fromhex(
            "01000001" "01000000" "00000000")), "cap_chown=ep")
        self.assertEqual(audit.describeCapabilities(bytes.fromhex(
            "00000003" "00000000" "00000000" "00010000" "00000000"
            "00000000")), "cap_checkpoint_restore=p")
        self.assertEqual(audit.describeCapabilities(bytes(20)), "")
        self.assertIn("unreadable", audit.describeCapabilities(b"x"))

    def test_setuidNotExecutable(self):
        """
        A setuid file nobody may execute is harmless (jailkit agrees).
        """
        jail = buildJail(self)
        os.chmod(jail + "/usr/bin/true", 0o4644)
        self.assertEqual(JailAudit(jail).run().findings, [])

    def test_worldWritableDirectory(self):
        jail = buildJail(self)
        os.makedirs(jail + "/var/drop")
        os.chmod(jail + "/var/drop", 0o777)
        self.assertFound(jail, Kind.WORLD_WRITABLE, jail + "/var/drop")
        self.assertIn((Kind.GROUP_WRITABLE, jail + "/var/drop"),
                      kinds(JailAudit(jail).run()))

    def test_groupWritableFile(self):
        jail = buildJail(self)
        os.chmod(jail + "/usr/bin/true", 0o775)
        self.assertFound(jail, Kind.GROUP_WRITABLE, jail + "/usr/bin/true")

    def test_tmpWithoutStickyBit(self):
        jail = buildJail(self)
        os.chmod(jail + "/tmp", 0o777)
        self.assertFound(jail, Kind.WORLD_WRITABLE, jail + "/tmp")

    def test_modifiedBinarySameSize(self):
        """
        One byte changed in the middle of a binary is found: every byte is
        compared, not a sample.
        """
        jail = buildJail(self)
        path = jail + "/usr/bin/busybox"
        size = os.path.getsize(path)
        with open(path, "r+b") as f:
            f.seek(size // 2 + 12345)
            byte = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([byte[0] ^ 1]))
        self.assertEqual(os.path.getsize(path), size)
        report = self.assertFound(jail, Kind.MODIFIED, path)
        self.assertEqual(len(report.findings), 1)

    def test_modifiedSize(self):
        self.assertFoundAfterAppend(buildJail(self), "/etc/hosts",
                                    "10.0.0.1 elsewhere\n", Kind.MODIFIED,
                                    "bytes, the host's has")

    def test_hostTree(self):
        """
        The jail is compared with the tree named by C{hostRoot}; a hard
        link to the host's file is the host's file.
        """
        parent = harness.jailParent(self)
        host = parent.child("host").path
        jail = parent.child("jail").path
        os.makedirs(host + "/usr/bin")
        os.makedirs(jail + "/usr/bin")
        with open(host + "/usr/bin/tool", "wb") as f:
            f.write(b"\x7fELF" + bytes(range(256)) * 8000)
        os.link(host + "/usr/bin/tool", jail + "/usr/bin/tool")
        shutil.copy(host + "/usr/bin/tool", jail + "/usr/bin/copy")
        shutil.copy(host + "/usr/bin/tool", host + "/usr/bin/copy")
        report = JailAudit(jail, hostRoot=host).run()
        self.assertEqual((report.findings, report.compared), ([], 2))
        with open(host + "/usr/bin/copy", "r+b") as f:
            f.seek(2000000)
            f.write(b"!")
        self.assertEqual(kinds(JailAudit(jail, hostRoot=host).run()),
                         [(Kind.MODIFIED, jail + "/usr/bin/copy")])

    def test_differentSymlink(self):
        jail = buildJail(self)
        os.unlink(jail + "/lib")
        os.symlink("usr/lib64", jail + "/lib")
        self.assertFound(jail, Kind.MODIFIED, jail + "/lib")

    def test_directoryNotOwnedByRoot(self):
        jail = buildJail(self)
        os.makedirs(jail + "/usr/local/bin")
        os.chown(jail + "/usr/local", 1000, 1000)
        self.assertFound(jail, Kind.OWNER, jail + "/usr/local")

    def test_fileNotOwnedByRoot(self):
        jail = buildJail(self)
        os.chown(jail + "/usr/bin/true", 1000, 0)
        self.assertFound(jail, Kind.OWNER, jail + "/usr/bin/true")

    def test_homeItselfNotOwnedByRoot(self):
        jail = buildJail(self)
        os.chown(jail + "/home", 1000, 1000)
        self.assertFound(jail, Kind.OWNER, jail + "/home")

    def test_extraDevice(self):
        jail = buildJail(self)
        os.mknod(jail + "/dev/sda", stat.S_IFBLK | 0o600, os.makedev(8, 0))
        report = self.assertFound(jail, Kind.DEVICE, jail + "/dev/sda")
        self.assertIn("block device 8,0", report.findings[0].detail)

    def test_deviceWithHarmlessName(self):
        """
        Devices are judged by their numbers: /dev/null as a block device
        8,0 is found; a real null device elsewhere is fine.
        """
        jail = buildJail(self)
        os.unlink(jail + "/dev/null")
        os.mknod(jail + "/dev/null", stat.S_IFCHR | 0o666, os.makedev(1, 1))
        os.mknod(jail + "/home/u/null", stat.S_IFCHR | 0o666,
                 os.makedev(1, 3))
        report = self.assertFound(jail, Kind.DEVICE, jail + "/dev/null")
        self.assertEqual(len(report.findings), 1)

    def test_setuidInHome(self):
        """
        Modes and owners below home/ are the user's business, but a setuid
        file there is still found.
        """
        jail = buildJail(self)
        program = jail + "/home/u/sh"
        shutil.copy2("/usr/bin/true", program)
        os.chmod(program, 0o4755)
        self.assertFound(jail, Kind.SETUID, program)

    def test_unsafeParent(self):
        parent = harness.jailParent(self).child("open")
        parent.makedirs()
        os.chmod(parent.path, 0o777)
        jail = parent.child("jail").path
        os.mkdir(jail, 0o755)
        self.assertFound(jail, Kind.UNSAFE, parent.path)

    def test_jailIsSymlink(self):
        jail = buildJail(self)
        link = jail + "-link"
        os.symlink(jail, link)
        self.assertFound(link, Kind.UNSAFE, link)

    def test_hostRootIsNoJail(self):
        report = JailAudit("/").run()
        self.assertEqual((kinds(report), report.files), ([(Kind.UNSAFE, "/")],
                                                         0))

    def test_missingJail(self):
        missing = harness.jailParent(self).child("nothing").path
        self.assertFound(missing, Kind.MISSING, missing)

    def test_jailAccountUnknownOnHost(self):
        self.assertFoundAfterAppend(buildJail(self), "/etc/passwd",
                                    "ghost:x:4242:4242::/home/g:/bin/sh\n",
                                    Kind.USER, "ghost does not exist")

    def test_jailAccountChanged(self):
        self.assertFoundAfterAppend(buildJail(self), "/etc/passwd",
                                    "daemon:x:0:0::/:/bin/sh\n", Kind.USER,
                                    "uid:gid 0:0 in the jail")

    def test_hostAccountInJail(self):
        """
        A host account whose home is in the jail must be in the jail's
        etc/passwd with the matching home and have jk_chrootsh as its shell.
        """
        jail = buildJail(self)
        addAccount(self, "jtaudit", jail + "/./home/u", "/bin/sh")
        details = [f.detail for f in JailAudit(jail).run().findings]
        self.assertEqual(len(details), 2, details)
        self.assertIn("not in its etc/passwd", details[0])
        self.assertIn("not jk_chrootsh", details[1])
        # Listed in the jail with another home; the right shell.
        subprocess.run(["usermod", "-s", "/usr/sbin/jk_chrootsh", "jtaudit"],
                       check=True)
        copyAccountIntoJail("jtaudit", jail, "/home/other")
        details = [f.detail for f in JailAudit(jail).run().findings]
        self.assertEqual(len(details), 1, details)
        self.assertIn("home /home/other in the jail", details[0])

    def test_hostileNames(self):
        """
        A file name with a newline or bytes that are not UTF-8 cannot forge
        a line or break the output: it is escaped, in text and in JSON.
        """
        jail = buildJail(self)
        forged = "x\nFORGED: setuid: fake"
        with open(os.path.join(jail, "usr/bin", forged), "w") as f:
            f.write("#!/bin/sh\n")
        os.chmod(os.path.join(jail, "usr/bin", forged), 0o4755)
        raw = os.path.join(os.fsencode(jail), b"usr/bin/\xff\\name")
        with open(raw, "w") as f:
            f.write("x")
        os.chmod(raw, 0o2755)
        result = check(jail)
        self.assertEqual(result.returncode, 1)
        self.assertEqual(sorted(result.stdout.splitlines()), sorted([
            f"{jail}/usr/bin/x\\x0aFORGED: setuid: fake: setuid: setuid"
            f" root, executable by user, group, others (mode 4755)",
            f"{jail}/usr/bin/\\xff\\\\name: setgid: setgid root, executable"
            f" by user, group, others (mode 2755)"]))
        document = json.loads(check("--json", jail).stdout)
        self.assertEqual(
            sorted(f["path"] for f in document["jails"][0]["findings"]),
            [f"{jail}/usr/bin/\\xff\\\\name",
             f"{jail}/usr/bin/x\\x0aFORGED: setuid: fake"])

    def test_everythingAtOnce(self):
        """
        Several problems: all found, in walk order, one line each.
        """
        jail = buildJail(self)
        os.chmod(copyIn(jail, hostSetuidProgram()), 0o4755)
        os.makedirs(jail + "/var/drop")
        os.chmod(jail + "/var/drop", 0o703)
        os.mknod(jail + "/dev/mem", stat.S_IFCHR | 0o600, os.makedev(1, 1))
        result = check(jail)
        self.assertEqual(result.returncode, 1)
        self.assertEqual(len(result.stdout.splitlines()), 3, result.stdout)
        self.assertEqual(result.stderr, "")


class JsonTests(SynchronousTestCase):

    def test_json(self):
        jail = buildJail(self)
        clean = check("--json", jail)
        self.assertEqual(clean.returncode, 0)
        document = json.loads(clean.stdout)
        self.assertEqual(document["clean"], True)
        self.assertEqual(document["findings"], 0)
        self.assertEqual(document["jails"][0]["jail"], jail)
        self.assertEqual(document["jails"][0]["findings"], [])

        os.chmod(jail + "/usr/bin/true", 0o4755)
        dirty = check("--json", jail)
        self.assertEqual(dirty.returncode, 1)
        document = json.loads(dirty.stdout)
        self.assertEqual(document["clean"], False)
        self.assertEqual(document["findings"], 1)
        self.assertEqual(document["jails"][0]["findings"], [{
            "jail": jail, "kind": "setuid", "path": jail + "/usr/bin/true",
            "detail": "setuid root, executable by user, group, others"
                      " (mode 4755)"}])
        self.assertGreaterEqual(document["jails"][0]["files"], 10)


class ConfigTests(SynchronousTestCase):
    """
    jk_check.ini: its jails are checked without arguments, and jailkit's
    ignore keys are honoured.
    """

    def dirtyJail(self):
        jail = buildJail(self)
        program = copyIn(jail, hostSetuidProgram())
        os.chmod(program, 0o4711)
        os.makedirs(jail + "/var/drop/sub")
        os.chmod(jail + "/var/drop", 0o777)
        os.chmod(jail + "/var/drop/sub", 0o777)
        with open(jail + "/etc/hosts", "a") as f:
            f.write("# local\n")
        os.makedirs(jail + "/opt/mess")
        os.chmod(jail + "/opt/mess", 0o777)
        os.mknod(jail + "/dev/net-tun", stat.S_IFCHR | 0o666,
                 os.makedev(10, 200))
        os.chown(jail + "/opt", 1000, 1000)
        return jail, program

    def writeConfig(self, text, path=None):
        if path is None:
            path = harness.jailParent(self).child("jk_check.ini").path
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_ignoreKeys(self):
        jail, program = self.dirtyJail()
        self.assertEqual(len(JailAudit(jail).run().findings), 10)
        config = self.writeConfig(f"""\
[{jail}]
ignorepatheverywhere = {jail}/opt
ignorepathoncompare = {jail}/etc
ignorewritableforgroup = {jail}/var/drop
ignorewritableforothers = {jail}/var/drop
ignoresetuidexecuteforuser = {program}
ignoresetuidexecuteforgroup = {program}
ignoresetuidexecuteforothers = {program}
ignoredevices = {jail}/dev/net-tun
""")
        result = checkAll(self, "-c", config)
        self.assertEqual((result.returncode, result.stdout, result.stderr),
                         (0, "", ""))
        result = check("-c", config, jail)
        self.assertEqual((result.returncode, result.stdout), (0, ""))

    def test_setuidIgnoredOnlyForSomeone(self):
        """
        A setuid file ignored for user and group is still reported when
        others may execute it (jailkit's per-class keys).
        """
        jail = buildJail(self)
        program = copyIn(jail, "/usr/bin/true", 0o4755)
        config = self.writeConfig(f"""\
[{jail}]
ignoresetuidexecuteforuser = {program}
ignoresetuidexecuteforgroup = {program}
""")
        result = checkAll(self, "-c", config)
        self.assertEqual(result.returncode, 1)
        self.assertIn(f"{program}: setuid:", result.stdout)
        os.chmod(program, 0o4750)
        self.assertEqual(checkAll(self, "-c", config).returncode, 0)

    def test_defaultSectionWithRelativePaths(self):
        """
        [DEFAULT] applies to every jail; relative paths are relative to
        each jail; a jail's own key replaces the default.
        """
        first, program = self.dirtyJail()
        second = buildJail(self, "second")
        os.makedirs(second + "/var/drop")
        os.chmod(second + "/var/drop", 0o777)
        os.makedirs(second + "/srv/share")
        os.chmod(second + "/srv/share", 0o770)
        rel = program[len(first) + 1:]
        config = self.writeConfig(f"""\
[DEFAULT]
ignorepatheverywhere = opt
ignorepathoncompare = etc
ignorewritableforgroup = var/drop
ignorewritableforothers = var/drop
ignoresetuidexecuteforuser = {rel}
ignoresetuidexecuteforgroup = {rel}
ignoresetuidexecuteforothers = {rel}
ignoredevices = dev/net-tun

[{first}]

[{second}]
ignorewritableforgroup = srv/share, var/drop
""")
        result = checkAll(self, "-c", config)
        self.assertEqual((result.returncode, result.stdout), (0, ""))
        self.assertEqual(check("-c", config, second).returncode, 0)

    def test_componentPrefixes(self):
        """
        An ignored path covers what is below it, not siblings that share a
        prefix of its name (jailkit compares strings).
        """
        policy = CheckPolicy.fromSection(
            parseIni("[/j]\nignorewritableforothers = /j/var/drop\n")
            .section("/j"), "/j")
        self.assertEqual(policy.ignoreWritableForOthers,
                         frozenset({"var/drop"}))
        jail = buildJail(self)
        os.makedirs(jail + "/var/drop/in")
        os.makedirs(jail + "/var/dropbox")
        for path in ("/var/drop/in", "/var/dropbox"):
            os.chmod(jail + path, 0o757)
        config = self.writeConfig(
            f"[{jail}]\nignorewritableforothers = {jail}/var/drop\n")
        result = checkAll(self, "-c", config)
        self.assertEqual(result.stdout.splitlines(), [
            f"{jail}/var/dropbox: world-writable: directory writable by"
            f" others (mode 0757)"])

    def test_pathsOutsideTheJail(self):
        policy = CheckPolicy.fromSection(parseIni(
            "[/j]\nignorepathoncompare = /other/etc, /j, ../x, /j/./a/../b\n"
        ).section("/j"), "/j")
        self.assertEqual(policy.ignorePathOnCompare, frozenset({"", "b"}))

    def test_defaultConfigAndPasswdJails(self):
        """
        Without arguments jk_check reads /etc/jailkit/jk_check.ini and also
        checks the jails named by accounts' homes; a configured jail that
        does not exist is reported.
        """
        configured, program = self.dirtyJail()
        fromPasswd = buildJail(self, "fromPasswd")
        missing = harness.jailParent(self).child("gone").path
        replaceDefaultConfig(self, f"[{configured}]\n[{missing}]\n")
        os.chmod(fromPasswd + "/usr/bin/true", 0o6755)
        addAccount(self, "jtaudit2", fromPasswd + "/./home/u",
                   "/usr/sbin/jk_chrootsh")
        copyAccountIntoJail("jtaudit2", fromPasswd, "/home/u")
        result = checkAll(self, "--json")
        self.assertEqual(result.returncode, 1)
        document = json.loads(result.stdout)
        self.assertEqual([j["jail"] for j in document["jails"]],
                         [configured, missing, fromPasswd])
        self.assertEqual(len(document["jails"][0]["findings"]), 10)
        self.assertEqual(document["jails"][1]["findings"][0]["kind"],
                         "missing")
        self.assertEqual(
            [f["kind"] for f in document["jails"][2]["findings"]],
            ["setuid"])

    def test_noJails(self):
        """
        No config file and no jailed account: nothing to check, exit 0.
        """
        replaceDefaultConfig(self, None)
        result = checkAll(self)
        self.assertEqual((result.returncode, result.stdout, result.stderr),
                         (0, "", ""))

    def test_unknownKey(self):
        jail = buildJail(self)
        config = self.writeConfig(f"[{jail}]\nignoresetuid = /x\n")
        result = checkAll(self, "-c", config)
        self.assertEqual(result.returncode, 3)
        self.assertEqual(result.stdout, "")
        self.assertEqual(len(result.stderr.splitlines()), 1)
        self.assertIn("ignoresetuid", result.stderr)
        self.assertIn("unknown key", result.stderr)

    def test_missingConfig(self):
        result = check("-c", "/nonexistent/jk_check.ini")
        self.assertEqual(result.returncode, 3)
        self.assertEqual(result.stderr,
                         "jk_check: /nonexistent/jk_check.ini: cannot read:"
                         " No such file or directory\n")

    def test_relativeJail(self):
        result = check("some/jail")
        self.assertEqual(result.returncode, 3)
        self.assertIn("not an absolute path", result.stderr)

    def test_options(self):
        checkHelpAndBadOption(self, "jk_check", "--configfile")


class WhichJailsTests(SynchronousTestCase):
    """
    Pure logic: which jails jk_check checks.
    """

    class Account:
        def __init__(self, name, home):
            self.pw_name = name
            self.pw_dir = home
            self.pw_uid = self.pw_gid = 1000
            self.pw_shell = "/usr/sbin/jk_chrootsh"

    def test_jailsFromPasswd(self):
        accounts = [self.Account("a", "/srv/j1/./home/a"),
                    self.Account("b", "/home/b"),
                    self.Account("c", "/srv/j2//./home/c"),
                    self.Account("d", "/srv/j1/./home/d"),
                    self.Account("e", "/./home/e")]
        self.assertEqual(audit.jailsFromPasswd(lambda: accounts),
                         ["/srv/j1", "/srv/j2"])

    def test_auditsFromConfig(self):
        ini = parseIni("[DEFAULT]\nignorepathoncompare = etc\n"
                       "[/srv/j1/]\n[/srv/j3]\n"
                       "ignorepathoncompare = /srv/j3/usr\n", "test.ini")
        accounts = [self.Account("a", "/srv/j1/./home/a"),
                    self.Account("b", "/srv/j2/./home/b")]
        audits = audit.auditsFromConfig(ini, lambda: accounts)
        self.assertEqual([a.path for a in audits],
                         ["/srv/j1", "/srv/j3", "/srv/j2"])
        self.assertEqual([a.policy.ignorePathOnCompare for a in audits],
                         [{"etc"}, {"usr"}, {"etc"}])

    def test_auditsWithoutConfig(self):
        audits = audit.auditsFromConfig(
            None, lambda: [self.Account("a", "/srv/j1/./home/a")])
        self.assertEqual([(a.path, a.policy) for a in audits],
                         [("/srv/j1", CheckPolicy())])

    def test_auditForUsesItsSection(self):
        ini = parseIni("[/srv/j1]\nignoredevices = dev/x\n", "t.ini")
        self.assertEqual(audit.auditFor("/srv/j1/", ini).policy.ignoreDevices,
                         {"dev/x"})
        self.assertEqual(audit.auditFor("/srv/j2", ini).policy, CheckPolicy())

    def test_findingText(self):
        finding = audit.Finding("/j", Kind.DEVICE, "/j/dev/sda", "block")
        self.assertEqual(str(finding), "/j/dev/sda: device: block")
        self.assertEqual(finding.asDict(), {"jail": "/j", "kind": "device",
                                            "path": "/j/dev/sda",
                                            "detail": "block"})

    def test_mountinfoEscapes(self):
        mounts = ("36 25 0:5 / /j/my\\040proc rw - proc proc rw\n"
                  "37 25 0:6 / /j/sys rw shared:1 - sysfs sysfs rw\n"
                  "38 25 0:7 / /j/data rw - ext4 /dev/vda rw\n"
                  "39 25 0:8 / /other/proc rw - proc proc rw\n")
        self.assertEqual(JailAudit("/j", mounts=mounts)._pseudoMounts(),
                         {"my proc": "proc", "sys": "sysfs"})
