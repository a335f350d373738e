"""
Tests for L{jailtwist.passwd}: parsing account files, the lckpwdf lock and
atomic replacement, including a real process killed in the middle of an
edit.
"""

import os
import signal
import subprocess
import sys
import textwrap

from twisted.trial.unittest import SynchronousTestCase

from jailtwist.passwd import (
    AccountError, AccountFiles, GroupEntry, PasswdEntry, PasswdLock,
    findEntry, parseGroup, parsePasswd, replaceFile)

PASSWD = """\
root:x:0:0:root:/root:/bin/bash
# a comment
+nisuser::::::
broken line
u1:x:1001:1001:User One,,,:/j/./home/u1:/usr/sbin/jk_chrootsh
"""


class ParseTests(SynchronousTestCase):

    def test_passwd(self):
        entries = parsePasswd(PASSWD)
        self.assertEqual([e.name for e in entries], ["root", "u1"])
        u1 = findEntry(entries, name="u1")
        self.assertEqual((u1.uid, u1.gid, u1.gecos, u1.home, u1.shell),
                         (1001, 1001, "User One,,,", "/j/./home/u1",
                          "/usr/sbin/jk_chrootsh"))
        self.assertEqual(u1.toLine(), PASSWD.splitlines()[-1] + "\n")
        self.assertEqual(findEntry(entries, id=0).name, "root")
        self.assertIsNone(findEntry(entries, name="u1", id=0))

    def test_group(self):
        groups = parseGroup("g:x:10:a,b\nempty:x:11:\nbad:x:q:\n")
        self.assertEqual([(g.name, g.gid, g.members) for g in groups],
                         [("g", 10, ["a", "b"]), ("empty", 11, [])])
        self.assertEqual(groups[0].toLine(), "g:x:10:a,b\n")

    def test_fieldsChecked(self):
        """
        A field that would break the line format is refused.
        """
        self.assertRaises(AccountError, PasswdEntry, "a:b", "x", 1, 1, "",
                          "/h", "/bin/sh")
        self.assertRaises(AccountError, PasswdEntry, "a", "x", 1, 1, "",
                          "/h\nroot::0:0::/:/bin/sh", "/bin/sh")
        self.assertRaises(AccountError, GroupEntry, "g", "x", 1, ["a,b"])

    def test_replace(self):
        entry = parsePasswd(PASSWD)[0].replace(shell="/bin/sh")
        self.assertEqual(entry.toLine(), "root:x:0:0:root:/root:/bin/sh\n")


class EditTests(SynchronousTestCase):

    def setUp(self):
        self.etc = os.path.abspath(self.mktemp())
        os.mkdir(self.etc)
        with open(os.path.join(self.etc, "passwd"), "w") as f:
            f.write(PASSWD)
        os.chmod(os.path.join(self.etc, "passwd"), 0o640)
        self.files = AccountFiles.openPath(self.etc)
        self.addCleanup(self.files.close)

    def read(self, name="passwd"):
        with open(os.path.join(self.etc, name)) as f:
            return f.read()

    def test_edit(self):
        """
        Entries are changed, other lines kept verbatim, the mode kept.
        """
        with self.files as files:
            files.editPasswd(lambda e: e.replace(home="/home/u1")
                             if e.name == "u1" else e)
        self.assertEqual(self.read(), PASSWD.replace("/j/./home/u1",
                                                     "/home/u1"))
        self.assertEqual(os.stat(os.path.join(self.etc, "passwd")).st_mode
                         & 0o777, 0o640)
        self.assertEqual(sorted(os.listdir(self.etc)),
                         [".pwd.lock", "passwd"])

    def test_append(self):
        with self.files as files:
            files.appendGroup([GroupEntry("g", "x", 5, ["u1"])])
            self.assertEqual([g.name for g in files.group()], ["g"])
        self.assertEqual(self.read("group"), "g:x:5:u1\n")

    def test_symlinkRefused(self):
        """
        An account file that is a symlink is neither followed nor replaced.
        """
        os.symlink("/etc/hostname", os.path.join(self.etc, "group"))
        with self.files as files:
            self.assertRaises(AccountError, files.group)
            self.assertRaises(AccountError, replaceFile, files.directory,
                              "group", b"x")
        self.assertTrue(os.path.islink(os.path.join(self.etc, "group")))

    def test_lockExcludes(self):
        """
        While another process holds the lock, taking it times out with a
        message saying what to do.
        """
        child = self.holder("lock")
        fd = os.open(self.etc, os.O_PATH | os.O_DIRECTORY)
        self.addCleanup(os.close, fd)
        e = self.assertRaises(AccountError,
                              PasswdLock(fd, timeout=0.2).__enter__)
        self.assertIn("locked by another program", str(e))
        child.kill()
        child.wait()
        with PasswdLock(fd, timeout=5):
            pass

    def holder(self, stage):
        """
        Start a process that edits passwd in C{self.etc} and stops, holding
        the lock, at C{stage}: C{"lock"} right after taking the lock,
        C{"rename"} after writing and flushing the new file, just before
        renaming it into place.
        """
        code = textwrap.dedent(f"""
            import os, sys
            from jailtwist import passwd
            def stop(*args, **kw):
                sys.stdout.write("ready\\n"); sys.stdout.flush()
                sys.stdin.read()
            if {stage!r} == "rename":
                os.rename = stop
            files = passwd.AccountFiles.openPath({self.etc!r})
            with files:
                if {stage!r} == "lock":
                    stop()
                files.editPasswd(lambda e: e.replace(shell="/bin/false"))
        """)
        child = subprocess.Popen([sys.executable, "-c", code],
                                 stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, cwd="/")
        self.addCleanup(self.reap, child)
        self.assertEqual(child.stdout.readline(), b"ready\n")
        return child

    def reap(self, child):
        if child.poll() is None:
            child.kill()
        child.wait()
        child.stdin.close()
        child.stdout.close()

    def test_killedMidEdit(self):
        """
        An edit killed with SIGKILL after writing the new file but before
        the rename leaves the old file intact; the next edit removes the
        leftover and succeeds.
        """
        child = self.holder("rename")
        leftovers = [n for n in os.listdir(self.etc) if "jailtwist" in n]
        self.assertEqual(len(leftovers), 1)
        with open(os.path.join(self.etc, leftovers[0])) as f:
            self.assertIn("/bin/false", f.read())
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        self.assertEqual(self.read(), PASSWD)
        with self.files as files:
            files.editPasswd(lambda e: e.replace(gecos="") if e.uid else e)
        self.assertEqual(sorted(os.listdir(self.etc)),
                         [".pwd.lock", "passwd"])
        self.assertIn("u1:x:1001:1001::/j/./home/u1", self.read())
