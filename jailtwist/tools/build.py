# -*- test-case-name: tests.test_build -*-
"""
The jail builder commands: C{jk_init}, C{jk_cp} and C{jk_update}, with
jailkit's options and ini files, in front of L{jailtwist.install}.

They are one-shot programs with no asynchronous work, so they do not start
a reactor, and parse their options without Twisted (L{CommandLine}).
"""

import os
import sys
import time
from collections import namedtuple

from jailtwist.bindjail import (BindCollector, MixedJail, isCopiedJail,
                                listRecorded, readEntries)
from jailtwist.bindlist import checkEntries
from jailtwist.command import CommandLine, UsageError, runCommand
from jailtwist.config import ConfigError, readIni
from jailtwist.elf import ElfResolver
from jailtwist.errors import JailtwistError
from jailtwist.install import (InitConfig, Installer, InstallPlan,
                               JailBuilder, JailUpdate, Missing,
                               UPDATE_DIRECTORIES, findProgram, preflight,
                               refreshLibraryCache)
from jailtwist.jail import BIND_LIST, Jail, UnsafeJail, hasBindList

INIPREFIX = "/etc/jailkit"
INIT_CONFIG = INIPREFIX + "/jk_init.ini"
UPDATE_CONFIG = INIPREFIX + "/jk_update.ini"
SOCKETD_CONFIG = INIPREFIX + "/jk_socketd.ini"

# Exit statuses (jailkit's, where it has one).
NO_JAIL = 2
INIT_UNSAFE = 3
CP_NOT_A_DIRECTORY = 3
MISSING = 4
NOT_ROOT = 5
CP_UNSAFE = 6

_VERBS = {
    "copy": "copied", "link": "hardlinked", "symlink": "symlinked",
    "mkdir": "created directory", "mknod": "created node",
    "exists": "exists, left alone:", "strip": "removing setuid/setgid from",
    "mountpoint": "created mount point",
}


class Progress:
    """
    What a build tells its user: every entry with C{-v}, a running count on
    a terminal, nothing otherwise.

    @param name: the command's name, for the progress line.
    @param jail: the L{Jail} (paths are printed as the host sees them).
    """

    interval = 0.1

    def __init__(self, name, jail, verbose, stream=None, tty=None,
                 clock=time.monotonic):
        self.name = name
        self.jail = jail
        self.verbose = verbose
        self.stream = stream if stream is not None else sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.clock = clock
        self.started = clock()
        self._last = 0.0
        self._count = 0
        self._shown = False

    def __call__(self, action, path):
        counted = action not in ("exists", "strip")
        if counted:
            self._count += 1
        if self.verbose:
            where = path if action == "strip" else self.jail.location + path
            self._write(f"{_VERBS[action]} {where}\n")
        elif self.tty and counted:
            now = self.clock()
            if now - self._last >= self.interval:
                self._last = now
                self._write(f"\r{self.name}: {self._count} entries", True)
                self._shown = True

    def _write(self, text, flush=False):
        """
        Write to the stream; a reader that went away (C{jk_init -v | head})
        silences the output, it does not stop the build half way.
        """
        if self.stream is None:
            return
        try:
            self.stream.write(text)
            if flush:
                self.stream.flush()
        except BrokenPipeError:
            if self.stream is sys.stdout:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
                os.close(devnull)
            self.stream = None

    def finish(self, installer, what="created or replaced"):
        if self._shown:
            self._write("\r\033[K")
        if self.verbose or self.tty:
            elapsed = self.clock() - self.started
            megabytes = installer.bytes / 1e6
            self._write(
                f"{self.name}: {self.jail.location}: {installer.changes} "
                f"entries {what}, {megabytes:.1f} MB copied in "
                f"{elapsed:.2f} s\n")
        self._write("", True)


def _requireRoot(name):
    if os.geteuid() != 0:
        raise JailtwistError(f"{name} must run as root (it creates files "
                             f"owned by root in the jail)", NOT_ROOT)


def _warnMissing(name, installer, strict):
    """
    Report what the host lacks; with C{strict}, fail.
    """
    for missing in installer.missing:
        sys.stderr.write(f"{name}: warning: {missing}\n")
    if installer.missing and strict:
        raise JailtwistError(
            f"{len(installer.missing)} item(s) named are missing on this "
            f"host (see the warnings above): the jail is incomplete",
            MISSING)


_BUILD_FLAGS = [
    ("verbose", "v", "list every entry created"),
    ("force", "f", "replace files that already exist in the jail"),
    ("hardlink", "k", "hardlink instead of copying where possible "
                      "(never for setuid/setgid programs)"),
    ("strict", None, "fail (exit 4) when something named is missing "
                     "on this host"),
]
_BUILD_PARAMETERS = [
    ("jail", "j", None, "the jail directory"),
]


def _jail(path, unsafeStatus, missingOk):
    """
    The L{Jail} at C{path} (relative to the working directory if it is
    not absolute), checked like jailkit's Python tools check it.
    """
    jail = Jail(os.path.abspath(path))
    try:
        jail.checkSafe(parents=True, missingOk=missingOk)
    except UnsafeJail as e:
        raise JailtwistError(f"jail {jail.location} is not safe: {e}",
                             unsafeStatus)
    return jail


# -- jk_init ------------------------------------------------------------------

INIT_COMMAND_LINE = CommandLine(
    synopsis=("jk_init [-v] [-f] [-k] [--strict] [--bind] [-c CONFIG] "
              "-j JAIL SECTION...\n       jk_init -l [-c CONFIG]"),
    longdesc=("Create a jail, or add to one, from sections of jk_init.ini "
              "(programs, their libraries, devices, accounts)."),
    flags=_BUILD_FLAGS + [
        ("list", "l", "list the sections of the config file and exit"),
        ("bind", None, "copy no programs, libraries or shared data: list "
                       "the host paths the jail needs in its "
                       f"{BIND_LIST}, to be bound read-only when it is "
                       "entered"),
    ],
    parameters=_BUILD_PARAMETERS + [
        ("configfile", "c", INIT_CONFIG, "the jk_init.ini to read"),
    ],
    arguments=True, helpShort="hidden")


def _initOptions(argv):
    options, args = INIT_COMMAND_LINE.parse(argv)
    if options["jail"] is None and not options["list"]:
        if not args:
            raise UsageError("need a jail directory (-j JAIL) and at least "
                             "one section")
        options["jail"] = args.pop(0)
    if not args and not options["list"]:
        raise UsageError("need at least one section (jk_init -l lists "
                         "them)")
    options["sections"] = args
    return options


def readInitConfig(path):
    """
    The L{InitConfig} of the jk_init.ini at C{path}.

    @raise JailtwistError: exit 3 if it is missing or cannot be parsed.
    """
    if not os.path.isfile(path):
        raise JailtwistError(f"configfile {path} does not exist "
                             f"(name another with -c)", INIT_UNSAFE)
    try:
        return InitConfig(readIni(path))
    except ConfigError as e:
        e.exitCode = INIT_UNSAFE
        raise


def _listSections(config):
    sys.stdout.write(f"\n** Available sections in {config.path} **\n\n")
    for name in sorted(config.sections()):
        comment = config.ini.section(name).getString("comment")
        sys.stdout.write(f"{name} - {comment}\n" if comment else f"{name}\n")
    sys.stdout.write("\n")


def _createJail(jail):
    """
    Create the jail directory (and any missing parents: the safety check
    has accepted the ones that exist) as root:root 0755.
    """
    missing = []
    path = jail.location
    while not os.path.lexists(path):
        missing.append(path)
        path = os.path.dirname(path)
    for path in reversed(missing):
        os.mkdir(path, 0o755)
        os.chown(path, 0, 0)
        os.chmod(path, 0o755)
    return bool(missing)


def _initMain(argv):
    options = _initOptions(argv)
    config = readInitConfig(options["configfile"])
    if options["list"]:
        _listSections(config)
        return 0
    _requireRoot("jk_init")
    try:
        order = config.plan(options["sections"])[0]
    except ConfigError as e:
        e.exitCode = INIT_UNSAFE
        raise
    if not any(name in order for name in options["sections"]):
        # Like jailkit, a section that does not exist is a warning, unless
        # none does: then it is surely a mistake, and nothing is done.
        raise JailtwistError(
            f"no section [{options['sections'][0]}] in {config.path} "
            f"(jk_init -l lists them)", NO_JAIL)
    jail = _jail(options["jail"], INIT_UNSAFE, missingOk=True)
    resolver = ElfResolver()
    if options["strict"]:
        missing = preflight(config, options["sections"], resolver=resolver)
        if missing:
            for item in missing:
                sys.stderr.write(f"jk_init: {item}\n")
            raise JailtwistError(
                f"{len(missing)} item(s) named are missing on this host "
                f"(listed above): nothing was done (--strict)", MISSING)
    if options["bind"]:
        return _initBind(options, config, jail, resolver)
    progress = Progress("jk_init", jail, options["verbose"])
    build = buildJail(jail, config, options["sections"], resolver,
                      force=options["force"], hardlink=options["hardlink"],
                      report=progress)
    if build.created and options["verbose"]:
        sys.stdout.write(f"created jail {jail.location}\n")
    progress.finish(build.installer)
    for note in build.builder.notes:
        sys.stdout.write(f"jk_init: {note}\n")
    _warnMissing("jk_init", build.installer, options["strict"])
    return 0


#: What L{buildJail} did: whether it created the jail directory, its
#: L{Installer} and L{JailBuilder}; for a bind jail also the
#: L{BindCollector}, the old list's L{jailtwist.bindlist.CheckedList} and
#: the entries resolved again (C{None} for a copied jail).
JailBuild = namedtuple("JailBuild", "created installer builder collector "
                                    "checked again")


def buildJail(jail, config, sections, resolver=None, bind=False, force=False,
              hardlink=False, report=None, name="jk_init"):
    """
    Create or extend C{jail} from C{sections} of C{config} (an
    L{InitConfig}), copying host files or, with C{bind}, listing them in
    the jail's bind list: C{jk_init}'s work, for it and for the Ansible
    collection.  The jail's path must have passed L{Jail.checkSafe}.

    @raise MixedJail: if the jail is of the other kind.
    @return: a L{JailBuild}.
    """
    resolver = resolver if resolver is not None else ElfResolver()
    if bind:
        return _buildBound(jail, config, sections, resolver, force, report,
                           name)
    if os.path.isdir(jail.location) and hasBindList(jail.location):
        raise MixedJail(
            f"{jail.location} is assembled from binds (it has {BIND_LIST}):"
            f" add sections with jk_init --bind", INIT_UNSAFE)
    created = _createJail(jail)
    with Installer(jail, resolver, force=force, hardlink=hardlink,
                   report=report) as installer:
        builder = JailBuilder(installer, config, SOCKETD_CONFIG)
        builder.build(sections)
        installer.finish()
    refreshLibraryCache(jail)
    return JailBuild(created, installer, builder, None, None, None)


def _buildBound(jail, config, sections, resolver, force, report, name):
    if os.path.isdir(jail.location) and isCopiedJail(jail):
        raise MixedJail(
            f"{jail.location} holds copies of host files (built by jk_init "
            f"without --bind): bind jails and copied jails do not mix; "
            f"build the bind jail in a new directory", INIT_UNSAFE)
    created = _createJail(jail)
    old = readEntries(jail, _warner(name))
    checked = checkEntries(old, jail.location)
    again = _refuseListed(name, jail, checked)
    with Installer(jail, resolver, force=force, report=report) as installer:
        collector = BindCollector(installer)
        builder = JailBuilder(collector, config, SOCKETD_CONFIG)
        builder.build(sections)
        collector.resolveAgain(again)
        collector.finish()
        collector.merge(old)
        collector.write(keep=[m.path for m in checked.missing])
    return JailBuild(created, installer, builder, collector, checked, again)


def planJail(jail, config, sections, resolver=None, bind=False):
    """
    What L{buildJail} would add to C{jail}, found without changing
    anything.

    @return: C{(added, missing)}: lines naming what would be added (jail
        paths, C{bind PATH} for new bind list entries, accounts, the log
        socket, the proc mount), and the L{Missing} things on this host.
    """
    with InstallPlan(jail, resolver) as plan:
        if bind:
            collector = BindCollector(plan)
            builder = JailBuilder(collector, config, SOCKETD_CONFIG,
                                  plan=plan)
            builder.build(sections)
            collector.finish()
            listed = set()
            if os.path.isdir(jail.location):
                listed = {path for _, path in readEntries(jail)}
            added = [f"bind {path}" for path in sorted(collector.paths)
                     if path not in listed]
            if collector.paths and not plan.exists("/" + BIND_LIST):
                added.append("/" + BIND_LIST)
            missing = plan.missing + [Missing(r.path, r.reason)
                                      for r in collector.refused]
        else:
            builder = JailBuilder(plan, config, SOCKETD_CONFIG, plan=plan)
            builder.build(sections)
            plan.finish()
            added, missing = [], plan.missing
    return added + plan.added + builder.planned, missing


def _warner(name):
    """
    A C{warn} for L{readEntries}: one line on stderr, as C{name}.
    """
    return lambda line: sys.stderr.write(f"{name}: {line}\n")


def _refuseListed(name, jail, checked):
    """
    Stop when the jail's bind list names something that is refused in
    itself: each such line is printed, nothing is changed.  Entries refused
    only for what the host now has there are left to be resolved again.

    @return: those L{jailtwist.bindlist.RefusedEntry}s.
    """
    where = f"{jail.location}/{BIND_LIST}"
    fatal = [refused for refused in checked.refused if not refused.onHost]
    for refused in fatal:
        sys.stderr.write(f"{name}: {where} line "
                         f"{checked.lines[refused.path]}: {refused}\n")
    if fatal:
        raise JailtwistError(
            f"{len(fatal)} line(s) of {where} refused (listed above): fix "
            f"or remove them; nothing was changed", INIT_UNSAFE)
    return [refused for refused in checked.refused if refused.onHost]


def _warnRefused(name, collector, strict):
    for refused in collector.refused:
        sys.stderr.write(f"{name}: warning: {refused}\n")
    if collector.refused and strict:
        raise JailtwistError(
            f"{len(collector.refused)} path(s) refused for binding (see the "
            f"warnings above): the jail is incomplete", MISSING)


def _initBind(options, config, jail, resolver):
    """
    C{jk_init --bind}: the same sections, but host paths go into the bind
    list (merged with what it holds) instead of being copied.
    """
    progress = Progress("jk_init", jail, options["verbose"])
    build = buildJail(jail, config, options["sections"], resolver,
                      bind=True, force=options["force"], report=progress)
    if build.created and options["verbose"]:
        sys.stdout.write(f"created jail {jail.location}\n")
    collector = build.collector
    progress.finish(build.installer)
    if options["verbose"]:
        sys.stdout.write(f"jk_init: {jail.location}/{BIND_LIST}: "
                         f"{len(collector.paths)} host paths, "
                         f"{len(collector.plan())} mounts\n")
    for note in build.builder.notes:
        sys.stdout.write(f"jk_init: {note}\n")
    for missing in build.checked.missing:
        sys.stderr.write(f"jk_init: warning: {missing}\n")
    for refused in build.again:
        sys.stdout.write(f"jk_init: resolved {refused.path} again: "
                         f"{refused.reason}\n")
    _warnRefused("jk_init", collector, options["strict"])
    _warnMissing("jk_init", build.installer, options["strict"])
    return 0


def initMain():
    runCommand(_initMain, name="jk_init")


# -- jk_cp --------------------------------------------------------------------

COPY_COMMAND_LINE = CommandLine(
    synopsis="jk_cp [-v] [-f] [-k] [-s] [--strict] -j JAIL FILE...",
    longdesc=("Copy files, directories and device nodes into a jail at "
              "the same path, with the libraries programs need; "
              "setuid/setgid bits are removed unless -s is given."),
    flags=_BUILD_FLAGS + [
        ("owner", "o", "keep owner and group (always done; accepted for "
                       "jailkit compatibility)"),
        ("setuid", "s", "keep setuid/setgid bits and file capabilities"),
    ],
    parameters=_BUILD_PARAMETERS,
    arguments=True, helpShort="hidden")


def _copyOptions(argv):
    options, args = COPY_COMMAND_LINE.parse(argv)
    if options["jail"] is None:
        if not args:
            raise UsageError("need a jail (-j JAIL) and files to copy")
        options["jail"] = args.pop(0)
    if not args:
        raise UsageError("need at least one file to copy")
    options["files"] = args
    return options


def _copyMain(argv):
    options = _copyOptions(argv)
    _requireRoot("jk_cp")
    sources = []
    for name in options["files"]:
        if name.startswith("/"):
            path = os.path.normpath(name)
        elif os.sep in name:
            path = os.path.abspath(name)
        else:
            path = findProgram(name)
            if path is None:
                raise JailtwistError(f"{name}: not found in $PATH (give "
                                     f"its full path)", MISSING)
        if not os.path.lexists(path):
            raise JailtwistError(f"{path} does not exist", MISSING)
        sources.append(path)
    jail = _jail(options["jail"], CP_UNSAFE, missingOk=True)
    if not os.path.isdir(jail.location):
        raise JailtwistError(f"{jail.location} is not a directory (create "
                             f"the jail with jk_init)", CP_NOT_A_DIRECTORY)
    if hasBindList(jail.location):
        # A copy would be hidden by a bind at entry, or be the one file of
        # the jail that drifts from the host: a bind jail holds none.
        raise JailtwistError(
            f"{jail.location} is assembled from binds (it has {BIND_LIST}): "
            f"jk_cp copies nothing into it; add host files with jk_init "
            f"--bind -j {jail.location} SECTION", CP_UNSAFE)
    resolver = ElfResolver()
    if options["strict"]:
        missing = [(library, neededBy) for path in sources
                   if os.path.isfile(path)
                   for library, neededBy in resolver.resolve(path).missing]
        if missing:
            for library, neededBy in missing:
                sys.stderr.write(f"jk_cp: {library} (needed by {neededBy}, "
                                 f"not found on this host)\n")
            raise JailtwistError(
                f"{len(missing)} librar{'y' if len(missing) == 1 else 'ies'}"
                f" missing on this host (listed above): nothing was done "
                f"(--strict)", MISSING)
    progress = Progress("jk_cp", jail, options["verbose"])
    with Installer(jail, resolver, force=options["force"],
                   hardlink=options["hardlink"], report=progress) as installer:
        for path in sources:
            installer.install(path, keepSetuid=options["setuid"])
        installer.finish()
    if installer.elfAdded:
        refreshLibraryCache(jail)
    progress.finish(installer)
    _warnMissing("jk_cp", installer, options["strict"])
    return 0


def copyMain():
    runCommand(_copyMain, name="jk_cp")


# -- jk_update ----------------------------------------------------------------

UPDATE_COMMAND_LINE = CommandLine(
    synopsis=("jk_update [-v] [-d] [-k] [-s PATH]... -j JAIL [DIRECTORY...]"
              "\n       jk_update [-v] [-d] [-k] -c SECTION [DIRECTORY...]"),
    longdesc=("Bring the host files copied into a jail up to date: replace "
              "changed ones, remove ones the host no longer has, add "
              "libraries now needed.  Without DIRECTORY, scans "
              + " ".join(UPDATE_DIRECTORIES) + "."),
    flags=[
        ("verbose", "v", "say what is scanned and done"),
        ("dry-run", "d", "only print what would change"),
        ("hardlink", "k", "hardlink instead of copying where possible"),
        ("strict", None, "fail (exit 4) when a library needed is missing "
                         "on this host"),
    ],
    parameters=[
        ("jail", "j", None, "the jail to update"),
        ("configsection", "c", None,
         f"take the jail and options from this section of {UPDATE_CONFIG}"),
        ("skip", "s", None, "leave this path alone (repeatable; jail or "
                            "host form)"),
    ],
    arguments=True, helpShort="hidden", repeated=["skip"])


def _updateOptions(argv):
    options, directories = UPDATE_COMMAND_LINE.parse(argv)
    options["directories"] = directories
    options["skips"] = [path.rstrip("/") or "/" for path in options["skip"]]
    if options["jail"] is not None and options["configsection"] is not None:
        raise JailtwistError("give either a jail (-j) or a config section "
                             "(-c), not both", 21)
    if options["jail"] is None and options["configsection"] is None:
        raise UsageError("need a jail (-j JAIL) or a config section (-c "
                         "SECTION)")
    return options


def _updateMain(argv, configPath=UPDATE_CONFIG):
    options = _updateOptions(argv)
    skips = list(options["skips"])
    directories = list(options["directories"])
    hardlink = options["hardlink"]
    jailPath = options["jail"]
    if options["configsection"] is not None:
        jailPath = options["configsection"]
        ini = readIni(configPath)
        section = ini.section(jailPath)
        if section is None:
            raise JailtwistError(f"{configPath} has no section "
                                 f"[{jailPath}]")
        section.checkKeys({"skips", "directories", "hardlink", "hardlinks"})
        skips += section.getList("skips")
        if not directories:
            directories = section.getList("directories")
        hardlink = hardlink or section.getBool("hardlink") or \
            section.getBool("hardlinks")
    _requireRoot("jk_update")
    jail = Jail(os.path.abspath(jailPath))
    if not os.path.isdir(jail.location):
        raise JailtwistError(f"{jail.location} is not a jail directory")
    try:
        jail.checkSafe(parents=True)
    except UnsafeJail as e:
        raise JailtwistError(f"jail {jail.location} is not safe: {e}",
                             INIT_UNSAFE)
    if hasBindList(jail.location):
        return _updateBind(options, jail)
    update = JailUpdate(jail, skips=skips)
    changes = update.scan(directories or UPDATE_DIRECTORIES)
    if options["dry-run"]:
        for change in changes:
            sys.stdout.write(change.describe(jail, dryRun=True) + "\n")
        if options["verbose"] and not changes:
            sys.stdout.write(f"jk_update: {jail.location} is up to date\n")
        return 0
    progress = Progress("jk_update", jail, False)
    installer = update.apply(changes, hardlink=hardlink, report=progress)
    for change in changes:
        sys.stdout.write(change.describe(jail, dryRun=False) + "\n")
    if installer.changed:
        refreshLibraryCache(jail)
    if options["verbose"]:
        progress.finish(installer, "updated")
    _warnMissing("jk_update", installer, options["strict"])
    return 0


def updateMain():
    runCommand(_updateMain, name="jk_update")


def _updateBind(options, jail):
    """
    C{jk_update} on a bind jail: nothing is copied, only the bind list is
    refreshed (what its programs need now, what the host no longer has).
    """
    old = readEntries(jail, _warner("jk_update"))
    stale = not listRecorded(jail)
    checked = checkEntries(old, jail.location)
    again = _refuseListed("jk_update", jail, checked)
    dryRun = options["dry-run"]
    with Installer(jail, ElfResolver()) as installer:
        collector = BindCollector(installer, dryRun=dryRun)
        for entry in checked.accepted:
            collector.install(entry.path)
        collector.resolveAgain(again)
        collector.finish()
        listed = {entry.path for entry in checked.accepted}
        added = sorted(set(collector.paths) - listed)
        removed = [m.path for m in checked.missing] + \
            [r.path for r in again if r.path not in collector.paths]
        if not dryRun and (added or removed or stale):
            collector.write()
    where = f"{jail.location}/{BIND_LIST}"
    for path in added:
        sys.stdout.write(f"will add {path} to {where}\n" if dryRun else
                         f"added {path} to {where}\n")
    reasons = {r.path: r.reason for r in again}
    for path in removed:
        why = reasons.get(path, "no longer on this host")
        sys.stdout.write(f"will remove {path} from {where} ({why})\n"
                         if dryRun else
                         f"removed {path} from {where} ({why})\n")
    if options["verbose"] and not (added or removed):
        sys.stdout.write(f"jk_update: {where} is up to date\n")
    _warnRefused("jk_update", collector, options["strict"])
    _warnMissing("jk_update", installer, options["strict"])
    return 0
