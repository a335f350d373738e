"""
Tests for L{jailtwist.bindlist}: the entries a bind list may hold, reading
it from a real jail, the mount plan, and the checks on host paths and
mount points (on this host's real files).
"""

import errno
import os
import shutil
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from jailtwist import bindlist
from jailtwist.bindlist import (
    BindListError, BindMount, HostPath, MissingEntry, RefusedEntry,
    checkEntries, checkHostPath, checkSyntax, formatBindList, mountPlan,
    openHostPath, openMountPoint, parseBindList, readBindList)
from jailtwist.jail import Jail, hasBindList
from tests import harness


class SyntaxTests(SynchronousTestCase):
    """
    L{checkSyntax}: what an entry's text alone decides.
    """

    def refused(self, path, words, jail=None):
        with self.assertRaises(RefusedEntry) as caught:
            checkSyntax(path, jail)
        message = str(caught.exception)
        self.assertIn(words, message)
        self.assertNotIn("\n", message)
        self.assertEqual(caught.exception.path, path)

    def test_accepted(self):
        for path in ("/usr", "/usr/bin/ls", "/lib64/x", "/opt/app",
                     "/etc/ld.so.cache", "/etc/profile.d/x.sh",
                     "/etc/ssl/certs/ca-certificates.crt"):
            checkSyntax(path, "/srv/jails/one")

    def test_notAbsolute(self):
        self.refused("usr/bin/ls", "not an absolute path")
        self.refused("", "not an absolute path")

    def test_notNormalised(self):
        for path in ("/usr/bin/", "/usr/./bin", "/usr/../etc/shadow",
                     "/usr//bin", "//usr/bin"):
            self.refused(path, "not normalised")

    def test_neverBound(self):
        for path, prefix in (("/proc/self", "/proc"), ("/sys", "/sys"),
                             ("/dev/sda", "/dev"), ("/home/u", "/home"),
                             ("/root/.ssh", "/root"),
                             ("/etc/shadow", "/etc/shadow"),
                             ("/etc/gshadow", "/etc/gshadow"),
                             ("/etc/passwd", "/etc/passwd"),
                             ("/run/user", "/run"), ("/tmp/x", "/tmp"),
                             ("/var/tmp", "/var/tmp"), ("/boot", "/boot"),
                             ("/etc/ssh/ssh_host_rsa_key", "/etc/ssh"),
                             ("/etc/jailkit/jk_lsh.ini", "/etc/jailkit")):
            self.refused(path, f"{prefix} is never bound")

    def test_notOnSafeList(self):
        for path in ("/etc", "/etc/mysql/debian.cnf", "/etc/ssl",
                     "/etc/profiles", "/usrx", "/optional", "/"):
            with self.assertRaises(RefusedEntry):
                checkSyntax(path)
        self.refused("/etc/mysql/debian.cnf", "not on the safe list")
        self.refused("/usrx/bin", "not on the safe list")

    def test_jail(self):
        self.refused("/opt/jails/one", "overlaps the jail",
                     jail="/opt/jails/one")
        self.refused("/opt/jails/one/usr", "overlaps the jail",
                     jail="/opt/jails/one")
        self.refused("/opt", "overlaps the jail", jail="/opt/jails/one")
        checkSyntax("/opt/jails/other", "/opt/jails/one")

    def test_newline(self):
        self.refused("/usr/bin/a\nb", "NUL or newline")


class FormatTests(SynchronousTestCase):
    """
    The list's text: one path per line, comments and blank lines ignored.
    """

    def test_roundTrip(self):
        text = formatBindList(["/usr/bin/ls", "/etc/hosts", "/usr/bin/ls",
                               "/usr/bin/a b"])
        self.assertTrue(text.startswith(b"#"))
        self.assertEqual([p for _, p in parseBindList(text)],
                         ["/etc/hosts", "/usr/bin/a b", "/usr/bin/ls"])

    def test_parse(self):
        self.assertEqual(
            parseBindList(b"# c\n\n/usr/bin/ls\n /usr/bin/x\n/usr/bin/\n"),
            [(3, "/usr/bin/ls"), (4, " /usr/bin/x"), (5, "/usr/bin/")])

    def test_formatRefusesNewline(self):
        self.assertRaises(RefusedEntry, formatBindList, ["/usr/a\nb"])


class SubmountTests(SynchronousTestCase):
    """
    L{bindlist.checkSubmounts} and L{bindlist.mountPoints}.
    """

    def test_mountBelowRefused(self):
        plan = [BindMount("/opt/a", "/opt/a", True),
                BindMount("/opt/ab", "/opt/ab", True),
                BindMount("/opt/f", "/opt/f", False)]
        refused = bindlist.checkSubmounts(plan, {"/", "/opt/a", "/opt/a/x y",
                                                 "/opt/f", "/opt/abc"})
        self.assertEqual([r.path for r in refused], ["/opt/a"])
        self.assertIn("/opt/a/x y is a mount point below it", str(refused[0]))
        self.assertTrue(refused[0].onHost)

    def test_mountPoints(self):
        """
        The mount points are this process's, unescaped.
        """
        points = bindlist.mountPoints()
        self.assertIn("/", points)
        self.assertIn("/proc", points)
        self.assertEqual(bindlist._unescapeMount("/a\\040b\\134c"),
                         "/a b\\c")


class RecordNameTests(SynchronousTestCase):

    def test_escaped(self):
        self.assertEqual(bindlist.recordName("/srv/jail/"),
                         "%2Fsrv%2Fjail.list")
        self.assertEqual(bindlist.recordName("/srv/a%2Fb"),
                         "%2Fsrv%2Fa%252Fb.list")


class PlanTests(SynchronousTestCase):
    """
    L{mountPlan}: parents first, covered children dropped.
    """

    def test_plan(self):
        accepted = [HostPath("/usr/lib/git-core/git", False),
                    HostPath("/usr/bin/ls", False),
                    HostPath("/usr/lib/git-core", True),
                    HostPath("/usr/lib/git-core-extra", False),
                    HostPath("/usr/share/perl/5", True),
                    HostPath("/usr/share", True),
                    HostPath("/etc/hosts", False)]
        self.assertEqual(mountPlan(accepted), [
            BindMount("/etc/hosts", "/etc/hosts", False),
            BindMount("/usr/bin/ls", "/usr/bin/ls", False),
            BindMount("/usr/lib/git-core", "/usr/lib/git-core", True),
            BindMount("/usr/lib/git-core-extra", "/usr/lib/git-core-extra",
                      False),
            BindMount("/usr/share", "/usr/share", True)])

    def test_parentsFirst(self):
        accepted = [HostPath("/usr/lib/a/b/c", False),
                    HostPath("/usr/lib/a-b", False),
                    HostPath("/usr/lib/a/b", True)]
        self.assertEqual([m.source for m in mountPlan(accepted)],
                         ["/usr/lib/a/b", "/usr/lib/a-b"])


class HostPathTests(SynchronousTestCase):
    """
    L{checkHostPath} on this host's real files: no symlink, no untrusted
    component.
    """

    def test_realFile(self):
        self.assertEqual(checkHostPath("/usr/bin/env"),
                         HostPath("/usr/bin/env", False))
        self.assertEqual(checkHostPath("/usr/lib"), HostPath("/usr/lib", True))

    def test_symlinkComponent(self):
        if not os.path.islink("/bin"):
            self.fail("the suite runs on Debian 12, where /bin is usrmerge's "
                      "symlink to usr/bin; this host has none")
        with self.assertRaises(RefusedEntry) as caught:
            checkHostPath("/bin/sh")
        self.assertIn("/bin is a symlink", str(caught.exception))

    def test_symlinkLast(self):
        real = os.path.realpath("/usr/bin/awk")
        if real == "/usr/bin/awk":
            self.fail("the suite runs on Debian 12, where /usr/bin/awk is "
                      "the alternatives' symlink; here it is not")
        self.assertRaises(RefusedEntry, checkHostPath, "/usr/bin/awk")

    def test_missing(self):
        self.assertRaises(MissingEntry, checkHostPath,
                          "/usr/bin/no-such-program-here")

    def test_notFileOrDirectory(self):
        # /dev is refused by name; a FIFO under /opt by its kind.
        directory = self.optDirectory()
        os.mkfifo(directory + "/fifo")
        with self.assertRaises(RefusedEntry) as caught:
            checkHostPath(directory + "/fifo")
        self.assertIn("neither a regular file nor a directory",
                      str(caught.exception))

    def optDirectory(self):
        harness.isolated(self)
        directory = tempfile.mkdtemp(prefix="jt-bindlist-", dir="/opt")
        self.addCleanup(shutil.rmtree, directory, True)
        os.chmod(directory, 0o755)
        return directory

    def test_untrustedComponent(self):
        directory = self.optDirectory()
        os.mkdir(directory + "/app")
        with open(directory + "/app/tool", "w") as f:
            f.write("x")
        checkHostPath(directory + "/app/tool")
        os.chmod(directory + "/app", 0o777)
        with self.assertRaises(RefusedEntry) as caught:
            checkHostPath(directory + "/app/tool")
        self.assertIn("writable by group or others", str(caught.exception))
        os.chmod(directory + "/app", 0o755)
        os.chown(directory + "/app/tool", 1000, 1000)
        with self.assertRaises(RefusedEntry) as caught:
            checkHostPath(directory + "/app/tool")
        self.assertIn("not owned by root", str(caught.exception))

    def test_openHostPath(self):
        fd = openHostPath("/usr/bin/env")
        try:
            self.assertEqual(os.fstat(fd).st_ino, os.stat("/usr/bin/env").st_ino)
        finally:
            os.close(fd)

    def test_checkEntries(self):
        checked = checkEntries([(2, "/usr/bin/env"), (3, "/proc/1"),
                                (4, "/usr/bin/nonexistent-x"),
                                (5, "/usr/bin/env")])
        self.assertEqual(checked.accepted, [HostPath("/usr/bin/env", False)])
        self.assertEqual([r.path for r in checked.refused], ["/proc/1"])
        self.assertEqual([m.path for m in checked.missing],
                         ["/usr/bin/nonexistent-x"])
        self.assertEqual(checked.lines["/proc/1"], 3)


class ReadTests(SynchronousTestCase):
    """
    L{readBindList} and L{openMountPoint} in a real jail directory.
    """

    def setUp(self):
        self.jail = harness.jailParent(self).child("jail").path
        os.makedirs(self.jail + "/etc/jailkit")
        self.list = self.jail + "/" + bindlist.LIST
        with open(self.list, "wb") as f:
            f.write(b"/usr/bin/env\n")
        self.root = os.open(self.jail, os.O_PATH | os.O_DIRECTORY)
        self.addCleanup(os.close, self.root)

    def refused(self, words):
        with self.assertRaises(BindListError) as caught:
            readBindList(self.root)
        self.assertIn(words, str(caught.exception))

    def test_read(self):
        self.assertEqual(readBindList(self.root), b"/usr/bin/env\n")
        self.assertTrue(hasBindList(self.jail))

    def test_noList(self):
        os.unlink(self.list)
        self.assertIsNone(readBindList(self.root))
        self.assertFalse(hasBindList(self.jail))

    def test_writable(self):
        os.chmod(self.list, 0o664)
        self.refused("writable by group or others")

    def test_notRootOwned(self):
        os.chown(self.list, 1000, 0)
        self.refused("not owned by root")

    def test_writableDirectory(self):
        os.chmod(self.jail + "/etc/jailkit", 0o777)
        self.refused("/etc/jailkit is writable by group or others")

    def test_symlinkedList(self):
        os.rename(self.list, self.jail + "/etc/other")
        os.symlink("../other", self.list)
        self.refused("is a symlink")

    def test_symlinkedDirectory(self):
        os.rename(self.jail + "/etc/jailkit", self.jail + "/jk")
        os.symlink("../jk", self.jail + "/etc/jailkit")
        self.refused("/etc/jailkit is a symlink")

    def test_symlinkToHost(self):
        """
        A jail whose etc is a symlink to the host's is not taken for a jail
        without binds, and nothing of the host's is read.
        """
        shutil.rmtree(self.jail + "/etc")
        os.symlink("/etc", self.jail + "/etc")
        self.assertTrue(hasBindList(self.jail))
        self.refused("/etc is a symlink")

    def test_loadPlan(self):
        with open(self.list, "wb") as f:
            f.write(b"/usr/bin/env\n/usr/lib/x/../y\n/usr/bin/no-such-x\n")
        plan, checked = bindlist.loadPlan(Jail(self.jail))
        self.assertEqual(plan, [BindMount("/usr/bin/env", "/usr/bin/env",
                                          False)])
        self.assertEqual(len(checked.refused), 1)
        self.assertEqual(len(checked.missing), 1)

    def test_mountPoint(self):
        os.makedirs(self.jail + "/usr/bin")
        os.makedirs(self.jail + "/usr/lib/git-core")
        open(self.jail + "/usr/bin/env", "w").close()
        env = BindMount("/usr/bin/env", "/usr/bin/env", False)
        core = BindMount("/usr/lib/git-core", "/usr/lib/git-core", True)
        os.close(openMountPoint(self.root, env))
        os.close(openMountPoint(self.root, core))
        self.assertRaises(BindListError, openMountPoint, self.root,
                          env._replace(directory=True))
        self.assertRaises(BindListError, openMountPoint, self.root,
                          core._replace(directory=False))
        os.chown(self.jail + "/usr/bin/env", 1000, 1000)
        with self.assertRaises(BindListError) as caught:
            openMountPoint(self.root, env)
        self.assertIn("not owned by root", str(caught.exception))
        os.unlink(self.jail + "/usr/bin/env")
        os.symlink("/etc/shadow", self.jail + "/usr/bin/env")
        with self.assertRaises(BindListError) as caught:
            openMountPoint(self.root, env)
        self.assertIn("is a symlink", str(caught.exception))
        os.chmod(self.jail + "/usr/lib", 0o777)
        with self.assertRaises(BindListError) as caught:
            openMountPoint(self.root, core)
        self.assertIn("/usr/lib is writable", str(caught.exception))


class BoundViewTests(SynchronousTestCase):
    """
    L{bindlist.BoundView}: lookups in a bind jail as its binds will show
    it, before any mount is made.
    """

    def setUp(self):
        base = os.path.abspath(self.mktemp())
        self.jail = os.path.join(base, "jail")
        self.host = os.path.join(base, "host")
        # The jail's own tree: an empty mount point for a bound directory
        # and one for a bound file, and a file of its own.
        for d in ("opt/tools", "usr/bin", "etc"):
            os.makedirs(os.path.join(self.jail, d))
        open(os.path.join(self.jail, "usr/bin/bound"), "w").close()
        with open(os.path.join(self.jail, "usr/bin/own"), "w") as f:
            f.write("own")
        # The host sources.
        os.makedirs(os.path.join(self.host, "tools/sub"))
        for name in ("tools/prog", "tools/sub/deep", "file"):
            with open(os.path.join(self.host, name), "w") as f:
                f.write(name)
        links = {"rel": "prog", "abs": "/usr/bin/own", "up": "../../usr/bin/own",
                 "out": "../../../../../../etc/passwd", "self": "self",
                 "through": "/opt/tools/sub/deep"}
        for name, target in links.items():
            os.symlink(target, os.path.join(self.host, "tools", name))
        mounts = [
            (bindlist.BindMount(os.path.join(self.host, "tools"),
                                "/opt/tools", True),
             os.path.join(self.host, "tools")),
            (bindlist.BindMount(os.path.join(self.host, "file"),
                                "/usr/bin/bound", False),
             os.path.join(self.host, "file"))]
        pins = []
        for mount, source in mounts:
            pins.append((mount, os.open(source, os.O_PATH),
                         os.open(self.jail + mount.target, os.O_PATH)))
        self.rootFd = os.open(self.jail, os.O_PATH | os.O_DIRECTORY)
        prepared = bindlist.PreparedBinds([m for m, _ in mounts], None,
                                          pins, self.rootFd)
        self.addCleanup(prepared.close)
        self.view = bindlist.BoundView(Jail(self.jail), prepared)

    def identity(self, inner):
        fd = self.view.open(inner)
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        return st.st_dev, st.st_ino

    def hostIdentity(self, path):
        st = os.stat(path)
        return st.st_dev, st.st_ino

    def test_insideBoundDirectory(self):
        """
        A file inside a bound directory is the host's, at any depth, and
        the bound directory itself is the host's.
        """
        self.assertEqual(self.identity("/opt/tools/prog"),
                         self.hostIdentity(self.host + "/tools/prog"))
        self.assertEqual(self.identity("/opt/tools/sub/deep"),
                         self.hostIdentity(self.host + "/tools/sub/deep"))
        self.assertEqual(self.identity("/opt/tools"),
                         self.hostIdentity(self.host + "/tools"))
        # Without the view the mount point is empty.
        self.assertRaises(FileNotFoundError, Jail(self.jail).open,
                          "/opt/tools/prog", os.O_PATH)

    def test_boundFile(self):
        self.assertEqual(self.identity("/usr/bin/bound"),
                         self.hostIdentity(self.host + "/file"))
        error = self.assertRaises(OSError, self.view.open,
                                  "/usr/bin/bound/x")
        self.assertEqual(error.errno, errno.ENOTDIR)

    def test_jailOwnTree(self):
        self.assertEqual(self.identity("/usr/bin/own"),
                         self.hostIdentity(self.jail + "/usr/bin/own"))

    def test_symlinksResolveInsideTheJail(self):
        """
        Symlinks in a bound tree resolve as they will inside the jail: a
        relative one in the host directory, an absolute one or C{..} from
        the jail's root, into the jail's own tree or back through a bind;
        C{..} never climbs out of the jail.
        """
        prog = self.hostIdentity(self.host + "/tools/prog")
        own = self.hostIdentity(self.jail + "/usr/bin/own")
        self.assertEqual(self.identity("/opt/tools/rel"), prog)
        self.assertEqual(self.identity("/opt/tools/abs"), own)
        self.assertEqual(self.identity("/opt/tools/up"), own)
        self.assertEqual(self.identity("/opt/tools/through"),
                         self.hostIdentity(self.host + "/tools/sub/deep"))
        self.assertEqual(self.identity("/opt/tools/sub/../prog"), prog)
        # ../../.. from /opt/tools stops at the jail's root: its /etc has
        # no passwd, and the host's is never reached.
        self.assertRaises(FileNotFoundError, self.view.open,
                          "/opt/tools/out")
        error = self.assertRaises(OSError, self.view.open, "/opt/tools/self")
        self.assertEqual(error.errno, errno.ELOOP)

    def test_deepPathsCostNothingMore(self):
        """
        Below the deepest mount the overlay is not asked at all (a deep
        path the account made costs what it costs in the jail's own tree).
        """
        asked = []

        class Recording(dict):
            def get(self, key, default=None):
                asked.append(key.count("/"))
                return dict.get(self, key, default)
        self.view._sources = Recording(self.view._sources)
        deep = "/".join(["d"] * 50)
        os.makedirs(os.path.join(self.jail, "home", deep))
        self.assertEqual(self.identity(f"/home/{deep}"), self.hostIdentity(
            os.path.join(self.jail, "home", deep)))
        # The deepest mount is /usr/bin/bound.
        self.assertEqual(max(asked), 3)

    def test_nothingCreatedThroughOverlay(self):
        self.assertRaises(ValueError, Jail(self.jail).openParent,
                          "/opt/tools/new/x", create=True,
                          overlay=self.view._mounted)

    def test_lookupsOnly(self):
        self.assertRaises(ValueError, self.view.open, "/opt/tools/prog",
                          os.O_RDONLY)
