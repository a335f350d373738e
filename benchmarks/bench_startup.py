#!/usr/bin/env python3
"""
How long jailtwist's one-shot commands take to start and finish, side by
side with what they replace, in one run: each group's contenders run in
turn (A B C A B C ...), so a machine that speeds up or slows down during the
run moves them all alike.  Every group also runs a bare interpreter
(C{python3 -I -S -c pass}, the same binary jailtwist runs on), the floor no
Python tool can go below, and prints each contender's median wall time,
median CPU time (user + system of the process and its children), minimum,
and its ratios to the bare interpreter and to the group's second contender
(the tool it is compared with), each the median of the ratios of runs made
in the same round, and the same ratio to the bare interpreter for CPU time.

Groups:
  - jk_chrootlaunch plain against jailkit's C jk_chrootlaunch, both running
    a static C{busybox true} in a busybox jail;
  - jk_chrootlaunch --isolate against bubblewrap (all namespaces) and
    firejail (its sandbox, chrooted into the same jail, no network), each
    skipped with a note when not installed;
  - a jailed login: an unprivileged account whose shell is jk_chrootsh and
    whose shell in the jail is jk_lsh, running C{busybox true}, against the
    same login through jailkit's setuid C jk_chrootsh and jk_lsh;
  - jk_list with 100 jails running and registered, against jailkit's
    jk_list;
  - jk_check on the busybox jail, against jailkit's (Python) jk_check;
  - the other one-shot commands (jk_lsh for an account that is not jailed,
    jk_uchroot, the jailtwist and jaildaemon clients asking a daemon that
    is not there), against the interpreter alone.

It builds its own jails and accounts and must run as root in the tests'
private namespace, where /etc, /run and /mnt are private and vanish after:

    tests/isolated /opt/jailtwist/bin/python benchmarks/bench_startup.py [--runs N]

It uses the commands next to the interpreter running it.  jailkit's tools
are taken from Debian's C{jailkit} package (installed, or fetched with
C{apt-get download} and unpacked in a scratch directory for the ones that
need no setuid bit).
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import jailkit_package
from bench_login_start import buildLoginJail, jailkit
from busybox_jail import buildJail

BIN = os.path.dirname(os.path.abspath(sys.executable))
BARE = [sys.executable, "-I", "-S", "-c", "pass"]
JAILS = 100
USER = "jtstart"
CUSER = "jtstartc"
LUSER = "jtstartl"


def ours(name):
    return os.path.join(BIN, name)


class Contender:
    """
    One command line, run many times: wall and CPU seconds per run.
    """

    def __init__(self, label, argv, expect=0, env=None):
        self.label = label
        self.argv = argv
        self.expect = expect
        self.env = env
        self.wall = []
        self.cpu = []

    def once(self):
        start = time.perf_counter()
        process = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, cwd="/",
                                   env=self.env)
        stderr = process.stderr.read()
        _, raw, usage = os.wait4(process.pid, 0)
        self.wall.append(time.perf_counter() - start)
        self.cpu.append(usage.ru_utime + usage.ru_stime)
        process.returncode = os.waitstatus_to_exitcode(raw)
        process.stderr.close()
        if self.expect is not None and process.returncode != self.expect:
            raise SystemExit(f"{self.label}: {' '.join(self.argv)} exited "
                             f"{process.returncode}, not {self.expect}: "
                             f"{stderr.decode(errors='replace').strip()}")


def paired(times, baseline):
    """
    The median of the ratios of runs made in the same round: a machine
    that slows down for a while moves both sides of a ratio.
    """
    return statistics.median(a / b for a, b in zip(times, baseline) if b)


def runGroup(title, contenders, runs, notes=()):
    """
    Run the contenders in turn, C{runs} rounds after one warm-up round, and
    print the table.
    """
    for contender in contenders:
        contender.once()
        contender.wall.clear()
        contender.cpu.clear()
    for _ in range(runs):
        for contender in contenders:
            contender.once()
    bare = contenders[0]
    first = contenders[1] if len(contenders) > 1 else bare
    print(f"\n{title} ({runs} runs each, alternating)")
    print(f"  {'':52s} {'median':>8s} {'cpu':>8s} {'min':>8s} "
          f"{'x bare':>7s} {'x 2nd':>7s} {'cpu x bare':>10s}")
    for contender in contenders:
        print(f"  {contender.label:52s} "
              f"{statistics.median(contender.wall) * 1000:6.1f}ms "
              f"{statistics.median(contender.cpu) * 1000:6.1f}ms "
              f"{min(contender.wall) * 1000:6.1f}ms "
              f"{paired(contender.wall, bare.wall):7.2f} "
              f"{paired(contender.wall, first.wall):7.2f} "
              f"{paired(contender.cpu, bare.cpu):10.2f}")
    for note in notes:
        print(f"  note: {note}")
    sys.stdout.flush()


def asUser(user, command):
    return (["setpriv", "--reuid", user, "--regid", user, "--init-groups",
             "--"] + command)


def userEnv(user):
    return {"USER": user, "PATH": "/usr/bin:/bin"}


def firejailJail(parent):
    """
    The busybox jail as firejail's --chroot wants it (a /var/tmp and
    sticky, world-writable temporary directories), with --chroot allowed
    (off in Debian's firejail.config) in the private /etc of
    tests/isolated.
    """
    with open("/etc/firejail/firejail.config", "a") as f:
        f.write("\nchroot yes\n")
    jail = buildJail(os.path.join(parent, "firejail"))
    os.makedirs(os.path.join(jail, "var", "tmp"))
    for directory in ("tmp", "var/tmp"):
        os.chmod(os.path.join(jail, directory), 0o1777)
    return jail


def startJails(jail, state, count):
    """
    Launch C{count} plain jails running C{busybox sleep} (registered as
    jails by jk_chrootlaunch, seen as chrooted by jailkit's jk_list).
    """
    sleepers = []
    for n in range(count):
        sleepers.append(subprocess.Popen(
            [ours("jk_chrootlaunch"), "--plain", "--state-dir", state, "-j",
             jail, "--name", f"bench{n}", "-x", "/bin/busybox", "--",
             "sleep", "3600"], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    from jailtwist.registry import JailRegistry
    registry = JailRegistry(state)
    deadline = time.monotonic() + 60
    while len(registry.entries()) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(registry.entries())} of {count} "
                             f"jails registered")
        time.sleep(0.05)
    return sleepers


def loginJail(parent, cjk):
    """
    A jail for logins: busybox, jk_lsh's policy, the accounts; with
    jailkit's jk_lsh and the C library it needs when C{cjk}.
    """
    jail = os.path.join(parent, "login")
    buildLoginJail(jail, ours("jk_chrootsh"), cjk, USER, CUSER)
    return jail


def lshAccount(cjk):
    """
    An account that is not jailed, whose shell is jk_lsh, allowed to run
    busybox (jailkit's and jailtwist's jk_lsh read /etc/jailkit/jk_lsh.ini).
    """
    subprocess.run(["useradd", "-m", "-s", ours("jk_lsh"), LUSER],
                   check=True)
    os.makedirs("/etc/jailkit", exist_ok=True)
    with open("/etc/jailkit/jk_lsh.ini", "w") as f:
        f.write(f"[DEFAULT]\npaths = /usr/bin, /bin\n"
                f"executables = {os.path.realpath('/bin/busybox')}\n")
    return cjk and os.path.exists("/usr/sbin/jk_lsh")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    runs = parser.parse_args().runs
    if os.environ.get("JAILTWIST_ISOLATED") != "1" or os.geteuid() != 0:
        raise SystemExit("run as root through tests/isolated (see the "
                         "module docstring)")
    parent = tempfile.mkdtemp(prefix="bench", dir="/mnt")
    os.chmod(parent, 0o755)
    scratch = tempfile.mkdtemp(prefix="jtstart")
    # The registry jk_list reads (private to tests/isolated).
    state = "/run/jailtwist"
    sleepers = []
    try:
        jail = buildJail(parent)
        bare = Contender("python3 -I -S -c pass (bare interpreter)", BARE)
        launch = [ours("jk_chrootlaunch"), "--plain", "--state-dir", state,
                  "-j", jail]
        true = ["-x", "/bin/busybox", "--", "true"]
        runGroup("jk_chrootlaunch: plain chroot, busybox true", [
            bare,
            Contender("jailkit jk_chrootlaunch (C)",
                      [jailkit_package.cTool("jk_chrootlaunch", scratch),
                       "-j", jail, "-x", "/bin/busybox", "--", "true"]),
            Contender("jailtwist jk_chrootlaunch", launch + true),
        ], runs)

        # firejail second: the target is to start faster than it.
        isolated = [bare]
        notes = []
        if shutil.which("firejail"):
            fireJail = firejailJail(parent)
            isolated.append(Contender(
                "firejail --chroot --net=none --noprofile",
                ["firejail", "--quiet", "--noprofile", f"--chroot={fireJail}",
                 "--net=none", "/bin/busybox", "true"]))
        else:
            notes.append("firejail is not installed: apt-get install "
                         "firejail to compare")
        if shutil.which("bwrap"):
            isolated.append(Contender(
                "bwrap --unshare-all --proc --dev (ro jail)",
                ["bwrap", "--unshare-all", "--new-session",
                 "--die-with-parent", "--ro-bind", jail, "/", "--proc",
                 "/proc", "--dev", "/dev", "/bin/busybox", "true"]))
        else:
            notes.append("bubblewrap is not installed: apt-get install "
                         "bubblewrap to compare")
        isolated.append(Contender("jailtwist jk_chrootlaunch --isolate",
                                  launch + ["--isolate"] + true))
        runGroup("jk_chrootlaunch --isolate: namespaces, busybox true",
                 isolated, runs, notes)

        cjk = jailkit()
        loginJail(parent, cjk)
        env = userEnv(USER)
        logins = [
            Contender("setpriv + python3 -I -S -c pass (bare)",
                      asUser(USER, BARE), env=env),
            Contender("setpriv + jailtwist jk_chrootsh -c 'busybox true'",
                      asUser(USER, [ours("jk_chrootsh"), "-c",
                                    "busybox true"]), env=env),
            Contender("setpriv + busybox true (fixed cost)",
                      asUser(USER, ["/bin/busybox", "true"]), env=env),
        ]
        notes = []
        if cjk:
            logins.insert(1, Contender(
                "setpriv + jailkit jk_chrootsh + jk_lsh (C, setuid)",
                asUser(CUSER, [cjk, "-c", "busybox true"]),
                env=userEnv(CUSER)))
        else:
            notes.append("jailkit's setuid jk_chrootsh is not installed: "
                         "apt-get install jailkit to compare")
        runGroup("jailed login: jk_chrootsh, shell jk_lsh in the jail, "
                 "busybox true", logins, runs, notes)

        sleepers = startJails(jail, state, JAILS)
        runGroup(f"jk_list with {JAILS} jails running and registered", [
            bare,
            Contender("jailkit jk_list (C)",
                      [jailkit_package.cTool("jk_list", scratch)]),
            Contender("jailtwist jk_list", [ours("jk_list")]),
        ], runs)
        for sleeper in sleepers:
            sleeper.kill()
        for sleeper in sleepers:
            sleeper.wait()
        sleepers = []

        check, checkEnv = jailkit_package.pythonTool("jk_check", scratch)
        runGroup("jk_check on the busybox jail", [
            bare,
            Contender("jailkit jk_check (Python)", check + [jail],
                      env=checkEnv),
            Contender("jailtwist jk_check", [ours("jk_check"), jail]),
        ], runs)

        others = [bare]
        lshC = lshAccount(cjk)
        lenv = userEnv(LUSER)
        if lshC:
            others.append(Contender(
                "setpriv + jailkit jk_lsh -c 'busybox true' (C)",
                asUser(LUSER, ["/usr/sbin/jk_lsh", "-c", "busybox true"]),
                env=lenv))
        others += [
            Contender("setpriv + jailtwist jk_lsh -c 'busybox true'",
                      asUser(LUSER, [ours("jk_lsh"), "-c", "busybox true"]),
                      env=lenv),
            Contender("jailtwist jk_uchroot (refused: no jail allowed)",
                      asUser(LUSER, [ours("jk_uchroot"), "-j", jail, "-x",
                                     "/bin/busybox"]), expect=None,
                      env=lenv),
            Contender("jailtwist ping (no daemon)",
                      [ours("jailtwist"), "-f", f"{scratch}/none", "ping"],
                      expect=None),
            Contender("jaildaemon -c true -j 1 (no daemon)",
                      [ours("jaildaemon"), "-f", f"{scratch}/none", "-c",
                       "true", "-j", "1"], expect=None),
        ]
        runGroup("other one-shot commands", others, runs)
    finally:
        for sleeper in sleepers:
            sleeper.kill()
            sleeper.wait()
        for user in (USER, CUSER, LUSER):
            subprocess.run(["userdel", "-rf", user], capture_output=True)
        shutil.rmtree(parent, True)
        shutil.rmtree(scratch, True)


if __name__ == "__main__":
    main()
