"""
Tests for L{jailtwist.config}: jailkit ini files and their errors.
"""

from twisted.trial.unittest import SynchronousTestCase

from jailtwist.config import ConfigError, appendSection, parseIni, readIni


class ParseTests(SynchronousTestCase):
    def test_sections(self):
        ini = parseIni("[a]\nx = 1\n# comment\n[DEFAULT]\ny = 2\n", "f.ini")
        self.assertEqual(ini.sections(), ["a", "DEFAULT"])
        self.assertEqual(ini.section("a").keys(), ["x"])
        self.assertEqual(ini.section("DEFAULT").getString("y"), "2")
        self.assertIsNone(ini.section("nope"))

    def assertError(self, text, *fragments):
        e = self.assertRaises(ConfigError, parseIni, text, "f.ini")
        for fragment in fragments:
            self.assertIn(fragment, str(e))
        self.assertNotIn("\n", str(e))
        return e

    def test_garbage(self):
        self.assertError("[a]\nx = 1\nthis is not ini\n", "f.ini", "line 3")

    def test_noSection(self):
        self.assertError("x = 1\n", "f.ini", "before the first [section]")

    def test_duplicateSection(self):
        self.assertError("[a]\n[a]\n", "[a]", "twice")

    def test_duplicateKey(self):
        self.assertError("[a]\nx=1\nx=2\n", "[a] x", "twice")

    def test_typedGetters(self):
        section = parseIni("[s]\nn = 12\nf = 2.5\nb = no\nl = a, b,,c\n"
                           "bad = x\nneg = -3\n", "f.ini").section("s")
        self.assertEqual(section.getInt("n", 0), 12)
        self.assertEqual(section.getFloat("f", 0), 2.5)
        self.assertIs(section.getBool("b", True), False)
        self.assertEqual(section.getList("l"), ["a", "b", "c"])
        self.assertEqual(section.getInt("missing", 7), 7)
        e = self.assertRaises(ConfigError, section.getInt, "bad", 0)
        self.assertEqual(str(e), "f.ini: [s] bad: 'x' is not an integer")
        e = self.assertRaises(ConfigError, section.getInt, "neg", 0, 0)
        self.assertIn("below the minimum", str(e))
        self.assertRaises(ConfigError, section.getBool, "bad")
        self.assertRaises(ConfigError, section.getFloat, "bad", 0.0)

    def test_nanRefused(self):
        section = parseIni("[s]\nf = nan\n").section("s")
        self.assertRaises(ConfigError, section.getFloat, "f", 0.0)

    def test_unknownKey(self):
        section = parseIni("[s]\nbsae = 1\n", "f.ini").section("s")
        e = self.assertRaises(ConfigError, section.checkKeys, {"base"})
        self.assertIn("f.ini: [s] bsae: unknown key", str(e))


class FileTests(SynchronousTestCase):
    def test_missingFile(self):
        e = self.assertRaises(ConfigError, readIni, "/nonexistent/x.ini")
        self.assertIn("/nonexistent/x.ini: cannot read", str(e))

    def test_binaryFile(self):
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"[a]\nx=\xff\xfe\n")
        self.assertRaises(ConfigError, readIni, path)

    def test_appendOnce(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("[/a/dev/log]\nbase = 1\n")
        items = [("base", "512"), ("peak", "2048"), ("interval", "10.0")]
        self.assertTrue(appendSection(path, "/b/dev/log", items))
        self.assertFalse(appendSection(path, "/b/dev/log", items))
        ini = readIni(path)
        self.assertEqual(ini.sections(), ["/a/dev/log", "/b/dev/log"])
        self.assertEqual(ini.section("/b/dev/log").getInt("peak", 0), 2048)


class SyntaxTests(SynchronousTestCase):
    """
    What configparser accepted in jailkit's files is read the same way.
    """

    def test_continuationLines(self):
        ini = parseIni("[s]\npaths = /bin/a,\n  /bin/b,\n\t/bin/c\nx = 1\n")
        self.assertEqual(ini.section("s").getList("paths"),
                         ["/bin/a", "/bin/b", "/bin/c"])
        self.assertEqual(ini.section("s").getString("x"), "1")

    def test_commentsAndCase(self):
        ini = parseIni("# top\n; also\n[Group sftp]\n  # indented comment\n"
                       "Paths = /x = y\nempty =\n")
        section = ini.section("Group sftp")
        self.assertEqual(section.getString("paths"), "/x = y")
        self.assertEqual(section.getString("empty"), "")

    def test_sectionWithSpaces(self):
        ini = parseIni("[ group web ]\n")
        self.assertEqual(ini.sections(), ["group web"])

    def test_badHeader(self):
        e = self.assertRaises(ConfigError, parseIni, "[open\n", "f.ini")
        self.assertEqual(str(e), "f.ini: line 1: cannot parse [open")

    def test_keyWithoutValue(self):
        e = self.assertRaises(ConfigError, parseIni, "[s]\njustaword\n",
                              "f.ini")
        self.assertEqual(str(e), "f.ini: line 2: cannot parse justaword")

    def test_shippedFilesParse(self):
        """
        Every shipped ini file parses (and gives the same sections and keys
        configparser gives).
        """
        import configparser
        import glob
        import os
        import tests
        top = os.path.dirname(os.path.dirname(os.path.realpath(
            tests.__file__)))
        files = glob.glob(os.path.join(top, "etc", "*", "*.ini"))
        self.assertTrue(files)
        for name in files:
            with open(name) as f:
                text = f.read()
            ours = parseIni(text, name)
            theirs = configparser.RawConfigParser(
                default_section="\0", delimiters=("=",),
                comment_prefixes=("#", ";"), strict=True)
            theirs.read_string(text)
            self.assertEqual(ours.sections(), theirs.sections(), name)
            for section in ours:
                self.assertEqual(
                    {k: section.getString(k) for k in section.keys()},
                    dict(theirs.items(section.name)), name)
