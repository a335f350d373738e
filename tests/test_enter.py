"""
Tests for L{jailtwist.enter}: capability parsing, and every entry point run
for real in a forked child that reports what it sees from inside (uid,
groups, capability sets, no_new_privs, its root, its network, its host
name).
"""

import ctypes
import errno
import json
import os
import pwd
import socket
import stat
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from jailtwist import enter
from jailtwist.errors import JailtwistError
from jailtwist.registry import JailRegistry
from tests import harness
from tests.test_launch import busyboxJail, killJail

# The capabilities the issue names as what a jailed root must never get.
FORBIDDEN = {"SYS_MODULE", "SYS_RAWIO", "MKNOD", "NET_ADMIN", "SYS_ADMIN",
             "SYS_BOOT", "SYS_TIME", "SYS_PTRACE", "MAC_ADMIN",
             "MAC_OVERRIDE", "AUDIT_CONTROL", "SYSLOG", "DAC_READ_SEARCH"}


def inChild(function):
    """
    Run C{function()} in a forked child and return what it returned (any
    JSON value), or C{{"error": [class name, step, message]}} if it raised.
    """
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            try:
                result = function()
            except Exception as e:
                result = {"error": [e.__class__.__name__,
                                    getattr(e, "step", None), str(e),
                                    getattr(e, "exitCode", None)]}
            os.write(write, json.dumps(result).encode())
        finally:
            os._exit(0)
    os.close(write)
    data = b"".join(iter(lambda: os.read(read, 65536), b""))
    os.close(read)
    os.waitpid(pid, 0)
    return json.loads(data)


def looksFromInside():
    """
    What a process can tell about its confinement without /proc.
    """
    effective, permitted, inheritable = enter.getCapabilities()
    return {"uid": os.getresuid(), "gid": os.getresgid(),
            "groups": os.getgroups(), "root": sorted(os.listdir("/")),
            "cwd": os.getcwd(),
            "effective": enter.capabilityNames(effective),
            "permitted": enter.capabilityNames(permitted),
            "inheritable": enter.capabilityNames(inheritable),
            "bounding": enter.capabilityNames(enter.boundingSet()),
            "noNewPrivs": enter.noNewPrivs(),
            "interfaces": sorted(name for _, name in socket.if_nameindex()),
            "hostname": socket.gethostname()}


class CapabilityTests(SynchronousTestCase):

    def test_defaultCeilingLeavesOutTheDangerousOnes(self):
        self.assertEqual(enter.DEFAULT_CEILING & FORBIDDEN, frozenset())
        self.assertNotIn("SYS_CHROOT", enter.DEFAULT_CEILING)
        self.assertIn("NET_BIND_SERVICE", enter.DEFAULT_CEILING)

    def test_parse(self):
        self.assertEqual(enter.parseCapabilities("cap_chown, NET_RAW kill"),
                         {"CHOWN", "NET_RAW", "KILL"})
        self.assertEqual(enter.parseCapabilities("default,SYS_CHROOT"),
                         enter.DEFAULT_CEILING | {"SYS_CHROOT"})
        self.assertEqual(enter.parseCapabilities("none"), frozenset())
        self.assertEqual(enter.parseCapabilities(""), frozenset())
        self.assertEqual(len(enter.parseCapabilities("all")),
                         len(enter.CAPABILITIES))

    def test_parseUnknown(self):
        error = self.assertRaises(JailtwistError, enter.parseCapabilities,
                                  "CHOWN,SYS_EVERYTHING")
        self.assertIn("SYS_EVERYTHING", str(error))

    def test_names(self):
        self.assertEqual(enter.capabilityNames({0, 21, 7}),
                         ["CHOWN", "SETUID", "SYS_ADMIN"])

    def test_ownSets(self):
        """
        capget agrees with the kernel's own report in /proc/self/status.
        """
        effective, permitted, inheritable = enter.getCapabilities()
        with open("/proc/self/status") as f:
            status = dict(line.split(":\t", 1) for line in f
                          if line.startswith("Cap"))
        self.assertEqual(sum(1 << n for n in effective),
                         int(status["CapEff"], 16))
        self.assertEqual(sum(1 << n for n in enter.boundingSet()),
                         int(status["CapBnd"], 16))


class IsolationTests(SynchronousTestCase):

    def test_names(self):
        isolation = enter.Isolation(capabilities=(), noNewPrivs=True,
                                    pid=True, network="veth",
                                    address="192.0.2.2",
                                    hostAddress="192.0.2.1",
                                    filesystem=True)
        self.assertEqual(isolation.names(),
                         ["caps", "nnp", "pid", "net:192.0.2.2", "fs"])
        self.assertTrue(isolation.namespaced)
        self.assertEqual(enter.Isolation().names(), [])
        self.assertFalse(enter.Isolation(capabilities=(),
                                         noNewPrivs=True).namespaced)

    def test_badNetwork(self):
        self.assertRaises(JailtwistError, enter.Isolation, network="bridge")
        self.assertRaises(JailtwistError, enter.Isolation, network="veth",
                          address="192.0.2.2")
        # Addresses go into ip's batch input: nothing but an address passes.
        self.assertRaises(JailtwistError, enter.Isolation, network="veth",
                          address="192.0.2.2\nlink del lo",
                          hostAddress="192.0.2.1")

    def test_processStartTime(self):
        """
        The start time identifies a process; a zombie counts as gone.
        """
        self.assertIsInstance(enter.processStartTime(os.getpid()), int)
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        try:
            harness.waitFor(lambda: enter.processStartTime(pid) is None,
                            what="the child to become a zombie")
        finally:
            os.waitpid(pid, 0)
        self.assertIsNone(enter.processStartTime(pid))


class ConfineTests(SynchronousTestCase):

    def setUp(self):
        harness.isolated(self)
        self.jail = busyboxJail(self, probe=False)

    def test_userWithCeiling(self):
        """
        chroot, ceiling, uid/gid switch with no supplementary groups and
        no_new_privs, from a root with supplementary groups.
        """
        def child():
            os.setgroups([0, 4, 27])
            enter.confine(enter.Confinement(
                root=self.jail, cwd="/www", uid=1000, gid=1001,
                capabilities=enter.DEFAULT_CEILING, noNewPrivs=True))
            return looksFromInside()

        seen = inChild(child)
        self.assertEqual(seen["uid"], [1000] * 3)
        self.assertEqual(seen["gid"], [1001] * 3)
        self.assertEqual(seen["groups"], [])
        self.assertEqual(seen["root"],
                         ["bin", "dev", "etc", "proc", "tmp", "www"])
        self.assertEqual(seen["cwd"], "/www")
        self.assertEqual(seen["effective"], [])
        self.assertEqual(seen["permitted"], [])
        self.assertEqual(set(seen["bounding"]), enter.DEFAULT_CEILING)
        self.assertTrue(seen["noNewPrivs"])

    def test_rootWithCeiling(self):
        def child():
            enter.confine(enter.Confinement(root=self.jail,
                                            capabilities={"CHOWN", "KILL"}))
            return looksFromInside()

        seen = inChild(child)
        self.assertEqual(seen["uid"], [0, 0, 0])
        self.assertEqual(seen["effective"], ["CHOWN", "KILL"])
        self.assertEqual(seen["bounding"], ["CHOWN", "KILL"])
        self.assertEqual(seen["inheritable"], [])
        self.assertFalse(seen["noNewPrivs"])

    def test_jailkitDefaultLeavesBoundingSet(self):
        """
        Without a ceiling, confine only chroots and switches (jailkit's
        behaviour); the bounding set stays as it was.
        """
        before = enter.capabilityNames(enter.boundingSet())

        def child():
            enter.confine(enter.Confinement(root=self.jail, uid=1000,
                                            gid=1000))
            return looksFromInside()

        seen = inChild(child)
        self.assertEqual(seen["bounding"], before)
        self.assertEqual(seen["effective"], [])

    def test_failingSteps(self):
        seen = inChild(lambda: enter.confine(enter.Confinement(
            root=self.jail + "/missing")))
        self.assertEqual(seen["error"][1:2], ["chroot"])
        self.assertEqual(seen["error"][3], 35)
        seen = inChild(lambda: enter.confine(enter.Confinement(
            root=self.jail, cwd="/nowhere")))
        self.assertEqual(seen["error"][1], "chdir")
        self.assertEqual(seen["error"][3], 33)
        self.assertIn("/nowhere", seen["error"][2])

    def test_confineRelay(self):
        """
        The relay ends up in the directory of the syslog socket as nobody
        with no groups and no capabilities, and can still reach the socket.
        """
        directory = harness.shortTempDir(self)
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(receiver.close)
        receiver.bind(directory.child("log").path)
        os.chmod(directory.child("log").path, 0o666)

        def child():
            os.setgroups([0, 4])
            where = enter.confineRelay(directory.child("log").path, "nobody")
            sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sender.sendto(b"from the relay", where)
            seen = looksFromInside()
            seen["where"] = where
            return seen

        seen = inChild(child)
        self.assertEqual(seen["where"], "log")
        self.assertEqual(seen["root"], ["log"])
        self.assertEqual(seen["groups"], [])
        self.assertNotEqual(seen["uid"][0], 0)
        self.assertEqual(seen["bounding"], [])
        self.assertTrue(seen["noNewPrivs"])
        receiver.settimeout(5)
        self.assertEqual(receiver.recv(100), b"from the relay")

    def test_confineRelayUnknownUser(self):
        seen = inChild(lambda: enter.confineRelay("/dev/log", "nosuchuser"))
        self.assertIn("nosuchuser does not exist", seen["error"][2])


class EnterAsUserTests(SynchronousTestCase):

    def setUp(self):
        harness.isolated(self)
        self.jail = busyboxJail(self, probe=False)

    def test_unprivileged(self):
        """
        An ordinary user enters through a user namespace that maps only
        its own ids: root's files show as the overflow id, nothing is
        capable, the network has only lo, and there is no way back.
        """
        def child():
            os.setgroups([])
            os.setresgid(4001, 4001, 4001)
            os.setresuid(4000, 4000, 4000)
            # As jk_chrootsh does: the jail opened (and checked) before.
            jail = os.open(self.jail, os.O_PATH | os.O_DIRECTORY)
            enter.enterAsUser(jail, "/tmp", ("net", "ipc", "uts"))
            seen = looksFromInside()
            seen["binOwner"] = os.stat("/bin").st_uid
            for attempt, call in (("chroot", lambda: os.chroot("/tmp")),
                                  ("setuid", lambda: os.setuid(0)),
                                  ("sethostname",
                                   lambda: socket.sethostname("x"))):
                try:
                    call()
                    seen[attempt] = "allowed"
                except OSError as e:
                    seen[attempt] = errno.errorcode[e.errno]
            return seen

        seen = inChild(child)
        self.assertEqual(seen.get("error"), None)
        self.assertEqual(seen["uid"], [4000] * 3)
        self.assertEqual(seen["gid"], [4001] * 3)
        self.assertEqual(seen["cwd"], "/tmp")
        self.assertEqual(seen["root"],
                         ["bin", "dev", "etc", "proc", "tmp", "www"])
        self.assertEqual(seen["binOwner"], 65534)
        self.assertEqual(seen["interfaces"], ["lo"])
        self.assertEqual((seen["effective"], seen["permitted"],
                          seen["bounding"]), ([], [], []))
        self.assertTrue(seen["noNewPrivs"])
        # uid 0 does not even exist in the namespace: EINVAL, not EPERM.
        self.assertEqual((seen["chroot"], seen["setuid"],
                          seen["sethostname"]), ("EPERM", "EINVAL", "EPERM"))

    def test_asRoot(self):
        def child():
            os.setgroups([0, 4])
            enter.enterAsUser(self.jail, "/www", ("uts",), uid=1000, gid=1000)
            return looksFromInside()

        seen = inChild(child)
        self.assertEqual(seen["uid"], [1000] * 3)
        self.assertEqual(seen["groups"], [])
        self.assertEqual(seen["cwd"], "/www")
        self.assertTrue(seen["noNewPrivs"])

    def test_missingHome(self):
        def child():
            os.setresgid(4001, 4001, 4001)
            os.setgroups([])
            os.setresuid(4000, 4000, 4000)
            enter.enterAsUser(self.jail, "/home/nobody-here")

        seen = inChild(child)
        self.assertEqual(seen["error"][1], "chdir")

    def test_kernelRefuses(self):
        """
        In a user namespace whose user.max_user_namespaces is 0 the kernel
        refuses a new one; the error names the setting.
        """
        ready, go = os.pipe(), os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(ready[0])
                os.close(go[1])
                enter.unshare(enter.CLONE_NEWUSER)
                os.write(ready[1], b"x")
                os.read(go[0], 1)
                with open("/proc/sys/user/max_user_namespaces", "w") as f:
                    f.write("0")
                os.setresgid(4001, 4001, 4001)
                os.setresuid(4000, 4000, 4000)
                try:
                    enter.enterAsUser(self.jail)
                except enter.UserNamespaceRefused as e:
                    os.write(ready[1], str(e).encode())
                    code = 0
            finally:
                os._exit(code)
        os.close(ready[1])
        os.close(go[0])
        self.assertEqual(os.read(ready[0], 1), b"x")
        for name in ("uid_map", "gid_map"):
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write("0 0 1\n4000 4000 1\n4001 4001 1\n")
        os.write(go[1], b"x")
        message = b"".join(iter(lambda: os.read(ready[0], 4096), b""))
        os.close(ready[0])
        os.close(go[1])
        _, status = os.waitpid(pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0, message)
        self.assertIn(b"user.max_user_namespaces=0", message)
        self.assertEqual(len(message.splitlines()), 1)


class JoinJailTests(SynchronousTestCase):

    def setUp(self):
        harness.isolated(self)
        self.jail = busyboxJail(self, probe=False)
        self.state = harness.shortTempDir(self)

    def test_joinRunningJail(self):
        """
        A process that joins a launched jail by its init's pid and then
        forks has the jail's host name, root, network and pid namespace.
        """
        pidfile = self.state.child("pid").path
        self.addCleanup(killJail, pidfile)
        process = subprocess.Popen(
            [harness.script("jk_chrootlaunch"), "--state-dir",
             self.state.path, "-j", self.jail, "--isolate", "--hostname",
             "joinme", "-p", pidfile, "-x", "/bin/busybox", "--", "sleep",
             "30"], stderr=subprocess.DEVNULL)
        self.addCleanup(process.wait)
        self.addCleanup(killJail, pidfile)
        # Registered once the jail is set up (root changed, mounts made).
        [record] = harness.waitFor(
            JailRegistry(self.state).entries, what="the jail")
        initPid = int(open(pidfile).read())
        self.assertEqual(record.initPid, initPid)
        # Already set up when registered: the init's root is the jail.
        root, jail = os.stat(f"/proc/{initPid}/root"), os.stat(self.jail)
        self.assertEqual((root.st_dev, root.st_ino),
                         (jail.st_dev, jail.st_ino))

        def child():
            with enter.pinProcess(initPid) as pinned:
                enter.joinJail(pinned)
            return inChild(lambda: dict(looksFromInside(), pid=os.getpid()))

        seen = inChild(child)
        self.assertEqual(seen.get("error"), None)
        self.assertEqual(seen["hostname"], "joinme")
        self.assertEqual(seen["root"],
                         ["bin", "dev", "etc", "proc", "tmp", "www"])
        self.assertEqual(seen["interfaces"], ["lo"])
        self.assertLess(seen["pid"], 10)

    def test_deadProcessNotJoined(self):
        child = subprocess.Popen(["true"])
        pinned = enter.pinProcess(child.pid)
        self.addCleanup(pinned.close)
        child.wait()
        self.assertFalse(pinned.alive())
        self.assertRaises(enter.EnterError, enter.joinJail, pinned)

    def test_noSuchProcess(self):
        child = subprocess.Popen(["true"])
        child.wait()
        error = self.assertRaises(enter.EnterError, enter.pinProcess,
                                  child.pid)
        self.assertEqual(error.step, "pin")


class LaunchApiTests(SynchronousTestCase):
    """
    L{enter.launch} called directly (jk_chrootlaunch's tests drive the
    command).
    """

    def setUp(self):
        harness.isolated(self)
        self.jail = busyboxJail(self, probe=False)

    def test_namespacedStatusAndStarted(self):
        def child():
            started = []
            spec = enter.LaunchSpec(
                self.jail, "/bin/busybox",
                ["busybox", "sh", "-c", "test $$ = 2 && exit 3"],
                isolation=enter.Isolation(pid=True, filesystem=True),
                onStarted=started.append, onReady=started.append)
            status = enter.launch(spec)
            return [status, started, os.getpid()]

        status, started, launcher = inChild(child)
        self.assertEqual(status, 3)
        [initPid, readyPid] = started
        self.assertEqual(initPid, readyPid)
        self.assertNotEqual(initPid, launcher)

    def test_execFailureReported(self):
        spec = enter.LaunchSpec(self.jail, "/bin/nothing", ["nothing"],
                                isolation=enter.Isolation(pid=True))
        seen = inChild(lambda: enter.launch(spec))
        self.assertEqual(seen["error"][1], "exec")
        self.assertEqual(seen["error"][3], 31)

    def test_launcherLeavesNoChildren(self):
        """
        After a namespaced launch returns, the launcher has reaped its
        child (no zombie, no stray process).
        """
        def child():
            spec = enter.LaunchSpec(self.jail, "/bin/busybox",
                                    ["busybox", "true"],
                                    isolation=enter.Isolation(
                                        pid=True, network="none"))
            status = enter.launch(spec)
            try:
                os.waitpid(-1, os.WNOHANG)
                left = "children left"
            except ChildProcessError:
                left = "none"
            return [status, left]

        self.assertEqual(inChild(child), [0, "none"])


class SyscallFilterTests(SynchronousTestCase):
    """
    The seccomp filter of a jail with a capability ceiling, installed in a
    real forked child.
    """

    def inFilteredChild(self, code, install=enter.installSyscallFilter):
        """
        Fork, call C{install()} (the filter by default), run
        C{code(directory)} in the child and return what it returned (a
        short text).
        """
        directory = harness.shortTempDir(self)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(r)
                install()
                os.write(w, code(directory.path).encode())
            finally:
                os._exit(0)
        os.close(w)
        with os.fdopen(r) as f:
            out = f.read()
        os.waitpid(pid, 0)
        return out

    @staticmethod
    def attempt(call, *args):
        try:
            call(*args)
        except OSError as e:
            return errno.errorcode[e.errno]
        return "ok"

    def test_setuidBits(self):
        def code(d):
            f = os.path.join(d, "f")
            a = self.attempt
            results = [
                a(lambda: os.close(os.open(f, os.O_CREAT | os.O_WRONLY,
                                           0o644))),
                a(os.chmod, f, 0o4755), a(os.chmod, f, 0o2755),
                a(os.chmod, f, 0o755),
                a(lambda: os.close(os.open(os.path.join(d, "g"),
                                           os.O_CREAT | os.O_WRONLY,
                                           0o4755))),
                a(lambda: os.close(os.open(d, os.O_TMPFILE | os.O_WRONLY,
                                           0o2755))),
                a(os.mknod, os.path.join(d, "n"), stat.S_IFREG | 0o4755),
                a(lambda: os.close(os.open(f, os.O_RDONLY)))]
            return " ".join(results)
        self.assertEqual(self.inFilteredChild(code).split(),
                         ["ok", "EPERM", "EPERM", "ok", "EPERM", "EPERM",
                          "EPERM", "ok"])

    def test_keyringsAndUserNamespaces(self):
        def code(d):
            libc = ctypes.CDLL(None, use_errno=True)

            def call(result):
                return "ok" if result >= 0 else errno.errorcode[
                    ctypes.get_errno()]
            return " ".join([
                call(libc.syscall(250, 0, -4, 0)),          # keyctl
                call(libc.unshare(enter.CLONE_NEWUSER)),
                call(libc.syscall(435, None, 0)),           # clone3
                # A child still starts (glibc falls back from clone3).
                str(subprocess.run(["/bin/true"]).returncode)])
        self.assertEqual(self.inFilteredChild(code).split(),
                         ["EPERM", "EPERM", "ENOSYS", "0"])

    def test_joins(self):
        """
        setns is refused by the whole filter, and by the join filter that
        confine() gives every program it runs in a jail; without either,
        joining one's own user namespace is merely invalid.
        """
        def code(d):
            libc = ctypes.CDLL(None, use_errno=True)
            pidfd = os.pidfd_open(os.getpid())
            result = libc.setns(pidfd, enter.CLONE_NEWUSER)
            return "ok" if result >= 0 else errno.errorcode[ctypes.get_errno()]
        self.assertEqual(self.inFilteredChild(code), "EPERM")
        nobody = pwd.getpwnam("nobody")
        for confinement, expected in [
                (enter.Confinement(root="/", uid=nobody.pw_uid,
                                   gid=nobody.pw_gid), "EPERM"),
                # A jailed root may become an account by itself.
                (enter.Confinement(root="/"), "EPERM"),
                (enter.Confinement(uid=nobody.pw_uid, gid=nobody.pw_gid),
                 "EINVAL")]:
            out = self.inFilteredChild(
                code, lambda c=confinement: enter.confine(c))
            self.assertEqual(out, expected, confinement)

    def test_joinProgram(self):
        """
        The join filter of every machine it is written for refuses setns of
        each ABI that machine's kernel runs (x32's numbers carry bit 30),
        and allows everything else, other calls and other ABIs alike; a
        machine it is not written for is refused.
        """
        def run(program, arch, number):
            data = {0: number, 4: arch}
            accumulator, pc = 0, 0
            while True:
                code, jt, jf, k = program[pc]
                if code == 0x20:
                    accumulator = data[k]
                    pc += 1
                elif code == 0x15:
                    pc += 1 + (jt if accumulator == k else jf)
                elif code == 0x06:
                    return k
                else:
                    raise AssertionError(f"unexpected instruction {code}")
        allow, refuse = 0x7FFF0000, 0x00050000 | errno.EPERM
        for machine, abis in enter._SETNS.items():
            program = enter.joinFilterProgram(machine)
            for arch, numbers in abis:
                for number in numbers:
                    self.assertEqual(run(program, arch, number), refuse,
                                     (machine, arch, number))
                for other in (0, 39, 20, 1000, numbers[0] + 1):
                    self.assertEqual(run(program, arch, other), allow,
                                     (machine, arch, other))
            self.assertEqual(run(program, 0x12345678, abis[0][1][0]), allow)
        self.assertEqual(enter._SETNS["x86_64"][0][1],
                         (308, 308 | 0x40000000))
        self.assertRaises(enter.EnterError, enter.joinFilterProgram, "m68k")

    def test_program(self):
        """
        Every rule's jumps land inside the program, on a load of the call
        number or on the final allow.
        """
        program = enter.filterProgram()
        for at, (code, jt, jf, k) in enumerate(program):
            if code in (enter._BPF_JEQ, enter._BPF_JGE, enter._BPF_JSET):
                for target in (at + 1 + jt, at + 1 + jf):
                    self.assertLess(target, len(program))
        self.assertEqual(program[-1], (enter._BPF_RET, 0, 0,
                                       enter._RET_ALLOW))


class ImportTests(SynchronousTestCase):

    def test_noTwisted(self):
        """
        Login shells import enter: it must not pull in Twisted, and it
        must stay cheap.
        """
        code = ("import sys, time; t = time.perf_counter(); "
                "import jailtwist.enter; "
                "print(time.perf_counter() - t, "
                "any(m.startswith('twisted') for m in sys.modules))")
        result = subprocess.run([sys.executable, "-c", code],
                                capture_output=True, text=True,
                                env=dict(os.environ, PYTHONPATH=os.path.dirname(
                                    os.path.dirname(enter.__file__))))
        seconds, twisted = result.stdout.split()
        self.assertEqual(twisted, "False", result.stderr)
        # Generous: this guards against a heavy import, not a slow machine
        # (benchmarks/bench_login_start.py measures the real cost).
        self.assertLess(float(seconds), 2.0)

