"""
Login start-up through a jail assembled from binds (C{jk_init --bind})
against the same jail copied (C{jk_init}): the installed jk_chrootsh, run as
an unprivileged account whose jail passwd shell is jk_lsh, starting the
jail's sftp-server (which ends at once on an empty stdin) -- an sftp login
as sshd starts it, up to the end of the server.

Run it as root inside the tests' private namespace (it creates two jails
and two accounts there, which vanish afterwards):

    tests/isolated /opt/jailtwist/bin/python benchmarks/bench_login_bind.py

The two logins run alternately in the same run (RUNS each, default 60);
SECTIONS (default C{jk_lsh sftp scp}) names the jails' sections.  It
prints the median and minimum wall time per login in milliseconds, the CPU
time (user + system of the login and its children) per login, and the
difference of the medians (target: within 5 ms); then the same for the
build (C{jk_init} of C{jk_lsh sftp scp}) and the disk use of each jail.
"""

import os
import resource
import shutil
import statistics
import subprocess
import sys
import time

from bench_login_start import addAccount, isolatedScratch

RUNS = int(os.environ.get("RUNS", "60"))
BIN = os.path.dirname(os.path.abspath(sys.executable))
# SECTIONS="basicshell jk_lsh sftp scp rsync extendedshell netutils git ssh"
# measures the hosting-panel set (169 binds) instead of the walkthrough's.
SECTIONS = tuple(os.environ.get("SECTIONS", "jk_lsh sftp scp").split())
LSH_INI = ("[DEFAULT]\npaths = /usr/lib/openssh\n"
           "executables = /usr/lib/openssh/sftp-server\n")


def build(jail, bind):
    os.mkdir(jail, 0o755)
    command = [os.path.join(BIN, "jk_init")] + (["--bind"] if bind else []) \
        + ["-j", jail] + list(SECTIONS)
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    elapsed = (time.perf_counter() - start) * 1000
    with open(os.path.join(jail, "etc/jailkit/jk_lsh.ini"), "w") as f:
        f.write(LSH_INI)
    os.makedirs(os.path.join(jail, "home"), 0o755, exist_ok=True)
    return elapsed


def diskUse(jail):
    out = subprocess.run(["du", "-sk", "--apparent-size", jail],
                         capture_output=True, text=True, check=True).stdout
    blocks = subprocess.run(["du", "-sk", jail], capture_output=True,
                            text=True, check=True).stdout
    return int(out.split()[0]), int(blocks.split()[0])


def login(user):
    return ["env", "-i", f"USER={user}", "setpriv", "--reuid", user,
            "--regid", user, "--init-groups", "--",
            os.path.join(BIN, "jk_chrootsh"), "-c",
            "/usr/lib/openssh/sftp-server"]


def once(command):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(command, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            cwd="/")
    wall = (time.perf_counter() - start) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode:
        raise SystemExit(f"{command} failed ({result.returncode}): "
                         f"{result.stderr.decode().strip()}")
    cpu = ((after.ru_utime - before.ru_utime)
           + (after.ru_stime - before.ru_stime)) * 1000
    return wall, cpu


def main():
    parent = isolatedScratch()
    users = {"copied": "jtbcopy", "bind": "jtbbind"}
    try:
        builds = {}
        for kind in ("copied", "bind"):
            jail = os.path.join(parent, kind)
            builds[kind] = build(jail, kind == "bind")
            addAccount(jail, users[kind], os.path.join(BIN, "jk_chrootsh"),
                       "/usr/sbin/jk_lsh")
        samples = {kind: [] for kind in users}
        for kind in users:           # warm the caches once
            once(login(users[kind]))
        for _ in range(RUNS):
            for kind in users:       # alternately, in the same run
                samples[kind].append(once(login(users[kind])))
        print(f"sftp login start-up (jk_chrootsh -> jk_lsh policy -> "
              f"sftp-server), {RUNS} runs each, alternating:")
        medians = {}
        for kind in ("copied", "bind"):
            walls = [w for w, _ in samples[kind]]
            cpus = [c for _, c in samples[kind]]
            medians[kind] = statistics.median(walls)
            print(f"  {kind:7s} jail: {medians[kind]:6.1f} ms median, "
                  f"{min(walls):6.1f} ms min, "
                  f"{statistics.median(cpus):5.1f} ms CPU per login")
        print(f"  bind - copied: {medians['bind'] - medians['copied']:+.1f} "
              f"ms (target: within 5 ms)")
        print(f"build ({' '.join(SECTIONS)}) and disk use:")
        for kind in ("copied", "bind"):
            apparent, used = diskUse(os.path.join(parent, kind))
            print(f"  {kind:7s}: jk_init {builds[kind]:6.1f} ms, "
                  f"{apparent} kB apparent, {used} kB on disk")
    finally:
        for user in users.values():
            subprocess.run(["userdel", "-f", user], capture_output=True)
        shutil.rmtree(parent, ignore_errors=True)


if __name__ == "__main__":
    main()
