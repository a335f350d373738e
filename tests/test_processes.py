"""
Tests for L{jailtwist.processes} (on fake /proc trees) and the installed
jk_list command (on real processes chrooted into real jails).
"""

import io
import os
import shutil
import signal
import subprocess
import sys

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from jailtwist.errors import JailtwistError
from jailtwist.processes import (
    JailedProcess, ProcessTable, formatRegistered, formatTable)
from jailtwist.registry import JailRecord, JailRegistry
from jailtwist.tools.audit import _listMain
from tests import harness
from tests.test_audit import checkHelpAndBadOption

# Start a program without CAP_SYS_PTRACE (kept out of its bounding set, so
# its children cannot get it back either).
NO_PTRACE = ["setpriv", "--bounding-set=-sys_ptrace",
             "--inh-caps=-sys_ptrace"]


def fakeProc(testCase, processes, namespaces=None):
    """
    A fake /proc: C{processes} maps a pid to C{(root, uid, argv)}; a
    C{None} root leaves the C{root} link out (a process that exited while
    being read).  C{namespaces} maps a pid (or C{"self"}) to
    C{{"pid": key, "mnt": key}}: pids given the same key share that
    namespace (its C{ns/} file is one inode, hard-linked).
    """
    proc = testCase.mktemp()
    os.mkdir(proc)
    os.mkdir(os.path.join(proc, "self"))
    store = testCase.mktemp()
    os.mkdir(store)
    for pid, keys in (namespaces or {}).items():
        os.makedirs(os.path.join(proc, str(pid), "ns"))
        for name, key in keys.items():
            shared = os.path.join(store, f"{name}-{key}")
            if not os.path.exists(shared):
                open(shared, "w").close()
            os.link(shared, os.path.join(proc, str(pid), "ns", name))
    with open(os.path.join(proc, "uptime"), "w") as f:
        f.write("1.0 1.0\n")
    for pid, (root, uid, argv) in processes.items():
        base = os.path.join(proc, str(pid))
        os.makedirs(base, exist_ok=True)
        if root is not None:
            os.symlink(root, os.path.join(base, "root"))
        with open(os.path.join(base, "status"), "w") as f:
            f.write(f"Name:\tx\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n")
        with open(os.path.join(base, "cmdline"), "wb") as f:
            f.write(b"".join(a.encode() + b"\0" for a in argv))
        with open(os.path.join(base, "comm"), "w") as f:
            f.write("kworker\n")
    return proc


class ProcessTableTests(SynchronousTestCase):

    def setUp(self):
        self.proc = fakeProc(self, {
            1: ("/", 0, ["/sbin/init"]),
            20: ("/srv/jails/a", 0, ["/bin/sh", "-c", "sleep 5"]),
            7: ("/srv/jails/b", 65534, ["/usr/sbin/sshd"]),
            31: (None, 0, ["/gone"]),
            42: ("/srv/jails/a/inner", 4242424, []),
            50: ("/srv/jails/ab", 0, ["x"]),
        })

    def test_jailed(self):
        table = ProcessTable(self.proc)
        self.assertEqual(table.jailedProcesses(), [
            JailedProcess("/srv/jails/a", 20, 0, "root", "/bin/sh -c sleep 5"),
            JailedProcess("/srv/jails/a/inner", 42, 4242424, "4242424",
                          "[kworker]"),
            JailedProcess("/srv/jails/ab", 50, 0, "root", "x"),
            JailedProcess("/srv/jails/b", 7, 65534, "nobody",
                          "/usr/sbin/sshd"),
        ])
        # A process that vanished is not "unreadable".
        self.assertEqual(table.unreadable, set())

    def test_filter(self):
        table = ProcessTable(self.proc)
        self.assertEqual(
            [p.pid for p in table.jailedProcesses(jail="/srv/jails/a")],
            [20, 42])
        self.assertEqual(
            [p.pid for p in table.jailedProcesses(jail="/srv/jails/a/")],
            [20, 42])
        self.assertEqual(
            [p.pid for p in table.jailedProcesses(jail="/srv/jails/b")], [7])
        self.assertEqual(table.jailedProcesses(jail="/srv/none"), [])

    def test_unreadableRoot(self):
        """
        A root link that cannot be read (here: not a link at all, EINVAL)
        is counted as unreadable and the scan goes on.
        """
        os.unlink(os.path.join(self.proc, "7", "root"))
        os.mkdir(os.path.join(self.proc, "7", "root"))
        table = ProcessTable(self.proc)
        self.assertEqual([p.pid for p in table.jailedProcesses()],
                         [20, 42, 50])
        self.assertEqual(table.unreadable, {7})

    def test_missingStatus(self):
        """
        A process whose status vanished is listed with its /proc owner.
        """
        os.unlink(os.path.join(self.proc, "20", "status"))
        os.unlink(os.path.join(self.proc, "20", "cmdline"))
        os.unlink(os.path.join(self.proc, "20", "comm"))
        (p,) = [q for q in ProcessTable(self.proc).jailedProcesses()
                if q.pid == 20]
        self.assertEqual((p.uid, p.command),
                         (os.stat(self.proc).st_uid, "?"))

    def test_noProc(self):
        self.assertEqual(ProcessTable("/nonexistent").jailedProcesses(), [])

    def test_format(self):
        lines = formatTable([
            JailedProcess("/srv/j", 20, 0, "root", "sleep " + "9" * 100),
            JailedProcess("/srv/jail-two", 123456, 1000, "someone", "sh")])
        self.assertEqual(lines[0], "Pid    User    Jail          Command")
        self.assertEqual(lines[2], "123456 someone /srv/jail-two sh")
        self.assertEqual(len(lines[1]), 80)
        wide = formatTable([JailedProcess("/j", 1, 0, "root", "x" * 200)],
                           wide=True)
        self.assertTrue(wide[1].endswith("x" * 200))

    def test_formatEscapes(self):
        """
        A command line cannot forge a line or send terminal escapes.
        """
        lines = formatTable([JailedProcess(
            "/srv/j", 7, 0, "root", "sh\n1 root /fake \x1b[2J")])
        self.assertEqual(lines[1:], ["7      root /srv/j sh\\x0a1 root /fake"
                                     " \\x1b[2J"])


class RegisteredJailTests(SynchronousTestCase):
    """
    Jails from jailtwist's registry: a process in a registered jail's own
    pid or mount namespace belongs to it even when its root reads C{/}.
    """

    def setUp(self):
        host = {"pid": "host", "mnt": "host"}
        self.proc = fakeProc(self, {
            1: ("/", 0, ["/sbin/init"]),
            100: ("/", 0, ["/sbin/jinit"]),
            101: ("/", 33, ["php-fpm"]),
            102: ("/", 0, ["/usr/sbin/cron"]),
            103: ("/srv/jails/plain", 0, ["sleep", "9"]),
            104: ("/srv/jails/other", 0, ["sh"]),
            105: ("/", 0, ["unshare", "--mount", "--pid", "--fork"]),
            200: ("/", 0, ["/sbin/jinit"]),
            300: ("/", 0, ["/sbin/fsinit"]),
            301: ("/", 0, ["sh"]),
        }, {"self": host, 1: host, 102: host, 103: host, 104: host,
            100: {"pid": "web", "mnt": "webfs"},
            101: {"pid": "web", "mnt": "webfs"},
            105: {"pid": "host", "mnt": "webfs"},
            200: {"pid": "host", "mnt": "host"},
            300: {"pid": "host", "mnt": "fsonly"},
            301: {"pid": "host", "mnt": "fsonly"}})
        self.records = [
            JailRecord(1, "web", "/srv/jails/web", 100, ["pid", "fs", "caps"],
                       1, 0.0),
            JailRecord(2, "plain", "/srv/jails/plain", 103, [], 1, 0.0,
                       bind=True),
            # A record claiming namespaces its init does not have of its
            # own: the host's are never taken for a jail's.
            JailRecord(3, "liar", "/srv/jails/liar", 200, ["pid", "fs"], 1,
                       0.0),
            # Only a mount namespace of its own: that is what places it.
            JailRecord(4, "fsonly", "/srv/jails/fsonly", 300, ["fs"], 1,
                       0.0),
        ]

    def test_jailed(self):
        table = ProcessTable(self.proc, self.records)
        self.assertEqual(
            [(p.pid, p.jail, p.name) for p in table.jailedProcesses()],
            [(300, "/srv/jails/fsonly", "fsonly"),
             (301, "/srv/jails/fsonly", "fsonly"),
             (104, "/srv/jails/other", ""),
             (103, "/srv/jails/plain", "plain"),
             (100, "/srv/jails/web", "web"),
             (101, "/srv/jails/web", "web")])

    def test_filter(self):
        table = ProcessTable(self.proc, self.records)
        self.assertEqual(
            [p.pid for p in table.jailedProcesses(jail="/srv/jails/web")],
            [100, 101])

    def test_formatRegistered(self):
        self.assertEqual(formatRegistered([]), [])
        self.assertEqual(formatRegistered(list(reversed(self.records))), [
            "Jid Name   Path              Init Isolation   Files",
            "1   web    /srv/jails/web    100  pid,fs,caps copied",
            "2   plain  /srv/jails/plain  103  chroot      bound",
            "3   liar   /srv/jails/liar   200  pid,fs      copied",
            "4   fsonly /srv/jails/fsonly 300  fs          copied"])


class RegistryListTests(SynchronousTestCase):
    """
    jk_list with jailtwist's registry (in a temporary directory) and a real
    process that did C{pivot_root} in its own mount and pid namespaces:
    its root reads C{/}, only the registry places it in its jail.
    """

    def startPivoted(self, jail):
        """
        Start C{busybox sleep} as pid 1 of new pid and mount namespaces,
        rooted at C{jail} by C{pivot_root}.

        @return: its host pid.
        """
        os.makedirs(os.path.join(jail, "bin"))
        os.makedirs(os.path.join(jail, "old"))
        shutil.copy2(busybox(), os.path.join(jail, "bin", "busybox"))
        inner = ("/bin/busybox umount -l /old;"
                 " exec /bin/busybox sleep 30")
        outer = (f"mount --bind {jail} {jail} && cd {jail} &&"
                 f" /bin/busybox pivot_root . old &&"
                 f" exec /bin/busybox sh -c '{inner}'")
        unshare = subprocess.Popen(
            ["unshare", "--mount", "--pid", "--fork", "--propagation",
             "private", "/bin/sh", "-c", outer], stdin=subprocess.DEVNULL)
        self.addCleanup(unshare.wait)
        self.addCleanup(unshare.kill)

        def child():
            path = f"/proc/{unshare.pid}/task/{unshare.pid}/children"
            try:
                with open(path) as f:
                    pids = f.read().split()
            except OSError:
                return None
            if not pids:
                return None
            pid = int(pids[0])
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if f.read() == b"/bin/busybox\0sleep\x0030\0":
                        return pid
            except OSError:
                pass
            return None

        pid = harness.waitFor(child, what="the pivoted sleep")
        self.addCleanup(_kill, pid)
        return pid

    def listed(self, argv, registry):
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        self.assertEqual(_listMain(argv, registry=registry), 0)
        return out.getvalue().splitlines()

    def test_pivotedProcessInRegisteredJail(self):
        jail = harness.jailParent(self).child("pivoted").path
        pid = self.startPivoted(jail)
        self.assertEqual(os.readlink(f"/proc/{pid}/root"), "/")
        empty = JailRegistry(FilePath(self.mktemp()))
        self.assertEqual(self.listed(["-j", jail], empty),
                         ["No jailed processes found"])

        registry = JailRegistry(FilePath(self.mktemp()))
        record = registry.register(jail, pid, ["pid", "fs"], name="pivoted")
        expected = [
            f"{pid} root {jail} /bin/busybox sleep 30".split(),
            [],
            "Jid Name Path Init Isolation Files".split(),
            f"{record.jid} pivoted {jail} {pid} pid,fs copied".split()]
        for spec in (jail, "pivoted", str(record.jid), f"pid:{pid}"):
            lines = self.listed(["-j", spec], registry)
            self.assertEqual([line.split() for line in lines[1:]], expected,
                             spec)
        lines = self.listed([], registry)
        self.assertIn(f"{pid} root {jail} /bin/busybox sleep 30".split(),
                      [line.split() for line in lines])

    def test_unknownName(self):
        registry = JailRegistry(FilePath(self.mktemp()))
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        error = self.assertRaises(JailtwistError, _listMain,
                                  ["-j", "nosuchjail"], registry=registry)
        self.assertIn("nosuchjail", str(error))


class JkListTests(SynchronousTestCase):
    """
    The installed jk_list on real processes chrooted into real jails.
    """

    def jail(self, parent, name):
        jail = parent.child(name)
        jail.child("bin").makedirs()
        shutil.copy2(busybox(), jail.child("bin").child("busybox").path)
        return jail.path

    def start(self, argv):
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        self.addCleanup(process.wait)
        self.addCleanup(process.kill)
        return process

    def waitJailed(self, process, jail):
        harness.waitFor(
            lambda: _root(process.pid) == jail, what=f"{process.pid} in {jail}")

    def test_listsChrootedProcess(self):
        parent = harness.jailParent(self)
        first = self.jail(parent, "first")
        second = self.jail(parent, "second")
        a = self.start(["chroot", first, "/bin/busybox", "sleep", "30"])
        b = self.start(["chroot", "--userspec=65534:65534", second,
                        "/bin/busybox", "sleep", "31"])
        self.waitJailed(a, first)
        self.waitJailed(b, second)

        result = harness.run("jk_list")
        self.assertEqual(result.returncode, 0, result.stderr)
        lines = result.stdout.splitlines()
        self.assertEqual(lines[0].split(), ["Pid", "User", "Jail", "Command"])
        rows = [line.split() for line in lines[1:]]
        self.assertIn([str(a.pid), "root", first, "/bin/busybox", "sleep",
                       "30"], rows)
        self.assertIn([str(b.pid), "nobody", second, "/bin/busybox", "sleep",
                       "31"], rows)

        result = harness.run("jk_list", "-j", second)
        rows = [l.split()[:3] for l in result.stdout.splitlines()[1:]]
        self.assertEqual(rows, [[str(b.pid), "nobody", second]])

        result = harness.run("jk_list", "--jail", parent.path)
        pids = {int(l.split()[0]) for l in result.stdout.splitlines()[1:]}
        self.assertEqual(pids, {a.pid, b.pid})

        result = harness.run("jk_list", "-j", parent.child("none").path)
        self.assertEqual((result.returncode, result.stdout),
                         (0, "No jailed processes found\n"))

    def test_unreadableProcessDoesNotAbort(self):
        """
        Without CAP_SYS_PTRACE, root cannot read /proc/PID/root of another
        user's process: that process is skipped (and reported with -v), the
        scan goes on and finds the jailed process started after it.
        """
        parent = harness.jailParent(self)
        hidden = self.jail(parent, "hidden")
        visible = self.jail(parent, "visible")
        a = self.start(["chroot", "--userspec=65534:65534", hidden,
                        "/bin/busybox", "sleep", "30"])
        self.waitJailed(a, hidden)
        b = self.start(NO_PTRACE + ["chroot", visible, "/bin/busybox",
                                    "sleep", "30"])
        self.waitJailed(b, visible)
        # Make sure the setting really hides the first process.
        probe = subprocess.run(NO_PTRACE + ["readlink", f"/proc/{a.pid}/root"],
                               capture_output=True, text=True)
        self.assertNotEqual(probe.returncode, 0)

        result = subprocess.run(
            NO_PTRACE + [harness.script("jk_list"), "-v"],
            capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        pids = [int(l.split()[0]) for l in result.stdout.splitlines()[1:]]
        self.assertIn(b.pid, pids)
        self.assertNotIn(a.pid, pids)
        self.assertIn("jk_list: could not read", result.stderr)
        self.assertIn(str(a.pid), result.stderr)

    def test_unknownJailName(self):
        result = harness.run("jk_list", "-j", "nosuchjail")
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stdout, "")
        self.assertEqual(len(result.stderr.splitlines()), 1)
        self.assertTrue(result.stderr.startswith("jk_list: "))
        self.assertIn("nosuchjail", result.stderr)

    def test_options(self):
        checkHelpAndBadOption(self, "jk_list", "--wide")


def _kill(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _root(pid):
    try:
        return os.readlink(f"/proc/{pid}/root")
    except OSError:
        return None


def busybox():
    path = shutil.which("busybox") or "/bin/busybox"
    if not os.path.exists(path):
        raise AssertionError("busybox is missing: install busybox-static "
                             "(bootstrap.sh test does)")
    return path
