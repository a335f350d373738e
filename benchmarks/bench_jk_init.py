#!/usr/bin/env python3
"""
Time jailtwist's jk_init against jailkit's jk_init on the same sections in
the same run, and compare the jails they build.

Two sets: the jail a hosting panel builds for every account
(basicshell jk_lsh sftp scp rsync extendedshell netutils git ssh) and the
small sftp/scp one (basicshell jk_lsh sftp scp rsync).  Each tool reads its
own shipped jk_init.ini.  Every timed run builds a fresh jail; the first run
of each tool is a warm-up (page cache) and its jail is kept for the
comparison of contents.

The benchmark re-runs itself in the private mount namespace of
tests/isolated (both tools append to /etc/jailkit/jk_socketd.ini; jails go
to the private tmpfs on /mnt), so the machine is not changed.  jailkit is
not a dependency: when it is not installed, its package is fetched with
`apt-get download` and unpacked in a scratch directory rather than
installed, because installing it would put jailkit's own jk_lsh.ini,
jk_chrootsh.ini and jk_socketd.ini into /etc/jailkit, which jailtwist's
tools read.

Run as root:  python3 benchmarks/bench_jk_init.py [--runs N] [--big-runs N]
It uses the jk_init installed next to the interpreter running it, else the
one on PATH.
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

HERE = os.path.dirname(os.path.abspath(__file__))
BIG = ["basicshell", "jk_lsh", "sftp", "scp", "rsync", "extendedshell",
       "netutils", "git", "ssh"]
SMALL = ["basicshell", "jk_lsh", "sftp", "scp", "rsync"]


def ours():
    local = os.path.join(os.path.dirname(sys.executable), "jk_init")
    if os.path.exists(local):
        return [local]
    found = shutil.which("jk_init")
    if not found:
        sys.exit("jk_init is not installed: run ./bootstrap.sh install")
    return [found]


def oursConfig():
    installed = os.path.join(sys.prefix, "share/jailtwist/etc/jailkit",
                             "jk_init.ini")
    if os.path.exists(installed):
        return installed
    return os.path.join(HERE, "..", "etc", "jailkit", "jk_init.ini")


def jailkit(scratch):
    """
    @return: C{(argv, env, config)} to run jailkit's jk_init.
    """
    argv, env = jailkit_package.pythonTool("jk_init", scratch)
    if env is None:
        config = "/etc/jailkit/jk_init.ini"
        if os.path.exists(config + ".dpkg-dist"):
            config += ".dpkg-dist"
    else:
        config = os.path.join(jailkit_package.unpacked(scratch),
                              "etc/jailkit/jk_init.ini")
    return argv, env, config


def build(argv, config, jail, sections, env=None):
    shutil.rmtree(jail, ignore_errors=True)
    start = time.perf_counter()
    result = subprocess.run(argv + ["-c", config, "-j", jail] + sections,
                            capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({result.returncode}):\n"
                 f"{result.stdout}{result.stderr}")
    return elapsed, result


def contents(jail):
    """
    @return: (set of relative paths, total bytes of regular files)
    """
    paths = set()
    size = 0
    for directory, dirs, files in os.walk(jail):
        for name in dirs + files:
            path = os.path.join(directory, name)
            paths.add(os.path.relpath(path, jail))
            st = os.lstat(path)
            if st.st_mode & 0o170000 == 0o100000:
                size += st.st_size
    return paths, size


def measure(label, sections, runs, mine, theirs, base):
    ourJail = os.path.join(base, "ours")
    theirJail = os.path.join(base, "jailkit")
    # Warm-up runs; their jails are kept for the comparison.
    build(mine[0], mine[1], ourJail, sections)
    build(theirs[0], theirs[2], theirJail, sections, theirs[1])
    ourPaths, ourSize = contents(ourJail)
    theirPaths, theirSize = contents(theirJail)
    onlyTheirs = sorted(theirPaths - ourPaths)
    ourTimes, theirTimes = [], []
    for _ in range(runs):
        ourTimes.append(build(mine[0], mine[1], ourJail + "-t",
                              sections)[0])
        theirTimes.append(build(theirs[0], theirs[2], theirJail + "-t",
                                sections, theirs[1])[0])
    for jail in (ourJail, theirJail, ourJail + "-t", theirJail + "-t"):
        shutil.rmtree(jail, ignore_errors=True)
    ours_, theirs_ = statistics.median(ourTimes), statistics.median(theirTimes)
    print(f"\n{label}: jk_init -j JAIL {' '.join(sections)}")
    print(f"  jailtwist jk_init: median {ours_:.3f} s, best "
          f"{min(ourTimes):.3f} s over {runs} runs; {len(ourPaths)} entries, "
          f"{ourSize / 1e6:.0f} MB")
    print(f"  jailkit   jk_init: median {theirs_:.3f} s, best "
          f"{min(theirTimes):.3f} s over {runs} runs; {len(theirPaths)} "
          f"entries, {theirSize / 1e6:.0f} MB")
    print(f"  jailtwist is {theirs_ / ours_:.1f}x faster (median)")
    print(f"  in jailkit's jail but not in jailtwist's: {len(onlyTheirs)}"
          + "".join(f"\n    {p}" for p in onlyTheirs[:20]))
    return theirs_ / ours_


def isolate():
    """
    Re-run this benchmark as root in the private mount namespace of
    tests/isolated (if it is not there yet), and make the scratch
    directories and the /etc/jailkit files both tools expect.

    @return: C{(scratch, base)}: a scratch directory for jailkit's package
        and a root-owned 0755 directory on the private /mnt for jails.
    """
    if os.geteuid() != 0:
        sys.exit("run as root (jails need root-owned directories)")
    if os.environ.get("JAILTWIST_ISOLATED") != "1":
        os.execv(os.path.join(HERE, "..", "tests", "isolated"),
                 ["isolated", sys.executable] + sys.argv)
    missing = [p for p in ("rsync", "git", "wget", "ssh") if not
               shutil.which(p)]
    if missing:
        print(f"note: not installed here: {', '.join(missing)} (the tools "
              f"skip what is missing; bootstrap.sh test installs them)")
    scratch = tempfile.mkdtemp(prefix="jt-bench-", dir="/var/tmp")
    base = tempfile.mkdtemp(prefix="bench", dir="/mnt")
    os.chmod(base, 0o755)
    os.makedirs("/etc/jailkit", exist_ok=True)
    for name in ("jk_socketd.ini", "jk_lsh.ini"):
        path = os.path.join("/etc/jailkit", name)
        if not os.path.exists(path):
            open(path, "w").close()
    return scratch, base


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--runs", type=int, default=5,
                        help="timed runs of the small set (default 5)")
    parser.add_argument("--big-runs", type=int, default=2,
                        help="timed runs of the big set (default 2)")
    args = parser.parse_args()
    scratch, base = isolate()
    try:
        theirs = jailkit(scratch)
        mine = (ours(), oursConfig())
        print(f"jailtwist: {' '.join(mine[0])} -c {mine[1]}")
        print(f"jailkit:   {' '.join(theirs[0])} -c {theirs[2]}")
        big = measure("hosting-panel set", BIG, args.big_runs, mine, theirs,
                      base)
        small = measure("small set", SMALL, args.runs, mine, theirs, base)
        print(f"\ntargets: >= 2x faster on the hosting-panel set: "
              f"{'met' if big >= 2 else 'NOT met'} ({big:.1f}x); no slower "
              f"on the small set: {'met' if small >= 1 else 'NOT met'} "
              f"({small:.1f}x)")
    finally:
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
