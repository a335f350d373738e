"""
Tests for the AppArmor profiles of the login commands
(C{etc/apparmor.d/jailtwist-login}), as bootstrap.sh installed them: the
venv's bin/ written in, every login command covered, and the file accepted
by an AppArmor parser that knows the C{userns} rule.
"""

import os
import re
import subprocess
import sys

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from tests import harness

LOGIN_COMMANDS = ("jk_chrootsh", "jk_lsh", "jk_uchroot", "jk_procmailwrapper")

#: Where bootstrap.sh unpacks Debian 13's parser when the system's own one
#: (Debian 12 ships AppArmor 3.0.8) predates the C{userns} rule.
UNPACKED_PARSER = "/var/cache/jailtwist/apparmor4/apparmor_parser"

_PROFILE = re.compile(r"^profile\s+(\S+)\s+(\S+)\s+flags=\(unconfined\)\s*\{",
                      re.MULTILINE)


def installedProfile():
    """
    @return: the rendered profile file of this venv.
    """
    return FilePath(sys.prefix).descendant(["etc", "apparmor.d",
                                            "jailtwist-login"])


def parser():
    """
    @return: the command line of an AppArmor parser that supports abi 4.0,
        or C{None}.
    """
    if os.path.exists("/etc/apparmor.d/abi/4.0"):
        return ["apparmor_parser"]
    if os.access(UNPACKED_PARSER, os.X_OK):
        return [UNPACKED_PARSER]
    return None


def parse(path):
    """
    Parse C{path} without loading it into the kernel or touching the cache.

    @return: the finished process.
    """
    command = parser()
    return subprocess.run(command + ["-Q", "-K", path], capture_output=True,
                          text=True, timeout=60)


class ProfileTests(SynchronousTestCase):
    """
    The installed profile file.
    """

    def setUp(self):
        self.profile = installedProfile()
        if not self.profile.exists():
            self.fail(f"{self.profile.path} is missing: bootstrap.sh install "
                      "renders it")
        self.text = self.profile.getContent().decode("utf-8")

    def test_everyLoginCommand(self):
        """
        Each login command has a profile that attaches to its real path in
        this venv (not a symlink, which AppArmor would never see), grants
        C{userns} and stays unconfined otherwise; nothing else is covered.
        """
        self.assertNotIn("@BIN@", self.text)
        found = {}
        for match in _PROFILE.finditer(self.text):
            name, attach = match.groups()
            found[os.path.basename(attach)] = (name, attach)
        self.assertEqual(sorted(found), sorted(LOGIN_COMMANDS))
        for command, (name, attach) in found.items():
            self.assertEqual(name, f"jailtwist-{command}")
            self.assertEqual(attach, harness.script(command))
            self.assertEqual(os.path.realpath(attach), attach)
            self.assertTrue(os.access(attach, os.X_OK), attach)
        bodies = re.findall(r"\{([^}]*)\}", self.text)
        self.assertEqual(len(bodies), len(LOGIN_COMMANDS))
        for body in bodies:
            rules = [line.strip() for line in body.splitlines()
                     if line.strip() and not line.strip().startswith(("#",
                                                                     "include"))]
            self.assertEqual(rules, ["userns,"])

    def test_parses(self):
        """
        An AppArmor 4 parser accepts the installed file as it is.
        """
        if parser() is None:
            self.fail("no AppArmor parser that knows the userns rule: "
                      "bootstrap.sh test unpacks one into "
                      f"{os.path.dirname(UNPACKED_PARSER)}")
        result = parse(self.profile.path)
        self.assertEqual(result.returncode, 0, result.stderr)

    def test_parserRefusesABrokenProfile(self):
        """
        The same parser refuses the file with its rule misspelt, so the
        check above can fail.
        """
        if parser() is None:
            self.fail("no AppArmor parser that knows the userns rule")
        broken = FilePath(self.mktemp())
        broken.setContent(self.text.replace("userns,", "usernz,",
                                            1).encode("utf-8"))
        result = parse(broken.path)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("syntax error", result.stderr)
