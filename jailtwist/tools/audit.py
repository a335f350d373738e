# -*- test-case-name: tests.test_audit -*-
"""
The jk_check and jk_list commands: parse the options, run
L{jailtwist.audit} or L{jailtwist.processes}, print the result.
"""

import os
import sys

from jailtwist.command import CommandLine, runCommand
from jailtwist.errors import JailtwistError

CHECK_CONFIG = "/etc/jailkit/jk_check.ini"

# jk_check's exit statuses.
CLEAN = 0
FOUND = 1
CANNOT_CHECK = 3

# Both commands parse without Twisted (see jailtwist.command), and import
# what they work with only once the command line is good.
CHECK_COMMAND_LINE = CommandLine(
    synopsis="jk_check [-v] [-c CONFIG] [--json] [JAIL...]",
    longdesc=("Check jails for setuid files, writable directories, files "
              "that differ from the host's, directories not owned by root "
              "and device nodes.  Without JAIL, check every jail in the "
              "config file and every jail named by an account's home "
              "(/jail/./home/user).  Exit status 1 if anything is found."),
    flags=[
        ("verbose", "v", "say what is checked, and a summary per jail"),
        ("json", None, "print one JSON document (for monitoring)"),
    ],
    parameters=[
        ("configfile", "c", None,
         f"jk_check.ini to read (default: {CHECK_CONFIG})"),
    ],
    arguments=True, helpShort=True)


def _checkMain(argv):
    options, jails = CHECK_COMMAND_LINE.parse(argv)
    options["jails"] = jails
    from jailtwist import audit
    from jailtwist.config import readIni
    configPath = options["configfile"] or CHECK_CONFIG
    ini = None
    try:
        # A missing default file is fine (jailkit only warns); a missing
        # file named with -c is a mistake.
        if options["configfile"] or os.path.exists(configPath):
            ini = readIni(configPath)
        if options["jails"]:
            audits = [audit.auditFor(jail, ini) for jail in options["jails"]]
        else:
            audits = audit.auditsFromConfig(ini)
    except JailtwistError as e:
        e.exitCode = CANNOT_CHECK
        raise
    reports = []
    for one in audits:
        if options["verbose"] and not options["json"]:
            print(f"checking {audit.printable(one.path)}", flush=True)
        report = one.run()
        reports.append(report)
        if not options["json"]:
            _printReport(report, options["verbose"])
    findings = sum(len(report.findings) for report in reports)
    if options["json"]:
        import json
        json.dump({"clean": findings == 0, "findings": findings,
                   "jails": [report.asDict() for report in reports]},
                  sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif options["verbose"] and not reports:
        print(f"no jails to check: none in {configPath} and no account"
              f" home names one")
    return FOUND if findings else CLEAN


def _printReport(report, verbose):
    from jailtwist import audit
    for finding in report.findings:
        print(finding)
    if verbose:
        for path in report.skipped:
            print(f"{audit.printable(path)}: not checked (ignored, or a"
                  f" pseudo file system)")
        print(f"{audit.printable(report.jail)}: {report.directories}"
              f" directories, {report.files} files, {report.compared}"
              f" compared with the host, {len(report.findings)} findings")
    sys.stdout.flush()


def checkMain():
    runCommand(_checkMain, name="jk_check")


LIST_COMMAND_LINE = CommandLine(
    synopsis="jk_list [-v] [-w] [-j JAIL]",
    longdesc=("List every process whose root directory is not the host's "
              "root (a chrooted or jailed process): PID, user, jail and "
              "command; then the jails in jailtwist's registry.  JAIL is "
              "a directory, or the name, jid or pid:N of a registered "
              "jail."),
    flags=[
        ("wide", "w", "do not shorten commands to fit 80 columns"),
        ("verbose", "v", "also report processes that could not be read"),
    ],
    parameters=[
        ("jail", "j", None, "list only processes in this jail (or below)"),
    ],
    helpShort=True)


def _listMain(argv, registry=None):
    options, _ = LIST_COMMAND_LINE.parse(argv)
    from jailtwist import processes
    from jailtwist.registry import JailRegistry
    if registry is None:
        registry = JailRegistry()
    try:
        registered = registry.entries()
    except OSError as e:
        registered = []
        if options["verbose"]:
            sys.stderr.write(f"jk_list: cannot read the registry of running"
                             f" jails: {e.strerror}\n")
    jail = options["jail"]
    shown = registered
    if jail is not None:
        if not jail.startswith("/"):
            try:
                jail = registry.lookup(jail).path
            except JailtwistError:
                raise JailtwistError(
                    f"no jail {jail!r}: give its directory (from /) or the"
                    f" name, jid or pid:N of a running jail") from None
        wanted = os.path.realpath(jail)
        shown = [r for r in registered
                 if processes.within(os.path.realpath(r.path), wanted)]
    table = processes.ProcessTable(registered=registered)
    jailed = table.jailedProcesses(jail=jail)
    if options["verbose"] and table.unreadable:
        pids = ", ".join(str(pid) for pid in sorted(table.unreadable))
        count = len(table.unreadable)
        noun = "process" if count == 1 else "processes"
        sys.stderr.write(f"jk_list: could not read {count} {noun}"
                         f" (pid {pids})\n")
    if jailed:
        for line in processes.formatTable(jailed, wide=options["wide"]):
            print(line)
    else:
        print("No jailed processes found")
    if shown:
        print()
        for line in processes.formatRegistered(shown):
            print(line)
    return 0


def listMain():
    runCommand(_listMain, name="jk_list")
