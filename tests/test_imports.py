"""
What the installed one-shot commands import before they do their work: the
import set is guarded here so that a later change cannot bring Twisted (a
quarter of a second on the reactor's path, ~90 ms for usage.Options alone)
back onto a login or a launch.

Each command is run as installed -- its console script, with the flags of its
first line -- under a small driver that replaces C{os.exec*} and the
process's end with a dump of C{sys.modules}: the real start-up path, all the
way to just before the program it starts is executed.  The logins run as an
unprivileged account in a real jail, the launches as root in a busybox jail.
"""

import os
import shutil
import subprocess

from twisted.trial.unittest import SynchronousTestCase

from tests import harness
from tests.test_login import addAccount, asUser

# Never on a one-shot path that does not need them (pkg_resources and
# importlib.metadata are what older console-script wrappers loaded).
HEAVY = ("twisted", "zope", "configparser", "argparse", "elftools",
         "prometheus_client",
         "pkg_resources", "importlib.metadata")

# Not on the paths whose start-up is measured against C tools
# (benchmarks/bench_startup.py): each of these costs 3-9 ms of a 10-20 ms
# start.  enum comes with signal, socket and re; re with json and getopt.
SLOW = ("enum", "re", "json", "getopt", "gettext", "socket", "subprocess",
        "signal", "ipaddress", "dataclasses", "textwrap", "site")

# Replaces every exec and the end of the process by a dump of the modules,
# then runs the console script given as argv[1] as __main__.
DRIVER = r"""
import os, sys
def dump(*args, **kw):
    os.write(1, ("\nMODULES " + " ".join(sorted(sys.modules)) + "\n")
             .encode())
    os._exit(0)
for name in ("execv", "execve", "execvp", "execvpe", "execl", "execle",
             "execlp", "execlpe"):
    setattr(os, name, dump)
script = sys.argv[1]
del sys.argv[0]
with open(script) as f:
    code = compile(f.read(), script, "exec")
try:
    exec(code, {"__name__": "__main__"})
finally:
    dump()
"""


def modulesOf(name, args, run=lambda argv: argv, env=None):
    """
    Start the installed command C{name} with C{args} under L{DRIVER}.

    @param run: wraps the command line (e.g. to run it as another account).
    @return: C{(modules, output)}: the names in C{sys.modules} when it was
        about to exec or exit, and everything it wrote.
    """
    script = harness.script(name)
    with open(script) as f:
        first = f.readline()
    assert first.startswith("#!"), first
    interpreter = first[2:].split()
    result = subprocess.run(
        run(interpreter + ["-c", DRIVER, script] + list(args)),
        capture_output=True, text=True, timeout=60, cwd="/", env=env)
    lines = [line for line in result.stdout.splitlines()
             if line.startswith("MODULES ")]
    if not lines:
        raise AssertionError(f"{name} {args} left no module list: "
                             f"{result.stdout!r} {result.stderr!r}")
    return set(lines[-1].split()[1:]), result.stdout + result.stderr


def loaded(modules, names):
    """
    @return: the modules that are one of C{names} or inside one.
    """
    return sorted(m for m in modules
                  if any(m == name or m.startswith(name + ".")
                         for name in names))


class DriverTests(SynchronousTestCase):
    """
    The driver sees what a command imports: a negative control.
    """

    def test_seesTwisted(self):
        modules, _ = modulesOf("jailtwist", ["--help"])
        self.assertIn("twisted.python.usage", modules)


class CommandImportTests(SynchronousTestCase):
    """
    The one-shot commands, as installed, on the paths users take.
    """

    def setUp(self):
        harness.isolated(self)
        parent = harness.jailParent(self).path
        self.jail = os.path.join(parent, "jail")
        for directory in ("usr/bin", "etc/jailkit", "home", "dev"):
            os.makedirs(os.path.join(self.jail, directory), 0o755)
        shutil.copy("/bin/busybox", os.path.join(self.jail, "usr/bin"))
        os.symlink("usr/bin", os.path.join(self.jail, "bin"))
        self.state = harness.shortTempDir(self).path

    def assertLean(self, modules, output, slow=True):
        self.assertEqual(loaded(modules, HEAVY), [], output)
        if slow:
            self.assertEqual(loaded(modules, SLOW), [], output)

    def launch(self, *args):
        return modulesOf("jk_chrootlaunch", ["--plain", "--state-dir",
                                             self.state, "-j", self.jail]
                         + list(args) + ["-x", "/bin/busybox", "--",
                                         "true"])

    def test_launchPlain(self):
        modules, output = self.launch()
        self.assertIn("jailtwist.enter", modules)
        self.assertLean(modules, output)
        # A copied jail is told from a bind jail without the bind list's
        # module (1.5 ms).
        self.assertNotIn("jailtwist.bindlist", modules)

    def test_launchIsolated(self):
        """
        The launcher of an isolated jail: it forks, and the driver reports
        from the first exec (the jail's init).
        """
        modules, output = self.launch("--isolate")
        self.assertIn("jailtwist.enter", modules)
        self.assertLean(modules, output)

    def test_launchRefused(self):
        modules, output = modulesOf("jk_chrootlaunch", ["-j", self.jail,
                                                        "--bogus"])
        self.assertIn("not recognized", output)
        self.assertLean(modules, output)

    def jailedAccount(self, name):
        home = f"{self.jail}/./home/{name}"
        entry = addAccount(self, name, home)
        subprocess.run(["usermod", "-s", harness.script("jk_chrootsh"), name],
                       check=True)
        with open(os.path.join(self.jail, "etc/passwd"), "a") as f:
            f.write(f"{name}:x:{entry[2]}:{entry[3]}::/home/{name}:"
                    f"/usr/sbin/jk_lsh\n")
        with open(os.path.join(self.jail, "etc/group"), "a") as f:
            f.write(f"{name}:x:{entry[3]}:\n")
        with open(os.path.join(self.jail, "etc/jailkit/jk_lsh.ini"),
                  "w") as f:
            f.write("[DEFAULT]\npaths = /usr/bin\n"
                    "executables = /usr/bin/busybox\n")
        return entry

    def test_login(self):
        """
        A jailed login that runs an allowed command, up to its exec inside
        the jail.
        """
        self.jailedAccount("jtimport1")
        modules, output = modulesOf(
            "jk_chrootsh", ["-c", "busybox true"],
            run=lambda argv: asUser("jtimport1", argv))
        self.assertIn("jailtwist.enter", modules)
        self.assertIn("jailtwist.lsh", modules)
        self.assertNotIn("jailtwist.bindlist", modules)
        self.assertLean(modules, output)

    def test_loginRefused(self):
        self.jailedAccount("jtimport2")
        modules, output = modulesOf(
            "jk_chrootsh", ["-c", "cat /etc/shadow"],
            run=lambda argv: asUser("jtimport2", argv))
        self.assertIn("not allowed", output)
        self.assertLean(modules, output)

    def test_otherLoginCommands(self):
        """
        jk_lsh, jk_uchroot and jk_procmailwrapper, refused early (no
        configuration for the account): Twisted and the other heavy
        modules stay out; jk_uchroot alone parses options with getopt.
        """
        addAccount(self, "jtimport3")
        for name, args in [("jk_lsh", ["-c", "busybox true"]),
                           ("jk_uchroot", ["-j", self.jail, "-x",
                                           "/usr/bin/busybox"]),
                           ("jk_procmailwrapper", ["-d", "jtimport3"])]:
            modules, output = modulesOf(
                name, args, run=lambda argv: asUser("jtimport3", argv))
            self.assertIn("jailtwist.login", modules, name)
            self.assertLean(modules, output, slow=False)

    def test_list(self):
        modules, output = modulesOf("jk_list", [])
        self.assertIn("jailtwist.registry", modules)
        self.assertLean(modules, output, slow=False)
        self.assertEqual(loaded(modules, ("re", "json", "enum")), [],
                         output)

    def test_check(self):
        modules, output = modulesOf("jk_check", [self.jail])
        self.assertIn("jailtwist.audit", modules)
        self.assertLean(modules, output, slow=False)

    def test_buildTools(self):
        """
        jk_cp copying a file that is not a program (so no ELF reader is
        needed), jk_init listing its sections, jk_update refusing a bad
        command line.
        """
        source = os.path.join(harness.shortTempDir(self).path, "motd")
        with open(source, "w") as f:
            f.write("hello\n")
        for name, args in [("jk_cp", ["-j", self.jail, source]),
                           ("jk_init", ["-l"]),
                           ("jk_update", ["--bogus"])]:
            modules, output = modulesOf(name, args)
            self.assertIn("jailtwist.tools.build", modules, name)
            self.assertLean(modules, output, slow=False)

    def test_accountTools(self):
        """
        jk_jailuser and jk_addjailuser, refused (no such jail).
        """
        for name in ("jk_jailuser", "jk_addjailuser"):
            modules, output = modulesOf(name, ["-n", "-j", self.jail + "-no",
                                               "jtimport4"])
            self.assertIn("jailtwist.tools.jailuser", modules, name)
            self.assertLean(modules, output, slow=False)
