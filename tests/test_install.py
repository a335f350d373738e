"""
Tests for L{jailtwist.install}: the copy engine (hostile jails, setuid
stripping, devices, atomic writes), accounts, jk_init.ini recipes and
jk_update's comparison.
"""

import os
import stat
import subprocess
import sys

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from jailtwist.config import ConfigError, parseIni
from jailtwist.install import (Change, InitConfig, InstallError, Installer,
                               JailUpdate, copyAccounts, expandEntry,
                               mountProc)
from jailtwist.jail import Jail
from tests import harness


class _JailTestCase(SynchronousTestCase):
    """
    A fresh jail with a safe parent, and a host directory next to it (same
    file system, so hardlinks work) for source files.
    """

    def setUp(self):
        self.parent = harness.jailParent(self)
        self.root = self.parent.child("jail")
        self.root.makedirs()
        os.chmod(self.root.path, 0o755)
        self.jail = Jail(self.root.path)
        self.host = self.parent.child("host")
        self.host.makedirs()
        self.actions = []

    def installer(self, **kw):
        installer = Installer(
            self.jail, report=lambda a, p: self.actions.append((a, p)), **kw)
        self.addCleanup(installer.close)
        return installer

    def hostFile(self, name, content=b"data", mode=0o644):
        path = self.host.child(name)
        path.setContent(content)
        os.chmod(path.path, mode)
        return path

    def inJail(self, hostPath):
        return FilePath(self.root.path + getattr(hostPath, "path", hostPath))


class CopyTests(_JailTestCase):
    """
    Files, directories, symlinks and the usrmerge layout.
    """

    def test_file(self):
        source = self.hostFile("f", b"hello", 0o640)
        os.chown(source.path, 1234, 4321)
        self.installer().install(source.path)
        copy = self.inJail(source)
        st = os.lstat(copy.path)
        self.assertEqual(copy.getContent(), b"hello")
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o640)
        self.assertEqual((st.st_uid, st.st_gid), (1234, 4321))
        self.assertEqual(st.st_mtime_ns, os.lstat(source.path).st_mtime_ns)
        self.assertNotEqual(st.st_ino, os.lstat(source.path).st_ino)
        # Parent directories mirror the host's, owned by root.
        parent = os.lstat(self.inJail(self.host).path)
        self.assertEqual((parent.st_uid, parent.st_gid), (0, 0))

    def test_existingKeptUnlessForced(self):
        source = self.hostFile("f", b"new")
        copy = self.inJail(source)
        copy.parent().makedirs()
        copy.setContent(b"old")
        self.installer().install(source.path)
        self.assertEqual(copy.getContent(), b"old")
        self.assertIn(("exists", source.path), self.actions)
        self.installer(force=True).install(source.path)
        self.assertEqual(copy.getContent(), b"new")

    def test_directoryAndSymlinks(self):
        tree = self.host.child("tree")
        tree.child("sub").makedirs()
        tree.child("sub").child("x").setContent(b"x")
        os.symlink("sub/x", tree.child("rel").path)
        os.symlink(tree.child("sub").path, tree.child("abs").path)
        self.installer().install(tree.path)
        copy = self.inJail(tree)
        self.assertEqual(copy.child("sub").child("x").getContent(), b"x")
        self.assertEqual(os.readlink(copy.child("rel").path), "sub/x")
        self.assertEqual(os.readlink(copy.child("abs").path),
                         tree.child("sub").path)

    def test_directoryHoldingTheJail(self):
        """
        Copying a directory that contains the jail skips the jail.
        """
        self.hostFile("f")
        self.installer().install(self.parent.path)
        self.assertEqual(self.inJail(self.host).child("f").getContent(),
                         b"data")
        self.assertFalse(self.inJail(self.root).exists())

    def test_symlinkChain(self):
        """
        A symlink's target is copied too, through a chain of links.
        """
        target = self.hostFile("target")
        os.symlink("target", self.host.child("one").path)
        os.symlink(self.host.child("one").path, self.host.child("two").path)
        self.installer().install(self.host.child("two").path)
        self.assertEqual(self.inJail(target).getContent(), b"data")
        self.assertTrue(os.path.islink(self.inJail(
            self.host.child("one")).path))

    def test_symlinkedDirectoryOnHost(self):
        """
        A file reached through a host directory symlink (usrmerge's
        /lib -> usr/lib) gets the same symlink in the jail.
        """
        real = self.host.child("usr").child("lib")
        real.makedirs()
        real.child("libx.so").setContent(b"lib")
        os.symlink("usr/lib", self.host.child("lib").path)
        self.installer().install(self.host.child("lib").child("libx.so").path)
        link = self.inJail(self.host.child("lib"))
        self.assertEqual(os.readlink(link.path), "usr/lib")
        self.assertEqual(self.inJail(real).child("libx.so").getContent(),
                         b"lib")

    def test_usrmerge(self):
        """
        /bin/true from this host lands as usr/bin/true with the host's
        usrmerge links, and the loader and libraries come along.
        """
        installer = self.installer()
        installer.install("/bin/true")
        for link in ("/bin", "/lib", "/lib64"):
            if os.path.islink(link):
                self.assertEqual(os.readlink(self.root.path + link),
                                 os.readlink(link))
        result = subprocess.run(["chroot", self.root.path, "/bin/true"])
        self.assertEqual(result.returncode, 0)

    def test_missing(self):
        installer = self.installer()
        self.assertFalse(installer.install(self.host.child("nope").path))
        self.assertEqual([m.path for m in installer.missing],
                         [self.host.child("nope").path])

    def test_expandEntry(self):
        self.hostFile("a1")
        self.hostFile("a2")
        self.assertEqual(expandEntry(self.host.path + "/a*"),
                         [self.host.child("a1").path,
                          self.host.child("a2").path])
        self.assertEqual(expandEntry(self.host.path + "/b*"), [])
        self.assertEqual(expandEntry("sh", "/nonexistent:/usr/bin"),
                         ["/usr/bin/sh"])
        self.assertEqual(expandEntry("no-such-program-here"), [])


class HostileJailTests(_JailTestCase):
    """
    Symlinks and C{..} planted in the jail never make a write land outside
    it.
    """

    def setUp(self):
        super().setUp()
        self.outside = self.parent.child("outside")
        self.outside.makedirs()
        self.source = self.hostFile("f", b"payload")

    def assertOutsideUntouched(self):
        self.assertEqual(os.listdir(self.outside.path), [])

    def test_absoluteDirectoryLink(self):
        """
        The jail's copy of the source's directory is a symlink to a host
        directory: the file goes to that path inside the jail.
        """
        jailHost = self.inJail(self.host)
        jailHost.parent().makedirs()
        os.symlink(self.outside.path, jailHost.path)
        self.installer().install(self.source.path)
        self.assertOutsideUntouched()
        self.assertEqual(self.inJail(self.outside).child("f").getContent(),
                         b"payload")

    def test_relativeDotDotLink(self):
        jailHost = self.inJail(self.host)
        jailHost.parent().makedirs()
        os.symlink("../" * 12 + self.outside.path.lstrip("/"), jailHost.path)
        self.installer().install(self.source.path)
        self.assertOutsideUntouched()
        self.assertEqual(self.inJail(self.outside).child("f").getContent(),
                         b"payload")

    def test_topLevelLink(self):
        """
        The first component of the path is planted (C{mnt -> /}).
        """
        top = self.root.child(self.parent.path.split("/")[1])
        os.symlink("/", top.path)
        self.installer().install(self.source.path)
        self.assertOutsideUntouched()
        self.assertEqual(self.source.getContent(), b"payload")
        self.assertTrue(os.path.isdir(self.root.child(
            self.parent.path.split("/")[2]).path))

    def test_finalNameLink(self):
        """
        A symlink planted at the destination name is replaced (with -f),
        never written through.
        """
        victim = self.outside.child("victim")
        victim.setContent(b"precious")
        copy = self.inJail(self.source)
        copy.parent().makedirs()
        os.symlink(victim.path, copy.path)
        self.installer(force=True).install(self.source.path)
        self.assertEqual(victim.getContent(), b"precious")
        self.assertFalse(os.path.islink(copy.path))
        self.assertEqual(copy.getContent(), b"payload")

    def test_fileWhereDirectoryExpected(self):
        jailHost = self.inJail(self.host)
        jailHost.parent().makedirs()
        jailHost.setContent(b"")
        error = self.assertRaises(InstallError, self.installer().install,
                                  self.source.path)
        self.assertIn("is not a directory in the jail", str(error))


class PrivilegeTests(_JailTestCase):
    """
    setuid/setgid bits and file capabilities never survive unless asked
    for, and privileged files are never hardlinked.
    """

    def test_stripped(self):
        for name, mode in (("suid", 0o4755), ("sgid", 0o2711),
                           ("both", 0o6755)):
            source = self.hostFile(name, mode=mode)
            self.installer().install(source.path)
            self.assertEqual(
                stat.S_IMODE(os.lstat(self.inJail(source).path).st_mode),
                mode & 0o777)
            self.assertIn(("strip", source.path), self.actions)

    def test_kept(self):
        source = self.hostFile("suid", mode=0o4755)
        self.installer().install(source.path, keepSetuid=True)
        self.assertEqual(
            stat.S_IMODE(os.lstat(self.inJail(source).path).st_mode), 0o4755)

    def test_hardlink(self):
        plain = self.hostFile("plain", mode=0o755)
        suid = self.hostFile("suid", mode=0o4755)
        installer = self.installer(hardlink=True)
        installer.install(plain.path)
        installer.install(suid.path)
        self.assertEqual(os.lstat(self.inJail(plain).path).st_ino,
                         os.lstat(plain.path).st_ino)
        copy = os.lstat(self.inJail(suid).path)
        self.assertNotEqual(copy.st_ino, os.lstat(suid.path).st_ino)
        self.assertEqual(stat.S_IMODE(copy.st_mode), 0o755)
        self.assertEqual(stat.S_IMODE(os.lstat(suid.path).st_mode), 0o4755)

    def test_hardlinkWithKeepSetuid(self):
        """
        Even when setuid is to be kept, the jail gets a copy, not the
        host's inode.
        """
        suid = self.hostFile("suid", mode=0o4755)
        self.installer(hardlink=True).install(suid.path, keepSetuid=True)
        copy = os.lstat(self.inJail(suid).path)
        self.assertNotEqual(copy.st_ino, os.lstat(suid.path).st_ino)
        self.assertEqual(stat.S_IMODE(copy.st_mode), 0o4755)

    def test_capabilities(self):
        """
        A file capability (ping's cap_net_raw) is dropped by a plain copy,
        kept by keepSetuid, and prevents hardlinking.
        """
        value = b"\x01\x00\x00\x02\x00\x20\x00\x00" + b"\x00" * 12
        source = self.hostFile("capped", mode=0o755)
        os.setxattr(source.path, "security.capability", value)
        self.installer(hardlink=True).install(source.path)
        copy = self.inJail(source).path
        self.assertNotEqual(os.lstat(copy).st_ino,
                            os.lstat(source.path).st_ino)
        self.assertRaises(OSError, os.getxattr, copy, "security.capability")
        self.installer(force=True).install(source.path, keepSetuid=True)
        self.assertEqual(os.getxattr(copy, "security.capability"), value)


class NodeTests(_JailTestCase):
    """
    Device nodes keep their full numbers (jailkit's mknod fails for minor
    256 and up).
    """

    def test_largeNumbers(self):
        nodes = [("c1", stat.S_IFCHR, os.makedev(200, 300)),
                 ("c2", stat.S_IFCHR, os.makedev(4095, 70000)),
                 ("b1", stat.S_IFBLK, os.makedev(259, 1048575))]
        installer = self.installer()
        for name, kind, rdev in nodes:
            path = self.host.child(name).path
            os.mknod(path, kind | 0o620, rdev)
            os.chmod(path, 0o620)
            installer.install(path)
        for name, kind, rdev in nodes:
            st = os.lstat(self.inJail(self.host.child(name)).path)
            self.assertEqual(stat.S_IFMT(st.st_mode), kind)
            self.assertEqual(st.st_rdev, rdev)
            self.assertEqual(stat.S_IMODE(st.st_mode), 0o620)

    def test_hostDevice(self):
        self.installer().install("/dev/null")
        st = os.lstat(self.root.child("dev").child("null").path)
        self.assertEqual(st.st_rdev, os.lstat("/dev/null").st_rdev)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o666)


class AtomicTests(_JailTestCase):
    """
    A failed copy (a full disk) leaves no partial file and no temporary.
    """

    def setUp(self):
        super().setUp()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0755",
                        "jailtwist-small", self.root.path], check=True)
        self.addCleanup(subprocess.run, ["umount", "-l", self.root.path])
        self.big = self.hostFile("big", os.urandom(1024 * 1024))
        self.small = self.hostFile("small", b"small")

    def test_diskFull(self):
        installer = self.installer()
        installer.install(self.small.path)
        error = self.assertRaises(InstallError, installer.install,
                                  self.big.path)
        self.assertIn("No space left on device", str(error))
        self.assertFalse(self.inJail(self.big).exists())
        self.assertEqual(sorted(os.listdir(self.inJail(self.host).path)),
                         ["small"])

    def test_diskFullKeepsOld(self):
        copy = self.inJail(self.big)
        copy.parent().makedirs()
        copy.setContent(b"old version")
        error = self.assertRaises(InstallError,
                                  self.installer(force=True).install,
                                  self.big.path)
        self.assertIn("No space left on device", str(error))
        self.assertEqual(copy.getContent(), b"old version")
        self.assertEqual(os.listdir(copy.parent().path), ["big"])


class AccountTests(_JailTestCase):
    """
    L{copyAccounts} copies only the named entries, once.
    """

    def setUp(self):
        super().setUp()
        self.etc = self.parent.child("etc")
        self.etc.makedirs()
        self.etc.child("passwd").setContent(
            b"root:x:0:0:root:/root:/bin/bash\n"
            b"daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
            b"u1:x:5001:5001::/srv/j/./home/u1:/usr/sbin/jk_chrootsh\n"
            b"secret:x:5002:5002::/home/secret:/bin/bash\n")
        self.etc.child("group").setContent(
            b"root:x:0:\nwww:x:33:u1,secret\nu1:x:5001:\n"
            b"secret:x:5002:\n")

    def read(self, name):
        return self.root.child("etc").child(name).getContent().decode()

    def test_copy(self):
        notFound = copyAccounts(self.jail, ["root", "5001", "nobody-here"],
                                ["www"], self.etc.path)
        self.assertEqual(notFound, ["nobody-here"])
        self.assertEqual(self.read("passwd"),
                         "root:x:0:0:root:/root:/bin/bash\n"
                         "u1:x:5001:5001::/home/u1:/usr/sbin/jk_chrootsh\n")
        self.assertEqual(self.read("group"),
                         "www:x:33:u1\nroot:x:0:\nu1:x:5001:\n")
        # Again: nothing is duplicated.
        copyAccounts(self.jail, ["root", "u1"], ["www", "0"], self.etc.path)
        self.assertEqual(self.read("passwd").count("\n"), 2)
        self.assertEqual(self.read("group").count("\n"), 3)

    def test_planted(self):
        """
        The jail's etc/passwd being a symlink to a host file is refused,
        the host file untouched.
        """
        victim = self.parent.child("victim")
        victim.setContent(b"precious\n")
        self.root.child("etc").makedirs()
        os.symlink(victim.path, self.root.child("etc").child("passwd").path)
        self.assertRaises(Exception, copyAccounts, self.jail, ["root"], [],
                          self.etc.path)
        self.assertEqual(victim.getContent(), b"precious\n")


class ProcTests(_JailTestCase):
    """
    C{need_proc}: a proc mount on JAIL/proc, recorded in fstab once.
    """

    def test_mountProc(self):
        fstab = self.parent.child("fstab")
        fstab.setContent(b"# fstab\n/dev/vda / ext4 defaults 0 1")
        os.chmod(fstab.path, 0o640)
        self.root.child("proc").makedirs()
        target = self.root.child("proc").path
        self.addCleanup(subprocess.run, ["umount", "-l", target])
        notes = mountProc(self.jail, fstab.path)
        self.assertEqual(notes, [
            f"added a proc mount on {target} to {fstab.path}",
            f"mounted proc on {target}"])
        self.assertTrue(self.root.child("proc").child("self").exists())
        self.assertEqual(mountProc(self.jail, fstab.path), [])
        self.assertEqual(fstab.getContent().decode(),
                         f"# fstab\n/dev/vda / ext4 defaults 0 1\n"
                         f"proc\t{target}\tproc\tdefaults\t0\t0\n")
        self.assertEqual(stat.S_IMODE(os.stat(fstab.path).st_mode), 0o640)


class InitConfigTests(SynchronousTestCase):
    """
    L{InitConfig}: includes, cycles, C{[DEFAULT]} and key checks.
    """

    def config(self, text):
        return InitConfig(parseIni(text, "test.ini"))

    def test_plan(self):
        config = self.config(
            "[a]\nincludesections = b, c\n[b]\nincludesections = c, a\n"
            "[c]\npaths = /x\n[d]\nincludesections = nothere\n")
        self.assertEqual(config.plan(["a"]), (["c", "b", "a"], []))
        self.assertEqual(config.plan(["d", "c"]),
                         (["d", "c"], [("nothere", "d")]))

    def test_default(self):
        config = self.config("[DEFAULT]\ndevices = /dev/null\n"
                             "[a]\npaths = /x\n")
        self.assertEqual(config.sections(), ["a"])
        self.assertEqual(config.section("a").getList("devices"),
                         ["/dev/null"])
        self.assertIsNone(config.section("DEFAULT"))

    def test_unknownKey(self):
        config = self.config("[a]\npath = /x\n")
        error = self.assertRaises(ConfigError, config.section, "a")
        self.assertIn("[a] path", str(error))

    def test_shipped(self):
        """
        The installed jk_init.ini has every section the issue names, and
        every section is valid.
        """
        shipped = FilePath(sys.prefix).preauthChild(
            "share/jailtwist/etc/jailkit/jk_init.ini")
        config = InitConfig(parseIni(shipped.getContent().decode(),
                                     shipped.path))
        for name in ("uidbasics", "netbasics", "logbasics", "jk_lsh",
                     "limitedshell", "basicshell", "interactiveshell",
                     "extendedshell", "sftp", "scp", "ssh", "rsync", "git",
                     "procmail", "terminfo", "editors", "netutils", "ping"):
            self.assertIn(name, config.sections())
        for name in config.sections():
            section = config.section(name)
            self.assertEqual(config.plan([name])[1], [], name)
            self.assertTrue(section.getString("comment"), name)
        lsh = config.section("jk_lsh")
        self.assertEqual(lsh.getList("paths"), ["/etc/jailkit/jk_lsh.ini"])


class UpdateTests(_JailTestCase):
    """
    L{JailUpdate} finds outdated, deprecated and missing files and leaves
    the jail's own files alone.
    """

    def setUp(self):
        super().setUp()
        self.a = self.hostFile("a", b"version 1")
        self.b = self.hostFile("b", b"b")
        self.gone = self.hostFile("gone", b"gone")
        installer = self.installer()
        for f in (self.a, self.b, self.gone):
            installer.install(f.path)
        installer.close()
        self.scanned = [self.host.path]

    def test_upToDate(self):
        self.assertEqual(JailUpdate(self.jail).scan(self.scanned), [])

    def test_changes(self):
        self.a.setContent(b"version 2")
        self.gone.remove()
        self.inJail(self.b).setContent(b"B")
        junk = self.inJail(self.host.child("junkdir"))
        junk.makedirs()
        junk.child("junk").setContent(b"")
        owned = self.inJail(self.host.child("owned"))
        owned.setContent(b"a jail user's file")
        os.chown(owned.path, 5001, 5001)
        changes = JailUpdate(self.jail).scan(self.scanned)
        host = self.host.path
        self.assertEqual(changes, [
            Change("update", host + "/a"), Change("update", host + "/b"),
            Change("remove", host + "/gone"),
            Change("remove", host + "/junkdir/junk"),
            Change("remove", host + "/junkdir")])
        JailUpdate(self.jail).apply(changes)
        self.assertEqual(self.inJail(self.a).getContent(), b"version 2")
        self.assertEqual(self.inJail(self.b).getContent(), b"b")
        self.assertFalse(self.inJail(self.gone).exists())
        self.assertFalse(junk.exists())
        self.assertEqual(owned.getContent(), b"a jail user's file")
        self.assertEqual(JailUpdate(self.jail).scan(self.scanned), [])

    def test_skips(self):
        self.gone.remove()
        self.assertEqual(JailUpdate(self.jail, skips=[
            self.root.path + self.gone.path]).scan(self.scanned), [])

    def test_missingLibrary(self):
        installer = self.installer()
        installer.install("/usr/bin/ls")
        installer.close()
        library = [p for p in installer.resolver.resolve("/usr/bin/ls").paths
                   if "libselinux" in p][0]
        canonical = self.jail.realPath(library)
        os.unlink(self.root.path + canonical)
        changes = JailUpdate(self.jail).scan(["/usr/bin"])
        self.assertIn(Change("add", library), changes)
        JailUpdate(self.jail).apply(changes)
        self.assertTrue(os.path.exists(self.root.path + canonical))
