# -*- test-case-name: tests.test_launch -*-
"""
The jk_chrootlaunch command: start a program (usually a daemon) inside a
jail as root, optionally as another user, with jailkit's checks and exit
codes -- and, when asked for on the command line or in the jail's section
of C{/etc/jailkit/jk_chrootlaunch.ini}, the jail call's isolation (see
L{jailtwist.enter.launch}).  Every launch is entered in the registry of
running jails (L{jailtwist.registry}).

Exit statuses (jailkit's): 1 unknown user or group, 21 no jail, 23 no
executable, 25 unsafe jail, 27 relative jail, 29 unsafe executable, 31 exec
failed, 33 chdir failed, 35 chroot failed, 37 setgid failed, 39 setuid
failed; jailtwist adds 2 for bad options or settings, 45 when the isolation
could not be set up and 137 when the jail's init was killed before the
program ended.  Otherwise the program's own exit status.
"""

import os
import stat
import syslog

from jailtwist import enter
from jailtwist.command import CommandLine, runCommand
from jailtwist.config import readIni
from jailtwist.errors import JailtwistError
from jailtwist.jail import Jail
from jailtwist.passwd import decodeText, findEntry, parseGroup, parsePasswd
from jailtwist.registry import JailRegistry, checkName

CONFIG = "/etc/jailkit/jk_chrootlaunch.ini"

UNKNOWN_ACCOUNT = 1
NO_JAIL = 21
NO_EXECUTABLE = 23
UNSAFE_JAIL = 25
RELATIVE_JAIL = 27
UNSAFE_EXECUTABLE = 29
BAD_SETTINGS = 2
CHROOT_FAILED = enter.STEP_EXIT_CODES["chroot"]

_HOSTNAME_CHARACTERS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-")

INI_KEYS = ("isolate", "capabilities", "no_new_privs", "pid", "ipc", "uts",
            "hostname", "network", "host_address", "filesystem", "name")

# Parsed without Twisted (see jailtwist.command): every launch pays for what
# is imported here.
COMMAND_LINE = CommandLine(
    synopsis=("jk_chrootlaunch -j JAIL [-u USER] [-g GROUP] [-p PIDFILE] "
              "[isolation options] -x EXECUTABLE [-- ARGS...]"),
    longdesc=("Start EXECUTABLE (a path inside JAIL) chrooted into JAIL, "
              "as USER/GROUP (names from the jail's etc/passwd and "
              "etc/group, or numbers) with no supplementary groups.  "
              "Isolation options (or the jail's section of "
              f"{CONFIG}) add the jail call's guarantees: a capability "
              "ceiling, pid/ipc/uts namespaces, one IP address or no "
              "network, pivot_root with a minimal /dev and a read-only "
              "/proc/sys."),
    flags=[
        ("isolate", None, "all of: --caps default --no-new-privs --pid --ipc"
                          " --uts --fs, and --net none unless --net is "
                          "given"),
        ("no-new-privs", None, "set no_new_privs (setuid programs gain "
                               "nothing)"),
        ("pid", None, "own pid namespace, fresh /proc, an init that reaps "
                      "and forwards signals"),
        ("ipc", None, "own IPC namespace"),
        ("uts", None, "own UTS namespace (host name)"),
        ("fs", None, "mount namespace: pivot_root into the jail, minimal "
                     "/dev, read-only /proc/sys"),
        ("plain", None, f"ignore {CONFIG} (only the options given here)"),
    ],
    parameters=[
        ("jail", "j", None, "the jail directory (absolute)"),
        ("user", "u", None, "user to run as (name in the jail's etc/passwd, "
                            "or uid)"),
        ("group", "g", None, "group to run as (name in the jail's "
                             "etc/group, or gid)"),
        ("pidfile", "p", None, "write the pid of the jail's first process "
                               "here"),
        ("exec", "x", None, "the program, as a path inside the jail"),
        ("caps", None, None, "capability ceiling: 'default', 'none' or a "
                             "list such as CHOWN,NET_BIND_SERVICE"),
        ("hostname", None, None, "host name inside the jail (implies --uts)"),
        ("net", None, None, "'host' (share the host's network), 'none' "
                            "(only lo) or the jail's one IP address"),
        ("host-address", None, None, "the host's address on the jail's veth "
                                     "link (with --net ADDRESS)"),
        ("name", None, None, "the jail's name in the registry (default: the "
                             "jail directory's name)"),
        ("config", None, CONFIG, "the per-jail isolation settings to read"),
        ("state-dir", None, "/run/jailtwist", "where the registry of running"
                                              " jails lives"),
    ],
    arguments=True)


def parseOptions(argv):
    """
    @return: the options of a jk_chrootlaunch command line, the program's
        arguments under C{"args"}.
    @raise JailtwistError: for a bad command line (status 2) or a missing
        or relative jail or program (jailkit's statuses).
    """
    options, args = COMMAND_LINE.parse(argv)
    options["args"] = args
    if not options["jail"]:
        raise JailtwistError("no jail given: use -j JAIL", NO_JAIL)
    if not options["exec"]:
        raise JailtwistError("no executable given: use -x EXECUTABLE",
                             NO_EXECUTABLE)
    if not options["jail"].startswith("/"):
        raise JailtwistError(
            f"jail {options['jail']!r} not accepted: the jail must be an "
            f"absolute path", RELATIVE_JAIL)
    return options


def _usableHostname(name):
    # A letter or digit, then up to 63 letters, digits, '-' and '.'.
    return (0 < len(name) <= 64 and name[0] not in ".-"
            and _HOSTNAME_CHARACTERS.issuperset(name))


def isolationFor(options, section, defaultHostname="jail"):
    """
    The L{enter.Isolation} for a launch: the jail's config C{section} (or
    C{None}), then the command-line C{options} on top (they only add, or
    replace the capability list and network).  A jail with its own UTS
    namespace and no host name set gets C{defaultHostname}.
    """
    def flag(option, key):
        if options[option] or options["isolate"]:
            return True
        if section is not None:
            return section.getBool(key, isolate)
        return isolate

    isolate = options["isolate"]
    if section is not None:
        section.checkKeys(INI_KEYS)
        isolate = isolate or section.getBool("isolate", False)
    caps = options["caps"]
    if caps is None and section is not None:
        caps = section.getString("capabilities")
    if caps is None and isolate:
        caps = "default"
    capabilities = None if caps is None else enter.parseCapabilities(caps)
    hostname = options["hostname"]
    if hostname is None and section is not None:
        hostname = section.getString("hostname")
    net = options["net"]
    if net is None and section is not None:
        net = section.getString("network")
    if net is None:
        net = "none" if isolate else "host"
    hostAddress = options["host-address"]
    if hostAddress is None and section is not None:
        hostAddress = section.getString("host_address")
    network, address = _network(net.strip(), hostAddress)
    uts = flag("uts", "uts") or bool(hostname)
    if uts and not hostname:
        hostname = defaultHostname
    if hostname is not None and not _usableHostname(hostname):
        raise JailtwistError(f"host name {hostname!r} is not usable: up to 64"
                             f" letters, digits, '-' and '.'", BAD_SETTINGS)
    return enter.Isolation(
        capabilities=capabilities,
        noNewPrivs=flag("no-new-privs", "no_new_privs"),
        pid=flag("pid", "pid"), ipc=flag("ipc", "ipc"),
        uts=uts, hostname=hostname, network=network, address=address,
        hostAddress=hostAddress if network == "veth" else None,
        filesystem=flag("fs", "filesystem"))


def _network(net, hostAddress):
    if net == "host":
        return None, None
    if net == "none":
        return "none", None
    import ipaddress
    try:
        address = ipaddress.ip_address(net)
    except ValueError:
        raise JailtwistError(
            f"network {net!r} is not 'host', 'none' or an IP address",
            BAD_SETTINGS) from None
    if hostAddress is None:
        raise JailtwistError(
            f"the jail's address {net} needs the host's end too: give "
            f"--host-address (or host_address in the jail's section)",
            BAD_SETTINGS)
    try:
        host = ipaddress.ip_address(hostAddress.strip())
    except ValueError:
        raise JailtwistError(f"host address {hostAddress!r} is not an IP "
                             f"address", BAD_SETTINGS) from None
    for each in (address, host):
        if each.is_loopback or each.is_multicast or each.is_unspecified:
            raise JailtwistError(f"{each} cannot be a jail link's address: "
                                 f"use a unicast address", BAD_SETTINGS)
    if address.version != host.version or address == host:
        raise JailtwistError(f"the jail's address {address} and the host's "
                             f"{host} must differ and be of one family",
                             BAD_SETTINGS)
    return "veth", str(address)


def _account(jail, what, value, fileName, parse, idAttribute):
    try:
        text = decodeText(jail.readFile(f"/etc/{fileName}"),
                          jail.hostPath(f"/etc/{fileName}"))
        entries = parse(text)
    except OSError:
        entries = []
    if value.isdigit():
        return findEntry(entries, id=int(value)), int(value)
    entry = findEntry(entries, name=value)
    if entry is None:
        raise JailtwistError(
            f"abort, {what} {value} does not exist in "
            f"{jail.hostPath('/etc/' + fileName)}", UNKNOWN_ACCOUNT)
    return entry, getattr(entry, idAttribute)


def resolveAccounts(jail, user, group):
    """
    Look C{user} and C{group} up in the jail's own account files (numbers
    accepted).

    @return: C{(uid, gid)}, either C{None} when not asked for.
    @raise JailtwistError: exit status 1 for an unknown name, or a uid that
        is not in the jail's passwd given without a group.
    """
    uid = gid = None
    if user is not None:
        entry, uid = _account(jail, "user", user, "passwd", parsePasswd,
                              "uid")
        if entry is not None:
            gid = entry.gid
        elif group is None:
            raise JailtwistError(
                f"abort, uid {uid} is not in "
                f"{jail.hostPath('/etc/passwd')}: give its group with -g",
                UNKNOWN_ACCOUNT)
    if group is not None:
        _, gid = _account(jail, "group", group, "group", parseGroup, "gid")
    return uid, gid


def prepareBinds(jail):
    """
    For a bind jail, its binds checked and pinned from one descriptor of
    the jail; host paths the host lacks are reported on stderr and
    skipped.

    @return: a L{jailtwist.bindlist.PreparedBinds}, or C{None}.
    @raise JailtwistError: exit status 27 if the list cannot be used.
    """
    from jailtwist.jail import bindListPresent
    try:
        root = os.open(jail.location, os.O_PATH | os.O_DIRECTORY
                       | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise JailtwistError(f"could not open {jail.location}: {e.strerror}",
                             CHROOT_FAILED) from None
    try:
        if not bindListPresent(root):
            return None
        from jailtwist import bindlist
        try:
            binds = bindlist.prepareBinds(root, jail.location)
        except bindlist.BindListError as e:
            raise JailtwistError(f"abort, the bind jail cannot be assembled: "
                                 f"{e}", UNSAFE_JAIL) from None
    finally:
        os.close(root)
    for missing in binds.checked.missing:
        os.write(2, f"jk_chrootlaunch: {jail.location}: {missing}\n"
                 .encode("utf-8", "replace"))
    return binds


def checkExecutable(jail, executable, binds=None):
    """
    jailkit's checks on the program: inside the jail, not a symlink, a
    regular file, not setuid or setgid, not writable by group or others,
    owned by root:root.  Directories on the way are resolved inside the jail.

    In a bind jail, a program under a bound host path is checked on the
    host, where the binds will come from.

    @return: the program's path inside the jail.
    @raise JailtwistError: exit status 29, naming the problem.
    """
    prefix = jail.location.rstrip("/") + "/"
    inner = executable
    if inner.startswith(prefix):
        inner = "/" + inner[len(prefix):]
    if not inner.startswith("/"):
        inner = "/" + inner
    shown = jail.hostPath(inner)
    where = jail
    if binds is not None and binds.covering(inner) is not None:
        where = Jail("/")
        shown = f"{inner} (bound from the host into {jail.location})"
    try:
        fd = where.open(inner, os.O_PATH, followLast=False)
    except OSError as e:
        raise JailtwistError(f"abort, executable {shown} cannot be used: "
                             f"{e.strerror}", UNSAFE_EXECUTABLE) from None
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    problems = []
    if stat.S_ISLNK(st.st_mode):
        raise JailtwistError(f"abort, executable {shown} is a symlink: name "
                             f"the file it points to", UNSAFE_EXECUTABLE)
    if not stat.S_ISREG(st.st_mode):
        problems.append("is not a regular file")
    if st.st_mode & (stat.S_ISUID | stat.S_ISGID):
        problems.append("is setuid or setgid")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        problems.append("is writable by group or others")
    if st.st_uid != 0 or st.st_gid != 0:
        problems.append("is not owned by root:root")
    if problems:
        raise JailtwistError(f"abort, executable {shown} "
                             f"{' and '.join(problems)}", UNSAFE_EXECUTABLE)
    return inner


def _writePidfile(path, pid):
    directory, name = os.path.split(path)
    # A fresh random name, created exclusively: nothing planted in a shared
    # directory (a symlink, a file) is followed or overwritten.
    temporary = os.path.join(directory, f".{name}.{os.urandom(6).hex()}.new")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                 | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, f"{pid}\n".encode())
    finally:
        os.close(fd)
    os.replace(temporary, path)


def _main(argv):
    options = parseOptions(argv)
    syslog.openlog("jk_chrootlaunch", syslog.LOG_PID, syslog.LOG_DAEMON)
    try:
        return _launch(options)
    except JailtwistError as e:
        syslog.syslog(syslog.LOG_ERR, str(e))
        raise


def _launch(options):
    jail = Jail(options["jail"])
    try:
        jail.checkSafe(parents=False)
    except JailtwistError as e:
        raise JailtwistError(str(e), UNSAFE_JAIL) from None
    try:
        section = None
        if not options["plain"]:
            path = options["config"]
            if path != CONFIG or os.path.exists(path):
                ini = readIni(path)
                section = ini.section(jail.location) or \
                    ini.section("DEFAULT")
        name = options["name"]
        if name is None and section is not None:
            name = section.getString("name")
        if name is not None:
            checkName(name)
        isolation = isolationFor(options, section,
                                 name or os.path.basename(jail.location))
    except JailtwistError as e:
        raise JailtwistError(str(e), BAD_SETTINGS) from None
    uid, gid = resolveAccounts(jail, options["user"], options["group"])
    binds = prepareBinds(jail)
    try:
        inner = checkExecutable(jail, options["exec"], binds)
    except BaseException:
        if binds is not None:
            binds.close()
        raise
    if os.geteuid() != 0:
        raise JailtwistError(
            f"could not change root to {jail.location}: only root can "
            f"launch a jail (run jk_chrootlaunch as root)", CHROOT_FAILED)
    registry = JailRegistry(options["state-dir"])
    for record in registry.entries():
        if isolation.network == "veth" and \
                f"net:{isolation.address}" in record.isolation:
            raise JailtwistError(
                f"address {isolation.address} is already the address of "
                f"running jail {record.name} (jid {record.jid}): give each "
                f"jail its own", BAD_SETTINGS)
        if name is not None and record.name == name:
            raise JailtwistError(
                f"a running jail is already named {name!r} (jid "
                f"{record.jid}): choose another name", BAD_SETTINGS)
    records = []

    def started(pid):
        if options["pidfile"]:
            _writePidfile(options["pidfile"], pid)

    def ready(pid):
        # Registered only once set up: a prober that finds the jail in the
        # registry joins the finished jail.  A jail whose program was over
        # at once may be gone already: nothing to register then.
        try:
            records.append(registry.register(jail.location, pid,
                                             isolation.names(), name))
        except JailtwistError:
            if enter.processStartTime(pid) is not None:
                raise

    syslog.syslog(syslog.LOG_NOTICE,
                  f"executing {inner} in jail {jail.location}"
                  + (f" with {', '.join(isolation.names())}"
                     if isolation.names() else ""))
    spec = enter.LaunchSpec(jail.location, inner,
                            [inner] + options["args"], uid=uid, gid=gid,
                            isolation=isolation, onStarted=started,
                            onReady=ready, binds=binds)
    try:
        return enter.launch(spec)
    finally:
        if binds is not None:
            binds.close()
        for record in records:
            if not record.alive():
                try:
                    registry.unregister(record.jid)
                except OSError:
                    pass   # already another user: pruned by the next reader


def main():
    runCommand(_main, name="jk_chrootlaunch")
