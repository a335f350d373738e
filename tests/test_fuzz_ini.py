"""
Property tests (hypothesis) for every ini file jailtwist reads: the reader
itself and each consumer (jk_socketd.ini, jk_lsh.ini, jk_chrootsh.ini,
jk_uchroot.ini, jk_init.ini, jk_check.ini, jk_chrootlaunch.ini and the
suite's jailtwist.ini).  Whatever the text, the outcome is settings or a
L{JailtwistError} with a clear one-line message: never a traceback.
"""

import os
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from jailtwist.config import ConfigError, IniFile, parseIni, readIni
from jailtwist.errors import JailtwistError

# Keep the suite fast: a modest number of examples (more with
# JAILTWIST_FUZZ_EXAMPLES), no deadline (the machine is shared).
FUZZ = settings(
    max_examples=int(os.environ.get("JAILTWIST_FUZZ_EXAMPLES", 100)),
    deadline=None, suppress_health_check=[HealthCheck.too_slow])

KNOWN_KEYS = [
    # jk_socketd.ini
    "base", "peak", "interval", "overflow", "mark",
    # jk_lsh.ini, jk_chrootsh.ini, jk_uchroot.ini
    "executables", "paths", "allow_word_expansion", "umask", "environment",
    "env", "relax_home_owner", "injail_shell", "skip_injail_passwd_check",
    "injail_login_shell", "unshare", "allowed_jails",
    # jk_init.ini
    "comment", "includesections", "libraries", "regularfiles", "devices",
    "emptydirs", "users", "groups", "need_logsocket", "directories",
    # jk_check.ini
    "ignorepatheverywhere", "ignorewritableforgroup",
    "ignoresetuidexecuteforuser",
    # jk_chrootlaunch.ini
    "isolate", "capabilities", "no_new_privs", "pid", "ipc", "uts", "fs",
    "net", "name",
    # jailtwist.ini
    "admin_group", "event_group", "enabled", "burst", "max_probes", "shell",
    "config", "syslog", "user",
]
SECTION_NAMES = ["DEFAULT", "/j/dev/log", "/srv/jail/dev/log", "control",
                 "probes", "jk_socketd", "alice", "group users",
                 "jail /srv/jail", "basicshell", "/srv/jail", "/", ".."]
VALUES = st.one_of(
    st.sampled_from(["0", "1", "-1", "511", "2048", "1e9", "1e999", "nan",
                     "inf", "0.01", "5.0", "yes", "no", "maybe", "block",
                     "drop", "web1", "a b", "/bin/sh", "/bin/sh, /bin/ls",
                     "net, ipc", "bogus", "", "0x10", "1_000", "\u00e9t\u00e9",
                     "default", "none", "CHOWN,KILL", "0022", "-0"]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                   blacklist_characters="\r\n\x0b\x0c"
                                   "\x1c\x1d\x1e\x85\u2028\u2029"),
            max_size=30))
NAMES = st.one_of(st.sampled_from(SECTION_NAMES),
                  st.text(alphabet="abc/ .[]=-_\t#;", min_size=0,
                          max_size=12))
KEYS = st.one_of(st.sampled_from(KNOWN_KEYS),
                 st.text(alphabet="abcdefgh_ =#;[", max_size=10))


@st.composite
def iniTexts(draw):
    """
    Text that looks like a jailkit ini file, with every kind of line
    (headers, keys, comments, continuations, junk) in any order.
    """
    lines = []
    for _ in range(draw(st.integers(0, 14))):
        kind = draw(st.sampled_from(["section", "key", "key", "key",
                                     "comment", "blank", "continuation",
                                     "junk"]))
        if kind == "section":
            lines.append(f"[{draw(NAMES)}]")
        elif kind == "key":
            spaces = draw(st.sampled_from(["", " ", "  "]))
            lines.append(f"{draw(KEYS)}{spaces}={spaces}{draw(VALUES)}")
        elif kind == "comment":
            lines.append(draw(st.sampled_from(["#", ";", "  #"]))
                         + draw(VALUES))
        elif kind == "blank":
            lines.append(draw(st.sampled_from(["", "   ", "\t"])))
        elif kind == "continuation":
            lines.append("  " + draw(VALUES))
        else:
            lines.append(draw(VALUES))
    return "\n".join(lines) + draw(st.sampled_from(["", "\n"]))


ANY_TEXT = st.one_of(iniTexts(), st.text(max_size=200))


def oneLine(testCase, error):
    """
    A clear error: a non-empty single line, and a L{JailtwistError}.
    """
    testCase.assertIsInstance(error, JailtwistError)
    message = str(error)
    testCase.assertTrue(message.strip(), repr(error))
    testCase.assertNotIn("\n", message)
    testCase.assertNotIn("Traceback", message)


class ReaderTests(SynchronousTestCase):
    @FUZZ
    @given(ANY_TEXT)
    def test_parse(self, text):
        """
        Any text parses or is refused naming the file and the line.
        """
        try:
            ini = parseIni(text, "/etc/jailkit/x.ini")
        except ConfigError as e:
            oneLine(self, e)
            self.assertIn("/etc/jailkit/x.ini", str(e))
            return
        self.assertIsInstance(ini, IniFile)
        for section in ini:
            for key in section.keys():
                # Typed getters either convert or raise a clear error.
                for getter in (section.getBool, section.getList,
                               lambda k: section.getInt(k, 0, 0, 10 ** 9),
                               lambda k: section.getFloat(k, 0.0, 0.01,
                                                          86400)):
                    try:
                        getter(key)
                    except ConfigError as e:
                        oneLine(self, e)

    @FUZZ
    @given(st.binary(max_size=200))
    def test_readBytes(self, data):
        """
        A file of any bytes (not UTF-8 included) is read or refused in one
        line.
        """
        fd, path = tempfile.mkstemp(suffix=".ini")
        self.addCleanup(os.unlink, path)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            readIni(path)
        except ConfigError as e:
            oneLine(self, e)


class ConsumerTests(SynchronousTestCase):
    """
    Each consumer of an ini file, fed whatever the reader accepts.
    """

    def consume(self, text, use):
        try:
            ini = parseIni(text, "/etc/jailkit/x.ini")
        except ConfigError as e:
            oneLine(self, e)
            return
        try:
            use(ini)
        except JailtwistError as e:
            oneLine(self, e)

    @FUZZ
    @given(ANY_TEXT)
    def test_socketd(self, text):
        from jailtwist.relay import settingsFromSection

        def use(ini):
            for section in ini:
                settings = settingsFromSection(section)
                self.assertTrue(0 < settings.base <= settings.peak)
                self.assertTrue(settings.interval > 0)
        self.consume(text, use)

    @FUZZ
    @given(ANY_TEXT)
    def test_lsh(self, text):
        from jailtwist.lsh import LshPolicy
        try:
            LshPolicy.fromText(text, "alice", "users", "/etc/jk_lsh.ini")
        except JailtwistError as e:
            oneLine(self, e)

    @FUZZ
    @given(ANY_TEXT)
    def test_chrootsh(self, text):
        from jailtwist.login import Account, ChrootshSettings, chooseSection
        account = Account("alice", 1000, 1000, "users", "/srv/jail/./home",
                          "/usr/sbin/jk_chrootsh")
        self.consume(text, lambda ini: ChrootshSettings(
            chooseSection(ini, account), ini, "/srv/jail"))

    @FUZZ
    @given(ANY_TEXT)
    def test_uchroot(self, text):
        from jailtwist.login import UCHROOT_KEYS

        def use(ini):
            for section in ini:
                section.checkKeys(UCHROOT_KEYS)
                section.getList("allowed_jails")
                section.getBool("skip_injail_passwd_check", False)
        self.consume(text, use)

    @FUZZ
    @given(ANY_TEXT)
    def test_init(self, text):
        from jailtwist.install import InitConfig

        def use(ini):
            config = InitConfig(ini)
            config.plan(config.sections())
        self.consume(text, use)

    @FUZZ
    @given(ANY_TEXT)
    def test_check(self, text):
        from jailtwist.audit import auditFor, auditsFromConfig

        def use(ini):
            auditsFromConfig(ini, passwd=lambda: [])
            auditFor("/srv/jail", ini, passwd=lambda: [])
        self.consume(text, use)

    @FUZZ
    @given(ANY_TEXT)
    def test_chrootlaunch(self, text):
        from jailtwist.tools.launch import isolationFor, parseOptions
        options = parseOptions(["-j", "/srv/jail", "-x", "/bin/true"])

        def use(ini):
            for section in ini:
                isolationFor(options, section)
        self.consume(text, use)

    @FUZZ
    @given(ANY_TEXT)
    def test_suite(self, text):
        from jailtwist.tap import jaildaemon
        from jailtwist.tap.suite import SOCKETD_KEYS

        def use(ini):
            jaildaemon.settingsFrom({}, ini)
            section = ini.section("jk_socketd")
            if section is not None:
                # Its own keys; the jk_socketd.ini it names is read as in
                # test_socketd.
                section.checkKeys(SOCKETD_KEYS)
                section.getBool("enabled", True)
        self.consume(text, use)
