"""
Tests for L{jailtwist.lsh}: jk_lsh's section choice, word splitting and the
resolve-and-compare decision, against real files in a scratch root.
"""

import os

from twisted.trial.unittest import SynchronousTestCase

from jailtwist.jail import Jail
from jailtwist.lsh import (
    LshPolicy, LshRefusal, WordExpansionError, splitCommand)

CONFIG = """\
[DEFAULT]
paths = /usr/bin, /usr/lib/openssh
executables = /usr/bin/scp, /usr/lib/openssh/sftp-server

[group sftponly]
executables = /usr/lib/openssh/sftp-server
umask = 027

[alice]
paths = /usr/bin
executables = /usr/bin/rsync
allow_word_expansion = 1
environment = LANG=C.UTF-8, GREETING=a=b
"""


class SectionTests(SynchronousTestCase):
    """
    jailkit's precedence: user, then C{group NAME}, then DEFAULT; first only.
    """

    def test_user(self):
        policy = LshPolicy.fromText(CONFIG, "alice", "sftponly")
        self.assertEqual(policy.section, "alice")
        self.assertEqual(policy.executables, ["/usr/bin/rsync"])
        self.assertTrue(policy.allowWordExpansion)
        self.assertEqual(policy.environment,
                         {"LANG": "C.UTF-8", "GREETING": "a=b"})
        self.assertIsNone(policy.umask)

    def test_group(self):
        policy = LshPolicy.fromText(CONFIG, "bob", "sftponly")
        self.assertEqual(policy.section, "group sftponly")
        self.assertEqual(policy.umask, 0o27)
        self.assertEqual(policy.paths, [])

    def test_default(self):
        policy = LshPolicy.fromText(CONFIG, "bob", "users")
        self.assertEqual(policy.section, "DEFAULT")
        self.assertEqual(policy.paths, ["/usr/bin", "/usr/lib/openssh"])
        self.assertFalse(policy.allowWordExpansion)

    def test_exactName(self):
        """
        A user called C{alice2} does not match C{[alice]} (jailkit's strcmp).
        """
        policy = LshPolicy.fromText(CONFIG, "alice2", "users")
        self.assertEqual(policy.section, "DEFAULT")

    def test_noSection(self):
        e = self.assertRaises(LshRefusal, LshPolicy.fromText,
                              "[carol]\nexecutables = /bin/true\n",
                              "bob", "users")
        self.assertEqual(e.exitCode, 3)
        self.assertIn("did neither find a section 'bob', nor 'group users' "
                      "nor 'DEFAULT'", e.logMessage)

    def test_noExecutables(self):
        e = self.assertRaises(LshRefusal, LshPolicy.fromText,
                              "[DEFAULT]\npaths = /usr/bin\n", "bob", "users")
        self.assertEqual(e.exitCode, 5)
        self.assertEqual(e.logMessage,
                         "section DEFAULT does not have a key executables")

    def test_unknownKey(self):
        """
        A misspelt key (C{umaks}) is refused, not silently ignored.
        """
        e = self.assertRaises(
            LshRefusal, LshPolicy.fromText,
            "[DEFAULT]\nexecutables = /bin/true\numaks = 077\n", "b", "g")
        self.assertEqual(e.exitCode, 1)
        self.assertIn("umaks", e.logMessage)

    def test_badUmask(self):
        e = self.assertRaises(
            LshRefusal, LshPolicy.fromText,
            "[DEFAULT]\nexecutables = /bin/true\numask = 9\n", "b", "g")
        self.assertEqual(e.exitCode, 1)

    def test_relativeExecutable(self):
        e = self.assertRaises(
            LshRefusal, LshPolicy.fromText,
            "[DEFAULT]\nexecutables = scp\n", "b", "g")
        self.assertEqual(e.exitCode, 1)

    def test_unparsable(self):
        e = self.assertRaises(LshRefusal, LshPolicy.fromText,
                              "executables = /bin/true\n", "b", "g")
        self.assertEqual(e.exitCode, 1)


class SplitTests(SynchronousTestCase):
    """
    L{splitCommand} without and with C{allow_word_expansion}.
    """

    def test_spaces(self):
        self.assertEqual(splitCommand("scp  -t  /home/u ", False, {}),
                         ["scp", "-t", "/home/u"])

    def test_refusedWithoutExpansion(self):
        for command in ["scp -t $(id)", "scp -t `id`", "scp -t a;id",
                        "scp -t a|id", "scp -t a&", "scp -t 'a'",
                        "scp -t $HOME", "scp -t a\nid", "scp -t a>b"]:
            self.assertRaises(WordExpansionError, splitCommand, command,
                              False, {})

    def test_expansion(self):
        env = {"HOME": "/home/u", "X": "one two"}
        self.assertEqual(
            splitCommand("rsync 'a b' \"$HOME/c d\" ~/e $X ${X}x \\$", True,
                         env),
            ["rsync", "a b", "/home/u/c d", "/home/u/e", "one", "two",
             "one", "twox", "$"])
        self.assertEqual(splitCommand("echo \"\" $UNSET", True, {}),
                         ["echo", ""])

    def test_refusedWithExpansion(self):
        for command, reason in [
                ("ls $(id)", "command substitution"),
                ("ls \"`id`\"", "command substitution"),
                ("ls `id`", "command substitution"),
                ("ls $((1+1))", "arithmetic"),
                ("ls ; id", "illegal character"),
                ("ls | id", "illegal character"),
                ("ls 'a", "syntax"),
                ("ls *", "pathname expansion"),
                ("ls ~root", "~user"),
                ("ls ${X:-y}", "unsupported")]:
            e = self.assertRaises(WordExpansionError, splitCommand, command,
                                  True, {})
            self.assertIn(reason, str(e))

    def test_quotedSpecials(self):
        self.assertEqual(splitCommand("ls 'a;b' \"c|d\" e\\*", True, {}),
                         ["ls", "a;b", "c|d", "e*"])


class DecideTests(SynchronousTestCase):
    """
    L{LshPolicy.decide} resolves the program inside a root and compares
    files, not strings.
    """

    def setUp(self):
        self.root = self.mktemp()
        for d in ["usr/bin", "usr/lib/openssh", "bin", "home/u"]:
            os.makedirs(os.path.join(self.root, d))
        for f in ["usr/bin/scp", "usr/lib/openssh/sftp-server", "bin/bash",
                  "usr/bin/cat"]:
            with open(os.path.join(self.root, f), "w") as fh:
                fh.write("#!/bin/sh\n")
        self.jail = Jail(os.path.abspath(self.root))
        self.policy = LshPolicy.fromText(CONFIG, "bob", "users",
                                         "/j/etc/jailkit/jk_lsh.ini")

    def decide(self, command, policy=None):
        return (policy or self.policy).decide(
            ["jk_lsh", "-c", command], "bob", 1001, self.jail,
            {"HOME": "/home/u"})

    def refusal(self, command, policy=None):
        return self.assertRaises(LshRefusal, self.decide, command, policy)

    def test_pathLookup(self):
        """
        A bare name is looked up in C{paths}; argv[0] becomes the listed path.
        """
        command = self.decide("scp -t /home/u")
        self.assertEqual(command.argv, ["/usr/bin/scp", "-t", "/home/u"])
        self.assertEqual(command.executable, "/usr/bin/scp")
        self.assertEqual(command.describe(), "/usr/bin/scp -t /home/u")
        self.assertIsNone(command.umask)

    def test_absolute(self):
        command = self.decide("/usr/lib/openssh/sftp-server")
        self.assertEqual(command.argv, ["/usr/lib/openssh/sftp-server"])

    def test_interactive(self):
        for argv in [["-jk_lsh"], ["jk_lsh", "-l"], ["jk_lsh", "-c"]]:
            e = self.assertRaises(LshRefusal, self.policy.decide, argv,
                                  "bob", 1001, self.jail, {})
            self.assertEqual(e.exitCode, 7)
            self.assertIn("tried to get an interactive shell session", str(e))

    def test_notAllowed(self):
        e = self.refusal("cat /etc/passwd")
        self.assertEqual(e.exitCode, 4)
        self.assertEqual(
            e.logMessage,
            "WARNING: user bob (1001) tried to run 'cat /etc/passwd', which "
            "is not allowed according to /j/etc/jailkit/jk_lsh.ini")

    def test_notInJail(self):
        """
        A program that exists only on the host (here: anything under /usr/sbin)
        is not found and refused.
        """
        self.assertEqual(self.refusal("/usr/sbin/sshd").exitCode, 4)

    def test_dotDot(self):
        """
        An allowed directory followed by C{..} leading elsewhere is refused;
        C{..} leading back to the same file is the same file.
        """
        self.assertEqual(
            self.refusal("/usr/lib/openssh/../../../bin/bash").exitCode, 4)
        self.assertEqual(self.refusal("../../bin/bash").exitCode, 4)
        self.assertEqual(
            self.refusal("/usr/lib/openssh/sftp-server/../../../bin/bash")
            .exitCode, 4)
        command = self.decide("/usr/lib/../bin/scp -f x")
        self.assertEqual(command.argv, ["/usr/bin/scp", "-f", "x"])

    def test_symlinkOut(self):
        """
        A symlink planted at a name found through C{paths} is followed to
        what it names (inside the jail), and refused when that is not
        allowed.
        """
        os.symlink("/bin/bash", os.path.join(self.root, "home/u/scp"))
        policy = LshPolicy(["/usr/bin/scp"], ["/home/u", "/usr/bin"])
        self.assertEqual(self.refusal("scp -t .", policy).exitCode, 4)

    def test_symlinkStaysInJail(self):
        """
        An absolute symlink is resolved inside the root, never on the host:
        C{/home/u/x -> /usr/bin/scp} is the jail's scp.
        """
        os.symlink("/usr/bin/scp", os.path.join(self.root, "home/u/x"))
        command = self.decide("/home/u/x -t .")
        self.assertEqual(command.argv[0], "/usr/bin/scp")
        os.symlink("../../../../../../../../bin/bash",
                   os.path.join(self.root, "home/u/y"))
        self.assertEqual(self.refusal("/home/u/y").exitCode, 4)

    def test_hardlinkOfAllowed(self):
        """
        The same file under another name runs as the listed path.
        """
        os.link(os.path.join(self.root, "usr/bin/scp"),
                os.path.join(self.root, "home/u/myscp"))
        self.assertEqual(self.decide("/home/u/myscp -t .").argv[0],
                         "/usr/bin/scp")

    def test_listedButMissing(self):
        policy = LshPolicy(["/usr/bin/rsync"], ["/usr/bin"])
        e = self.refusal("rsync --server", policy)
        self.assertEqual(e.exitCode, 255)
        self.assertIn("check the permissions and libraries", e.logMessage)

    def test_directoryNotProgram(self):
        self.assertEqual(self.refusal("/usr/bin").exitCode, 4)

    def test_wordExpansion(self):
        e = self.refusal("scp -t $(id)")
        self.assertEqual(e.exitCode, 6)
        self.assertIn("illegal word expansion", e.logMessage)
        policy = LshPolicy(["/usr/bin/scp"], ["/usr/bin"],
                           allowWordExpansion=True)
        self.assertEqual(self.decide("scp -t \"$HOME/a b\"", policy).argv,
                         ["/usr/bin/scp", "-t", "/home/u/a b"])
        self.assertEqual(self.refusal("scp -t `id`", policy).exitCode, 6)

    def test_scpServerOnly(self):
        """
        scp runs only as the server end of a copy: options that make it
        start another program (C{-S}, C{-o}, C{-F}) or copy elsewhere are
        refused.
        """
        for command in ["scp -t .", "scp -v -r -p -t dir", "scp -prt dir",
                        "scp -f -- -name", "scp -d -t -- dir"]:
            self.assertEqual(self.decide(command).argv[0], "/usr/bin/scp")
        for command in ["scp -S /bin/bash x y:z", "scp -t -S /bin/bash x",
                        "scp -o ProxyCommand=x -t .", "scp -F cfg -f x",
                        "scp a b", "scp -t a b", "scp -tS /bin/bash x"]:
            e = self.refusal(command)
            self.assertEqual(e.exitCode, 4, command)
            self.assertIn("scp as a server takes one path"
                          if command == "scp -t a b"
                          else "scp runs only as a server (-t or -f)",
                          e.logMessage)

    def test_rsyncServerOnly(self):
        """
        rsync runs only as the server end an rsync client starts over ssh
        (C{rsync --server ...}).  As a client it would start any program of
        the jail as its remote shell (C{-e}, C{--rsh}), and as a daemon
        (C{--server --daemon}) it reads an rsyncd.conf from the home, whose
        C{pre-xfer exec} runs any command: both would turn an rsync-only
        account into a shell account.
        """
        with open(os.path.join(self.root, "usr/bin/rsync"), "w") as fh:
            fh.write("#!/bin/sh\n")
        policy = LshPolicy(["/usr/bin/rsync"], ["/usr/bin"])
        for command in ["rsync --server -vlogDtpre.iLsfxCIvu . dest",
                        "rsync --server --sender -vlogDtpre.iLsfxCIvu . src",
                        "rsync --server -e.LsfxCIvu --delete . d"]:
            self.assertEqual(self.decide(command, policy).argv[0],
                             "/usr/bin/rsync")
        for command in ["rsync -e/bin/bash sh:x .",
                        "rsync --rsh=/bin/bash h:x .",
                        "rsync -e /bin/bash h:x .", "rsync a b",
                        "rsync --sender --server . x",
                        "rsync --server --daemon .",
                        "rsync --server --daemon --config=/home/u/r.conf .",
                        "rsync --server --dae .",
                        "rsync --server --config=/home/u/r.conf ."]:
            e = self.refusal(command, policy)
            self.assertEqual(e.exitCode, 4, command)
            self.assertIn("rsync runs only as a server", e.logMessage)

    def test_logLineStaysOneLine(self):
        """
        A command with line breaks or escapes cannot forge log lines.
        """
        e = self.refusal("scp\nforged line")
        self.assertNotIn("\n", e.logMessage)
        self.assertIn("scp\\nforged line", e.logMessage)
        described = self.decide("scp -t \x1b[2J").describe()
        self.assertEqual(described, "/usr/bin/scp -t \\x1b[2J")
        e = self.assertRaises(LshRefusal, self.policy.decide,
                              ["jk_lsh", "a\nb"], "bob", 1001, self.jail, {})
        self.assertNotIn("\n", e.logMessage)

    def test_empty(self):
        self.assertEqual(self.refusal("   ").exitCode, 4)

    def test_environmentAndUmask(self):
        policy = LshPolicy(["/usr/bin/cat"], ["/usr/bin"], True, 0o77,
                           {"X": "y z"})
        command = self.decide("cat $X", policy)
        self.assertEqual(command.argv, ["/usr/bin/cat", "y", "z"])
        self.assertEqual(command.environment, {"X": "y z"})
        self.assertEqual(command.umask, 0o77)
