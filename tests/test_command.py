"""
Tests for L{jailtwist.command}: how console scripts end.
"""

import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from jailtwist.command import runCommand
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
