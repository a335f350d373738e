# -*- test-case-name: tests.test_login -*-
"""
C{jk_jailuser} (move existing accounts into a jail) and C{jk_addjailuser}
(create a new jailed account).

Everything that can be checked is checked before anything is changed: the
jail (safe, with an C{etc/passwd}), the shell, each account (exists, is not
root, is not jailed elsewhere, has no running process, fits the jail's
passwd and group).  Then, under the C{lckpwdf} lock, each account is moved:
the home is copied into the jail under a temporary name and renamed into
place, the jail's C{etc/passwd} and C{etc/group} and then the host's
C{/etc/passwd} are replaced atomically, and only then is the old home
removed.  An interruption at any point leaves the host's passwd either
untouched or complete, and never loses the home.
"""

import errno
import os
import pwd
import grp
import shutil
import stat
import subprocess
import sys

from jailtwist.command import CommandLine, UsageError, runCommand
from jailtwist.config import replaceSection
from jailtwist.errors import JailtwistError
from jailtwist.jail import Jail
from jailtwist.login import isLsh
from jailtwist.lsh import statInRoot
from jailtwist.passwd import (
    AccountError, AccountFiles, GroupEntry, PasswdEntry, decodeText,
    findEntry, readAt, replaceFile, requireRootDirectory)

#: The in-jail shell jailkit uses by default: jk_lsh (its policy is applied
#: by jk_chrootsh; the file itself need not exist in the jail).
DEFAULT_SHELL = "/usr/sbin/jk_lsh"

#: Exit status for an unusable jail or shell (jailkit's).
BAD_JAIL = 33
#: Exit status for an unusable account.
BAD_USER = 2


def chrootshPath():
    """
    The installed C{jk_chrootsh} next to the running interpreter: the shell
    the host's passwd gets for a jailed account.
    """
    return os.path.join(os.path.dirname(os.path.abspath(sys.executable)),
                        "jk_chrootsh")


_JAIL_FLAGS = [
    ("verbose", "v", "say what is done"),
    ("noninteractive", "n", "never ask a question"),
]
_JAIL_PARAMETERS = [
    ("jail", "j", None, "the jail to put the account(s) in"),
    ("shell", "s", DEFAULT_SHELL,
     "the shell inside the jail (jk_lsh: only the commands its "
     "jk_lsh.ini allows)"),
    ("chrootsh", None, None,
     "the jk_chrootsh to make the host shell (default: the one "
     "installed with this command)"),
]

JAILUSER_COMMAND_LINE = CommandLine(
    synopsis="jk_jailuser [-m] [-j JAIL] [-s SHELL] [-n] [-v] USER...",
    longdesc="",
    flags=_JAIL_FLAGS + [
        ("move", "m", "move the home directory into the jail"),
        ("nomove", None, "do not move the home directory (the default)"),
    ],
    parameters=_JAIL_PARAMETERS, arguments=True)

ADDJAILUSER_COMMAND_LINE = CommandLine(
    synopsis="jk_addjailuser -j JAIL [-s SHELL] [options] USER",
    longdesc="",
    flags=_JAIL_FLAGS,
    parameters=_JAIL_PARAMETERS + [
        ("uid", "u", None, "the new account's uid (useradd -u)"),
        ("gid", "g", None, "the new account's primary group (useradd -g)"),
        ("comment", "c", None, "the GECOS field (useradd -c)"),
        ("password", "p", None,
         "the encrypted password field (useradd -p); '*' allows key logins "
         "without a password"),
    ],
    arguments=True)


def jailOptions(options, users):
    """
    Check what both commands share, once the users are known.
    """
    options["users"] = users
    if not options["jail"]:
        raise JailtwistError("no jail given: use -j JAIL", BAD_JAIL)
    if not options["shell"].startswith("/"):
        raise JailtwistError(f"shell {options['shell']!r} must be an "
                             f"absolute path inside the jail", BAD_JAIL)
    if options["chrootsh"] is None:
        options["chrootsh"] = chrootshPath()
    return options


def checkJail(path, shell):
    """
    A jail accounts can be put in: safe (L{Jail.checkSafe}), with an
    C{etc/passwd}, and with C{shell} in it unless it is jk_lsh.

    @raise JailtwistError: exit 33, one line saying what to do.
    """
    jail = Jail(path)
    try:
        jail.checkSafe(parents=True)
    except JailtwistError as e:
        raise JailtwistError(f"jail {path} cannot be used: {e}", BAD_JAIL)
    if not _isFile(jail, "/etc/passwd"):
        raise JailtwistError(
            f"jail {path} has no etc/passwd: build it first, e.g. with "
            f"jk_init -j {path} jk_lsh", BAD_JAIL)
    if not isLsh(shell) and not _isFile(jail, shell, executable=True):
        raise JailtwistError(
            f"shell {shell} does not exist in the jail {path} (or is not an "
            f"executable file): copy it in with jk_cp, or use -s "
            f"{DEFAULT_SHELL}", BAD_JAIL)
    return jail


def _isFile(jail, inner, executable=False):
    st = statInRoot(jail, inner)
    return st is not None and stat.S_ISREG(st.st_mode) and (
        not executable or bool(st.st_mode & 0o111))


def runningProcesses(uid):
    """
    The pids of processes with C{uid} as any of their uids.
    """
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as f:
                for line in f:
                    if line.startswith("Uid:"):
                        if str(uid) in line.split()[1:]:
                            pids.append(int(name))
                        break
        except OSError:
            continue
    return sorted(pids)


class AccountMove:
    """
    One account to move into a jail, checked; L{apply} makes the change.
    """

    def __init__(self, jail, entry, shell, chrootsh, move):
        self.jail = jail
        self.entry = entry
        self.shell = shell
        self.chrootsh = chrootsh
        self.move = move
        self.jailPath = jail.location
        home = entry.pw_dir
        if "/./" in home:
            current, inner = home[:home.rfind("/./")], \
                home[home.rfind("/./") + 2:]
            if current.rstrip("/") != self.jailPath:
                raise JailtwistError(
                    f"user {entry.pw_name} is already jailed in {current}: "
                    f"move it out of that jail first", BAD_USER)
            self.oldHome = None
        elif home.startswith(self.jailPath + "/"):
            inner = home[len(self.jailPath):]
            self.oldHome = None
        else:
            inner = home
            self.oldHome = home
        inner = os.path.normpath("/" + inner.lstrip("/"))
        if inner == "/" or "\n" in inner or ":" in inner:
            raise JailtwistError(f"user {entry.pw_name} has home {home!r}, "
                                 f"which cannot be a home in a jail",
                                 BAD_USER)
        self.inner = inner
        self.target = self.jailPath + inner

    def check(self, jailUsers, jailGroups, groupNames, processes=True):
        """
        Refuse what would make a broken jailed account.

        @param processes: also refuse an account with running processes.
        """
        e = self.entry
        if e.pw_uid == 0:
            raise JailtwistError("root cannot be jailed", BAD_USER)
        if processes:
            self.checkProcesses()
        same = findEntry(jailUsers, name=e.pw_name)
        if same is not None and same.uid != e.pw_uid:
            raise JailtwistError(
                f"{self.jailPath}/etc/passwd has a user {e.pw_name} with uid "
                f"{same.uid}, not {e.pw_uid}: fix that line first", BAD_USER)
        other = findEntry(jailUsers, id=e.pw_uid)
        if other is not None and other.name != e.pw_name:
            raise JailtwistError(
                f"{self.jailPath}/etc/passwd gives uid {e.pw_uid} to "
                f"{other.name}: fix that line first", BAD_USER)
        for gid, name in groupNames.items():
            group = findEntry(jailGroups, id=gid)
            if group is not None and group.name != name:
                raise JailtwistError(
                    f"{self.jailPath}/etc/group calls gid {gid} {group.name},"
                    f" not {name}: fix that line first", BAD_USER)
        if self.move and self.oldHome is not None:
            if os.path.lexists(self.target):
                raise JailtwistError(
                    f"{self.target} already exists: remove or rename it, or "
                    f"run without -m", BAD_USER)

    def checkProcesses(self):
        """
        Refuse an account with running processes: a session could write
        to the home while it moves, or keep the old one open.
        """
        e = self.entry
        pids = runningProcesses(e.pw_uid)
        if pids:
            raise JailtwistError(
                f"user {e.pw_name} has running processes (pid "
                f"{', '.join(map(str, pids[:10]))}): stop them (pkill -u "
                f"{e.pw_name}) and run this again; nothing was changed",
                BAD_USER)

    def copyHome(self, say, dryRun=False):
        """
        Put the home in place inside the jail: copied (with -m) under a
        temporary name and renamed, or created empty if missing.

        @param dryRun: only say what would be done.
        """
        e = self.entry
        if dryRun:
            if self.move and self.oldHome is not None and \
                    os.path.isdir(self.oldHome):
                say(f"copying {self.oldHome} to {self.target}")
            else:
                try:
                    dirFd, name = self.jail.openParent(self.inner)
                except OSError:
                    say(f"creating {self.target}")
                    return
                try:
                    os.stat(name, dir_fd=dirFd, follow_symlinks=False)
                except FileNotFoundError:
                    say(f"creating {self.target}")
                finally:
                    os.close(dirFd)
            return
        parent, name = self.jail.openParent(self.inner, create=True)
        try:
            try:
                st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                st = None
            if self.move and self.oldHome is not None and \
                    os.path.isdir(self.oldHome):
                prefix = f".{name}.jailtwist-new-"
                # What a killed run left half-copied (the directory is
                # root's: only jk_jailuser makes such names there).
                listing = os.open(".", os.O_RDONLY | os.O_DIRECTORY
                                  | os.O_CLOEXEC, dir_fd=parent)
                try:
                    names = os.listdir(listing)
                finally:
                    os.close(listing)
                for entry in names:
                    if entry.startswith(prefix):
                        say(f"removing the unfinished copy "
                            f"{self.jailPath}{os.path.dirname(self.inner)}"
                            f"/{entry}")
                        shutil.rmtree(entry, ignore_errors=True,
                                      dir_fd=parent)
                temp = f"{prefix}{os.getpid()}"
                say(f"copying {self.oldHome} to {self.target}")
                source = os.open(self.oldHome, os.O_RDONLY | os.O_DIRECTORY
                                 | os.O_NOFOLLOW | os.O_CLOEXEC)
                try:
                    _copyDirectory(source, parent, temp)
                finally:
                    os.close(source)
                os.rename(temp, name, src_dir_fd=parent, dst_dir_fd=parent)
            elif st is None:
                say(f"creating {self.target}")
                os.mkdir(name, 0o700, dir_fd=parent)
                os.chown(name, e.pw_uid, e.pw_gid, dir_fd=parent,
                         follow_symlinks=False)
        finally:
            os.close(parent)

    def removeOldHome(self, say):
        if self.move and self.oldHome is not None and \
                os.path.isdir(self.oldHome):
            say(f"removing {self.oldHome}")
            shutil.rmtree(self.oldHome)


def _copyDirectory(sourceFd, parentFd, name):
    """
    Copy the directory C{sourceFd} to C{name} in C{parentFd}: owners, modes
    (without setuid/setgid) and times kept, symlinks copied as symlinks,
    nothing followed; sockets, fifos and devices are left out.
    """
    st = os.fstat(sourceFd)
    os.mkdir(name, 0o700, dir_fd=parentFd)
    target = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                     | os.O_CLOEXEC, dir_fd=parentFd)
    try:
        for entry in os.scandir(sourceFd):
            est = entry.stat(follow_symlinks=False)
            if stat.S_ISLNK(est.st_mode):
                os.symlink(os.readlink(entry.name, dir_fd=sourceFd),
                           entry.name, dir_fd=target)
                os.chown(entry.name, est.st_uid, est.st_gid, dir_fd=target,
                         follow_symlinks=False)
            elif stat.S_ISDIR(est.st_mode):
                child = os.open(entry.name, os.O_RDONLY | os.O_DIRECTORY
                                | os.O_NOFOLLOW | os.O_CLOEXEC,
                                dir_fd=sourceFd)
                try:
                    _copyDirectory(child, target, entry.name)
                finally:
                    os.close(child)
            elif stat.S_ISREG(est.st_mode):
                _copyFile(sourceFd, target, entry.name)
        os.fchown(target, st.st_uid, st.st_gid)
        os.fchmod(target, stat.S_IMODE(st.st_mode) & 0o1777)
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    finally:
        os.close(target)


def _copyFile(sourceDir, targetDir, name):
    source = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
                     | os.O_CLOEXEC, dir_fd=sourceDir)
    try:
        st = os.fstat(source)
        if not stat.S_ISREG(st.st_mode):
            return
        target = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                         | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=targetDir)
        try:
            while True:
                chunk = os.read(source, 1 << 20)
                if not chunk:
                    break
                view = memoryview(chunk)
                while view:
                    view = view[os.write(target, view):]
            os.fchown(target, st.st_uid, st.st_gid)
            os.fchmod(target, stat.S_IMODE(st.st_mode) & 0o1777)
            os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(target)
    finally:
        os.close(source)


def _groupsOf(entry):
    """
    The primary group and the supplementary groups of an account.

    @return: C{(primary GroupEntry, [supplementary GroupEntry])} from the
        host's group file.
    """
    try:
        primary = grp.getgrgid(entry.pw_gid)
    except KeyError:
        raise JailtwistError(f"the primary group {entry.pw_gid} of "
                             f"{entry.pw_name} does not exist: fix "
                             f"/etc/passwd or /etc/group", BAD_USER)
    extra = [g for g in grp.getgrall()
             if entry.pw_name in g.gr_mem and g.gr_gid != entry.pw_gid]
    return (GroupEntry(primary.gr_name, "x", primary.gr_gid),
            [GroupEntry(g.gr_name, "x", g.gr_gid) for g in extra])


def addToJailFiles(files, move, say, dryRun=False):
    """
    Add (or update) the account in the jail's passwd and group.

    @param dryRun: only say what would be changed.
    """
    e = move.entry
    line = PasswdEntry(e.pw_name, "x", e.pw_uid, e.pw_gid, e.pw_gecos,
                       move.inner, move.shell)
    present = findEntry(files.passwd(), name=e.pw_name)
    if present is None:
        say(f"adding {e.pw_name} to {move.jailPath}/etc/passwd")
        if not dryRun:
            files.appendPasswd([line])
    elif present != line:
        say(f"updating {e.pw_name} in {move.jailPath}/etc/passwd")
        if not dryRun:
            files.editPasswd(lambda p: line if p.name == e.pw_name else p)
    primary, extra = _groupsOf(e)
    groups = files.group()
    missing = [g for g in [primary] + extra
               if findEntry(groups, id=g.gid) is None]
    for group in missing:
        say(f"adding group {group.name} to {move.jailPath}/etc/group")
    members = {g.gid for g in extra}
    for group in groups:
        if group.gid in members and e.pw_name not in group.members:
            say(f"adding {e.pw_name} to group {group.name} in "
                f"{move.jailPath}/etc/group")
    if dryRun:
        return
    files.appendGroup(missing)

    def addMember(group):
        if group.gid in members and e.pw_name not in group.members:
            group.members.append(e.pw_name)
        return group
    files.editGroup(addMember)


def jailAccounts(options, out=sys.stdout, created=False, dryRun=False):
    """
    Move the accounts of C{options["users"]} into C{options["jail"]}.

    @param dryRun: check everything, change nothing, and return what
        would be changed.  Running processes are refused only for an
        account that would change (an account already in place may be
        logged in).
    @return: the changes made (or that would be), one line each.
    """
    verbose = options["verbose"]
    changes = []

    def say(message):
        changes.append(message)
        if verbose:
            out.write(message + "\n")
            out.flush()
    jail = checkJail(options["jail"], options["shell"])
    moves = []
    for name in options["users"]:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise JailtwistError(
                f"user {name} does not exist: create it first (useradd "
                f"{name}) or use jk_addjailuser; nothing was changed",
                BAD_USER)
        moves.append(AccountMove(jail, entry, options["shell"],
                                 options["chrootsh"],
                                 options.get("move", False)))
    if not os.path.exists(options["chrootsh"]):
        raise JailtwistError(f"{options['chrootsh']} does not exist: install "
                             f"jailtwist or name it with --chrootsh", 1)
    jailEtc, name = jail.openParent("/etc/passwd", followLast=True)
    kept = []
    host = AccountFiles.openPath("/etc", lock=not dryRun)
    inJail = AccountFiles(jailEtc, f"{jail.location}/etc", lock=False)
    try:
        with host, inJail:
            jailUsers, jailGroups = inJail.passwd(), inJail.group()
            for move in moves:
                primary, extra = _groupsOf(move.entry)
                move.check(jailUsers, jailGroups,
                           {g.gid: g.name for g in [primary] + extra},
                           processes=not dryRun)
            for move in moves:
                e = move.entry
                before = len(changes)
                move.copyHome(say, dryRun)
                addToJailFiles(inJail, move, say, dryRun)
                newHome = f"{move.jailPath}/.{move.inner}"
                if (e.pw_dir, e.pw_shell) != (newHome, move.chrootsh):
                    say(f"setting home {newHome} and shell {move.chrootsh} "
                        f"for {e.pw_name} in /etc/passwd")
                if dryRun:
                    if len(changes) > before:
                        move.checkProcesses()
                    continue
                host.editPasswd(
                    lambda p, e=e, home=newHome, shell=move.chrootsh:
                    p.replace(home=home, shell=shell)
                    if p.name == e.pw_name else p)
                if move.move and move.oldHome is not None and \
                        runningProcesses(e.pw_uid):
                    # A session started during the copy may still write
                    # to the old home: removing it would lose that.
                    kept.append(move)
                else:
                    move.removeOldHome(say)
    except AccountError as e:
        raise JailtwistError(str(e), BAD_USER)
    finally:
        host.close()
        inJail.close()
    if dryRun:
        return changes
    flushNameCache()
    if kept:
        raise JailtwistError(
            "; ".join(f"{m.entry.pw_name} is jailed, but logged in during "
                      f"the move: its old home {m.oldHome} was kept; "
                      f"compare it with {m.target} once the session ended "
                      f"and remove it" for m in kept), BAD_USER)
    return changes


#: The jail's jk_lsh policy, as seen inside the jail.
LSH_POLICY = "/etc/jailkit/jk_lsh.ini"


def setLshSection(jail, section, items, dryRun=False):
    """
    Make C{[section]} of the jail's C{etc/jailkit/jk_lsh.ini} (jk_lsh's
    per-account section when it is an account's name) hold exactly
    C{items}; the rest of the file is kept.  The file is replaced
    atomically, root-owned and 0644 when new; its directory must belong to
    root and not be writable by group or others (the account must not be
    able to write its own policy).

    @param jail: a L{Jail}.
    @param items: C{(key, value)} pairs (L{jailtwist.lsh.KEYS}).
    @param dryRun: change nothing.
    @return: C{(before, after)}: the file's text before and after.
    """
    where = jail.location + LSH_POLICY
    try:
        dirFd, name = jail.openParent(LSH_POLICY, create=not dryRun)
    except OSError as e:
        if dryRun and e.errno == errno.ENOENT:
            return "", replaceSection("", section, items, where)
        raise JailtwistError(f"cannot open {os.path.dirname(where)}: "
                             f"{e.strerror}", BAD_JAIL)
    try:
        requireRootDirectory(dirFd, os.path.dirname(where), BAD_JAIL)
        try:
            before = decodeText(readAt(dirFd, name), where)
        except AccountError as e:
            raise JailtwistError(f"{where}: {e}", BAD_JAIL)
        after = replaceSection(before, section, items, where)
        if after != before and not dryRun:
            replaceFile(dirFd, name, after.encode("utf-8"), 0o644)
        return before, after
    finally:
        os.close(dirFd)


def flushNameCache():
    """
    Tell nscd, when it runs, that passwd and group changed (as usermod
    does), so the next login does not see the old home and shell.
    """
    nscd = shutil.which("nscd")
    if nscd:
        for table in ("passwd", "group"):
            subprocess.run([nscd, "-i", table], capture_output=True)


def parseJailUser(argv):
    """
    @return: the options of a jk_jailuser command line, the accounts under
        C{"users"}.
    """
    options, users = JAILUSER_COMMAND_LINE.parse(argv)
    if not users:
        raise UsageError("name at least one user")
    return jailOptions(options, users)


def _jailuser(argv):
    options = parseJailUser(argv)
    if not options["move"] and not options["noninteractive"] and \
            sys.stdin.isatty():
        answer = input(f"move the home directory of "
                       f"{', '.join(options['users'])} into "
                       f"{options['jail']}? [Y]/[n] ")
        options["move"] = answer.strip().lower() in ("", "y", "yes")
    jailAccounts(options)


def jailuser():
    """
    C{jk_jailuser}: move existing accounts into a jail.
    """
    runCommand(_jailuser, name="jk_jailuser")


def _addjailuser(argv):
    options, users = ADDJAILUSER_COMMAND_LINE.parse(argv)
    if len(users) != 1:
        raise UsageError("Wrong number of arguments.")
    options = jailOptions(options, users)
    createAccount(options)


def createAccount(options):
    """
    Create the account C{options["users"][0]} with C{useradd} and put it
    in C{options["jail"]} (home C{JAIL/./home/NAME}); if jailing it fails,
    the new account is removed again.  C{uid}, C{gid}, C{comment} and
    C{password} are passed to useradd when not C{None}.

    @return: the lines of L{jailAccounts}.
    """
    options["move"] = False
    name = options["users"][0]
    try:
        pwd.getpwnam(name)
    except KeyError:
        pass
    else:
        raise JailtwistError(f"user {name} already exists: use jk_jailuser "
                             f"-j {options['jail']} {name} to jail it",
                             BAD_USER)
    jail = checkJail(options["jail"], options["shell"])
    home = f"{jail.location}/./home/{name}"
    command = ["useradd", "-M", "-d", home, "-s", options["chrootsh"]]
    for key, flag in (("uid", "-u"), ("gid", "-g"), ("comment", "-c"),
                      ("password", "-p")):
        if options.get(key) is not None:
            command += [flag, options[key]]
    command += ["--", name]
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    result = subprocess.run([useradd] + command[1:], capture_output=True,
                            text=True)
    if result.returncode:
        message = (result.stderr.strip().splitlines() or ["failed"])[-1]
        raise JailtwistError(f"useradd {name} failed: {message}", BAD_USER)
    try:
        return [f"creating account {name} (useradd)"] + jailAccounts(options)
    except BaseException:
        userdel = shutil.which("userdel") or "/usr/sbin/userdel"
        subprocess.run([userdel, name], capture_output=True)
        raise


def addjailuser():
    """
    C{jk_addjailuser}: create a new account inside a jail.
    """
    runCommand(_addjailuser, name="jk_addjailuser")
