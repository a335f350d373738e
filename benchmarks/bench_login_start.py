"""
How long a jailed login takes to start: the installed jk_chrootsh, run as an
unprivileged account whose jail passwd shell is jk_lsh, from exec until the
allowed program (a static busybox C{true} inside the jail) has run.

Run it as root inside the tests' private namespace (it creates an account
and a jail there, which vanish afterwards):

    tests/isolated /opt/jailtwist/bin/python benchmarks/bench_login_start.py

It prints, in milliseconds per run (median and minimum of N runs): the same
command run directly as the account (the fixed cost of setpriv and exec), a
bare interpreter, the interpreter importing the login modules, the whole
login, and the same login through jailkit's setuid C jk_chrootsh and its
jk_lsh copied into the jail (Debian's C{jailkit} package, installed with
apt-get when missing; C{--no-jailkit} skips it); then the modules the login
path imports and the ten costliest imports from C{python -X importtime}.
"""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

RUNS = int(os.environ.get("RUNS", "40"))
BIN = os.path.dirname(os.path.abspath(sys.executable))
USER = "jtbench"
CUSER = "jtbenchc"


def timed(command, runs=RUNS):
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        result = subprocess.run(command, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, cwd="/")
        samples.append((time.perf_counter() - start) * 1000)
        if result.returncode:
            raise SystemExit(f"{command} failed ({result.returncode}): "
                             f"{result.stderr.decode().strip()}")
    return statistics.median(samples), min(samples)


def asUser(command, user=USER):
    return (["env", "-i", f"USER={user}", "setpriv", "--reuid", user,
             "--regid", user, "--init-groups", "--"] + command)


def jailkit():
    """
    The path of jailkit's setuid jk_chrootsh, installing Debian's package if
    needed; C{None} if it cannot be had.
    """
    if not os.path.exists("/usr/sbin/jk_chrootsh"):
        # Keep the /etc/jailkit/*.ini jailtwist installed (no conffile
        # prompt, no replacement).
        subprocess.run(["apt-get", "install", "-y", "-q", "-o",
                        "Dpkg::Options::=--force-confold", "jailkit"],
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"),
                       stdout=subprocess.DEVNULL)
    path = "/usr/sbin/jk_chrootsh"
    if os.path.exists(path) and os.stat(path).st_mode & 0o4000:
        return path
    return None


def addAccount(jail, user, shell, jailShell):
    subprocess.run(["useradd", "-M", "-p", "*", "-d",
                    f"{jail}/./home/{user}", "-s", shell, user], check=True)
    pw = [l.split(":") for l in open("/etc/passwd")
          if l.startswith(user + ":")][0]
    os.mkdir(os.path.join(jail, "home", user), 0o700)
    os.chown(os.path.join(jail, "home", user), int(pw[2]), int(pw[3]))
    with open(os.path.join(jail, "etc/passwd"), "a") as f:
        f.write(f"{user}:x:{pw[2]}:{pw[3]}::/home/{user}:{jailShell}\n")
    with open(os.path.join(jail, "etc/group"), "a") as f:
        f.write(f"{user}:x:{pw[3]}:\n")


def isolatedScratch():
    """
    @return: a new root-owned 0755 directory under the private /mnt of
        C{tests/isolated}, a safe parent for jails; exit when not run as
        root through it.
    """
    if os.environ.get("JAILTWIST_ISOLATED") != "1" or os.geteuid() != 0:
        raise SystemExit("run as root through tests/isolated (see the "
                         "module docstring)")
    parent = tempfile.mkdtemp(prefix="bench", dir="/mnt")
    os.chmod(parent, 0o755)
    return parent


def buildLoginJail(jail, chrootsh, cjk=None, user=USER, cuser=CUSER):
    """
    A jail for timing logins: busybox, a jk_lsh policy allowing it, the
    account C{user} with C{chrootsh} as its host shell; with jailkit's C
    C{jk_chrootsh} at C{cjk}, also jailkit's jk_lsh (it runs inside the
    jail, so it and the C library it needs are copied in) and the account
    C{cuser} for it.
    """
    for d in ("usr/bin", "etc/jailkit", "home", "dev"):
        os.makedirs(os.path.join(jail, d), 0o755)
    shutil.copy("/bin/busybox", os.path.join(jail, "usr/bin/busybox"))
    addAccount(jail, user, chrootsh, "/usr/sbin/jk_lsh")
    with open(os.path.join(jail, "etc/jailkit/jk_lsh.ini"), "w") as f:
        f.write("[DEFAULT]\npaths = /usr/bin\n"
                "executables = /usr/bin/busybox\n")
    if cjk:
        for path in ["/usr/sbin/jk_lsh", "/lib/x86_64-linux-gnu/libc.so.6",
                     "/lib64/ld-linux-x86-64.so.2"]:
            target = jail + os.path.realpath(path)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy(os.path.realpath(path), target)
            if path.startswith("/lib64"):
                os.makedirs(jail + "/lib64", exist_ok=True)
                shutil.copy(os.path.realpath(path), jail + path)
        addAccount(jail, cuser, cjk, "/usr/sbin/jk_lsh")


def main():
    parent = isolatedScratch()
    jail = os.path.join(parent, "jail")
    try:
        cjk = None if "--no-jailkit" in sys.argv else jailkit()
        buildLoginJail(jail, os.path.join(BIN, "jk_chrootsh"), cjk)
        python = sys.executable
        rows = [
            ("busybox true, run directly as the account",
             asUser(["/bin/busybox", "true"])),
            ("python -c pass (bare interpreter)",
             asUser([python, "-c", "pass"])),
            ("python importing the login modules",
             asUser([python, "-c", "import jailtwist.tools.login, "
                                   "jailtwist.enter"])),
            ("jk_chrootsh -c 'busybox true' (whole jailed login)",
             asUser([os.path.join(BIN, "jk_chrootsh"), "-c",
                     "busybox true"])),
        ]
        if cjk:
            rows.append(("jailkit's C jk_chrootsh + jk_lsh, same login",
                         asUser([cjk, "-c", "busybox true"], CUSER)))
        print(f"login start-up, {RUNS} runs each, ms (median / min):")
        for label, command in rows:
            median, low = timed(command)
            print(f"  {median:7.1f} / {low:6.1f}  {label}")
        modules = subprocess.run(
            [python, "-c", "import sys, jailtwist.tools.login, "
             "jailtwist.enter; print(' '.join(sorted(m for m in sys.modules "
             "if m.startswith(('twisted', 'zope', 'jailtwist')))))"],
            capture_output=True, text=True, check=True, cwd="/").stdout
        print(f"jailtwist/twisted/zope modules on the login path: "
              f"{modules.strip()}")
        trace = subprocess.run(
            [python, "-X", "importtime", "-c",
             "import jailtwist.tools.login, jailtwist.enter"],
            capture_output=True, text=True, check=True, cwd="/").stderr
        costs = []
        for line in trace.splitlines()[1:]:
            parts = line.split("|")
            if len(parts) == 3:
                costs.append((int(parts[1]), parts[2].rstrip()))
        print("costliest imports (cumulative us, python -X importtime):")
        for cost, name in sorted(costs, reverse=True)[:10]:
            print(f"  {cost:8d}  {name}")
    finally:
        for user in (USER, CUSER):
            subprocess.run(["userdel", "-f", user], capture_output=True)
        shutil.rmtree(parent, ignore_errors=True)


if __name__ == "__main__":
    main()
