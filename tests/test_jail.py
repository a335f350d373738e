"""
Tests for L{jailtwist.jail}: jailkit's safety checks and the jail-rooted
path resolution every tool uses to touch files inside a jail.
"""

import errno
import os

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from jailtwist.errors import JailtwistError
from jailtwist.jail import Jail, UnsafeJail
from tests import harness


def _tree(base, dirs=(), files=(), links=()):
    for d in dirs:
        os.makedirs(os.path.join(base, d), exist_ok=True)
    for f, content in files:
        with open(os.path.join(base, f), "wb") as out:
            out.write(content)
    for name, target in links:
        os.symlink(target, os.path.join(base, name))


class JailPathTests(SynchronousTestCase):
    """
    L{Jail} construction.
    """

    def test_normalised(self):
        jail = Jail("/srv//jails/./a/")
        self.assertEqual(jail.path, FilePath("/srv/jails/a"))
        self.assertEqual(Jail(FilePath("/srv/a")), Jail(b"/srv/a"))

    def test_relative(self):
        error = self.assertRaises(JailtwistError, Jail, "srv/a")
        self.assertIn("not an absolute path", str(error))

    def test_child(self):
        jail = Jail("/srv/a")
        self.assertEqual(jail.child("/etc/../../../etc/passwd"),
                         FilePath("/srv/a/etc/passwd"))
        self.assertEqual(jail.child("/"), FilePath("/srv/a"))


class ResolveTests(SynchronousTestCase):
    """
    L{Jail.openParent}, L{Jail.open} and L{Jail.readFile} resolve inside
    the jail only.
    """

    def setUp(self):
        base = FilePath(self.mktemp())
        base.makedirs()
        self.outside = base.child("outside")
        self.outside.makedirs()
        self.outside.child("secret").setContent(b"host secret")
        self.root = base.child("jail")
        _tree(self.root.path,
              dirs=["usr/lib", "etc/jailkit", "real"],
              files=[("usr/lib/libx.so", b"in jail"),
                     ("etc/passwd", b"root:x:0:0::/:/bin/sh\n"),
                     ("real/secret", b"jail secret")],
              links=[("lib", "usr/lib"),
                     ("abs", "/usr/lib"),
                     ("escape", "../outside"),
                     ("escapeAbs", self.outside.path),
                     ("loop", "loop"),
                     ("etc/jailkit/passwd", "../../../../etc/passwd")])
        self.jail = Jail(self.root.path)

    def test_followsUsrmergeLink(self):
        self.assertEqual(self.jail.readFile("/lib/libx.so"), b"in jail")
        self.assertEqual(self.jail.readFile("abs/libx.so"), b"in jail")

    def test_dotDotStopsAtRoot(self):
        self.assertEqual(self.jail.readFile("/../../../etc/passwd"),
                         b"root:x:0:0::/:/bin/sh\n")
        self.assertEqual(self.jail.readFile("etc/jailkit/passwd"),
                         b"root:x:0:0::/:/bin/sh\n")

    def test_relativeEscapeStaysInside(self):
        """
        C{escape -> ../outside} from the jail root means C{/outside} inside
        the jail, which does not exist: never the host's directory.
        """
        self.assertRaises(FileNotFoundError, self.jail.readFile,
                          "escape/secret")

    def test_absoluteEscapeStaysInside(self):
        error = self.assertRaises(OSError, self.jail.readFile,
                                  "escapeAbs/secret")
        self.assertEqual(error.errno, errno.ENOENT)
        # Plant the same path inside the jail: that is what is read.
        os.makedirs(self.root.path + self.outside.path)
        FilePath(self.root.path + self.outside.path).child(
            "secret").setContent(b"jail copy")
        self.assertEqual(self.jail.readFile("escapeAbs/secret"), b"jail copy")

    def test_loop(self):
        error = self.assertRaises(OSError, self.jail.readFile, "loop/x")
        self.assertEqual(error.errno, errno.ELOOP)
        error = self.assertRaises(OSError, self.jail.readFile, "loop")
        self.assertEqual(error.errno, errno.ELOOP)

    def test_noFollowLast(self):
        error = self.assertRaises(OSError, self.jail.open, "lib",
                                  followLast=False)
        self.assertEqual(error.errno, errno.ELOOP)

    def test_createWritesInsideOnly(self):
        """
        Creating C{escapeAbs/new/file} makes the directories inside the
        jail, never under the host directory the symlink names.
        """
        dirFd, name = self.jail.openParent("escapeAbs/new/file", create=True)
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644,
                         dir_fd=dirFd)
            os.write(fd, b"x")
            os.close(fd)
        finally:
            os.close(dirFd)
        self.assertFalse(self.outside.child("new").exists())
        self.assertEqual(
            FilePath(self.root.path + self.outside.path).child("new")
            .child("file").getContent(), b"x")

    def test_rootIsNotAFile(self):
        error = self.assertRaises(OSError, self.jail.openParent, "/")
        self.assertEqual(error.errno, errno.EISDIR)
        error = self.assertRaises(OSError, self.jail.openParent, "etc/..")
        self.assertEqual(error.errno, errno.EISDIR)

    def test_openRootRefusesSymlink(self):
        link = FilePath(self.mktemp())
        os.symlink(self.root.path, link.path)
        error = self.assertRaises(JailtwistError, Jail(link.path).openRoot)
        self.assertIn("symlink", str(error))


class SafetyTests(SynchronousTestCase):
    """
    L{Jail.checkSafe} in both of jailkit's flavours.
    """

    def setUp(self):
        self.parent = harness.jailParent(self)
        self.root = self.parent.child("jail")
        _tree(self.root.path, dirs=["usr/bin", "usr/lib", "etc", "dev"],
              links=[("bin", "usr/bin"), ("lib", "usr/lib")])
        os.chmod(self.root.path, 0o755)
        self.jail = Jail(self.root.path)

    def test_safe(self):
        self.jail.checkSafe()
        self.jail.checkSafe(parents=False)

    def test_missing(self):
        missing = Jail(self.parent.child("nope").path)
        missing.checkSafe(missingOk=True)
        error = self.assertRaises(UnsafeJail, missing.checkSafe)
        self.assertIn("does not exist", str(error))

    def test_underTmp(self):
        error = self.assertRaises(UnsafeJail,
                                  Jail("/tmp/some/jail").checkSafe,
                                  missingOk=True)
        self.assertEqual(error.path, "/tmp")
        self.assertEqual(str(error),
                         "/tmp is writable by group or others (a shared "
                         "directory like /tmp): build the jail elsewhere, "
                         "under directories owned by root that only root "
                         "can write (e.g. /srv/jails)")

    def test_parentOwner(self):
        os.chown(self.parent.path, 1000, 1000)
        error = self.assertRaises(UnsafeJail, self.jail.checkSafe)
        self.assertEqual(error.path, self.parent.path)
        self.assertIn("chown root:root", str(error))
        self.jail.checkSafe(parents=False)

    def test_jailWritable(self):
        os.chmod(self.root.path, 0o775)
        for parents in (True, False):
            error = self.assertRaises(UnsafeJail, self.jail.checkSafe,
                                      parents=parents)
            self.assertEqual(error.path, self.root.path)
            self.assertIn("writable by group or others", str(error))

    def test_jailSetgid(self):
        os.chmod(self.root.path, 0o2755)
        self.jail.checkSafe()
        error = self.assertRaises(UnsafeJail, self.jail.checkSafe,
                                  parents=False)
        self.assertIn("setuid or setgid", str(error))

    def test_jailSymlink(self):
        link = self.parent.child("link")
        os.symlink("jail", link.path)
        for parents in (True, False):
            error = self.assertRaises(UnsafeJail, Jail(link.path).checkSafe,
                                      parents=parents)
            self.assertIn("is a symlink", str(error))

    def test_subdirectory(self):
        os.chown(self.root.child("etc").path, 0, 1000)
        for parents in (True, False):
            error = self.assertRaises(UnsafeJail, self.jail.checkSafe,
                                      parents=parents)
            self.assertEqual(error.path, self.root.child("etc").path)

    def test_writableThroughUsrmergeLink(self):
        """
        C{bin -> usr/bin} is allowed; C{usr/bin} writable by others is found
        through it by the C check and through C{usr} by neither (jailkit
        checks one level), but C{usr} itself is.
        """
        os.chmod(self.root.child("usr").path, 0o777)
        for parents in (True, False):
            error = self.assertRaises(UnsafeJail, self.jail.checkSafe,
                                      parents=parents)
            self.assertEqual(error.path, self.root.child("usr").path)

    def test_usrmergeLinkOwner(self):
        os.lchown(self.root.child("bin").path, 1000, 1000)
        error = self.assertRaises(UnsafeJail, self.jail.checkSafe)
        self.assertIn("chown -h root:root", str(error))

    def test_absoluteSubdirectoryLink(self):
        """
        An absolute C{bin -> /usr/bin} is refused by the Python check (it is
        not a usrmerge link); the C check resolves it inside the jail.
        """
        self.root.child("bin").remove()
        os.symlink("/usr/bin", self.root.child("bin").path)
        error = self.assertRaises(UnsafeJail, self.jail.checkSafe)
        self.assertIn("usrmerge", str(error))
        self.jail.checkSafe(parents=False)
        os.chmod(self.root.child("usr").child("bin").path, 0o757)
        error = self.assertRaises(UnsafeJail, self.jail.checkSafe,
                                  parents=False)
        self.assertEqual(error.path, self.root.child("bin").path)

    def test_linkToHostNotFollowed(self):
        """
        The C check never follows a jail's symlink to the host: C{etc ->
        /tmp} resolves to the jail's own (missing) C{/tmp}.
        """
        self.root.child("etc").remove()
        os.symlink("/tmp", self.root.child("etc").path)
        self.jail.checkSafe(parents=False)


class RealPathTests(SynchronousTestCase):
    """
    L{Jail.realPath} is the path a jailed process ends up at.
    """

    def setUp(self):
        self.root = FilePath(self.mktemp())
        _tree(self.root.path, dirs=["usr/lib/x", "etc"],
              links=[("lib", "usr/lib"), ("lib64", "/usr/lib/../lib"),
                     ("etc/up", "../../..")])
        self.jail = Jail(self.root.path)

    def test_resolved(self):
        self.assertEqual(self.jail.realPath("/lib/x/libc.so"),
                         "/usr/lib/x/libc.so")
        self.assertEqual(self.jail.realPath("lib64/x"), "/usr/lib/x")
        self.assertEqual(self.jail.realPath("/etc/up/lib"), "/usr/lib")
        self.assertEqual(self.jail.realPath("/etc/up"), "/")
        self.assertEqual(self.jail.realPath("/"), "/")

    def test_missingDirectory(self):
        self.assertRaises(FileNotFoundError, self.jail.realPath,
                          "/nope/file")
