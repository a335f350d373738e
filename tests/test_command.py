"""
Tests for L{jailtwist.command}: how console scripts end.
"""

import os
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from jailtwist.command import CommandLine, UsageError, runCommand
from jailtwist.errors import JailtwistError


class RunCommandTests(SynchronousTestCase):
    def runMain(self, main):
        code = [None]
        stderr = []
        self.patch(sys, "stderr", type("E", (), {
            "write": lambda self, text: stderr.append(text),
            "flush": lambda self: None})())
        try:
            runCommand(main, [], name="jk_x")
        except SystemExit as e:
            code[0] = e.code
        return code[0], "".join(stderr)

    def test_success(self):
        self.assertEqual(self.runMain(lambda argv: None), (0, ""))

    def test_status(self):
        self.assertEqual(self.runMain(lambda argv: 3), (3, ""))

    def test_error(self):
        def main(argv):
            raise JailtwistError("no such jail /x: create it first", 7)
        self.assertEqual(self.runMain(main),
                         (7, "jk_x: no such jail /x: create it first\n"))

    def test_usageError(self):
        from twisted.python import usage

        def main(argv):
            raise usage.UsageError("option --bogus not recognized")
        status, text = self.runMain(main)
        self.assertEqual(status, 2)
        self.assertEqual(text, "jk_x: option --bogus not recognized "
                               "(see 'jk_x --help')\n")

    def test_brokenPipe(self):
        """
        C{cmd --help | head} ends quietly, without a traceback.
        """
        code = ("import sys\n"
                "from jailtwist.command import runCommand\n"
                "def main(argv):\n"
                "    for i in range(100000):\n"
                "        print('line', i)\n"
                "runCommand(main, [], name='jk_x')\n")
        result = subprocess.run(
            f"{sys.executable} -c \"{code}\" | head -1", shell=True,
            capture_output=True, text=True, timeout=60)
        self.assertEqual(result.stdout, "line 0\n")
        self.assertEqual(result.stderr, "")


class CommandLineTests(SynchronousTestCase):
    """
    L{CommandLine} parses and explains a command line exactly as the
    C{twisted.python.usage.Options} it replaced did: same values, same
    errors, same help (but for the version line).
    """

    def setUp(self):
        from twisted.python import usage

        self.line = CommandLine(
            synopsis="jk_x -j JAIL [-- ARGS...]",
            longdesc="Do something with a jail, at length, so that the "
                     "description has to be wrapped over more than one line "
                     "of the help text.",
            flags=[("pid", None, "own pid namespace"),
                   ("plain", None, "ignore the config file"),
                   ("wide", "w", "do not shorten")],
            parameters=[("jail", "j", None, "the jail directory"),
                        ("pidfile", "p", None, "write the pid here, a long "
                         "description that wraps in the second column"),
                        ("host-address", None, None, "an address"),
                        ("hostname", None, None, "a name"),
                        ("state-dir", None, "/run/x", "the state")],
            arguments=True)

        class Options(usage.Options):
            synopsis = self.line.synopsis
            longdesc = self.line.longdesc
            optFlags = [list(f) for f in self.line.flags[2:]]
            optParameters = [list(p) for p in self.line.parameters]

            def parseArgs(self, *args):
                self["args"] = list(args)

            def opt_version(self):
                """
                Display the jailtwist version and exit.
                """

        self.Options = Options

    def twisted(self, argv):
        from twisted.python import usage
        options = self.Options()
        try:
            options.parseOptions(argv)
        except usage.UsageError as e:
            return str(e)
        return ({k: (bool(v) if k in ("pid", "plain", "wide") else v)
                 for k, v in options.items() if k != "args"},
                options["args"])

    def ours(self, argv):
        try:
            values, args = self.line.parse(argv)
        except UsageError as e:
            self.assertEqual(e.exitCode, 2)
            return str(e)
        del values["help"], values["version"]
        return values, args

    def test_sameAsTwisted(self):
        for argv in [
                [], ["-j", "/a"], ["-j/a", "-w"], ["-wj", "/a"], ["-wj/a"],
                ["--jail=/a", "--jail", "/b"], ["--ja", "/a"],
                ["--pid"], ["--pi"], ["--pidf", "x"], ["--pidfile"],
                ["--host", "x"], ["--hostn", "x"], ["--hostname=a=b"],
                ["--pid=1"], ["--plain", "--", "--pid"], ["-j", "/a", "x",
                                                          "--pid"],
                ["-"], ["-", "--pid"], ["--bogus"], ["-z"], ["-j"],
                ["--state_dir=x"], ["--state-dir="], ["--=x"], ["-w", "-"],
                ["--", "-j"]]:
            self.assertEqual(self.ours(argv), self.twisted(argv), argv)

    def test_noArguments(self):
        self.line.arguments = False
        self.assertEqual(self.ours(["x"]), "Wrong number of arguments.")

    def test_help(self):
        for width in ("80", "50"):
            self.patch(os, "environ", dict(os.environ, COLUMNS=width))
            self.assertEqual(self.line.helpText(), str(self.Options()))

    def test_helpAndVersionExit(self):
        out = []
        self.patch(sys, "stdout", type("O", (), {
            "write": lambda self, text: out.append(text)})())
        for option in ("--help", "--he", "--version"):
            with self.assertRaises(SystemExit) as caught:
                self.line.parse(["-j", "/a", option, "x", "--bogus"]
                                if option == "--version" else [option])
            self.assertEqual(caught.exception.code, 0)
        self.assertIn("Options:", out[0])
        self.assertIn("Options:", out[1])
        self.assertRegex(out[2], r"^jailtwist \d")

    def test_runCommandExplains(self):
        def main(argv):
            self.line.parse(["--bogus"])
        status, text = RunCommandTests.runMain(self, main)
        self.assertEqual((status, text), (2, "jk_x: option --bogus not "
                                             "recognized (see 'jk_x "
                                             "--help')\n"))
