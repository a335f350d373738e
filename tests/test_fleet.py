"""
Tests for L{jailtwist.fleet} (what the Ansible collection calls) and the
ini section edit it uses: removal refusals, check runs that change nothing,
and accounts already in place while logged in.
"""

import os
import pwd
import shutil
import subprocess
import sys

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from jailtwist import fleet
from jailtwist.config import ConfigError, parseIni, replaceSection
from jailtwist.errors import JailtwistError
from tests import harness

SHIPPED = FilePath(sys.prefix).preauthChild(
    "share/jailtwist/etc/jailkit/jk_init.ini").path


class ReplaceSectionTests(SynchronousTestCase):
    """
    L{replaceSection} sets one section and keeps the rest of the file.
    """

    def test_append(self):
        self.assertEqual(replaceSection("", "bob", [("executables", "/x")]),
                         "[bob]\nexecutables = /x\n")
        self.assertEqual(replaceSection("[a]\nk = 1", "bob", [("k", "2")]),
                         "[a]\nk = 1\n\n[bob]\nk = 2\n")

    def test_replace(self):
        """
        The section's own lines are replaced; comments and blank lines that
        lead into the next section stay with it.
        """
        text = ("# head\n[bob]\nexecutables = /old\numask = 022\n\n"
                "# the default\n[DEFAULT]\nexecutables = /d\n")
        new = replaceSection(text, "bob", [("executables", "/new")])
        self.assertEqual(new, "# head\n[bob]\nexecutables = /new\n\n"
                              "# the default\n[DEFAULT]\nexecutables = /d\n")
        self.assertEqual(parseIni(new).section("DEFAULT")
                         .getString("executables"), "/d")
        self.assertEqual(replaceSection(new, "bob",
                                        [("executables", "/new")]), new)

    def test_refused(self):
        """
        What would not read back as written is refused, as is a file that
        cannot be parsed.
        """
        self.assertRaises(ConfigError, replaceSection, "", "a]b", [])
        self.assertRaises(ConfigError, replaceSection, "", "bob",
                          [("paths", "/x\n[root]")])
        self.assertRaises(ConfigError, replaceSection, "", "bob",
                          [("a b", "/x")])
        self.assertRaises(ConfigError, replaceSection, "junk\n", "bob", [])


class RemoveJailTests(SynchronousTestCase):
    """
    L{fleet.removeJail} removes a jail only when nothing uses it, and never
    follows a symlink out of it.
    """

    def setUp(self):
        self.parent = harness.jailParent(self).path
        self.jail = self.parent + "/jail"
        outcome = fleet.ensureJail(self.jail, ["uidbasics"],
                                   configPath=SHIPPED)
        self.assertTrue(outcome.changed)

    def test_checkOnly(self):
        """
        A dry run says what would be removed and removes nothing; a second
        build changes nothing.
        """
        self.assertEqual(fleet.removeJail(self.jail, dryRun=True),
                         fleet.Outcome(True, [f"remove {self.jail}"]))
        self.assertTrue(os.path.isfile(self.jail + "/etc/passwd"))
        self.assertFalse(fleet.ensureJail(self.jail, ["uidbasics"],
                                          configPath=SHIPPED).changed)

    def test_symlinks(self):
        """
        A symlinked jail path is refused; symlinks inside the jail are
        removed, not followed.
        """
        outside = self.parent + "/outside"
        os.mkdir(outside)
        with open(outside + "/keep", "w") as f:
            f.write("keep\n")
        os.symlink(outside, self.jail + "/escape")
        os.symlink(self.jail, self.parent + "/link")
        error = self.assertRaises(JailtwistError, fleet.removeJail,
                                  self.parent + "/link")
        self.assertIn("is a symlink", str(error))
        self.assertTrue(fleet.removeJail(self.jail).changed)
        self.assertFalse(os.path.lexists(self.jail))
        self.assertTrue(os.path.isfile(outside + "/keep"))
        self.assertFalse(fleet.removeJail(self.jail).changed)

    def test_process(self):
        """
        A jail a process runs in is refused until it has stopped.
        """
        os.makedirs(self.jail + "/bin", exist_ok=True)
        shutil.copy("/bin/busybox", self.jail + "/bin/busybox")
        sleeper = subprocess.Popen(["chroot", self.jail, "/bin/busybox",
                                    "sleep", "60"])
        self.addCleanup(sleeper.wait)
        self.addCleanup(sleeper.kill)
        harness.waitFor(lambda: os.readlink(f"/proc/{sleeper.pid}/root")
                        == self.jail, what="the chroot")
        error = self.assertRaises(JailtwistError, fleet.removeJail,
                                  self.jail)
        self.assertIn(f"processes run in {self.jail} (pid {sleeper.pid})",
                      str(error))
        self.assertTrue(os.path.isfile(self.jail + "/bin/busybox"))
        sleeper.kill()
        sleeper.wait()
        self.assertTrue(fleet.removeJail(self.jail).changed)

    def test_mount(self):
        """
        Nothing is unmounted: a jail with a mount inside is refused.
        """
        os.makedirs(self.jail + "/proc", exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "jtfleet",
                        self.jail + "/proc"], check=True)
        self.addCleanup(subprocess.run, ["umount", self.jail + "/proc"])
        error = self.assertRaises(JailtwistError, fleet.removeJail,
                                  self.jail)
        self.assertIn(f"{self.jail}/proc is mounted in the jail", str(error))
        self.assertTrue(os.path.isfile(self.jail + "/etc/passwd"))

    def test_notAJail(self):
        """
        A directory without etc/passwd, or a system directory, is refused.
        """
        error = self.assertRaises(JailtwistError, fleet.removeJail,
                                  self.parent)
        self.assertIn("has no etc/passwd", str(error))
        error = self.assertRaises(JailtwistError, fleet.removeJail, "/usr")
        self.assertIn("system directory", str(error))


class JailedUserTests(SynchronousTestCase):
    """
    L{fleet.ensureJailedUser} on an account already in place.
    """

    def test_loggedIn(self):
        """
        An account already in place is accepted while it has processes; a
        change to it is refused, with nothing changed.
        """
        parent = harness.jailParent(self).path
        jail = parent + "/jail"
        fleet.ensureJail(jail, ["jk_lsh"], configPath=SHIPPED)
        os.makedirs(jail + "/bin", exist_ok=True)
        shutil.copy("/bin/busybox", jail + "/bin/sh")
        self.addCleanup(subprocess.run, ["userdel", "jtfleet"],
                        capture_output=True)
        self.assertTrue(fleet.ensureJailedUser("jtfleet", jail).changed)
        entry = pwd.getpwnam("jtfleet")
        sleeper = subprocess.Popen(["sleep", "60"], user=entry.pw_uid)
        self.addCleanup(sleeper.wait)
        self.addCleanup(sleeper.kill)
        self.assertEqual(fleet.ensureJailedUser("jtfleet", jail),
                         fleet.Outcome(False, []))
        error = self.assertRaises(JailtwistError, fleet.ensureJailedUser,
                                  "jtfleet", jail, shell="/bin/sh")
        self.assertIn("has running processes", str(error))
        error = self.assertRaises(JailtwistError, fleet.ensureJailedUser,
                                  "jtfleet", jail, shell="/bin/sh",
                                  dryRun=True)
        self.assertIn("has running processes", str(error))
        with open(jail + "/etc/passwd") as f:
            self.assertIn(":/home/jtfleet:/usr/sbin/jk_lsh\n", f.read())

    def test_policyDirectory(self):
        """
        The jk_lsh policy is not written into a directory the account
        could replace it in.
        """
        jail = harness.jailParent(self).path + "/jail"
        fleet.ensureJail(jail, ["jk_lsh"], configPath=SHIPPED)
        os.chmod(jail + "/etc/jailkit", 0o775)
        with open(jail + "/etc/jailkit/jk_lsh.ini", "rb") as f:
            before = f.read()
        error = self.assertRaises(
            JailtwistError, fleet.ensureJailedUser, "jtfleet", jail,
            lsh=[("executables", "/usr/bin/scp")], dryRun=True)
        self.assertIn(f"{jail}/etc/jailkit is not owned by root or is "
                      f"writable by group or others", str(error))
        with open(jail + "/etc/jailkit/jk_lsh.ini", "rb") as f:
            self.assertEqual(f.read(), before)
