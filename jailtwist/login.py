# -*- test-case-name: tests.test_login -*-
"""
Jailed logins without setuid: what C{jk_chrootsh}, C{jk_uchroot} and
C{jk_procmailwrapper} check and do, step by step, with jailkit's exit
statuses and syslog texts (LOG_AUTH, tag C{jk_chrootsh[pid]} and so on).

The login runs as the account itself.  Every check happens I{before}
entering the jail, from outside it, on files reached through directory
descriptors (L{trustedWalk}): the jail (jailkit's C{basicjailissafe}), the
home directory (owner, group, permissions, no symlink anywhere on the way),
the account in the jail's C{etc/passwd} and C{etc/group} (parsed, never
handed to NSS, so no library of the jail is ever loaded into this process)
and, when the jail's passwd names C{jk_lsh} as the shell, the jk_lsh policy
of the jail (L{jailtwist.lsh}).  Only then is the jail entered through
L{jailtwist.enter.enterAsUser} (a user namespace mapping only the account's
own ids) and the program executed directly: no Python runs inside the jail
and nothing in it has to be setuid.

Only the standard library and jailtwist's own light modules are imported:
this is the start-up path of every login.
"""

import _thread
import errno
import grp
import os
import pwd
import stat
import syslog

from jailtwist.config import ConfigError, parseIni
from jailtwist.errors import JailtwistError
from jailtwist.jail import (Jail, TrustedFileError, UnsafeJail,
                            bindListPresent, readTrusted, trustedWalk)
from jailtwist.lsh import CONFIG as LSH_CONFIG
from jailtwist.lsh import (
    LshPolicy, LshRefusal, checkCommandLine, printable, statInRoot)
from jailtwist.passwd import (
    AccountError, decodeText, findEntry, parseGroup, parsePasswd)

#: Where jailkit keeps its configuration (compiled into the C tools).
CONFIG_DIRECTORY = "/etc/jailkit"

#: The procmail a jailed user's mail is delivered with (inside the jail).
PROCMAIL = "/usr/bin/procmail"

#: Keys of C{jk_chrootsh.ini} sections (jailkit's, plus C{unshare}).
CHROOTSH_KEYS = (
    "env", "relax_home_group_permissions", "relax_home_other_permissions",
    "relax_home_group", "relax_home_owner", "injail_shell",
    "skip_injail_passwd_check", "injail_login_shell", "unshare")

#: Keys of C{jk_uchroot.ini} sections.
UCHROOT_KEYS = ("allowed_jails", "skip_injail_passwd_check", "unshare")

#: Namespaces C{unshare} may name (besides the user and mount namespaces
#: every unprivileged login gets).
EXTRA_NAMESPACES = ("net", "ipc", "uts")

_DIRECTORY = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Refused(JailtwistError):
    """
    A login step that failed: logged with C{logMessage} (jailkit's text)
    and ended with C{exitCode} (jailkit's status).

    @ivar ident: the syslog tag to log under, or C{None} for the tool's own.
    """

    def __init__(self, logMessage, exitCode, ident=None):
        super().__init__(logMessage, exitCode)
        self.logMessage = logMessage
        self.ident = ident


# The tag syslog.openlog set last (it is one per process), and a lock for
# the login service, which logs for several programs from several threads.
_openedAs = [None]
_logLock = _thread.allocate_lock()


class AuthLog:
    """
    jailkit's logging: LOG_AUTH, C{LOG_PID}, one tag per program.  The one
    place that makes text safe for syslog: whatever a caller chose (an
    argument, a path) is escaped here, control characters and line breaks
    (a forged second line, terminal escapes) and undecodable bytes
    (C{syslog} refuses them, and the line would be lost) included.
    """

    def __init__(self, ident, facility=syslog.LOG_AUTH):
        self.ident = ident
        self.facility = facility
        self._held = None

    def hold(self):
        """
        Keep informational lines back until L{release}: a login command
        logs "now entering" while it plans, but only a login that then
        enters its jail itself should say so; one handed to the root login
        service is logged there, once.
        """
        self._held = []

    def release(self, keep=True):
        """
        Log the lines held back (or, with C{keep} false, drop them) and
        stop holding.
        """
        held, self._held = self._held or [], None
        if keep:
            for message, ident in held:
                self.log(syslog.LOG_INFO, message, ident)

    def log(self, priority, message, ident=None):
        if self._held is not None:
            if priority == syslog.LOG_INFO:
                self._held.append((message, ident))
                return
            # A refusal follows what was held, in order.
            self.release()
        message = printable(message).encode(
            "utf-8", "backslashreplace").decode("utf-8")
        tag = (ident or self.ident, self.facility)
        with _logLock:
            if tag != _openedAs[0]:
                syslog.openlog(tag[0], syslog.LOG_PID, tag[1])
                _openedAs[0] = tag
            syslog.syslog(priority, message)

    def info(self, message, ident=None):
        self.log(syslog.LOG_INFO, message, ident)

    def error(self, message, ident=None):
        self.log(syslog.LOG_ERR, message, ident)


# -- descriptors and environment ---------------------------------------------

def closeDescriptors():
    """
    Close every descriptor above 2 (an inherited directory descriptor is a
    way out of any chroot) and make sure 0, 1 and 2 are open, on
    C{/dev/null} if they were closed.

    @raise Refused: exit 10 if C{/dev/null} cannot be opened.
    """
    try:
        # Every open descriptor, also those above the soft RLIMIT_NOFILE
        # (which SC_OPEN_MAX reports), lowered after they were opened.
        names = os.listdir("/proc/self/fd")
    except OSError:
        import resource
        os.closerange(3, max(resource.getrlimit(resource.RLIMIT_NOFILE)[1],
                             os.sysconf("SC_OPEN_MAX")))
    else:
        for name in names:
            if int(name) > 2:
                try:
                    os.close(int(name))
                except OSError:
                    pass
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            try:
                null = os.open("/dev/null", os.O_RDWR)
            except OSError:
                raise Refused("abort, cannot open /dev/null", 10)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


#: Exit status of a login that another process traces (not one of
#: jailkit's: jailkit's setuid programs cannot be traced by the account).
TRACED = 18

_PR_SET_DUMPABLE = 4


def protectProcess(status="/proc/self/status"):
    """
    Keep the account's other processes out of this one while it works on
    the host.

    The login shells are not setuid: they run as the account, outside any
    jail, until they enter one.  A process of the same uid may ptrace a
    dumpable process and would then run code outside the jail.  The
    account's jailed logins cannot (each is in a user namespace of its own,
    and the kernel lets only a process of the target's user namespace, or
    one with C{CAP_SYS_PTRACE} over it, trace), but a process of the uid in
    the host's user namespace can: a daemon C{jk_chrootlaunch} started in
    the jail as the account (a plain chroot), a cron job, a session that is
    not jailed.  So the process
    makes itself non-dumpable first (the kernel then allows tracing it only
    to holders of C{CAP_SYS_PTRACE}; C{execve} of the jailed program makes
    that program dumpable again, inside the jail), and refuses to go on if
    a process that is not root already traces it (attached while the
    interpreter was starting).

    @raise Refused: exit L{TRACED} if a process other than root traces
        this one.
    """
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
    if libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise Refused(f"abort, cannot make the process non-dumpable: "
                      f"{os.strerror(ctypes.get_errno())}", TRACED)
    tracer = _statusField(status, "TracerPid")
    if tracer and tracer != "0":
        uid = _statusField(f"/proc/{tracer}/status", "Uid")
        owner = uid.split()[0] if uid else "unknown"
        if owner != "0":
            raise Refused(f"abort, the process is traced by process "
                          f"{tracer} (uid {owner}), which could take it "
                          f"over outside the jail", TRACED)


def _tracer(fd):
    """
    The C{TracerPid} in the C{/proc/PID/status} open as C{fd} (read afresh),
    or C{None} if it cannot be read.
    """
    if fd is None:
        return None
    try:
        text = os.pread(fd, 65536, 0).decode("ascii", "replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key == "TracerPid":
            return value.strip()
    return None


def _statusField(path, name):
    """
    The value of field C{name} in a C{/proc/PID/status} file, or C{None}.
    """
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key == name:
                    return value.strip()
    except OSError:
        return None
    return None


def keepEnvironment(environ, names):
    """
    The variables of C{environ} whose names are in C{names} (jailkit's
    C{env=} whitelist); everything else is dropped.
    """
    return {k: v for k, v in environ.items() if k in names}


# -- accounts ----------------------------------------------------------------

class Account:
    """
    The account a login runs for, as the host's passwd and group say.

    @ivar name: the user name.
    @ivar uid: the user id (the real uid of this process).
    @ivar gid: the primary group id from passwd.
    @ivar runGid: the gid the login runs with (this process's, or the
        login service's caller's).
    @ivar group: the name of the group of C{runGid}.
    @ivar home: the home directory from passwd (C{/JAIL/./HOME}).
    @ivar shell: the shell from passwd.
    """

    def __init__(self, name, uid, gid, group, home, shell, runGid=None):
        self.name = name
        self.uid = uid
        self.gid = gid
        self.runGid = os.getgid() if runGid is None else runGid
        self.group = group
        self.home = home
        self.shell = shell


def lookupAccount(environ, uid=None, gid=None, byName=True):
    """
    Find the calling account as jailkit does: by C{$USER} when it is set,
    otherwise by the real uid; the entry must belong to the real uid and
    the real gid must have a group.

    @raise Refused: exit 13.
    """
    uid = os.getuid() if uid is None else uid
    gid = os.getgid() if gid is None else gid
    user = environ.get("USER") if byName else None
    try:
        entry = pwd.getpwnam(user) if user else pwd.getpwuid(uid)
    except KeyError:
        raise Refused(f"abort, failed to get user information for user ID "
                      f"{uid}, check /etc/passwd", 13)
    if user and entry.pw_name != user:
        raise Refused(f"abort, asked for user {user}, got user info for "
                      f"{entry.pw_name}", 13)
    if entry.pw_uid != uid:
        raise Refused(f"abort, started by user ID {uid}, got user info "
                      f"{entry.pw_name} with user ID {entry.pw_uid},", 13)
    try:
        group = grp.getgrgid(gid).gr_name
    except KeyError:
        raise Refused(f"abort, failed to get group information for group "
                      f"ID {gid}, check /etc/group", 13)
    return Account(entry.pw_name, uid, entry.pw_gid, group, entry.pw_dir,
                   entry.pw_shell, gid)


def refuseRoot(program, uid=None):
    """
    jailkit's rule: root does not log in through a jail shell.

    @param uid: the caller's uid (this process's by default).
    @raise Refused: exit 12.
    """
    if (os.getuid() if uid is None else uid) == 0:
        raise Refused(f"abort, {program} is run by root, which does not make "
                      f"sense because user root can break out of a jail "
                      f"anyway", 12)


def refuseUnjailed(account):
    """
    The login service's rule: a C{jk_chrootsh} login is for accounts whose
    host shell is C{jk_chrootsh} (any other account could otherwise get a
    jailed session it never logs in with).

    @raise Refused: exit 13.
    """
    if os.path.basename(account.shell) != "jk_chrootsh":
        raise Refused(f"abort, the shell of user {account.name} "
                      f"({account.uid}) is {printable(account.shell)!r}, not "
                      f"jk_chrootsh: the login service serves only jailed "
                      f"accounts", 13)


def checkGroup(account):
    """
    @raise Refused: exit 15 if the login runs with another gid than the
        passwd entry's.
    """
    gid = account.runGid
    if account.gid != gid:
        raise Refused(f"abort, the group ID from /etc/passwd "
                      f"({account.gid}) does not match the group ID we run "
                      f"with ({gid})", 15)


def splitHome(account):
    """
    The jail and the home inside it, from the I{last} C{/./} of the passwd
    home (jailkit's C{getjaildir}).

    @return: C{(jail, home)}, both absolute.
    @raise Refused: exit 16 (no home) or 17 (no C{/./}).
    """
    home = account.home
    if not home:
        raise Refused(f"abort, got an empty home directory for user "
                      f"{account.name} ({account.uid})", 16)
    index = home.rfind("/./")
    if index <= 0 or "\0" in home:
        raise Refused(f"abort, homedir '{home}' for user {account.name} "
                      f"({account.uid}) does not contain the jail separator "
                      f"<jail>/./<home>", 17)
    return home[:index], home[index + 2:]


def _dirsEqual(a, b):
    """
    jailkit's C{dirs_equal}: equal, tolerating one trailing slash.
    """
    return a.rstrip("/") == b.rstrip("/") if a and b else a == b


def openJail(path, caller=None):
    """
    Change to the jail directory and check that the kernel's idea of where
    we are is the jail as named: a jail path with a symlink in it, or a
    C{/./} in the jail part, is refused (jailkit's C{getcwd} check).

    @param caller: for the login service (which must not change its own
        working directory): the directory is opened instead, and the
        kernel's name for the open directory is checked.
    @return: a L{Jail} and an C{O_PATH} descriptor of its directory (opened
        relative to the checked working directory, so it is the directory
        checked).
    @raise Refused: exit 19 or 21.
    """
    if caller is not None:
        return _openJailFd(path)
    try:
        os.chdir(path)
    except OSError as e:
        raise Refused(f"abort, chdir({path}) failed: {e.strerror}, check the "
                      f"permissions for {path}", 19)
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = "(unknown)"
    if not path.startswith("/") or not _dirsEqual(cwd, path):
        raise Refused(f"abort, the current dir is {cwd} after chdir({path}),"
                      f" but it should be {path}", 21)
    jail = Jail(cwd)
    fd = os.open(".", _DIRECTORY)
    return jail, fd


def _openJailFd(path):
    """
    L{openJail} without a C{chdir}: open the directory (following symlinks
    as C{chdir} would) and compare the kernel's path of what was opened.
    """
    try:
        fd = os.open(path, _DIRECTORY & ~os.O_NOFOLLOW)
    except OSError as e:
        raise Refused(f"abort, chdir({path}) failed: {e.strerror}, check the "
                      f"permissions for {path}", 19)
    try:
        real = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        real = "(unknown)"
    if not path.startswith("/") or not _dirsEqual(real, path):
        os.close(fd)
        raise Refused(f"abort, the current dir is {real} after chdir({path}),"
                      f" but it should be {path}", 21)
    return Jail(real), fd


def checkJail(jail, jailFd, message=None):
    """
    jailkit's C{basicjailissafe} (the jail and its C{dev etc lib usr bin
    sbin}, as a jailed process sees them, owned by root and not writable by
    group or others), plus the rule of jailkit's Python tools for the jail's
    parents (owned by root, not writable by group or others: whoever can
    rename a parent can swap the jail), and a check that C{jailFd} is the
    directory that was checked.

    @raise Refused: exit 53, logging the reason and jailkit's line.
    """
    if message is None:
        message = (f"abort, {jail.location} is not a safe jail, check "
                   f"ownership and permissions.")
    try:
        jail.checkSafe(parents=False)
        jail.checkSafe(parents=True)
    except UnsafeJail as e:
        raise Refused(f"{e}; {message}", 53)
    checked = os.stat(jail.location, follow_symlinks=False)
    opened = os.fstat(jailFd)
    if (checked.st_dev, checked.st_ino) != (opened.st_dev, opened.st_ino):
        raise Refused(f"{jail.location} changed while it was checked; "
                      f"{message}", 53)


def checkHome(jailFd, jailPath, inner, account, relax):
    """
    The home directory inside the jail: a real directory (no symlink on the
    way, the directories above it owned by root and not writable by group
    or others), owned by the account and its group, not writable by group
    or others, unless C{relax} allows it (jailkit's C{relax_home_*}).

    @param relax: the set of relaxations allowed, among C{"owner"},
        C{"group"}, C{"group_permissions"}, C{"other_permissions"}.
    @raise Refused: exit 53.
    """
    full = f"{jailPath}/.{inner}"

    def check(walked, st):
        if not stat.S_ISDIR(st.st_mode):
            raise Refused(f"abort, path {full} is not a directory", 53)
        if st.st_uid != account.uid and "owner" not in relax:
            raise Refused(f"abort, path {full} is not owned by "
                          f"{account.uid}", 53)
        if st.st_gid != account.runGid and "group" not in relax:
            raise Refused(f"abort, path {full} does not have group owner "
                          f"{account.runGid}, set option 'relax_home_group' "
                          f"to relax this check", 53)
        if st.st_mode & stat.S_IWGRP and "group_permissions" not in relax:
            raise Refused(f"abort, path {full} is group writable, set option "
                          f"'relax_home_group_permissions' to relax this "
                          f"check", 53)
        if st.st_mode & stat.S_IWOTH and "other_permissions" not in relax:
            raise Refused(f"abort, path {full} is writable for other, set "
                          f"option 'relax_home_other_permissions' to relax "
                          f"this check", 53)
    try:
        os.close(trustedWalk(jailFd, inner, final=check))
    except TrustedFileError as e:
        raise Refused(f"abort, path {full} is not a directory ({e})", 53)


def checkHomeSearchable(jailFd, jailPath, inner):
    """
    The account can change into its home, by the file's permissions as the
    account has them on the host.  (Entering the jail happens with the
    capabilities a new user namespace hands out, which would override the
    permissions of the account's own files; jailkit changes to the home as
    the account.)

    @raise Refused: exit 41, jailkit's status for a home it cannot enter.
    """
    message = (f"abort, chdir({inner}) failed inside the jail {jailPath}: "
               f"{{}}, check the permissions for {jailPath}/{inner}")
    try:
        fd = trustedWalk(jailFd, inner, final=lambda walked, st: None)
    except TrustedFileError as e:
        raise Refused(message.format(e), 41)
    try:
        searchable = os.access(f"/proc/self/fd/{fd}", os.X_OK)
    finally:
        os.close(fd)
    if not searchable:
        raise Refused(message.format(os.strerror(errno.EACCES)), 41)


def injailAccount(jail, jailFd, account, inner, checkHomeDir=True):
    """
    jailkit's in-jail re-check, done by parsing the jail's C{etc/passwd}
    and C{etc/group}: the account must be there with the same uid (35),
    its group must be there (35), with the same names (37) and, if
    C{checkHomeDir}, the same home (39).

    @return: the jail's L{jailtwist.passwd.PasswdEntry} for the account.
    @raise Refused: exit 35, 37 or 39.
    """
    where = jail.location
    try:
        users = parsePasswd(decodeText(
            readTrusted(jailFd, "etc/passwd"), f"{where}/etc/passwd"))
    except (TrustedFileError, AccountError) as e:
        raise Refused(f"abort, failed to get user information in the jail "
                      f"for user ID {account.uid}: {e}, check "
                      f"{where}/etc/passwd", 35)
    entry = findEntry(users, name=account.name) or \
        findEntry(users, id=account.uid)
    if entry is None:
        raise Refused(f"abort, failed to get user information in the jail "
                      f"for user ID {account.uid}: no such user, check "
                      f"{where}/etc/passwd", 35)
    if entry.uid != account.uid:
        raise Refused(f"abort, got user information in the jail for user ID "
                      f"{entry.uid} instead of user ID {account.uid}, check "
                      f"{where}/etc/passwd", 35)
    gid = account.runGid
    try:
        groups = parseGroup(decodeText(
            readTrusted(jailFd, "etc/group"), f"{where}/etc/group"))
    except (TrustedFileError, AccountError) as e:
        raise Refused(f"abort, failed to get group information in the jail "
                      f"for group ID {gid}: {e}, check {where}/etc/group", 35)
    group = findEntry(groups, id=gid)
    if group is None:
        raise Refused(f"abort, failed to get group information in the jail "
                      f"for group ID {gid}: no such group, check "
                      f"{where}/etc/group", 35)
    if entry.name != account.name:
        raise Refused(f"abort, username {account.name} differs from jail "
                      f"username {entry.name} for user ID {account.uid}, "
                      f"check /etc/passwd and {where}/etc/passwd", 37)
    if group.name != account.group:
        raise Refused(f"abort, groupname {account.group} differs from jail "
                      f"groupname {group.name} for group ID {gid}, check "
                      f"/etc/group and {where}/etc/group", 37)
    if checkHomeDir and not _dirsEqual(entry.home, inner):
        raise Refused(f"abort, home directory {entry.home} differs from jail "
                      f"home directory {inner} for user {account.name} "
                      f"({account.uid}), check /etc/passwd and "
                      f"{where}/etc/passwd", 39)
    return entry


# -- configuration -----------------------------------------------------------

def checkConfigDirectory(path=CONFIG_DIRECTORY):
    """
    jailkit's rule for C{/etc/jailkit}: owned by root:root, not a symlink,
    not writable by others (group-writable is tolerated, as jailkit does).

    @raise Refused: exit 14.
    """
    try:
        st = os.lstat(path)
        ok = (stat.S_ISDIR(st.st_mode) and st.st_uid == 0
              and st.st_gid == 0 and not st.st_mode & stat.S_IWOTH)
    except FileNotFoundError:
        return
    except OSError:
        ok = False
    if not ok:
        raise Refused(f"abort, jailkit configuration directory {path} is not "
                      f"safe; it should be owned 0:0 and not writable for "
                      f"others", 14)


def readConfig(path, exitCode=14):
    """
    Read a jailkit ini file of the host that only root may change.

    @return: the parsed L{jailtwist.config.IniFile}, or C{None} if the file
        does not exist.
    @raise Refused: C{exitCode} for a file that is unsafe or unparsable.
    """
    root = os.open("/", _DIRECTORY)
    try:
        data = readTrusted(root, path)
    except TrustedFileError as e:
        if str(e).endswith("does not exist"):
            return None
        raise Refused(f"abort, configfile {path} cannot be used: {e}",
                      exitCode)
    finally:
        os.close(root)
    try:
        return parseIni(data.decode("utf-8"), path)
    except (ConfigError, UnicodeDecodeError) as e:
        raise Refused(f"abort, configfile {path} cannot be used: {e}",
                      exitCode)


def chooseSection(ini, account):
    """
    jailkit's section precedence for the C tools: C{[user]}, C{[group G]}
    (G the group of the process's gid), C{[DEFAULT]}.
    """
    if ini is None:
        return None
    for name in (account.name, f"group {account.group}", "DEFAULT"):
        section = ini.section(name)
        if section is not None:
            return section
    return None


def namespacesFor(ini, section, jailPath, exitCode=14):
    """
    The extra namespaces to unshare: C{unshare=} of the account's section
    plus C{unshare=} of a C{[jail /path/of/jail]} section.

    @raise Refused: C{exitCode} for an unknown namespace name.
    """
    names = []
    for current in (section, ini.section(f"jail {jailPath}") if ini else None):
        if current is None:
            continue
        for name in current.getList("unshare"):
            if name not in EXTRA_NAMESPACES:
                raise Refused(
                    f"abort, configfile {current.path}: [{current.name}] "
                    f"unshare: unknown namespace {name!r} (use "
                    f"{', '.join(EXTRA_NAMESPACES)})", exitCode)
            if name not in names:
                names.append(name)
    return tuple(names)


class ChrootshSettings:
    """
    The C{jk_chrootsh.ini} settings for one account.
    """

    def __init__(self, section, ini, jailPath):
        self.env = []
        self.relax = set()
        self.injailShell = None
        self.skipInjailPasswdCheck = False
        self.loginShell = False
        self.namespaces = ()
        try:
            if section is not None:
                section.checkKeys(CHROOTSH_KEYS)
                self.env = section.getList("env")
                for name in ("owner", "group", "group_permissions",
                             "other_permissions"):
                    if section.getBool(f"relax_home_{name}", False):
                        self.relax.add(name)
                self.injailShell = section.getString("injail_shell")
                if self.injailShell is not None:
                    self.injailShell = self.injailShell.strip() or None
                if self.injailShell:
                    self.skipInjailPasswdCheck = section.getBool(
                        "skip_injail_passwd_check", False)
                self.loginShell = section.getBool("injail_login_shell", False)
            if ini is not None:
                jailSection = ini.section(f"jail {jailPath}")
                if jailSection is not None:
                    jailSection.checkKeys(("unshare",))
        except ConfigError as e:
            raise Refused(f"abort, configfile cannot be used: {e}", 14)
        self.namespaces = namespacesFor(ini, section, jailPath)


# -- the login plans ----------------------------------------------------------

class LoginPlan:
    """
    Everything decided before entering a jail: what to execute there, with
    which arguments and environment, and how to enter.

    @ivar jailFd: an C{O_PATH} descriptor of the checked jail directory.
    @ivar ident: the syslog tag under which a failing exec is reported.
    @ivar execFailure: C{(exitCode, [messages])} for a failing exec.
    """

    def __init__(self, jail, jailFd, home, executable, argv, environment,
                 namespaces=(), umask=None, execFailure=None, ident=None):
        self.jail = jail
        self.jailFd = jailFd
        self.home = home
        self.executable = executable
        self.argv = argv
        self.environment = environment
        self.namespaces = namespaces
        self.umask = umask
        self.execFailure = execFailure or (111, [])
        self.ident = ident


def isLsh(shell):
    """
    Whether the jail's passwd names jk_lsh as the shell (any directory).
    """
    return os.path.basename(shell) == "jk_lsh"


def lshPolicyFor(jail, jailFd, user, group):
    """
    The jk_lsh policy of a jail, read from its C{etc/jailkit/jk_lsh.ini}
    (which, and every directory above which, must belong to root and not
    be writable by group or others: the account must not be able to write
    its own policy).

    @raise LshRefusal: exit 1 if the file is missing or unsafe, else as
        L{jailtwist.lsh.LshPolicy.fromText}.
    """
    configPath = jail.location + LSH_CONFIG
    try:
        data = readTrusted(jailFd, LSH_CONFIG)
    except TrustedFileError as e:
        raise LshRefusal(f"configfile {configPath} is not available: {e}", 1)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise LshRefusal(f"configfile {configPath} is not a text file", 1)
    return LshPolicy.fromText(text, user, group, configPath)


def planChrootsh(argv, environ, log, configDirectory=CONFIG_DIRECTORY,
                 caller=None):
    """
    Everything C{jk_chrootsh} does before entering the jail.

    @param argv: the whole argument vector (C{argv[0]} included).
    @param environ: the environment it was started with.
    @param log: an L{AuthLog} tagged C{jk_chrootsh}.
    @param caller: for the login service, the peer's credentials (C{uid},
        C{gid}) to plan for instead of this process's; then C{$USER} is
        ignored and the account's shell must be C{jk_chrootsh}.
    @rtype: L{LoginPlan}
    @raise Refused: with jailkit's exit status and log text.
    @raise LshRefusal: when jk_lsh's policy refuses the command.
    """
    uid, gid = (None, None) if caller is None else (caller.uid, caller.gid)
    refuseRoot("jk_chrootsh", uid)
    account = lookupAccount(environ, uid, gid, byName=caller is None)
    if caller is not None:
        refuseUnjailed(account)
    checkConfigDirectory(configDirectory)
    ini = readConfig(configDirectory + "/jk_chrootsh.ini")
    section = chooseSection(ini, account)
    checkGroup(account)
    jailPath, inner = splitHome(account)
    settings = ChrootshSettings(section, ini, jailPath)
    env = keepEnvironment(environ, settings.env)
    jail, jailFd = openJail(jailPath, caller)
    try:
        checkJail(jail, jailFd)
        checkHome(jailFd, jailPath, inner, account, settings.relax)
        entry = None
        if not settings.skipInjailPasswdCheck:
            entry = injailAccount(jail, jailFd, account, inner)
        if caller is None:
            # The service changes to the home after becoming the account.
            checkHomeSearchable(jailFd, jailPath, inner)
        shell = settings.injailShell or (entry.shell if entry else "")
        if not shell.startswith("/") and not isLsh(shell):
            # execve would look it up in the home, which the account fills.
            where = (f"injail_shell in {configDirectory}/jk_chrootsh.ini"
                     if settings.injailShell else f"{jailPath}/etc/passwd")
            raise Refused(f"ERROR: the shell {printable(shell)!r} for user "
                          f"{account.name} ({account.uid}) is not an "
                          f"absolute path, check {where}", 111)
        arguments = printable(" ".join(argv[1:]))
        log.info(f"now entering jail {jailPath} for user {account.name} "
                 f"({account.uid}) with arguments {arguments}")
        env.update(HOME=inner, USER=account.name, USERNAME=account.name,
                   SHELL=shell)
        if isLsh(shell):
            plan = _lshPlan(jail, jailFd, account, inner, shell, argv, env,
                            log)
        else:
            args = [shell, "--login"] if settings.loginShell \
                else [shell] + list(argv[1:])
            plan = LoginPlan(
                jail, jailFd, inner, shell, args, env,
                execFailure=(111, [
                    f"ERROR: failed to execute shell {shell} for user "
                    f"{account.name} ({account.uid}), check the permissions "
                    f"and libraries of {jailPath}/{shell}"]))
        plan.namespaces = settings.namespaces
        jailFd = None
        return plan
    finally:
        if jailFd is not None:
            os.close(jailFd)


def _lshPlan(jail, jailFd, account, inner, shell, argv, env, log):
    """
    Apply the jail's jk_lsh policy to the command jk_chrootsh was given,
    as jk_lsh would inside the jail.
    """
    lshArgv = [shell] + list(argv[1:])
    checkCommandLine(lshArgv, account.name, account.uid)
    policy = lshPolicyFor(jail, jailFd, account.name, account.group)
    try:
        command = policy.decide(lshArgv, account.name, account.uid, jail, env)
    except LshRefusal as refusal:
        # 4 and 255 are "not an allowed program" and "allowed but missing":
        # a bind jail may have it where its binds are not mounted yet.
        if refusal.exitCode not in (4, 255):
            raise
        command = _lookUpBound(jail, jailFd, lambda view: policy.decide(
            lshArgv, account.name, account.uid, view, env))
        if command is NOT_BOUND:
            raise refusal
    log.info(f"executing command '{command.describe()}' for user "
             f"{account.name} ({account.uid})", ident="jk_lsh")
    env = dict(env)
    env.update(command.environment)
    return LoginPlan(
        jail, jailFd, inner, command.executable, command.argv, env,
        umask=command.umask, ident="jk_lsh",
        execFailure=(255, [
            f"WARNING: running {command.executable} failed for user "
            f"{account.name} ({account.uid}): {{error}}",
            f"WARNING: check the permissions and libraries for "
            f"{command.executable}"]))


def planUchroot(jailPath, executable, args, environ, log,
                configDirectory=CONFIG_DIRECTORY, caller=None):
    """
    Everything C{jk_uchroot} does before entering the jail.

    @param caller: as for L{planChrootsh}.
    @rtype: L{LoginPlan}
    @raise Refused: with jailkit's exit status and log text.
    """
    uid, gid = (None, None) if caller is None else (caller.uid, caller.gid)
    refuseRoot("jk_uchroot", uid)
    account = lookupAccount(environ, uid, gid, byName=caller is None)
    checkConfigDirectory(configDirectory)
    configPath = configDirectory + "/jk_uchroot.ini"
    ini = readConfig(configPath, exitCode=1)
    section = chooseSection(ini, account)
    try:
        if section is not None:
            section.checkKeys(UCHROOT_KEYS)
        allowed = section.getList("allowed_jails") if section else []
        skip = section.getBool("skip_injail_passwd_check", False) \
            if section else False
    except ConfigError as e:
        raise Refused(f"abort, configfile cannot be used: {e}", 1)
    if not allowed:
        raise Refused(f"abort, no relevant section for user {account.name} "
                      f"({account.uid}) or group {account.group} "
                      f"({account.runGid}) or DEFAULT found in {configPath}",
                      1)
    if not any(_dirsEqual(jailPath, j) for j in allowed):
        raise Refused(f"abort, user {account.name} ({account.uid}) is not "
                      f"allowed in jail {jailPath}", 21)
    namespaces = namespacesFor(ini, section, jailPath.rstrip("/"), 1)
    jail, jailFd = openJail(jailPath, caller)
    try:
        checkJail(jail, jailFd,
                  f"abort, jail {jailPath} is not safe, check ownership and "
                  f"permissions for the jail and system directories such as "
                  f"/etc, /lib, /usr, /dev, /sbin, and /bin")
        if not _regularInJail(jail, jailFd, executable) and _lookUpBound(
                jail, jailFd,
                lambda view: _regularInJail(view, jailFd, executable)) \
                is not True:
            raise Refused(f"ERROR: Executable path {jailPath}/{executable} "
                          f"does not exist or is not a regular file", 1)
        log.info(f"entering jail {jailPath} for user {account.name} "
                 f"({account.uid}) in order to execute "
                 f"{printable(executable)}")
        if not skip:
            injailAccount(jail, jailFd, account, None, checkHomeDir=False)
        plan = LoginPlan(
            jail, jailFd, "/", executable, [executable] + list(args),
            dict(environ), namespaces,
            execFailure=(111, [f"ERROR: failed to execute {executable} for "
                               f"user {account.name} ({account.uid})"]))
        jailFd = None
        return plan
    finally:
        if jailFd is not None:
            os.close(jailFd)


class UchrootUsage(Refused):
    """
    A C{jk_uchroot} command line that cannot be used (exit 1); C{usage}
    says whether the usage text should follow the message.
    """


def parseUchrootArguments(argv):
    """
    C{jk_uchroot}'s options (C{argv} without C{argv[0]}).

    @return: C{(jail, executable, args)}, or C{None} for C{--help}.
    @raise UchrootUsage: for a command line that cannot be used.
    """
    # getopt imports gettext and re: only jk_uchroot needs it.
    import getopt
    try:
        options, args = getopt.gnu_getopt(
            argv, "j:x:hv", ["jail=", "executable=", "help", "version"])
    except getopt.GetoptError as e:
        raise UchrootUsage(f"ERROR: {e}", 1)
    jail = executable = None
    for option, value in options:
        if option in ("-j", "--jail"):
            jail = value
        elif option in ("-x", "--executable"):
            executable = value
        elif option in ("-h", "--help", "--version"):
            return None
    if not jail:
        raise UchrootUsage("ERROR: No jail path specified. Use -j or --jail",
                           1)
    if not executable:
        raise UchrootUsage("ERROR: No executable path specified. Use -x or "
                           "--executable", 1)
    return jail, executable, args


def _regularInJail(jail, jailFd, path):
    st = statInRoot(jail, path, jailFd)
    return st is not None and stat.S_ISREG(st.st_mode)


def planProcmail(argv, environ, log, procmail=PROCMAIL, caller=None):
    """
    What C{jk_procmailwrapper} runs: for an account whose home has no
    C{/./}, the host's procmail with the original arguments and
    environment (C{None} is returned for the jail); for a jailed account,
    procmail inside the jail, after jailkit's checks.

    @param caller: as for L{planChrootsh}; an account that is not jailed is
        then refused (the service runs nothing outside a jail).
    @return: C{(plan, None)} for a jailed account, C{(None, argv)} for one
        that is not jailed.
    @raise Refused: with jailkit's exit status and log text.
    """
    uid, gid = (os.getuid(), os.getgid()) if caller is None \
        else (caller.uid, caller.gid)
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        entry = None
    if entry is not None and "/./" not in entry.pw_dir:
        if caller is not None:
            raise Refused(f"abort, user {entry.pw_name} ({uid}) is not a "
                          f"jailed account (no /./ in its home): the login "
                          f"service serves only jailed accounts", 17)
        return None, [procmail] + list(argv[1:])
    if uid == 0:
        raise Refused("abort, jk_procmailwrapper is not setuid root, or is "
                      "run by root", 11)
    try:
        group = grp.getgrgid(gid).gr_name
    except KeyError:
        group = None
    if entry is None or group is None:
        raise Refused(f"abort, failed to get user or group information for "
                      f"{uid}:{gid}", 13)
    account = Account(entry.pw_name, entry.pw_uid, entry.pw_gid, group,
                      entry.pw_dir, entry.pw_shell, gid)
    checkGroup(account)
    jailPath, inner = splitHome(account)
    jail, jailFd = openJail(jailPath, caller)
    try:
        checkJail(jail, jailFd)
        checkHome(jailFd, jailPath, inner, account, set())
        injailAccount(jail, jailFd, account, inner)
        if caller is None:
            checkHomeSearchable(jailFd, jailPath, inner)

        def program(walked, st):
            if not stat.S_ISREG(st.st_mode) or st.st_uid != 0 or \
                    st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                raise TrustedFileError(f"{walked} is not a root-owned "
                                       f"program")
        try:
            os.close(trustedWalk(jailFd, procmail, final=program))
        except TrustedFileError as e:
            raise Refused(f"abort, {jailPath}{procmail} cannot be used: {e}",
                          53)
        log.info(f"now entering jail {jailPath} for user {account.uid}")
        plan = LoginPlan(
            jail, jailFd, inner, procmail, [procmail] + list(argv[1:]),
            {"HOME": inner, "USER": account.name},
            execFailure=(111, [f"WARNING: could not execute {procmail} for "
                               f"user {account.uid}:{gid}"]))
        jailFd = None
        return plan, None
    finally:
        if jailFd is not None:
            os.close(jailFd)


# -- entering ----------------------------------------------------------------

#: Exit statuses for the steps of entering (jailkit's numbers).
ENTER_EXIT_CODES = {"chroot": 33, "unshare": 33, "network": 33,
                    "setgid": 34, "setgroups": 35, "setuid": 36,
                    "chdir": 41}


class NamespaceUnavailable(Refused):
    """
    The kernel refused the user namespace a login enters its jail with
    (the login commands then ask the root login service).
    """


def prepareLoginBinds(plan, log):
    """
    The binds of C{plan}'s jail if it is a bind jail (C{None} otherwise),
    checked and pinned from C{plan.jailFd}; host paths the host lacks are
    logged and skipped.

    @raise Refused: exit 53 if the bind list cannot be used.
    """
    return _prepareBinds(plan.jail, plan.jailFd, log)


def _prepareBinds(jail, jailFd, log=None):
    """
    @param log: where host paths the host lacks are reported (C{None}: not
        reported, by a lookup that the way in repeats).
    """
    if not bindListPresent(jailFd):
        return None
    from jailtwist import bindlist
    try:
        binds = bindlist.prepareBinds(jailFd, jail.location)
    except bindlist.BindListError as e:
        raise Refused(f"abort, the jail {jail.location} cannot be "
                      f"assembled: {e}", 53)
    if log is not None:
        for missing in binds.checked.missing:
            log.info(f"bind jail {jail.location}: {missing}")
    return binds


def _lookUpBound(jail, jailFd, lookUp):
    """
    Look a program up again in a bind jail as its binds will show it: one
    inside a directory the jail binds whole is not in the jail's own tree.
    The binds are prepared for this only when the plain lookup failed, and
    the way in prepares them again.

    @param lookUp: called with a L{jailtwist.bindlist.BoundView}.
    @return: what C{lookUp} returns, or C{NOT_BOUND} for a jail that is not
        a bind jail.
    """
    binds = _prepareBinds(jail, jailFd)
    if binds is None:
        return NOT_BOUND
    from jailtwist.bindlist import BoundView
    try:
        return lookUp(BoundView(jail, binds))
    finally:
        binds.close()


NOT_BOUND = object()


def execute(plan, log):
    """
    Enter the jail of C{plan} and execute its program; returns only by
    raising.

    @raise Refused: the step that failed, with jailkit's exit status.
    """
    from jailtwist.enter import (
        EnterError, UserNamespaceRefused, enterAsUser, restoreExecSignals)
    if plan.umask is not None:
        os.umask(plan.umask)
    # A tracer that attached while the interpreter started (before the
    # login could refuse it) is caught here; the jail has no /proc: keep
    # this process's status open to look again once inside.
    try:
        status = os.open("/proc/self/status", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        status = None
    binds = None
    try:
        before = _tracer(status)
        try:
            # Checked and pinned now, with the caller's real ids: inside
            # the user namespace root-owned files show as unmapped.
            binds = prepareLoginBinds(plan, log)
            # The lines held back go out once the user namespace is made,
            # still on the host (where /dev/log is) and before the jail.
            enterAsUser(plan.jailFd, plan.home, plan.namespaces,
                        uid=os.getuid(), gid=os.getgid(), binds=binds,
                        ready=log.release)
        finally:
            os.close(plan.jailFd)
            if binds is not None:
                binds.close()
        after = _tracer(status)
        if after not in ("0", before):
            raise Refused(f"abort, the process was traced by process "
                          f"{after} while it entered the jail "
                          f"{plan.jail.location}", TRACED)
    except UserNamespaceRefused as e:
        raise NamespaceUnavailable(
            f"abort, entering the jail {plan.jail.location} failed: {e}",
            ENTER_EXIT_CODES["unshare"])
    except EnterError as e:
        code = ENTER_EXIT_CODES.get(e.step, 33)
        if e.step == "chdir":
            raise Refused(f"abort, chdir({plan.home}) failed inside the jail "
                          f"{plan.jail.location}: {os.strerror(e.errno)}, "
                          f"check the permissions for "
                          f"{plan.jail.location}/{plan.home}", code)
        raise Refused(f"abort, entering the jail {plan.jail.location} "
                      f"failed: {e}", code)
    finally:
        if status is not None:
            os.close(status)
    restoreExecSignals()
    try:
        os.execve(plan.executable, plan.argv, plan.environment)
    except OSError as e:
        code, messages = plan.execFailure
        messages = [m.replace("{error}", e.strerror) for m in messages]
        for message in messages[:-1]:
            log.error(message, ident=plan.ident)
        raise Refused(messages[-1] if messages
                      else f"exec {plan.executable}: {e.strerror}", code,
                      ident=plan.ident)
