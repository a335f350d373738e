"""
Tests for the installed C{jk_cp}, C{jk_init} and C{jk_update} commands:
real jails built from this host's programs and run with C{chroot}.
"""

import os
import stat
import subprocess
import sys
import threading
from http.server import HTTPServer, SimpleHTTPRequestHandler

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from jailtwist.elf import readElf
from jailtwist.install import expandEntry
from tests import harness

LOADER = "/lib64/ld-linux-x86-64.so.2"
SHIPPED = FilePath(sys.prefix).preauthChild(
    "share/jailtwist/etc/jailkit/jk_init.ini")
SOCKETD_INI = FilePath("/etc/jailkit/jk_socketd.ini")
LSH_INI = FilePath("/etc/jailkit/jk_lsh.ini")
CHROOT = "/usr/sbin/chroot"


def inJail(jail, *argv, **kw):
    """
    Run C{argv} chrooted into C{jail} with a clean environment.
    """
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/",
           "LANG": "C.UTF-8", "TERM": "xterm"}
    env.update(kw.pop("env", {}))
    kw.setdefault("capture_output", True)
    kw.setdefault("timeout", 60)
    return subprocess.run([CHROOT, jail.path] + list(argv), env=env, **kw)


class _BuildTestCase(SynchronousTestCase):

    def setUp(self):
        self.parent = harness.jailParent(self)
        self.jail = self.parent.child("jail")
        if not SHIPPED.exists():
            self.fail(f"{SHIPPED.path} is missing: install the package")
        if not LSH_INI.exists():
            LSH_INI.parent().makedirs(ignoreExistingDirectory=True)
            LSH_INI.setContent(b"# jk_lsh policy\n")
            self.addCleanup(LSH_INI.remove)

    def jailRun(self, *argv, **kw):
        result = inJail(self.jail, *argv, **kw)
        if result.returncode != 0:
            self.fail(f"{argv} in the jail exited {result.returncode}: "
                      f"{result.stdout!r} {result.stderr!r}")
        return result

    def init(self, *sections, jail=None, config=None, status=0, quiet=True):
        result = harness.run("jk_init", "-c", (config or SHIPPED).path,
                             "-j", (jail or self.jail).path, *sections)
        self.assertEqual(result.returncode, status, result.stderr)
        if quiet and status == 0:
            self.assertEqual(result.stderr, "")
        return result

    def ini(self, text):
        path = self.parent.child("test.ini")
        path.setContent(text.encode())
        return path


class ResolverTests(_BuildTestCase):
    """
    The resolver agrees with the real loader over this machine's /usr/bin.
    """

    def test_usrBin(self):
        programs = []
        for name in sorted(os.listdir("/usr/bin")):
            path = os.path.join("/usr/bin", name)
            real = os.path.realpath(path)
            if not os.path.isfile(real):
                continue
            obj = readElf(real)
            if obj is not None and obj.interpreter:
                programs.append((path, real))
        self.assertGreater(len(programs), 50)
        self.jail.makedirs()
        result = harness.run("jk_cp", "-j", self.jail.path,
                             *[path for path, _ in programs], timeout=600)
        self.assertEqual(result.returncode, 0, result.stderr)
        # Only a program broken on this host itself may lack a library.
        for line in result.stderr.splitlines():
            self.assertTrue(line.startswith("jk_cp: warning: ") and
                            line.endswith("not found on this host)"), line)
        notFound = []
        for path, real in programs:
            listed = inJail(self.jail, LOADER, "--list", real, text=True)
            if "not found" in listed.stdout + listed.stderr or \
                    listed.returncode != 0:
                host = subprocess.run([LOADER, "--list", real], text=True,
                                      capture_output=True)
                if "not found" in host.stdout or host.returncode != 0:
                    continue
                notFound.append(f"{path}: {listed.stdout}{listed.stderr}")
        self.assertEqual(notFound, [])


class SectionTests(_BuildTestCase):
    """
    Every section the issue names, built alone and its programs run.
    """

    def test_uidbasics(self):
        self.init("uidbasics", "basicshell")
        self.assertTrue(self.jail.preauthChild(
            "usr/lib/x86_64-linux-gnu/libnss_files.so.2").exists())
        self.assertEqual(self.jailRun("id", "-un").stdout, b"root\n")
        listing = self.jailRun("ls", "-l", "/etc/passwd").stdout.split()
        self.assertEqual(listing[2:4], [b"root", b"root"])

    def test_netbasics(self):
        self.init("netbasics")
        harness.run("jk_cp", "-j", self.jail.path, "getent")
        hosts = self.jailRun("getent", "hosts", "localhost").stdout
        self.assertTrue(b"127.0.0.1" in hosts or b"::1" in hosts, hosts)
        self.assertIn(b"22/tcp", self.jailRun("getent", "services",
                                              "ssh").stdout)

    def test_logbasics(self):
        before = SOCKETD_INI.getContent() if SOCKETD_INI.exists() else b""
        self.init("logbasics")
        harness.run("jk_cp", "-j", self.jail.path, "date")
        host = subprocess.run(["date", "+%Z"], capture_output=True).stdout
        self.assertEqual(self.jailRun("date", "+%Z").stdout, host)
        self.assertTrue(self.jail.child("dev").isdir())
        added = SOCKETD_INI.getContent()[len(before):].decode()
        self.assertEqual(added, f"\n[{self.jail.path}/dev/log]\nbase = 512\n"
                                f"peak = 2048\ninterval = 10.0\n")

    def assertLshJail(self):
        self.assertEqual(
            self.jail.preauthChild("etc/jailkit/jk_lsh.ini").getContent(),
            LSH_INI.getContent())
        self.assertIn(b"root:x:0:0:",
                      self.jail.preauthChild("etc/passwd").getContent())
        found = subprocess.run(["find", self.jail.path, "-name", "python*",
                                "-o", "-name", "jk_lsh"],
                               capture_output=True, text=True).stdout
        self.assertEqual(found, "")

    def test_jk_lsh(self):
        """
        The jk_lsh section puts the policy into the jail, and neither a
        jk_lsh program nor a Python interpreter.
        """
        self.init("jk_lsh")
        self.assertLshJail()

    def test_limitedshell(self):
        self.init("limitedshell")
        self.assertLshJail()

    def test_basicshell(self):
        self.init("basicshell")
        out = self.jailRun("bash", "-c",
                           "echo hello | sed s/hello/world/; "
                           "echo x > /t; gzip -c /t | zcat; "
                           "tar -cf /t.tar /t 2>/dev/null || true; "
                           "ls / | grep -c bin; echo a | egrep 'a|b'").stdout
        self.assertEqual(out, b"world\nx\n1\na\n")
        self.assertEqual(self.jailRun("sh", "-c", "id -un; pwd").stdout,
                         b"root\n/\n")

    def test_interactiveshell(self):
        self.init("interactiveshell")
        out = self.jailRun("bash", "-c",
                           "awk 'BEGIN{print 1+1}'; less --version | "
                           "head -c 4; echo; clear").stdout
        self.assertEqual(out, b"2\nless\n\x1b[H\x1b[2J\x1b[3J")

    def test_extendedshell(self):
        self.init("extendedshell")
        out = self.jailRun("bash", "-c",
                           "printf 'b\\na\\n' > /l; sort /l | head -1; "
                           "tac /l | head -1; "
                           "echo x | md5sum | cut -c1-8; whoami; "
                           "find /usr/bin -name bash; "
                           "echo abc | bzip2 | bunzip2; "
                           "ldd /bin/ls | grep -c libc.so.6").stdout
        self.assertEqual(
            out, b"a\na\n401b30e3\nroot\n/usr/bin/bash\nabc\n1\n")

    def test_sftp(self):
        """
        The real sftp client talks to the jail's sftp-server.
        """
        self.init("sftp")
        upload = self.parent.child("upload.txt")
        upload.setContent(b"uploaded\n")
        download = self.parent.child("download.txt")
        batch = (f"put {upload.path} /up.txt\nget /up.txt {download.path}\n"
                 f"ls /\n")
        result = subprocess.run(
            ["sftp", "-b", "-", "-D",
             f"{CHROOT} {self.jail.path} /usr/lib/openssh/sftp-server"],
            input=batch, capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(self.jail.child("up.txt").getContent(), b"uploaded\n")
        self.assertEqual(download.getContent(), b"uploaded\n")
        self.assertIn("/dev", result.stdout)

    def test_scp(self):
        """
        The jail's scp receives a file from the host's scp (the protocol
        sshd would carry).
        """
        self.init("scp")
        self.jail.child("in").makedirs()
        source = self.parent.child("payload")
        source.setContent(b"payload\n")
        toSink, fromSource = os.pipe()
        toSource, fromSink = os.pipe()
        sender = subprocess.Popen(["scp", "-f", source.path], stdin=toSource,
                                  stdout=fromSource)
        sink = subprocess.Popen([CHROOT, self.jail.path, "scp", "-t", "/in"],
                                stdin=toSink, stdout=fromSink)
        for fd in (toSink, fromSource, toSource, fromSink):
            os.close(fd)
        self.assertEqual((sender.wait(30), sink.wait(30)), (0, 0))
        self.assertEqual(self.jail.child("in").child("payload").getContent(),
                         b"payload\n")

    def test_ssh(self):
        self.init("ssh", "basicshell")
        self.assertIn(b"OpenSSH", self.jailRun("ssh", "-V").stderr)
        self.assertIn(b"user root\n", self.jailRun("ssh", "-G",
                                                   "127.0.0.1").stdout)
        refused = inJail(self.jail, "ssh", "-o", "BatchMode=yes", "-p", "9",
                         "127.0.0.1", "true")
        self.assertIn(b"Connection refused", refused.stderr)

    def test_rsync(self):
        self.init("rsync")
        self.jailRun("rsync", "-a", "/etc/", "/copy/")
        self.assertEqual(self.jail.preauthChild("copy/hosts").getContent(),
                         self.jail.preauthChild("etc/hosts").getContent())

    def test_git(self):
        self.init("git")
        self.jailRun("git", "init", "-q", "/repo")
        self.jailRun("git", "-C", "/repo", "-c", "user.name=J",
                     "-c", "user.email=j@example.org", "commit", "-q",
                     "--allow-empty", "-m", "jailed")
        self.jailRun("git", "clone", "-q", "--no-local", "/repo", "/clone")
        self.assertIn(b"jailed", self.jailRun("git", "-C", "/clone", "log",
                                              "--oneline").stdout)
        self.assertEqual(self.jailRun(
            "perl", "-MPOSIX", "-e", "print POSIX::floor(2.7)").stdout, b"2")

    def test_procmail(self):
        """
        procmail (which crashes without a passwd entry for its user) runs,
        without its setuid/setgid bits; it delivers a message to a file.
        """
        self.init("procmail", "basicshell")
        self.assertIn(b"procmail v", self.jailRun("procmail", "-v").stderr)
        self.jail.child("rc").setContent(b"DEFAULT=/mailbox\n")
        self.jailRun("procmail", "-m", "/rc",
                     input=b"From: a@example.org\nSubject: hi\n\nbody\n")
        self.assertIn(b"Subject: hi",
                      self.jail.child("mailbox").getContent())
        real = self.jail.path + os.path.realpath("/usr/bin/procmail")
        self.assertEqual(os.stat(real).st_mode & 0o6000, 0)
        self.assertNotEqual(os.stat("/usr/bin/procmail").st_mode & 0o6000, 0)

    def test_terminfo(self):
        self.init("terminfo")
        harness.run("jk_cp", "-j", self.jail.path, "clear")
        self.assertEqual(self.jailRun("clear").stdout, b"\x1b[H\x1b[2J\x1b[3J")

    def test_editors(self):
        self.init("editors")
        editors = [e for e in ("vi", "vim.tiny", "nano")
                   if os.path.lexists(self.jail.path + "/usr/bin/" + e)]
        self.assertTrue(editors)
        for editor in editors:
            self.jailRun(editor, "--version")
        self.jailRun("vi", "-es", "-c", "normal! ihello", "-c", "wq", "/f")
        self.assertEqual(self.jail.child("f").getContent(), b"hello\n")

    def test_netutils(self):
        self.init("netutils")
        served = self.parent.child("www")
        served.makedirs()
        served.child("page").setContent(b"served page\n")

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *a, **kw):
                super().__init__(*a, directory=served.path, **kw)

            def log_message(self, *a):
                pass

        server = HTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever)
        thread.start()
        self.addCleanup(thread.join)
        self.addCleanup(server.shutdown)
        url = f"http://127.0.0.1:{server.server_address[1]}/page"
        self.assertEqual(self.jailRun("wget", "-q", "-O", "-", url).stdout,
                         b"served page\n")
        self.assertIn(b"OpenSSH", self.jailRun("ssh", "-V").stderr)

    def test_ping(self):
        """
        ping keeps its capability (paths_w_setuid) and works.
        """
        self.init("ping")
        copy = self.jail.path + os.path.realpath("/usr/bin/ping")
        host = os.getxattr(os.path.realpath("/usr/bin/ping"),
                           "security.capability")
        self.assertEqual(os.getxattr(copy, "security.capability"), host)
        self.jailRun("ping", "-c", "1", "-W", "5", "127.0.0.1")

    def test_otherSections(self):
        """
        Every other shipped section builds; anything it warns about is
        really missing on this host.
        """
        listed = harness.run("jk_init", "-l", "-c", SHIPPED.path).stdout
        names = [line.split(" - ")[0] for line in listed.splitlines()
                 if " - " in line]
        tested = {name[len("test_"):] for name in dir(self)
                  if name.startswith("test_")}
        others = [name for name in names if name not in tested]
        self.assertIn("perl", others)
        for name in others:
            jail = self.parent.child(name)
            result = self.init(name, jail=jail, quiet=False)
            for line in result.stderr.splitlines():
                self.assertIn("warning: ", line)
                missing = line.split("warning: ", 1)[1].split(" (")[0]
                self.assertEqual(expandEntry(missing), [], line)


class InitCommandTests(_BuildTestCase):
    """
    jk_init's command line and jailkit's bugs, fixed.
    """

    def test_unsafeParent(self):
        before = SOCKETD_INI.getContent() if SOCKETD_INI.exists() else None
        scratch = harness.shortTempDir(self)
        jail = scratch.child("jail")
        result = harness.run("jk_init", "-c", SHIPPED.path, "-j", jail.path,
                             "basicshell", "logbasics")
        self.assertEqual(result.returncode, 3)
        self.assertEqual(result.stdout, "")
        self.assertEqual(result.stderr.count("\n"), 1)
        self.assertIn("/tmp is writable by group or others", result.stderr)
        self.assertEqual(os.listdir(scratch.path), [])
        after = SOCKETD_INI.getContent() if SOCKETD_INI.exists() else None
        self.assertEqual(before, after)

    def test_cycle(self):
        config = self.ini("[a]\nincludesections = b\npaths = /usr/bin/true\n"
                          "[b]\nincludesections = a\npaths = /usr/bin/false\n")
        self.init("a", config=config)
        self.jailRun("/usr/bin/true")
        self.assertEqual(inJail(self.jail, "/usr/bin/false").returncode, 1)

    def test_logsocket(self):
        before = SOCKETD_INI.getContent() if SOCKETD_INI.exists() else b""
        config = self.ini("[no]\nneed_logsocket = 0\npaths = /usr/bin/true\n"
                          "[yes]\nneed_logsocket = 1\n")
        self.init("no", config=config)
        after = SOCKETD_INI.getContent() if SOCKETD_INI.exists() else b""
        self.assertEqual(after, before)
        self.init("yes", config=config)
        self.init("yes", config=config)
        text = SOCKETD_INI.getContent().decode()
        self.assertEqual(text.count(f"[{self.jail.path}/dev/log]"), 1)

    def test_jailOptionForms(self):
        config = self.ini("[t]\npaths = /usr/bin/true\n")
        for i, form in enumerate([["--jail=J"], ["--jail", "J"],
                                  ["-jJ"], ["J"]]):
            jail = self.parent.child(f"j{i}").path
            args = [a.replace("J", jail) for a in form]
            result = harness.run("jk_init", "-c", config.path, *args, "t")
            self.assertEqual(result.returncode, 0, (form, result.stderr))
            self.assertTrue(os.path.exists(jail + "/usr/bin/true"), form)

    def test_unknownSection(self):
        """
        A section that does not exist is a warning, as in jailkit (hosting
        panels name their own sections), and fails the run with --strict;
        when no named section exists, nothing is done.
        """
        result = harness.run("jk_init", "-c", SHIPPED.path, "-j",
                             self.jail.path, "scp", "php")
        self.assertEqual(result.returncode, 0)
        self.assertEqual(result.stderr,
                         f"jk_init: warning: [php] (no such section in "
                         f"{SHIPPED.path}; jk_init -l lists them)\n")
        self.assertTrue(self.jail.preauthChild("usr/bin/scp").exists())
        other = self.parent.child("other")
        result = harness.run("jk_init", "--strict", "-c", SHIPPED.path, "-j",
                             other.path, "scp", "php")
        self.assertEqual(result.returncode, 4)
        self.assertFalse(other.exists())
        result = harness.run("jk_init", "-c", SHIPPED.path, "-j",
                             other.path, "basicshel")
        self.assertEqual(result.returncode, 2)
        self.assertIn("no section [basicshel]", result.stderr)
        self.assertFalse(other.exists())

    def test_strict(self):
        config = self.ini("[t]\npaths = /usr/bin/true, /no/such/file, "
                          "no-such-program\npaths_optional = /no/optional\n"
                          "includesections = nosection\n")
        result = self.init("t", config=config, quiet=False)
        self.assertEqual(sorted(result.stderr.splitlines()), [
            "jk_init: warning: /no/such/file (does not exist; [t] paths)",
            "jk_init: warning: [nosection] (included by [t], no such "
            f"section in {config.path})",
            "jk_init: warning: no-such-program (not found in $PATH; [t] "
            "paths)"])
        result = harness.run("jk_init", "--strict", "-c", config.path, "-j",
                             self.parent.child("strict").path, "t")
        self.assertEqual(result.returncode, 4)
        self.assertIn("jk_init: /no/such/file (does not exist; [t] paths)\n",
                      result.stderr)
        self.assertIn("nothing was done (--strict)", result.stderr)
        self.assertFalse(self.parent.child("strict").exists())
        # A library a named program needs is checked beforehand too.
        library = self.parent.child("lib")
        library.makedirs()
        subprocess.run(["gcc", "-shared", "-fPIC", "-o",
                        library.child("libgone.so").path, "-x", "c",
                        "/dev/null"], check=True)
        program = self.parent.child("prog")
        main = self.parent.child("main.c")
        main.setContent(b"int main(void) { return 0; }\n")
        subprocess.run(["gcc", "-o", program.path, main.path,
                        "-Wl,--no-as-needed", "-L" + library.path, "-lgone"],
                       check=True)
        library.child("libgone.so").remove()
        config = self.ini(f"[p]\npaths = {program.path}\n")
        result = harness.run("jk_init", "--strict", "-c", config.path, "-j",
                             self.parent.child("strict").path, "p")
        self.assertEqual(result.returncode, 4)
        self.assertIn(f"libgone.so (needed by {program.path}, not found on "
                      f"this host)", result.stderr)
        self.assertFalse(self.parent.child("strict").exists())

    def test_list(self):
        result = harness.run("jk_init", "-l", "-c", SHIPPED.path)
        self.assertEqual(result.returncode, 0)
        self.assertIn("sftp - ssh secure ftp\n", result.stdout)

    def test_notRoot(self):
        result = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
             harness.script("jk_init"), "-c", SHIPPED.path, "-j",
             self.jail.path, "basicshell"], capture_output=True, text=True)
        self.assertEqual(result.returncode, 5, result.stderr)
        self.assertFalse(self.jail.exists())

    def test_verbose(self):
        result = harness.run("jk_init", "-v", "-c", SHIPPED.path, "-j",
                             self.jail.path, "scp")
        self.assertIn(f"copied {self.jail.path}/usr/bin/scp\n", result.stdout)
        self.assertIn(f"created node {self.jail.path}/dev/null\n",
                      result.stdout)
        self.assertIn("MB copied in", result.stdout)

    def test_quietWhenNotATerminal(self):
        result = self.init("scp")
        self.assertEqual(result.stdout, "")


class CopyCommandTests(_BuildTestCase):
    """
    jk_cp: planted symlinks, setuid with -k, devices, bad input.
    """

    def setUp(self):
        super().setUp()
        self.jail.makedirs()
        self.host = self.parent.child("host")
        self.host.makedirs()

    def test_plantedSymlink(self):
        outside = self.parent.child("outside")
        outside.makedirs()
        self.jail.preauthChild(self.parent.path.lstrip("/")).makedirs()
        os.symlink(outside.path, self.jail.path + self.host.path)
        source = self.host.child("f")
        source.setContent(b"x")
        result = harness.run("jk_cp", "-j", self.jail.path, source.path)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(os.listdir(outside.path), [])
        self.assertTrue(os.path.exists(self.jail.path + outside.path + "/f"))

    def test_setuidHardlink(self):
        source = self.host.child("suid")
        source.setContent(b"#!/bin/sh\n")
        os.chmod(source.path, 0o4755)
        plain = self.host.child("plain")
        plain.setContent(b"plain")
        result = harness.run("jk_cp", "-k", "-j", self.jail.path,
                             source.path, plain.path)
        self.assertEqual(result.returncode, 0, result.stderr)
        copy = os.stat(self.jail.path + source.path)
        self.assertEqual(stat.S_IMODE(copy.st_mode), 0o755)
        self.assertNotEqual(copy.st_ino, os.stat(source.path).st_ino)
        self.assertEqual(os.stat(self.jail.path + plain.path).st_ino,
                         os.stat(plain.path).st_ino)

    def test_setuidKept(self):
        result = harness.run("jk_cp", "-s", "-j", self.jail.path,
                             "/usr/bin/passwd")
        self.assertEqual(result.returncode, 0, result.stderr)
        mode = os.stat(self.jail.path + "/usr/bin/passwd").st_mode
        self.assertEqual(mode & 0o4000, os.stat("/usr/bin/passwd").st_mode
                         & 0o4000)
        harness.run("jk_cp", "-f", "-j", self.jail.path, "/usr/bin/passwd")
        mode = os.stat(self.jail.path + "/usr/bin/passwd").st_mode
        self.assertEqual(mode & 0o6000, 0)

    def test_device(self):
        node = self.host.child("dev300")
        os.mknod(node.path, stat.S_IFCHR | 0o600, os.makedev(200, 300))
        result = harness.run("jk_cp", "-j", self.jail.path, node.path,
                             "/dev/zero")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(os.stat(self.jail.path + node.path).st_rdev,
                         os.makedev(200, 300))
        self.assertEqual(os.stat(self.jail.path + "/dev/zero").st_rdev,
                         os.stat("/dev/zero").st_rdev)

    def test_missingSource(self):
        result = harness.run("jk_cp", "-j", self.jail.path, "/usr/bin/true",
                             "/no/such/file")
        self.assertEqual(result.returncode, 4)
        self.assertIn("/no/such/file does not exist", result.stderr)
        self.assertEqual(os.listdir(self.jail.path), [])

    def test_strictMissingLibrary(self):
        """
        With --strict, a program whose library this host lacks is refused
        before anything is copied; without it, it is copied with a warning.
        """
        library = self.host.child("libgone.so")
        subprocess.run(["gcc", "-shared", "-fPIC", "-o", library.path, "-x",
                        "c", "/dev/null"], check=True)
        main = self.host.child("main.c")
        main.setContent(b"int main(void) { return 0; }\n")
        program = self.host.child("prog")
        subprocess.run(["gcc", "-o", program.path, main.path,
                        "-Wl,--no-as-needed", "-L" + self.host.path,
                        "-lgone"], check=True)
        library.remove()
        result = harness.run("jk_cp", "--strict", "-j", self.jail.path,
                             program.path)
        self.assertEqual(result.returncode, 4)
        self.assertEqual(result.stderr,
                         f"jk_cp: libgone.so (needed by {program.path}, not "
                         f"found on this host)\njk_cp: 1 library missing on "
                         f"this host (listed above): nothing was done "
                         f"(--strict)\n")
        self.assertEqual(os.listdir(self.jail.path), [])
        result = harness.run("jk_cp", "-j", self.jail.path, program.path)
        self.assertEqual(result.returncode, 0)
        self.assertEqual(result.stderr,
                         f"jk_cp: warning: libgone.so (needed by "
                         f"{program.path}, not found on this host)\n")

    def test_bareNameAndPositionalJail(self):
        result = harness.run("jk_cp", self.jail.path, "true")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.jailRun("true")

    def test_unsafe(self):
        os.chmod(self.jail.path, 0o777)
        result = harness.run("jk_cp", "-j", self.jail.path, "/usr/bin/true")
        self.assertEqual(result.returncode, 6)
        self.assertIn("chmod go-w", result.stderr)


class UpdateCommandTests(_BuildTestCase):
    """
    jk_update: dry run, real update, config sections.
    """

    def setUp(self):
        super().setUp()
        self.init("basicshell")
        self.cat = self.jail.path + "/usr/bin/cat"
        with open(self.cat, "wb") as f:
            f.write(b"corrupted")
        self.jail.preauthChild("usr/bin/junk").setContent(b"junk")
        self.library = self.jail.path + os.path.realpath(
            "/usr/lib/x86_64-linux-gnu/libselinux.so.1")
        os.unlink(self.library)
        home = self.jail.preauthChild("home/u")
        home.makedirs()
        home.child("file").setContent(b"mine")
        self.user = self.jail.preauthChild("usr/bin/users-own")
        self.user.setContent(b"belongs to a jail account")
        os.chown(self.user.path, 5001, 5001)

    def test_dryRun(self):
        result = harness.run("jk_update", "-d", "-j", self.jail.path)
        self.assertEqual(result.returncode, 0, result.stderr)
        lines = result.stdout.splitlines()
        self.assertIn(f"will update outdated file {self.cat}", lines)
        self.assertIn(f"will remove deprecated file {self.jail.path}"
                      f"/usr/bin/junk", lines)
        self.assertIn(f"will add missing library {self.jail.path}"
                      f"/lib/x86_64-linux-gnu/libselinux.so.1", lines)
        self.assertEqual(len(lines), 3, lines)
        with open(self.cat, "rb") as f:
            self.assertEqual(f.read(), b"corrupted")
        self.assertFalse(os.path.exists(self.library))

    def test_update(self):
        result = harness.run("jk_update", "-j", self.jail.path)
        self.assertEqual(result.returncode, 0, result.stderr)
        with open(self.cat, "rb") as f, open("/usr/bin/cat", "rb") as g:
            self.assertEqual(f.read(), g.read())
        self.assertFalse(self.jail.preauthChild("usr/bin/junk").exists())
        self.assertTrue(os.path.exists(self.library))
        self.assertEqual(self.jail.preauthChild("home/u/file").getContent(),
                         b"mine")
        self.assertTrue(self.user.exists())
        self.assertEqual(self.jailRun("ls", "/home").stdout, b"u\n")
        again = harness.run("jk_update", "-d", "-j", self.jail.path)
        self.assertEqual(again.stdout, "")

    def test_configSection(self):
        config = FilePath("/etc/jailkit/jk_update.ini")
        old = config.getContent() if config.exists() else None
        config.parent().makedirs(ignoreExistingDirectory=True)
        config.setContent(f"[{self.jail.path}]\ndirectories = /usr/bin\n"
                          f"skips = /usr/bin/junk\n".encode())
        self.addCleanup(lambda: config.setContent(old) if old is not None
                        else config.remove())
        result = harness.run("jk_update", "-c", self.jail.path)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertTrue(self.jail.preauthChild("usr/bin/junk").exists())
        with open(self.cat, "rb") as f, open("/usr/bin/cat", "rb") as g:
            self.assertEqual(f.read(), g.read())
        both = harness.run("jk_update", "-c", self.jail.path, "-j",
                           self.jail.path)
        self.assertEqual(both.returncode, 21)


class ProgressTests(SynchronousTestCase):
    """
    L{Progress}: every entry with -v, a throttled count on a terminal,
    silence otherwise.
    """

    def progress(self, verbose, tty):
        from io import StringIO

        from jailtwist.jail import Jail
        from jailtwist.tools.build import Progress
        self.now = 0.0
        self.stream = StringIO()
        return Progress("jk_init", Jail("/srv/j"), verbose, self.stream, tty,
                        clock=lambda: self.now)

    class Done:
        changes = 2
        bytes = 2500000

    def feed(self, progress):
        for action, path in [("copy", "/usr/bin/ls"), ("exists", "/etc"),
                             ("strip", "/usr/bin/passwd"),
                             ("symlink", "/bin")]:
            self.now += 0.04
            progress(action, path)
        progress.finish(self.Done())

    def test_verbose(self):
        self.feed(self.progress(True, True))
        self.assertEqual(self.stream.getvalue(),
                         "copied /srv/j/usr/bin/ls\n"
                         "exists, left alone: /srv/j/etc\n"
                         "removing setuid/setgid from /usr/bin/passwd\n"
                         "symlinked /srv/j/bin\n"
                         "jk_init: /srv/j: 2 entries created or replaced, "
                         "2.5 MB copied in 0.16 s\n")

    def test_terminal(self):
        self.feed(self.progress(False, True))
        self.assertEqual(self.stream.getvalue(),
                         "\rjk_init: 2 entries\r\x1b[K"
                         "jk_init: /srv/j: 2 entries created or replaced, "
                         "2.5 MB copied in 0.16 s\n")

    def test_quiet(self):
        self.feed(self.progress(False, False))
        self.assertEqual(self.stream.getvalue(), "")

    def test_readerGone(self):
        """
        A closed pipe (C{jk_init -v | head -1}) stops the output, not the
        work.
        """
        progress = self.progress(True, False)

        class Closed:
            def write(self, text):
                raise BrokenPipeError()

        progress.stream = Closed()
        self.feed(progress)
        self.assertIsNone(progress.stream)

    def test_pipeToHead(self):
        """
        The installed jk_cp -v piped into C{head -1} still copies
        everything.
        """
        parent = harness.jailParent(self)
        jail = parent.child("jail")
        jail.makedirs()
        shell = subprocess.run(
            f"{harness.script('jk_cp')} -v -j {jail.path} /usr/bin/ls "
            f"/usr/bin/cp | head -1", shell=True, capture_output=True,
            text=True)
        self.assertEqual(shell.stderr, "")
        self.assertEqual(inJail(jail, "/usr/bin/cp", "--version").returncode,
                         0)
