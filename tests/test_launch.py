"""
Tests for the installed jk_chrootlaunch: jailkit's behaviour (checks, exit
codes, accounts from the jail, supplementary groups cleared) and, with the
jail call's isolation on, escape attempts made from INSIDE launched jails by
real programs (static busybox, and a small static C probe built here), each
of which must fail.  A few negative controls show the same attempts
succeeding without isolation, so the tests can tell the difference.

Jails with a network are launched inside a network namespace the test
creates (C{ip netns add}), which plays the host: nothing is added to the
machine's own network namespace.
"""

import atexit
import fcntl
import os
import pty
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import termios

from twisted.trial.unittest import SynchronousTestCase

from jailtwist.registry import JailRegistry
from tests import harness

BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "ls", "cat", "echo", "id", "ps", "kill", "sleep", "mknod",
           "mount", "insmod", "hostname", "httpd", "wget", "ip", "logger",
           "chroot", "mkdir", "grep", "test", "unshare", "umount")
JAIL_ADDRESS = "192.0.2.2"
HOST_ADDRESS = "192.0.2.1"

# A static probe for what busybox cannot do: the classic chroot escape, a
# look through an inherited descriptor, binding and connecting.
PROBE_SOURCE = r"""
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

static int report(const char *what, int rc) {
    if (rc < 0) printf("%s: %s\n", what, strerror(errno));
    else printf("%s: ok\n", what);
    return rc;
}

static void list(const char *what, const char *path) {
    DIR *d = opendir(path);
    struct dirent *e;
    printf("%s:", what);
    if (d) {
        while ((e = readdir(d)))
            if (e->d_name[0] != '.') printf(" %s", e->d_name);
        closedir(d);
    }
    printf("\n");
}

static int address(struct sockaddr_in *sin, const char *ip, const char *port) {
    memset(sin, 0, sizeof *sin);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(atoi(port));
    return inet_pton(AF_INET, ip, &sin->sin_addr) == 1 ? 0 : -1;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc >= 2 && !strcmp(argv[1], "escape")) {
        struct stat before, after;
        int fd;
        stat("/", &before);
        mkdir("/tmp/escape", 0700);
        fd = open("/", O_RDONLY | O_DIRECTORY);
        if (report("chroot", chroot("/tmp/escape")) == 0) {
            int i;
            report("fchdir", fchdir(fd));
            for (i = 0; i < 64; i++) chdir("..");
            report("chroot back", chroot("."));
        }
        stat("/", &after);
        puts(before.st_dev != after.st_dev || before.st_ino != after.st_ino
             ? "ESCAPED" : "CONFINED");
        list("root", "/");
        return 0;
    }
    if (argc >= 3 && !strcmp(argv[1], "fd")) {
        struct stat st;
        int fd = atoi(argv[2]);
        if (report("fstat", fstat(fd, &st)) == 0 && report("fchdir", fchdir(fd)) == 0)
            list("through fd", ".");
        return 0;
    }
    if (argc >= 4 && !strcmp(argv[1], "bind")) {
        struct sockaddr_in sin;
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (address(&sin, argv[2], argv[3]) < 0) return 2;
        report("bind", bind(s, (struct sockaddr *)&sin, sizeof sin));
        return 0;
    }
    if (argc >= 4 && !strcmp(argv[1], "connect")) {
        struct sockaddr_in sin;
        char buffer[256];
        ssize_t n;
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct timeval tv = {2, 0};
        setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        if (address(&sin, argv[2], argv[3]) < 0) return 2;
        if (report("connect", connect(s, (struct sockaddr *)&sin, sizeof sin)) == 0) {
            n = read(s, buffer, sizeof buffer - 1);
            if (n > 0) { buffer[n] = 0; printf("got: %s", buffer); }
        }
        return 0;
    }
    if (argc >= 2 && !strcmp(argv[1], "tiocsti")) {
        const char *text = "injected\n";
        int rc = 0;
        for (; *text && rc == 0; text++)
            rc = ioctl(0, TIOCSTI, text);
        report("tiocsti", rc);
        return 0;
    }
    if (argc >= 2 && !strcmp(argv[1], "keyring")) {
        printf("session keyring: %ld\n",
               syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */,
                       -3 /* KEY_SPEC_SESSION_KEYRING */, 0));
        return 0;
    }
    if (argc >= 2 && !strcmp(argv[1], "keys")) {
        report("user keyring", syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */,
                                       -4 /* KEY_SPEC_USER_KEYRING */, 0));
        report("add_key", syscall(SYS_add_key, "user", "jailtwist-test", "x",
                                  1, -4 /* KEY_SPEC_USER_KEYRING */));
        report("persistent", syscall(SYS_keyctl, 22 /* GET_PERSISTENT */,
                                     -1, -3));
        return 0;
    }
    if (argc >= 2 && !strcmp(argv[1], "handle")) {
        struct { struct file_handle fh; unsigned char bytes[128]; } h;
        int mountId, fd;
        h.fh.handle_bytes = sizeof h.bytes;
        if (report("name_to_handle_at",
                   name_to_handle_at(AT_FDCWD, "/", &h.fh, &mountId, 0)) == 0) {
            fd = open("/", O_RDONLY | O_DIRECTORY);
            report("open_by_handle_at", open_by_handle_at(fd, &h.fh, O_RDONLY));
        }
        return 0;
    }
    if (argc >= 3 && !strcmp(argv[1], "abstract")) {
        struct sockaddr_un sun;
        int s = socket(AF_UNIX, SOCK_STREAM, 0);
        memset(&sun, 0, sizeof sun);
        sun.sun_family = AF_UNIX;
        strncpy(sun.sun_path + 1, argv[2], sizeof sun.sun_path - 2);
        report("connect", connect(s, (struct sockaddr *)&sun,
                                  offsetof(struct sockaddr_un, sun_path) + 1 + strlen(argv[2])));
        return 0;
    }
    fprintf(stderr, "usage: probe escape | fd N | bind IP PORT | connect IP PORT | tiocsti | keyring | keys\n");
    return 2;
}
"""

_probeCache = {}


def probeBinary():
    """
    Build the static C probe once per test run.

    @return: its path.
    """
    if "path" not in _probeCache:
        compiler = shutil.which("cc") or shutil.which("gcc")
        if compiler is None:
            raise AssertionError("no C compiler: install gcc and libc6-dev "
                                 "(bootstrap.sh test does)")
        directory = tempfile.mkdtemp(prefix="jtprobe", dir="/tmp")
        atexit.register(shutil.rmtree, directory, True)
        source = os.path.join(directory, "probe.c")
        with open(source, "w") as f:
            f.write(PROBE_SOURCE)
        binary = os.path.join(directory, "probe")
        subprocess.run([compiler, "-static", "-O", "-o", binary, source],
                       check=True)
        _probeCache["path"] = binary
    return _probeCache["path"]


def busyboxJail(testCase, name="jail", probe=True):
    """
    A small jail: static busybox with applet links, the C probe, accounts
    root and www (1000) in the jail's own passwd/group, a sticky tmp, a
    www directory with a page, empty dev and proc.

    @return: the jail's path (a C{str}).
    """
    if not os.path.exists(BUSYBOX):
        raise AssertionError("static busybox is missing: apt-get install "
                             "busybox-static (bootstrap.sh test does)")
    jail = harness.jailParent(testCase).child(name).path
    os.mkdir(jail, 0o755)
    for directory in ("bin", "etc", "dev", "proc"):
        os.mkdir(os.path.join(jail, directory), 0o755)
    os.mkdir(os.path.join(jail, "tmp"))
    os.chmod(os.path.join(jail, "tmp"), 0o1777)
    shutil.copy(BUSYBOX, os.path.join(jail, "bin", "busybox"))
    for applet in APPLETS:
        os.symlink("busybox", os.path.join(jail, "bin", applet))
    if probe:
        shutil.copy(probeBinary(), os.path.join(jail, "bin", "probe"))
    with open(os.path.join(jail, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/:/bin/sh\n"
                "www:x:1000:1000:web:/www:/bin/sh\n")
    with open(os.path.join(jail, "etc", "group"), "w") as f:
        f.write("root:x:0:\nwww:x:1000:\nstaff:x:50:\n")
    os.mkdir(os.path.join(jail, "www"), 0o755)
    with open(os.path.join(jail, "www", "index.html"), "w") as f:
        f.write("hello from the jail\n")
    return jail


def launch(*args, netns=None, **kw):
    """
    Run the installed jk_chrootlaunch (inside network namespace C{netns}
    when given); return the CompletedProcess.
    """
    command = [harness.script("jk_chrootlaunch")] + list(args)
    if netns is not None:
        command = netns.command(command)
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 60)
    return subprocess.run(command, **kw)


def killJail(pidfile):
    """
    Kill the jail whose first process is in C{pidfile} (its init: killing
    it ends every process of a pid namespace) and wait until it is gone.
    """
    try:
        with open(pidfile) as f:
            pid = int(f.read())
    except (OSError, ValueError):
        return
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        signal.pidfd_send_signal(fd, signal.SIGKILL)
    except OSError:
        pass
    harness.waitFor(lambda: not os.path.exists(f"/proc/{pid}/stat") or
                    open(f"/proc/{pid}/stat").read().split(") ")[1][0] == "Z",
                    what=f"jail init {pid} to die")
    os.close(fd)


class NetNamespace:
    """
    A network namespace made by the test (C{ip netns add}) that plays the
    host for jails with a network; deleted afterwards.
    """

    def __init__(self, testCase):
        self.name = f"jt{os.getpid()}x{id(testCase) % 10000}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        testCase.addCleanup(subprocess.run, ["ip", "netns", "delete",
                                             self.name])
        self.run("ip", "link", "set", "lo", "up", check=True)

    def command(self, argv):
        return ["ip", "netns", "exec", self.name] + list(argv)

    def run(self, *argv, **kw):
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", 30)
        return subprocess.run(self.command(argv), **kw)

    def links(self):
        output = self.run("ip", "-o", "link", "show").stdout
        return [line.split(":")[1].strip().split("@")[0]
                for line in output.splitlines()]


class LaunchTestCase(SynchronousTestCase):

    def setUp(self):
        harness.isolated(self)
        self.jail = busyboxJail(self)
        self.state = harness.shortTempDir(self)

    def pidfile(self):
        path = self.state.child(f"pid{len(self._cleanups)}").path
        self.addCleanup(killJail, path)
        return path

    def launch(self, *args, **kw):
        return launch("--state-dir", self.state.path, *args, **kw)

    def registry(self):
        return JailRegistry(self.state)

    def assertRefused(self, status, text, *args):
        """
        jk_chrootlaunch with C{args} fails with C{status} and one line
        containing C{text}.
        """
        result = self.launch(*args)
        self.assertEqual(result.returncode, status, result.stderr)
        self.assertIn(text, result.stderr)
        self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)

    def inside(self, script, *options, **kw):
        """
        Run C{script} with busybox sh as jailed root in a fully isolated
        jail; return the CompletedProcess.
        """
        return self.launch("-j", self.jail, "--isolate", *options,
                           "-p", self.pidfile(),
                           "-x", "/bin/busybox", "--", "sh", "-c", script,
                           **kw)


class JailkitBehaviourTests(LaunchTestCase):
    """
    Without isolation options jk_chrootlaunch does what jailkit's does.
    """

    def test_runsProgramWithItsStatus(self):
        result = self.launch("-j", self.jail, "-x", "/bin/busybox", "--",
                             "sh", "-c", "ls /; exit 7")
        self.assertEqual(result.returncode, 7, result.stderr)
        self.assertEqual(result.stdout.split(),
                         ["bin", "dev", "etc", "proc", "tmp", "www"])

    def test_jailPrefixAccepted(self):
        result = self.launch("-j", self.jail, "-x",
                             self.jail + "/bin/busybox", "--", "true")
        self.assertEqual(result.returncode, 0, result.stderr)

    def test_usersAndGroupsFromTheJail(self):
        """
        Names come from the jail's own passwd/group (www and staff exist
        only there); numbers are accepted; supplementary groups are cleared
        even when the caller has some (jailkit kept them, gid 0 included).
        """
        def withGroups():
            os.setgroups([0, 4, 27])

        result = self.launch("-j", self.jail, "-u", "www", "-x",
                             "/bin/busybox", "--", "id",
                             preexec_fn=withGroups)
        self.assertEqual(result.stdout.strip(),
                         "uid=1000(www) gid=1000(www)", result.stderr)
        result = self.launch("-j", self.jail, "-u", "www", "-g", "staff",
                             "-x", "/bin/busybox", "--", "id",
                             preexec_fn=withGroups)
        self.assertEqual(result.stdout.strip(),
                         "uid=1000(www) gid=50(staff)")
        result = self.launch("-j", self.jail, "-u", "4321", "-g", "4322",
                             "-x", "/bin/busybox", "--", "id")
        self.assertEqual(result.stdout.strip(), "uid=4321 gid=4322")

    def test_unknownAccounts(self):
        jail = self.jail
        self.assertRefused(1, "user nosuchuser does not exist",
                           "-j", jail, "-u", "nosuchuser", "-x", "/bin/sh")
        self.assertRefused(1, "group nosuchgroup does not exist",
                           "-j", jail, "-g", "nosuchgroup", "-x", "/bin/sh")
        # A uid that is not in the jail's passwd needs -g.
        self.assertRefused(1, "give its group with -g",
                           "-j", jail, "-u", "4321", "-x", "/bin/sh")

    def test_missingAndRelativeArguments(self):
        self.assertRefused(21, "no jail given", "-x", "/bin/busybox")
        self.assertRefused(23, "no executable given", "-j", self.jail)
        self.assertRefused(27, "must be an absolute path",
                           "-j", "jail", "-x", "/bin/busybox")
        self.assertRefused(25, "does not exist",
                           "-j", self.jail + "-missing", "-x", "/bin/busybox")

    def test_notRoot(self):
        """
        jailkit's jk_chrootlaunch fails with 35 for a caller who cannot
        chroot; so does this one, before touching the registry.
        """
        def nobody():
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)

        result = self.launch("-j", self.jail, "-x", "/bin/busybox",
                             preexec_fn=nobody)
        self.assertEqual(result.returncode, 35, result.stderr)
        self.assertIn("only root can launch a jail", result.stderr)

    def test_plainDaemonAsJailUser(self):
        """
        jailkit's use: a small web server as the jail's www user, in the
        foreground, its pid in the pidfile, reached from the host.
        """
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        listener.close()
        pidfile = self.pidfile()
        process = subprocess.Popen(
            [harness.script("jk_chrootlaunch"), "--state-dir",
             self.state.path, "-j", self.jail, "-u", "www", "-p", pidfile,
             "-x", "/bin/busybox", "--", "httpd", "-f", "-p",
             f"127.0.0.1:{port}", "-h", "/www"])
        self.addCleanup(process.wait)
        self.addCleanup(process.kill)

        def fetch():
            try:
                with socket.create_connection(("127.0.0.1", port), 2) as c:
                    c.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
                    return b"".join(iter(lambda: c.recv(4096), b""))
            except OSError:
                return None

        reply = harness.waitFor(fetch, what="the jailed httpd")
        self.assertIn(b"hello from the jail", reply)
        self.assertEqual(open(pidfile).read().strip(), str(process.pid))
        with open(f"/proc/{process.pid}/status") as f:
            ids = {line.split(":")[0]: line.split()[1:] for line in f}
        self.assertEqual(ids["Uid"], ["1000"] * 4)
        self.assertEqual(ids["Groups"], [])
        self.assertEqual(os.readlink(f"/proc/{process.pid}/root"), self.jail)

    def test_unsafeJail(self):
        os.chmod(self.jail, 0o775)
        result = self.launch("-j", self.jail, "-x", "/bin/busybox")
        self.assertEqual(result.returncode, 25)
        self.assertIn(self.jail, result.stderr)
        self.assertEqual(len(result.stderr.splitlines()), 1)

    def test_unsafeExecutables(self):
        bin = os.path.join(self.jail, "bin")
        cases = {"sh": "is a symlink"}
        for name, mode, owner, reason in (
                ("setuid", 0o4755, 0, "setuid"),
                ("writable", 0o775, 0, "writable by group or others"),
                ("owned", 0o755, 1000, "not owned by root")):
            shutil.copy(BUSYBOX, os.path.join(bin, name))
            os.chown(os.path.join(bin, name), owner, 0)
            os.chmod(os.path.join(bin, name), mode)
            cases[name] = reason
        cases["missing"] = "No such file or directory"
        for name, reason in cases.items():
            result = self.launch("-j", self.jail, "-x", "/bin/" + name)
            self.assertEqual(result.returncode, 29, (name, result.stderr))
            self.assertIn(reason, result.stderr)

    def test_execFailure(self):
        path = os.path.join(self.jail, "bin", "notexec")
        with open(path, "w") as f:
            f.write("not a program\n")
        os.chmod(path, 0o755)
        result = self.launch("-j", self.jail, "-x", "/bin/notexec")
        self.assertEqual(result.returncode, 31)
        self.assertIn("failed to execute /bin/notexec", result.stderr)

    def test_pidfileAndRegistry(self):
        """
        The pidfile holds the program's pid (jk_chrootlaunch execs in
        place); the registry lists the jail while it runs.
        """
        pidfile = self.pidfile()
        process = subprocess.Popen(
            [harness.script("jk_chrootlaunch"), "--state-dir",
             self.state.path, "-j", self.jail, "-p", pidfile, "--name",
             "plainjail", "-x", "/bin/busybox", "--", "sleep", "30"])
        self.addCleanup(process.wait)
        [record] = harness.waitFor(self.registry().entries, what="the jail")
        self.assertEqual(open(pidfile).read().strip(), str(process.pid))
        self.assertEqual((record.name, record.path, record.initPid,
                          record.isolation),
                         ("plainjail", self.jail, process.pid, []))
        process.kill()
        process.wait()
        self.assertEqual(self.registry().entries(), [])

    def test_jkListShowsTheJail(self):
        """
        With the default registry (/run/jailtwist, private under
        tests/isolated) the installed jk_list shows a launched jail.
        """
        pidfile = self.pidfile()
        process = subprocess.Popen(
            [harness.script("jk_chrootlaunch"), "-j", self.jail,
             "--isolate", "--name", "listedjail", "-p", pidfile, "-x",
             "/bin/busybox", "--", "sleep", "30"],
            stderr=subprocess.DEVNULL)
        self.addCleanup(process.wait)
        self.addCleanup(killJail, pidfile)
        harness.waitFor(JailRegistry().entries, what="the jail")
        initPid = open(pidfile).read().strip()
        listing = harness.run("jk_list")
        self.assertEqual(listing.returncode, 0, listing.stderr)
        [line] = [line for line in listing.stdout.splitlines()
                  if "listedjail" in line]
        self.assertIn(initPid, line.split())
        self.assertIn(self.jail, line.split())

    def test_logsToSyslog(self):
        """
        Like jailkit's, each launch is logged (tag jk_chrootlaunch,
        "executing ... in jail ..."), and so is every refusal.  The launches run in a mount namespace where a private
        rsyslogd's socket is /dev/log.
        """
        syslog = harness.startRsyslog(self)

        def logged(*args):
            script = ("mount -t tmpfs none /dev && : > /dev/log && "
                      "mknod -m 666 /dev/null c 1 3 && "
                      f"mount --bind {syslog.socket} /dev/log && "
                      'exec "$@"')
            return subprocess.run(
                ["unshare", "-m", "sh", "-c", script, "sh",
                 harness.script("jk_chrootlaunch"), "--state-dir",
                 self.state.path] + list(args),
                capture_output=True, text=True, timeout=60)

        self.assertEqual(logged("-j", self.jail, "-x", "/bin/busybox", "--",
                                "true").returncode, 0)
        self.assertEqual(logged("-j", self.jail, "-u", "nobody", "-x",
                                "/bin/busybox").returncode, 1)
        lines = syslog.waitForLines(2)
        self.assertTrue(lines[0].startswith("jk_chrootlaunch["), lines)
        self.assertIn(f"executing /bin/busybox in jail {self.jail}",
                      lines[0])
        self.assertIn(f"abort, user nobody does not exist in {self.jail}",
                      lines[1])

    def test_resolveProcessOfIsolatedJail(self):
        """
        Any process of a pivot_root jail, named by its host pid, resolves
        to the jail's registry record and host path.
        """
        pidfile = self.pidfile()
        process = subprocess.Popen(
            [harness.script("jk_chrootlaunch"), "--state-dir",
             self.state.path, "-j", self.jail, "--isolate", "--name",
             "deep", "-p", pidfile, "-x", "/bin/busybox", "--", "sleep",
             "30"], stderr=subprocess.DEVNULL)
        self.addCleanup(process.wait)
        self.addCleanup(killJail, pidfile)
        [record] = harness.waitFor(self.registry().entries, what="the jail")
        with open(f"/proc/{record.initPid}/task/{record.initPid}/"
                  f"children") as f:
            [program] = f.read().split()
        with self.registry().resolve(f"pid:{program}") as pinned:
            self.assertEqual((pinned.root, pinned.record.name),
                             (self.jail, "deep"))

    def test_descriptorsClosed(self):
        """
        A descriptor of a host directory handed to jk_chrootlaunch does not
        reach the program (it would lead straight out of any jail).
        """
        fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
        self.addCleanup(os.close, fd)
        for extra in ((), ("--isolate",)):
            result = self.launch("-j", self.jail, *extra,
                                 "-p", self.pidfile(),
                                 "-x", "/bin/probe", "--", "fd", str(fd),
                                 pass_fds=(fd,))
            self.assertIn("fstat: Bad file descriptor", result.stdout,
                          result.stderr)

    def test_plainChrootAsRootEscapes(self):
        """
        Negative control: jailkit's plain chroot does not hold a root
        program (it keeps CAP_SYS_CHROOT), and the probe notices.
        """
        result = self.launch("-j", self.jail, "-x", "/bin/probe", "--",
                             "escape")
        self.assertIn("ESCAPED", result.stdout, result.stderr)

    def test_badOptions(self):
        jail = self.jail
        self.assertRefused(2, "unknown capability", "-j", jail,
                           "--caps", "SYS_NOTHING", "-x", "/bin/busybox")
        self.assertRefused(2, "--host-address", "-j", jail,
                           "--net", "192.0.2.9", "-x", "/bin/busybox")
        self.assertRefused(2, "use a unicast address", "-j", jail,
                           "--net", "127.0.0.5", "--host-address",
                           "192.0.2.1", "-x", "/bin/busybox")
        self.assertRefused(2, "host name 'a b' is not usable", "-j", jail,
                           "--hostname", "a b", "-x", "/bin/busybox")


class EscapeTests(LaunchTestCase):
    """
    Fully isolated jails (C{--isolate}), jailed root trying to get out.
    """

    def test_processesOfTheHostInvisible(self):
        result = self.inside("ps -o pid,args; echo; ls /proc")
        self.assertEqual(result.returncode, 0, result.stderr)
        ps, proc = result.stdout.split("\n\n")
        pids = [int(word) for word in proc.split() if word.isdigit()]
        self.assertNotIn(os.getpid(), pids)
        # The jail's init, sh, ps/ls: nothing else.
        self.assertLessEqual(len(pids), 4, proc)
        self.assertEqual(pids[0], 1)
        self.assertLessEqual(len(ps.splitlines()), 5, ps)
        # The jail's init does not show the launcher's host command line.
        self.assertIn("1 jailtwist-init", ps)
        self.assertNotIn("jk_chrootlaunch", ps)
        self.assertNotIn(self.jail, ps)

    def test_cannotSignalTheHost(self):
        victim = subprocess.Popen(["sleep", "30"])
        self.addCleanup(victim.wait)
        self.addCleanup(victim.kill)
        result = self.inside(f"kill -9 {victim.pid}; echo status=$?")
        self.assertIn("status=1", result.stdout)
        self.assertIn("No such process", result.stderr)
        self.assertIsNone(victim.poll())

    def test_cgroupPathHidden(self):
        with open("/proc/self/cgroup") as f:
            host = f.read()
        result = self.inside("cat /proc/self/cgroup")
        inside = result.stdout.splitlines()
        self.assertTrue(inside, result.stderr)
        # Every hierarchy (v2, and v1 ones where the host has them) shows
        # the jail's own cgroup as the root.
        self.assertEqual([line.rsplit(":", 1)[1] for line in inside],
                         ["/"] * len(inside))
        self.assertEqual(len(inside), len(host.splitlines()))

    def test_mknodRefused(self):
        result = self.inside("mknod /tmp/mem c 1 1; echo status=$?")
        self.assertIn("status=1", result.stdout)
        self.assertIn("Operation not permitted", result.stderr)
        self.assertFalse(os.path.exists(self.jail + "/tmp/mem"))

    def test_procSysReadOnly(self):
        result = self.inside(
            "v=$(cat /proc/sys/kernel/printk_ratelimit); "
            "echo $v > /proc/sys/kernel/printk_ratelimit; echo status=$?; "
            "grep ' /proc/sys ' /proc/mounts")
        self.assertIn("status=1", result.stdout)
        self.assertIn("Read-only file system", result.stderr)
        self.assertIn(" ro,", result.stdout)

    def test_moduleLoadRefused(self):
        """
        init_module fails for jailed root.  On a kernel with module support
        the refusal is the capability check (EPERM, before the garbage is
        even parsed); a kernel without it (no /proc/modules, like this
        test machine's) answers ENOSYS to everyone, so the test also checks
        that CAP_SYS_MODULE (16) is out of the jail's bounding set.
        """
        with open(self.jail + "/tmp/evil.ko", "wb") as f:
            f.write(b"\x7fELF" + os.urandom(4096))
        result = self.inside("insmod /tmp/evil.ko; echo status=$?; "
                             "grep CapBnd /proc/self/status")
        self.assertNotIn("status=0", result.stdout)
        if os.path.exists("/proc/modules"):
            self.assertIn("Operation not permitted", result.stderr)
        else:
            # busybox's words for ENOSYS
            self.assertIn("kernel does not support", result.stderr)
        bounding = int(result.stdout.split("CapBnd:")[1].strip(), 16)
        self.assertFalse(bounding & (1 << 16))

    def test_mountAndRemountRefused(self):
        result = self.inside(
            "mount -o remount,rw /proc/sys; echo remount=$?; "
            "mount -t tmpfs none /tmp; echo mount=$?; "
            "mount -o remount,rw /; echo root=$?")
        self.assertIn("remount=1", result.stdout)
        self.assertIn("mount=1", result.stdout)
        self.assertIn("root=1", result.stdout)
        self.assertEqual(result.stderr.count("permission denied"), 3,
                         result.stderr)

    def test_userNamespaceRefused(self):
        """
        A user namespace would give jailed root every capability inside it
        (and the kernel surface that comes with one): the syscall filter
        refuses it, through unshare and through clone.
        """
        result = self.inside(
            "unshare -U true; echo unshare=$?; "
            "unshare -U -r true; echo mapped=$?")
        self.assertEqual(
            [line for line in result.stdout.splitlines() if "=" in line],
            ["unshare=1", "mapped=1"], result.stderr)
        self.assertIn("unshare(0x10000000): Operation not permitted",
                      result.stderr)

    def test_setuidFilesRefused(self):
        """
        A setuid-root file made in the jail would be setuid root for host
        users who can reach the jail: jailed root cannot set those bits.
        """
        result = self.inside(
            "cp /bin/busybox /tmp/s; chmod 4755 /tmp/s; echo suid=$?; "
            "chmod 2755 /tmp/s; echo sgid=$?; chmod 700 /tmp/s; "
            "echo plain=$?")
        self.assertEqual(
            [line for line in result.stdout.splitlines() if "=" in line],
            ["suid=1", "sgid=1", "plain=0"], result.stderr)
        mode = os.stat(self.jail + "/tmp/s").st_mode
        self.assertEqual(mode & 0o7777, 0o700)

    def test_handleOpenRefused(self):
        """
        open_by_handle_at (the "shocker" escape: open any inode of the file
        system by its handle) needs CAP_DAC_READ_SEARCH, out of the
        ceiling.  Negative control: a plain launch as root can.
        """
        result = self.inside("/bin/probe handle")
        self.assertIn("open_by_handle_at: Operation not permitted",
                      result.stdout, result.stderr)
        plain = self.launch("-j", self.jail, "-x", "/bin/probe", "--",
                            "handle")
        self.assertIn("open_by_handle_at: ok", plain.stdout, plain.stderr)

    def test_hostAbstractSocketsUnreachable(self):
        """
        Abstract unix sockets belong to the network namespace: a host
        service on one (an X server, a bus) is out of reach of an isolated
        jail.  Negative control: a plain chroot reaches it.
        """
        name = f"jailtwist-test-{os.getpid()}"
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(server.close)
        server.bind("\0" + name)
        server.listen(5)
        result = self.inside(f"/bin/probe abstract {name}")
        self.assertIn("connect: Connection refused", result.stdout,
                      result.stderr)
        plain = self.launch("-j", self.jail, "-x", "/bin/probe", "--",
                            "abstract", name)
        self.assertIn("connect: ok", plain.stdout, plain.stderr)

    def test_chrootEscapeRefused(self):
        """
        The classic escape (chroot into a subdirectory, climb out through a
        directory descriptor) needs CAP_SYS_CHROOT, which the ceiling
        removes; even with it kept, pivot_root leaves no path out.
        """
        result = self.inside("/bin/probe escape")
        self.assertIn("chroot: Operation not permitted", result.stdout)
        self.assertIn("CONFINED", result.stdout)
        result = self.inside("/bin/probe escape", "--caps",
                             "default,SYS_CHROOT")
        self.assertIn("chroot back: ok", result.stdout)
        self.assertIn("CONFINED", result.stdout)
        [listing] = [line for line in result.stdout.splitlines()
                     if line.startswith("root:")]
        self.assertEqual(sorted(listing.split()[1:]),
                         ["bin", "dev", "etc", "proc", "tmp", "www"])

    def test_capabilitiesAndNoNewPrivs(self):
        result = self.inside("grep -E '^(Cap|NoNewPrivs)' /proc/self/status")
        fields = dict(line.split(":\t") for line in result.stdout.splitlines())
        self.assertEqual(fields["CapBnd"], "00000000200005fb")
        self.assertEqual(fields["CapEff"], "00000000200005fb")
        self.assertEqual(fields["CapAmb"], "0000000000000000")
        self.assertEqual(fields["NoNewPrivs"], "1")
        result = self.launch("-j", self.jail, "--isolate", "-u", "www",
                             "-p", self.pidfile(), "-x", "/bin/busybox",
                             "--", "grep", "-E", "^(Cap|NoNewPrivs)",
                             "/proc/self/status")
        fields = dict(line.split(":\t") for line in result.stdout.splitlines())
        self.assertEqual(fields["CapEff"], "0000000000000000")
        self.assertEqual(fields["CapPrm"], "0000000000000000")
        self.assertEqual(fields["CapBnd"], "00000000200005fb")

    def test_minimalDevWithLogSocket(self):
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(receiver.close)
        receiver.bind(self.jail + "/dev/log")
        result = self.inside("ls /dev; logger -t jailed hello-from-inside;"
                             " echo > /dev/newfile; echo write=$?")
        self.assertEqual(
            result.stdout.split(),
            ["full", "log", "null", "random", "tty", "urandom", "zero",
             "write=1"])
        receiver.settimeout(5)
        self.assertIn(b"hello-from-inside", receiver.recv(4096))

    def test_terminalInjectionRefused(self):
        """
        A jailed program cannot type into the terminal it was launched
        from (TIOCSTI, CVE-2017-5226 for bubblewrap): with isolation it
        runs in a new session.  Negative control: jailkit's plain launch
        can, and the injected line arrives.
        """
        def launchOnTerminal(*options):
            master, slave = pty.openpty()
            self.addCleanup(os.close, master)
            self.addCleanup(os.close, slave)

            def controllingTerminal():
                os.setsid()
                fcntl.ioctl(0, termios.TIOCSCTTY, 0)

            self.launch("-j", self.jail, *options, "-x", "/bin/probe",
                        "--", "tiocsti", stdin=slave, stdout=slave,
                        stderr=slave, preexec_fn=controllingTerminal,
                        capture_output=False)
            os.set_blocking(master, False)
            os.set_blocking(slave, False)
            output = os.read(master, 4096).decode()
            try:
                typed = os.read(slave, 4096).decode()
            except BlockingIOError:
                typed = ""
            return output, typed

        output, typed = launchOnTerminal("--isolate", "-p", self.pidfile())
        self.assertIn("tiocsti: Operation not permitted", output)
        self.assertEqual(typed, "")
        output, typed = launchOnTerminal()
        self.assertIn("tiocsti: ok", output)
        self.assertEqual(typed, "injected\n")

    def test_keyringsRefused(self):
        """
        Keyrings are per uid, not per jail: jailed root would share the host
        root's user and persistent keyrings.  The syscall filter refuses
        every keyring call; a plain launch (jailkit's) still has them.
        """
        inside = self.inside("/bin/probe keys; /bin/probe keyring").stdout
        self.assertEqual(inside.splitlines(),
                         ["user keyring: Operation not permitted",
                          "add_key: Operation not permitted",
                          "persistent: Operation not permitted",
                          "session keyring: -1"])
        outside = subprocess.run([probeBinary(), "keyring"],
                                 capture_output=True, text=True).stdout
        plain = self.launch("-j", self.jail, "-x", "/bin/probe", "--",
                            "keyring").stdout
        self.assertEqual(plain, outside)

    def test_initUnreachable(self):
        """
        The jail's init (pid 1, the host's Python) cannot be traced or read
        from inside: its executable, environment and descriptors are
        closed to jailed root.
        """
        result = self.inside("ls -l /proc/1/exe; cat /proc/1/environ; "
                             "ls -l /proc/1/fd/0; ls /proc/1/root/; "
                             "echo done")
        self.assertIn("done", result.stdout)
        self.assertEqual(result.stderr.count("Permission denied"), 4,
                         result.stderr)

    def test_hostNameAndIpc(self):
        """
        The jail has its own host name and its own System V IPC: a message
        queue made on the host is not there.
        """
        made = subprocess.run(["ipcmk", "-Q"], capture_output=True,
                              text=True, check=True)
        queue = made.stdout.split(":")[1].strip()
        self.addCleanup(subprocess.run, ["ipcrm", "-q", queue])
        with open("/proc/sysvipc/msg") as f:
            self.assertIn(queue, [line.split()[1]
                                  for line in f.read().splitlines()[1:]])
        result = self.inside("hostname; cat /proc/sysvipc/msg", "--hostname",
                             "jailhost")
        lines = result.stdout.splitlines()
        self.assertEqual(lines[0], "jailhost", result.stderr)
        self.assertEqual(len(lines), 2, lines)
        self.assertNotEqual(socket.gethostname(), "jailhost")
        result = self.inside("hostname", "--name", "named")
        self.assertEqual(result.stdout.strip(), "named")

    def test_shortLivedPrograms(self):
        """
        A program that is over at once (its jail ends before the launcher
        could register it) is a success, not a registry error.
        """
        for attempt in range(8):
            result = self.launch("-j", self.jail, "--isolate", "-x",
                                 "/bin/busybox", "--", "true")
            self.assertEqual((result.returncode, result.stderr), (0, ""))
        self.assertEqual(self.registry().entries(), [])

    def test_signalsForwarded(self):
        """
        A foreground program keeps jk_chrootlaunch running; SIGTERM to
        jk_chrootlaunch reaches the program through the jail's init.
        """
        pidfile = self.pidfile()
        process = subprocess.Popen(
            [harness.script("jk_chrootlaunch"), "--state-dir",
             self.state.path, "-j", self.jail, "--isolate", "-p", pidfile,
             "-x", "/bin/busybox", "--", "sleep", "30"])
        self.addCleanup(process.wait)
        self.addCleanup(killJail, pidfile)
        harness.waitFor(lambda: self.registry().entries(), what="the jail")
        process.send_signal(signal.SIGTERM)
        self.assertEqual(process.wait(10), 128 + signal.SIGTERM)
        self.assertEqual(self.registry().entries(), [])


class NetworkTests(LaunchTestCase):
    """
    Jails with one address on a veth link, or no network, launched in a
    network namespace that plays the host.
    """

    def setUp(self):
        LaunchTestCase.setUp(self)
        self.host = NetNamespace(self)

    def netLaunch(self, *args, **kw):
        return self.launch("-j", self.jail, "--isolate", "--net",
                           JAIL_ADDRESS, "--host-address", HOST_ADDRESS,
                           "-p", self.pidfile(), *args, netns=self.host, **kw)

    def hostService(self):
        """
        A TCP service on the host's 127.0.0.1 only; returns its port.
        """
        code = ("import socket,sys\n"
                "s=socket.socket()\n"
                "s.bind(('127.0.0.1',0))\n"
                "s.listen(5)\n"
                "print(s.getsockname()[1],flush=True)\n"
                "while True:\n"
                "    c,_=s.accept()\n"
                "    c.sendall(b'host secret\\n')\n"
                "    c.close()\n")
        process = subprocess.Popen(self.host.command([sys.executable, "-c",
                                                      code]),
                                   stdout=subprocess.PIPE, text=True)
        self.addCleanup(process.wait)
        self.addCleanup(process.kill)
        return int(process.stdout.readline())

    def test_exactlyOneAddress(self):
        result = self.netLaunch(
            "-x", "/bin/busybox", "--", "sh", "-c",
            "ip -o addr | grep -v ' lo ' ; "
            f"/bin/probe bind {HOST_ADDRESS} 8000; "
            "/bin/probe bind 10.1.2.3 8000; "
            f"/bin/probe bind {JAIL_ADDRESS} 8000")
        self.assertEqual(result.returncode, 0, result.stderr)
        lines = result.stdout.splitlines()
        addresses = [line for line in lines if " inet" in line]
        self.assertEqual(len(addresses), 1, result.stdout)
        self.assertIn(f"inet {JAIL_ADDRESS} peer {HOST_ADDRESS}/32",
                      addresses[0])
        self.assertEqual(
            [line for line in lines if line.startswith("bind")],
            ["bind: Cannot assign requested address",
             "bind: Cannot assign requested address", "bind: ok"])

    def test_hostLoopbackUnreachable(self):
        port = self.hostService()
        control = self.host.run(probeBinary(), "connect", "127.0.0.1",
                                str(port))
        self.assertIn("got: host secret", control.stdout)
        result = self.netLaunch(
            "-x", "/bin/busybox", "--", "sh", "-c",
            f"/bin/probe connect 127.0.0.1 {port}; "
            f"/bin/probe connect {HOST_ADDRESS} {port}")
        self.assertNotIn("host secret", result.stdout)
        self.assertEqual(result.stdout.count("connect: Connection refused"),
                         2, result.stdout + result.stderr)

    def test_noNetwork(self):
        port = self.hostService()
        result = self.launch("-j", self.jail, "--isolate", "-p",
                             self.pidfile(), "-x", "/bin/busybox", "--",
                             "sh", "-c", f"/bin/probe connect 127.0.0.1 "
                                         f"{port}; ip -o link",
                             netns=self.host)
        self.assertIn("connect: Connection refused", result.stdout)
        self.assertEqual(len([line for line in result.stdout.splitlines()
                              if ": <" in line]), 1, result.stdout)

    def webJail(self, address, hostAddress, url):
        """
        Launch busybox httpd, a daemon that forks away, as the jail's www
        user with C{address}; check that jk_chrootlaunch returned, the jail
        is registered, its init kept nothing of the launcher's, and the host
        reaches the page at C{url}; then kill the jail's init (from the
        pidfile) and check that the jail and its link are gone.
        """
        pidfile = self.pidfile()
        result = self.launch("-j", self.jail, "--isolate", "--net", address,
                             "--host-address", hostAddress, "--caps", "none",
                             "-u", "www", "-p", pidfile, "--name", "web",
                             "-x", "/bin/busybox", "--", "httpd", "-p",
                             url.split("/")[2], "-h", "/www",
                             netns=self.host)
        self.assertEqual(result.returncode, 0, result.stderr)
        [record] = self.registry().entries()
        self.assertEqual(record.name, "web")
        self.assertIn(f"net:{address}", record.isolation)
        self.assertEqual(open(pidfile).read().strip(), str(record.initPid))
        # Only /dev/null on 0, 1 and 2 in the jail's init.
        fds = os.listdir(f"/proc/{record.initPid}/fd")
        self.assertEqual(sorted(fds), ["0", "1", "2"])
        self.assertEqual(os.readlink(f"/proc/{record.initPid}/fd/1"),
                         "/dev/null")
        page = self.host.run(BUSYBOX, "wget", "-q", "-O", "-", url)
        self.assertEqual(page.stdout, "hello from the jail\n", page.stderr)
        links = [link for link in self.host.links() if link.startswith("jtv")]
        self.assertEqual(len(links), 1, links)
        os.kill(record.initPid, signal.SIGTERM)
        harness.waitFor(lambda: not self.registry().entries(),
                        what="the jail to end")
        harness.waitFor(lambda: not [link for link in self.host.links()
                                     if link.startswith("jtv")],
                        what="the veth link to go")

    def test_daemonReachableFromTheHost(self):
        self.webJail(JAIL_ADDRESS, HOST_ADDRESS,
                     f"http://{JAIL_ADDRESS}:8080/index.html")

    def test_ipv6Address(self):
        self.webJail("2001:db8::2", "2001:db8::1",
                     "http://[2001:db8::2]:8080/index.html")

    def test_hostLinkRemovedOnFailure(self):
        """
        A launch refused for a taken name or address leaves nothing behind;
        one that fails after its veth pair exists (here: the program cannot
        be executed) leaves no link on the host.
        """
        first = self.netLaunch("--name", "taken", "-x", "/bin/busybox",
                               "--", "httpd", "-p", "8080", "-h", "/www")
        self.assertEqual(first.returncode, 0, first.stderr)
        before = self.host.links()
        second = self.launch("-j", self.jail, "--isolate", "--net",
                             "192.0.2.3", "--host-address", HOST_ADDRESS,
                             "--name", "taken", "-x", "/bin/busybox", "--",
                             "true", netns=self.host)
        self.assertEqual(second.returncode, 2)
        self.assertIn("already named 'taken'", second.stderr)
        self.assertEqual(self.host.links(), before)
        # The address of a running jail is not given twice.
        again = self.netLaunch("-x", "/bin/busybox", "--", "true")
        self.assertEqual(again.returncode, 2)
        self.assertIn("already the address of running jail taken",
                      again.stderr)
        self.assertEqual(self.host.links(), before)
        path = os.path.join(self.jail, "bin", "notexec")
        with open(path, "w") as f:
            f.write("not a program\n")
        os.chmod(path, 0o755)
        third = self.launch("-j", self.jail, "--isolate", "--net",
                            "192.0.2.4", "--host-address", HOST_ADDRESS,
                            "-x", "/bin/notexec", netns=self.host)
        self.assertEqual(third.returncode, 31, third.stderr)
        self.assertEqual(self.host.links(), before)


class ConfigTests(LaunchTestCase):
    """
    Isolation per jail from jk_chrootlaunch.ini.
    """

    def config(self, text):
        path = self.state.child("jk_chrootlaunch.ini")
        path.setContent(text.encode())
        return path.path

    def test_sectionForTheJail(self):
        config = self.config(f"[{self.jail}]\nisolate = yes\n"
                             f"hostname = fromini\nname = inijail\n")
        result = self.launch("--config", config, "-j", self.jail,
                             "-p", self.pidfile(), "-x", "/bin/busybox",
                             "--", "sh", "-c", "hostname; ls /dev")
        self.assertEqual(result.stdout.split()[0], "fromini", result.stderr)
        self.assertNotIn("log", result.stdout.split())
        result = self.launch("--config", config, "--plain", "-j", self.jail,
                             "-x", "/bin/busybox", "--", "hostname")
        self.assertEqual(result.stdout.strip(), socket.gethostname())
        # --isolate on the command line wins over the section's "no".
        config = self.config(f"[{self.jail}]\npid = no\n")
        result = self.launch("--config", config, "-j", self.jail,
                             "--isolate", "-p", self.pidfile(), "-x",
                             "/bin/busybox", "--", "sh", "-c", "echo $$")
        self.assertEqual(result.stdout.strip(), "2", result.stderr)

    def test_defaultSectionAndErrors(self):
        config = self.config("[DEFAULT]\npid = yes\n")
        result = self.launch("--config", config, "-j", self.jail, "-p",
                             self.pidfile(), "-x", "/bin/busybox", "--",
                             "sh", "-c", "echo $$")
        self.assertEqual(result.stdout.strip(), "2", result.stderr)
        config = self.config(f"[{self.jail}]\nisolation = yes\n")
        result = self.launch("--config", config, "-j", self.jail, "-x",
                             "/bin/busybox", "--", "true")
        self.assertEqual(result.returncode, 2)
        self.assertIn("isolation", result.stderr)
        self.assertIn("unknown key", result.stderr)



class PidfileTests(SynchronousTestCase):
    """
    The pidfile is written to a fresh file and renamed into place: a
    symlink planted at its name, or at a temporary name, is replaced,
    never followed.
    """

    def test_plantedSymlinksNotFollowed(self):
        from jailtwist.tools.launch import _writePidfile
        directory = harness.shortTempDir(self).path
        victim = os.path.join(directory, "victim")
        with open(victim, "w") as f:
            f.write("keep\n")
        pidfile = os.path.join(directory, "jail.pid")
        os.symlink(victim, pidfile)
        os.symlink(victim, os.path.join(directory,
                                        f".jail.pid.{os.getpid()}.new"))
        _writePidfile(pidfile, 4321)
        self.assertFalse(os.path.islink(pidfile))
        with open(pidfile) as f:
            self.assertEqual(f.read(), "4321\n")
        with open(victim) as f:
            self.assertEqual(f.read(), "keep\n")
        self.assertEqual(sorted(os.listdir(directory)),
                         sorted(["victim", "jail.pid",
                                 f".jail.pid.{os.getpid()}.new"]))
