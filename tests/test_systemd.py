"""
The systemd units of etc/systemd/, as bootstrap.sh installs them next to
the venv: C{systemd-analyze verify} passes on each (and refuses a broken
one), and each daemon, started with the environment systemd would give it
(C{NOTIFY_SOCKET}; for skd@, a listening socket as fd 3 with C{LISTEN_FDS},
C{LISTEN_PID}, C{LISTEN_FDNAMES}), under the unit's own
C{CapabilityBoundingSet} and C{NoNewPrivileges} (through setpriv), reports
C{READY=1} and is then really serving.

systemd is not PID 1 here, so the units are not started by systemd itself:
the namespaces and file-system protections of the units are not exercised.
"""

import os
import shlex
import shutil
import signal
import socket
import subprocess

from twisted.trial.unittest import SynchronousTestCase

from tests import harness, test_loginservice
from tests.test_socketd import send, syslogLine

UNITS = ("jk-socketd.service", "jailtwist.service", "jaildaemon.service",
         "skd@.socket", "skd@.service")


def unitDirectory():
    return harness.BIN.parent().child("etc").child("systemd").child("system")


def readUnit(name):
    """
    @return: the installed unit's C{[Service]}/C{[Socket]} settings as a
        C{dict} of lists (a key may repeat).
    """
    settings = {}
    for line in unitDirectory().child(name).getContent().decode().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        settings.setdefault(key, []).append(value)
    return settings


def unitCommand(name, replace=None, variables=None, without=()):
    """
    The unit's ExecStart as argv, run the way the unit confines it: setpriv
    with the unit's capability bounding set and no_new_privs.

    @param replace: whole words of ExecStart to replace (a config path).
    @param variables: values of C{$NAME} words, split at spaces as systemd
        splits an unquoted C{$NAME}.
    @param without: capabilities to leave out of the unit's bounding set.
    """
    argv = []
    for word in shlex.split(readUnit(name)["ExecStart"][-1]):
        if word.startswith("$"):
            argv += (variables or {}).get(word[1:], "").split()
        else:
            argv.append((replace or {}).get(word, word))
    return unitConfinement(name, without) + argv


def unitConfinement(name, without=()):
    """
    setpriv words that give a command the unit's capability bounding set
    (less C{without}) and its no_new_privs, as systemd would.
    """
    unit = readUnit(name)
    caps = [cap for cap in unit["CapabilityBoundingSet"][-1].split()
            if cap not in without]
    bounding = ",".join(["-all"] + [
        "+" + cap.lower().removeprefix("cap_") for cap in caps])
    prefix = [shutil.which("setpriv"), "--bounding-set", bounding]
    if unit.get("NoNewPrivileges", ["no"])[-1] == "yes":
        prefix.append("--no-new-privs")
    return prefix + ["--"]


class Daemon:
    """
    A daemon started from its unit's command line with a test
    C{NOTIFY_SOCKET}; its output goes to a file shown in failures.
    """

    def __init__(self, testCase, argv, abstract=False, env=None,
                 pass_fds=(), shell=None):
        self.testCase = testCase
        self.notify = harness.NotifySocket(testCase, abstract=abstract)
        self.output = harness.shortTempDir(testCase).child("out")
        environ = dict(os.environ, **self.notify.environ, **(env or {}))
        with open(self.output.path, "wb") as out:
            self.process = subprocess.Popen(
                shell or argv, env=environ, stdout=out,
                stderr=subprocess.STDOUT, pass_fds=pass_fds)
        testCase.addCleanup(self.kill)

    def log(self):
        return self.output.getContent().decode(errors="replace")

    def waitReady(self):
        try:
            return self.notify.waitFor("READY", process=self.process)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.log()}")

    def stop(self):
        """
        SIGTERM as systemd stops a service: STOPPING=1, then a clean exit
        (status 0, or death by the same SIGTERM, which twistd re-raises and
        systemd counts as clean).
        """
        self.process.send_signal(signal.SIGTERM)
        self.notify.waitFor("STOPPING", process=None)
        self.testCase.assertIn(self.process.wait(30), (0, -signal.SIGTERM),
                               self.log())

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


class VerifyTests(SynchronousTestCase):
    """
    C{systemd-analyze verify} on the installed units.
    """

    def setUp(self):
        self.analyze = shutil.which("systemd-analyze")
        if self.analyze is None:
            self.fail("systemd-analyze is missing: bootstrap.sh test installs "
                      "the systemd package")

    def verify(self, *paths):
        """
        Run verify; warnings (an unknown key, a bad value) count as
        failures, as its exit status ignores them.
        """
        result = subprocess.run(
            [self.analyze, "verify", "--man=no"] + list(paths),
            capture_output=True, text=True, timeout=120, cwd="/")
        return result.returncode == 0 and not (result.stdout + result.stderr
                                                ).strip(), result

    def test_installedUnitsVerify(self):
        directory = unitDirectory()
        paths = [directory.child(name).path for name in UNITS]
        paths += [directory.child("skd@echo.service").path,
                  directory.child("skd@echo.socket").path]
        for path in paths:
            ok, result = self.verify(path)
            self.assertTrue(ok, (path, result))

    def test_exposure(self):
        """
        systemd's own rating of each service's sandbox (systemd-analyze
        security, offline) stays where the units put it: a setting dropped
        by mistake raises it over the bound.
        """
        bounds = {"jk-socketd.service": 2.5, "skd@echo.service": 3.6,
                  "jaildaemon.service": 4.7, "jailtwist.service": 5.0}
        for name, bound in bounds.items():
            result = subprocess.run(
                [self.analyze, "security", "--offline=yes", "--no-pager",
                 unitDirectory().child(name).path],
                capture_output=True, text=True, timeout=120, cwd="/")
            [line] = [line for line in result.stdout.splitlines()
                      if "Overall exposure level" in line]
            level = float(line.split(":")[1].split()[0])
            self.assertLessEqual(level, bound, (name, line))

    def test_venvWrittenIn(self):
        """
        ExecStart names this venv's commands (bootstrap.sh substituted
        @BIN@).
        """
        for name in UNITS:
            if not name.endswith(".service"):
                continue
            command = shlex.split(readUnit(name)["ExecStart"][-1])[0]
            self.assertEqual(os.path.dirname(command), harness.BIN.path)
            self.assertTrue(os.access(command, os.X_OK), command)
            self.assertEqual(readUnit(name)["Type"], ["notify"])

    def test_confinementAllowed(self):
        """
        Every daemon confines itself or what it runs with a seccomp filter
        (no setns in a jail): no unit's SystemCallFilter may refuse
        C{seccomp}, nor C{chroot}.
        """
        def resolve(words):
            names = set()
            for word in words:
                if not word.startswith("@"):
                    names.add(word)
                    continue
                result = subprocess.run(
                    [self.analyze, "syscall-filter", word],
                    capture_output=True, text=True, timeout=60)
                self.assertEqual(result.returncode, 0, result.stderr)
                names.update(line.strip() for line in
                             result.stdout.splitlines()[1:]
                             if line.strip() and not line.strip().startswith(
                                 ("#", "@")))
                names.update(resolve([line.strip() for line in
                                      result.stdout.splitlines()[1:]
                                      if line.strip().startswith("@")]))
            return names
        for name in UNITS:
            for value in readUnit(name).get("SystemCallFilter", []):
                denied = value.startswith("~")
                names = resolve(value.lstrip("~").split())
                for call in ("seccomp", "chroot"):
                    if denied:
                        self.assertNotIn(call, names, (name, value))
                    else:
                        self.assertIn(call, names, (name, value))

    def test_brokenUnitRefused(self):
        """
        The check can fail: a misspelt key and a missing command are both
        refused.
        """
        scratch = harness.shortTempDir(self)
        good = unitDirectory().child("jk-socketd.service").getContent()
        typo = scratch.child("typo.service")
        typo.setContent(good.replace(b"CapabilityBoundingSet=",
                                     b"CapabilityBoundingSett="))
        ok, result = self.verify(typo.path)
        self.assertFalse(ok)
        self.assertIn("CapabilityBoundingSett", result.stderr)
        missing = scratch.child("missing.service")
        missing.setContent(good.replace(
            os.fsencode(harness.BIN.path), b"/nonexistent/bin"))
        ok, result = self.verify(missing.path)
        self.assertFalse(ok)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("not executable", result.stderr)


class ReadinessTests(SynchronousTestCase):
    """
    Each daemon as its unit starts it reports READY=1 only once it serves.
    """

    def setUp(self):
        harness.isolated(self)

    def relay(self, without=()):
        """
        jk-socketd.service's command for one jail socket, relaying to a
        real rsyslogd.

        @return: the started L{Daemon}, the jail socket's path and the
            L{harness.Rsyslog}.
        """
        syslog = harness.startRsyslog(self)
        jail = harness.jailParent(self).child("jail")
        jail.child("dev").makedirs()
        ini = harness.shortTempDir(self).child("jk_socketd.ini")
        ini.setContent(f"[{jail.path}/dev/log]\nbase = 4096\n".encode())
        argv = unitCommand("jk-socketd.service", without=without,
                           replace={"/etc/jailkit/jk_socketd.ini": ini.path})
        daemon = Daemon(self, argv + ["--syslog", syslog.socket],
                        abstract=True)
        return daemon, jail.child("dev").child("log").path, syslog

    def test_jkSocketd(self):
        """
        READY=1 (over an abstract-namespace NOTIFY_SOCKET) once the jail's
        socket is bound and the relay has confined itself; a message sent
        right after is relayed.
        """
        daemon, path, syslog = self.relay()
        ready = daemon.waitReady()
        self.assertEqual(ready["STATUS"], "relaying")
        send(path, syslogLine("unit", "ready means relaying"))
        self.assertEqual(syslog.waitForLines(1), ["unit: ready means relaying"])
        self.assertIn("as nobody, no groups", daemon.log())
        daemon.stop()

    def test_boundingSetMatters(self):
        """
        The emulation of the unit's confinement bites: without
        CAP_SYS_CHROOT the relay cannot confine itself and never reports
        ready.
        """
        daemon, _, _ = self.relay(without=("CAP_SYS_CHROOT",))
        self.assertNotEqual(daemon.process.wait(60), 0)
        self.assertIsNone(daemon.notify.receive(0))
        self.assertIn("chroot", daemon.log())

    def test_suite(self):
        """
        The suite: READY=1 once the control channel and the login service
        listen and the relay socket is bound.
        """
        syslog = harness.startRsyslog(self)
        jail = harness.jailParent(self).child("jail")
        jail.child("dev").makedirs()
        directory = harness.shortTempDir(self)
        socketd = directory.child("jk_socketd.ini")
        socketd.setContent(f"[{jail.path}/dev/log]\n".encode())
        control = directory.child("ctl").path
        login = directory.child("login")
        login.makedirs()
        ini = directory.child("jailtwist.ini")
        ini.setContent(
            f"[control]\nipc = unix:{control}:mode=600\n\n"
            f"[probes]\nburst = 2\n\n"
            f"[jk_socketd]\nenabled = yes\nconfig = {socketd.path}\n"
            f"syslog = {syslog.socket}\n\n"
            f"[login]\nendpoint = unix:{login.path}/login.sock:mode=0666\n"
            .encode())
        daemon = Daemon(self, unitCommand(
            "jailtwist.service",
            replace={"/etc/jailtwist/jailtwist.ini": ini.path}))
        ready = daemon.waitReady()
        self.assertEqual(ready["STATUS"],
                         "serving probes, control, jk_socketd, login")
        # Ready means serving: no waiting for anything to appear.
        ping = harness.run("jailtwist", "-f", control, "ping")
        self.assertEqual(ping.returncode, 0, ping.stderr)
        self.assertIn(f"pid {daemon.process.pid} serving", ping.stdout)
        with socket.socket(socket.AF_UNIX) as probe:
            probe.connect(login.child("login.sock").path)
        send(jail.child("dev").child("log").path,
             syslogLine("suite", "relayed"))
        self.assertEqual(syslog.waitForLines(1), ["suite: relayed"])
        daemon.stop()

    def test_jaildaemon(self):
        directory = harness.shortTempDir(self)
        control = directory.child("ctl").path
        ini = directory.child("jailtwist.ini")
        ini.setContent(f"[control]\nipc = unix:{control}:mode=600\n".encode())
        daemon = Daemon(self, unitCommand(
            "jaildaemon.service",
            replace={"/etc/jailtwist/jailtwist.ini": ini.path}))
        ready = daemon.waitReady()
        self.assertIn(control, ready["STATUS"])
        ping = harness.run("jailtwist", "-f", control, "ping")
        self.assertEqual(ping.returncode, 0, ping.stderr)
        daemon.stop()


class SocketActivationTests(SynchronousTestCase):
    """
    skd@.service as skd@NAME.socket starts it: the socket on fd 3,
    LISTEN_FDS=1, LISTEN_PID the daemon's own pid, and the options of
    /etc/jailtwist/skd/NAME.conf.
    """

    def setUp(self):
        harness.isolated(self)

    def activate(self, listening, options, program, env=None):
        """
        Start skd@'s command with C{listening} passed as systemd passes it
        (bash sets LISTEN_PID to its own pid, which exec keeps).
        """
        fd = listening.fileno()
        argv = unitCommand("skd@.service", variables={
            "SKD_OPTIONS": options, "SKD_PROGRAM": program})
        redirect = "" if fd == 3 else f"3<&{fd} {fd}<&-"
        shell = ["bash", "-c", f'export LISTEN_PID=$$; exec "$@" {redirect}',
                 "skd-activation"] + argv
        environ = {"LISTEN_FDS": "1", "LISTEN_FDNAMES": "skd@test.socket"}
        environ.update(env or {})
        daemon = Daemon(self, argv, env=environ, pass_fds=(fd,),
                        shell=shell)
        listening.close()
        return daemon

    def test_unixStream(self):
        """
        The default skd@.socket (a unix stream socket): READY=1 naming it,
        then a connection gets its handler, whose environment has neither
        the service manager's nor the activation's variables.
        """
        path = harness.shortTempDir(self).child("echo.sock").path
        listening = socket.socket(socket.AF_UNIX)
        listening.bind(path)
        listening.listen(8)
        daemon = self.activate(listening, "-v -c 5", "env",
                               env={"WATCHDOG_USEC": "1000000"})
        ready = daemon.waitReady()
        self.assertEqual(ready["STATUS"], f"serving {path} (skd@test.socket), "
                                          f"passed as fd 3")
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(path)
            output = client.makefile("rb").read().decode()
        env = dict(line.split("=", 1) for line in output.splitlines()
                   if "=" in line)
        self.assertEqual(env["PROTO"], "UNIX-STREAM")
        self.assertEqual(env["PEERPID"], str(os.getpid()))
        for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "LISTEN_PID",
                     "LISTEN_FDS", "LISTEN_FDNAMES"):
            self.assertNotIn(name, env)
        daemon.stop()
        self.assertIn("Accepted local connection", daemon.log())
        # The socket file belongs to the socket unit: skd leaves it.
        self.assertTrue(os.path.exists(path))

    def test_tcpDualStack(self):
        """
        ListenStream=PORT: systemd binds [::]:PORT; an IPv4 client is served.
        """
        listening = socket.socket(socket.AF_INET6)
        listening.bind(("::", 0))
        listening.listen(8)
        port = listening.getsockname()[1]
        daemon = self.activate(listening, "", "echo served")
        daemon.waitReady()
        with socket.create_connection(("127.0.0.1", port), 10) as client:
            self.assertEqual(client.makefile("rb").read(), b"served\n")
        daemon.stop()

    def test_udpDatagram(self):
        """
        ListenDatagram=: skd runs the handler on the socket itself (inetd's
        wait mode), which answers the datagram.
        """
        listening = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        listening.bind(("127.0.0.1", 0))
        port = listening.getsockname()[1]
        handler = harness.shortTempDir(self).child("answer.py")
        handler.setContent(
            b"import socket\n"
            b"s = socket.socket(fileno=0)\n"
            b"data, peer = s.recvfrom(100)\n"
            b"s.sendto(data.upper(), peer)\n")
        daemon = self.activate(listening, "",
                               f"/usr/bin/python3 {handler.path}")
        daemon.waitReady()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(15)
            client.sendto(b"datagram", ("127.0.0.1", port))
            self.assertEqual(client.recv(100), b"DATAGRAM")
        daemon.stop()

    def test_notActivated(self):
        """
        Started without a passed socket (LISTEN_PID not its pid): one line,
        exit 1, and never READY=1.
        """
        notify = harness.NotifySocket(self)
        for pid in (None, "1"):
            env = dict(os.environ, **notify.environ, LISTEN_FDS="1")
            if pid:
                env["LISTEN_PID"] = pid
            result = subprocess.run(
                unitCommand("skd@.service",
                            variables={"SKD_PROGRAM": "cat"}),
                env=env, capture_output=True, text=True, timeout=60)
            self.assertEqual(result.returncode, 1, result)
            self.assertEqual(result.stderr.count("\n"), 1, result.stderr)
            self.assertIn("skd: --activated: no socket was passed",
                          result.stderr)
        self.assertIsNone(notify.receive(0))

    def test_notListening(self):
        """
        A connected socket (a socket unit with Accept=yes) is refused.
        """
        one, other = socket.socketpair()
        self.addCleanup(other.close)
        daemon = self.activate(one, "", "cat")
        self.assertEqual(daemon.process.wait(60), 1)
        self.assertIn("Accept=no", daemon.log())
        self.assertIsNone(daemon.notify.receive(0))


class UnitProbeTests(SynchronousTestCase):
    """
    A probe planted in a running isolated jail by the daemon started as
    jaildaemon.service confines it: it fires the host command.
    """

    def setUp(self):
        harness.isolated(self)
        from tests.test_launch import busyboxJail, killJail
        self.jail = busyboxJail(self, probe=False)
        self.pidfile = harness.shortTempDir(self).child("jail.pid").path
        launcher = subprocess.Popen(
            [harness.script("jk_chrootlaunch"), "-j", self.jail,
             "--isolate", "--name", "unitjail", "-p", self.pidfile, "-x",
             "/bin/busybox", "--", "sleep", "600"],
            stderr=subprocess.DEVNULL)
        self.addCleanup(launcher.wait)
        self.addCleanup(killJail, self.pidfile)
        self.initPid = harness.waitRegistered("unitjail").initPid

    def test_probeFires(self):
        from tests.test_jaildaemon import PKILL
        directory = harness.shortTempDir(self)
        control = directory.child("ctl").path
        out = directory.child("out")
        ini = directory.child("jailtwist.ini")
        ini.setContent(f"[control]\nipc = unix:{control}:mode=600\n".encode())
        daemon = Daemon(self, unitCommand(
            "jaildaemon.service",
            replace={"/etc/jailtwist/jailtwist.ini": ini.path}))
        daemon.waitReady()
        result = harness.run("jaildaemon", "-f", control, "-c",
                             f"echo fired >> {out.path}", "-j", "unitjail",
                             "-t", "UNIT_PROBE")
        self.assertEqual(result.returncode, 0, result.stderr + daemon.log())
        killed = subprocess.run(
            ["nsenter", "-t", str(self.initPid), "-a", "/bin/busybox", "sh",
             "-c", PKILL, "sh", "UNIT_PROBE"],
            capture_output=True, text=True, timeout=60)
        self.assertEqual(killed.stdout.strip(), "1", killed)
        harness.waitFor(lambda: out.exists() and out.getContent(),
                        what="the host command's output")
        self.assertEqual(out.getContent(), b"fired\n")
        daemon.stop()


class UnitLoginTests(test_loginservice.ServiceLoginTests):
    """
    The login service's own tests, with the suite confined as
    jailtwist.service confines it (its bounding set and no_new_privs).
    """

    def setUp(self):
        test_loginservice.LoginTestCase.setUp(self)
        self.service = test_loginservice.Suite(
            self, self.syslog, prefix=unitConfinement("jailtwist.service"))
