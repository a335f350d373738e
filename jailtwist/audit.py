# -*- test-case-name: tests.test_audit -*-
"""
The checks behind jk_check: walk a jail without ever leaving it and report
what makes it unsafe, as L{Finding} records.

What is reported (L{Kind} names each kind):

  - setuid and setgid regular files, and files with capabilities, that
    someone may execute;
  - directories and files writable by group or others, outside C{home/}
    and C{tmp/} (and C{tmp} itself when it lacks the sticky bit);
  - directories and regular files not owned by root, outside C{home/} and
    C{tmp/};
  - device nodes other than the harmless character devices null, zero,
    random, urandom and tty (recognised by their numbers, not their names);
  - files and symlinks that differ from the host's copy at the same path
    (the whole content: sizes first, then every byte, streamed);
  - a jail, or a directory above it, that jailkit would refuse
    (L{jailtwist.jail.Jail.checkSafe});
  - accounts that disagree between the jail's C{etc/passwd} and the host,
    the way jailkit's jk_check compares them;
  - in a jail assembled from binds (L{jailtwist.bindlist}): a bind list
    that is not root-owned or is writable by others, entries that would be
    refused, and mount points the jail's users could change or that
    something else shadows (L{jailtwist.bindlist.openMountPoint}).  Bound
    paths are the host's own: they are never compared with the host.

The walk opens every directory relative to its parent's descriptor with
C{O_NOFOLLOW}, reads entries with C{lstat} semantics and opens regular files
with C{O_NOFOLLOW}: a symlink planted in the jail is reported as a symlink,
never followed out of it.  Files that vanish during the walk are skipped.

The files a jail owns rather than copies from the host (C{etc/passwd},
C{etc/group}, C{etc/shadow}, C{etc/gshadow}, C{etc/ld.so.cache},
C{etc/jailkit/}, C{home/}, C{tmp/}) are never compared with the host.
"""

import errno
import grp
import os
import pwd
import stat
from collections import namedtuple

from jailtwist.enter import CAPABILITIES
from jailtwist.errors import JailtwistError
from jailtwist.jail import Jail, UnsafeJail


class Kind:
    """
    The kinds of L{Finding}, as the short words jk_check prints.
    """

    SETUID = "setuid"
    SETGID = "setgid"
    CAPABILITIES = "capabilities"
    WORLD_WRITABLE = "world-writable"
    GROUP_WRITABLE = "group-writable"
    OWNER = "not-root-owned"
    DEVICE = "device"
    MODIFIED = "modified"
    UNSAFE = "unsafe-jail"
    USER = "user"
    MISSING = "missing"
    UNREADABLE = "unreadable"
    BIND = "bind"


# Character devices a jail may hold: (major, minor) -> name.
HARMLESS_DEVICES = {
    (1, 3): "null",
    (1, 5): "zero",
    (1, 8): "random",
    (1, 9): "urandom",
    (5, 0): "tty",
}

# Paths (relative to the jail) that belong to the jail itself, not copies of
# the host's files: never compared with the host.
OWN_FILES = ("etc/passwd", "etc/group", "etc/shadow", "etc/gshadow",
             "etc/ld.so.cache", "etc/jailkit", "home", "tmp")

# Subtrees whose contents belong to the jail's users: not checked for
# writable modes or ownership (the directories themselves are).
USER_TREES = ("home", "tmp")

# File systems that are never walked when mounted inside a jail.
PSEUDO_FILESYSTEMS = frozenset({
    "proc", "sysfs", "devpts", "cgroup", "cgroup2", "debugfs", "tracefs",
    "securityfs", "pstore", "bpf", "mqueue", "hugetlbfs", "fusectl",
    "configfs", "binfmt_misc", "autofs", "efivarfs", "selinuxfs",
})

# Directory nesting beyond which the walk stops (and says so), so a hostile
# tree cannot exhaust file descriptors.
MAX_DEPTH = 256

CHUNK = 1024 * 1024

# The keys jailkit's jk_check reads from a jk_check.ini section, plus
# jailtwist's own.
LIST_KEYS = (
    "ignorepatheverywhere", "ignorepathoncompare", "ignorewritableforgroup",
    "ignorewritableforothers", "ignoresetuidexecuteforuser",
    "ignoresetuidexecuteforgroup", "ignoresetuidexecuteforothers",
    "ignorenotownedbyroot", "ignoredevices",
)

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | \
    os.O_CLOEXEC


# Named tuples and a plain class, not dataclasses: jk_list imports this
# module, and dataclasses alone would take longer to import than the rest.
class Finding(namedtuple("Finding", "jail kind path detail")):
    """
    One problem found in a jail.

    @ivar jail: the jail's directory on the host.
    @ivar kind: one of the L{Kind} words.
    @ivar path: the host path of what is wrong (in the jail, or the jail or
        one of its parents for L{Kind.UNSAFE}, or the jail for
        L{Kind.USER}).
    @ivar detail: one human sentence: what is wrong, with the numbers.
    """

    __slots__ = ()

    def __str__(self):
        """
        One line, whatever the names in the jail contain: control
        characters, backslashes and bytes that are not UTF-8 are escaped
        (L{printable}), so a file name cannot forge a line.
        """
        return (f"{printable(self.path)}: {self.kind}:"
                f" {printable(self.detail)}")

    def asDict(self):
        """
        The finding for JSON, names escaped as in L{__str__}.
        """
        return {"jail": printable(self.jail), "kind": self.kind,
                "path": printable(self.path),
                "detail": printable(self.detail)}


class AuditReport:
    """
    What one L{JailAudit} found and how much it looked at.
    """

    def __init__(self, jail, findings=None, directories=0, files=0,
                 compared=0, skipped=None):
        self.jail = jail
        self.findings = [] if findings is None else findings
        self.directories = directories
        self.files = files
        self.compared = compared
        self.skipped = [] if skipped is None else skipped

    def __eq__(self, other):
        if not isinstance(other, AuditReport):
            return NotImplemented
        return vars(self) == vars(other)

    def __repr__(self):
        return ("AuditReport(" + ", ".join(f"{k}={v!r}" for k, v
                                           in vars(self).items()) + ")")

    @property
    def clean(self):
        return not self.findings

    def asDict(self):
        return {"jail": printable(self.jail), "clean": self.clean,
                "directories": self.directories, "files": self.files,
                "compared": self.compared,
                "skipped": [printable(path) for path in self.skipped],
                "findings": [f.asDict() for f in self.findings]}


class CheckPolicy(namedtuple(
        "CheckPolicy",
        "ignorePathEverywhere ignorePathOnCompare ignoreWritableForGroup "
        "ignoreWritableForOthers ignoreSetuidExecuteForUser "
        "ignoreSetuidExecuteForGroup ignoreSetuidExecuteForOthers "
        "ignoreNotOwnedByRoot ignoreDevices", defaults=(frozenset(),) * 9)):
    """
    What to leave out when checking one jail: jailkit's jk_check.ini keys.

    Every entry is a path relative to the jail (C{"usr/bin/smbmnt"}).  The
    C{ignoresetuidexecutefor*} entries match one file exactly; the others
    match a path and everything below it (whole components: C{home} does
    not match C{homework}, unlike jailkit's string prefixes).
    """

    __slots__ = ()

    @classmethod
    def fromSection(cls, section, jail, defaults=None):
        """
        Read a jk_check.ini section.

        Paths may be absolute host paths under the jail (jailkit's form) or
        relative to the jail (handy in C{[DEFAULT]}); absolute paths outside
        the jail match nothing.

        @param section: a L{jailtwist.config.Section}.
        @param jail: the jail's directory (a C{str}).
        @param defaults: the C{[DEFAULT]} section, whose keys apply to every
            jail unless the jail's section sets them (configparser's
            semantics, which jailkit's jk_check has).
        @raise jailtwist.config.ConfigError: for an unknown key.
        """
        values = {}
        for source in (defaults, section):
            if source is None:
                continue
            source.checkKeys(LIST_KEYS)
            for key in LIST_KEYS:
                if key in source:
                    values[key] = _relativePaths(source.getList(key), jail)
        names = {
            "ignorepatheverywhere": "ignorePathEverywhere",
            "ignorepathoncompare": "ignorePathOnCompare",
            "ignorewritableforgroup": "ignoreWritableForGroup",
            "ignorewritableforothers": "ignoreWritableForOthers",
            "ignoresetuidexecuteforuser": "ignoreSetuidExecuteForUser",
            "ignoresetuidexecuteforgroup": "ignoreSetuidExecuteForGroup",
            "ignoresetuidexecuteforothers": "ignoreSetuidExecuteForOthers",
            "ignorenotownedbyroot": "ignoreNotOwnedByRoot",
            "ignoredevices": "ignoreDevices",
        }
        return cls(**{names[key]: frozenset(value)
                      for key, value in values.items()})


def _relativePaths(paths, jail):
    jail = jail.rstrip("/")
    result = set()
    for path in paths:
        if path.startswith("/"):
            normal = os.path.normpath(path)
            if normal == jail:
                result.add("")
            elif normal.startswith(jail + "/"):
                result.add(normal[len(jail) + 1:])
            continue
        normal = os.path.normpath(path)
        if normal == ".":
            result.add("")
        elif not normal.startswith(".."):
            result.add(normal)
    return result


class _Subtree:
    """
    Flags inherited down the walk: which ignore lists cover a directory.
    """

    __slots__ = ("compare", "group", "others", "owner", "devices", "user")

    def __init__(self, compare=False, group=False, others=False, owner=False,
                 devices=False, user=False):
        self.compare = compare
        self.group = group
        self.others = others
        self.owner = owner
        self.devices = devices
        self.user = user


class JailAudit:
    """
    Check one jail against the host.

    @param jail: the jail directory (C{str}, C{FilePath} or L{Jail}).
    @param policy: a L{CheckPolicy} (defaults: nothing ignored beyond the
        jail's own files).
    @param hostRoot: the tree the jail's copies are compared with.
    @param passwd: a callable returning the host's accounts as
        C{pwd.struct_passwd}-like records (for tests).
    @param mounts: the text of C{/proc/self/mountinfo} (for tests).
    """

    def __init__(self, jail, policy=None, hostRoot="/", passwd=pwd.getpwall,
                 mounts=None):
        if not isinstance(jail, Jail):
            jail = Jail(jail)
        self.jail = jail
        self.path = jail.location
        self.policy = policy if policy is not None else CheckPolicy()
        self.hostRoot = hostRoot.rstrip("/") + "/"
        self._passwd = passwd
        self._mounts = mounts
        self._bound = frozenset()

    def run(self):
        """
        Run every check.

        @rtype: L{AuditReport}
        """
        report = AuditReport(self.path)
        self._report = report
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            self._add(Kind.MISSING, self.path, "the jail does not exist")
            return report
        except OSError as e:
            self._add(Kind.UNREADABLE, self.path,
                      f"cannot examine the jail: {e.strerror}")
            return report
        unsafe = None
        try:
            self.jail.checkSafe(parents=True)
        except UnsafeJail as e:
            unsafe = Finding(self.path, Kind.UNSAFE, e.path,
                             str(e)[len(e.path) + 1:])
        if not stat.S_ISDIR(st.st_mode) or self.path == "/":
            report.findings.append(unsafe or Finding(
                self.path, Kind.UNSAFE, self.path, "is not a directory"))
            return report
        plan = self._readBinds()
        self._walk()
        self._checkUsers()
        self._checkMountPoints(plan)
        # The walk reports an unsafe directory inside the jail in detail;
        # keep jailkit's verdict only where it adds something.
        if unsafe is not None and unsafe.path not in {
                f.path for f in report.findings}:
            report.findings.insert(0, unsafe)
        return report

    # -- reporting --------------------------------------------------------

    def _add(self, kind, path, detail):
        self._report.findings.append(Finding(self.path, kind, path, detail))

    def _host(self, rel):
        return self.path + "/" + rel if rel else self.path

    # -- bind jails --------------------------------------------------------

    def _readBinds(self):
        """
        Read and check the bind list, if the jail has one; remember its
        paths, which are never compared with the host.

        @return: the L{jailtwist.bindlist.BindMount}s to check.
        """
        from jailtwist import bindlist
        listPath = self._host(bindlist.LIST)
        try:
            root = self.jail.openRoot()
        except JailtwistError:
            return []
        trusted = True
        try:
            data = bindlist.readBindList(root)
        except bindlist.BindListError as e:
            self._add(Kind.BIND, listPath, str(e))
            # Still tell mount points from modified copies (one finding
            # says the list is wrong, not one per bound path).
            trusted = False
            try:
                data = self.jail.readFile(bindlist.LIST)
            except OSError:
                data = None
        finally:
            os.close(root)
        if data is None:
            return []
        if trusted:
            try:
                bindlist.checkRecord(data, self.path)
            except bindlist.BindListError as e:
                # The ways in refuse the jail until jk_update runs.
                self._add(Kind.BIND, listPath, str(e))
        entries = bindlist.parseBindList(data)
        self._bound = frozenset(
            path.lstrip("/") for _, path in entries if path.startswith("/"))
        if not trusted:
            return []
        checked = bindlist.checkEntries(entries, self.path)
        for refused in checked.refused:
            # What the host changed, jk_update resolves again.
            hint = " (jk_update resolves it again)" if refused.onHost else ""
            self._add(Kind.BIND, listPath,
                      f"line {checked.lines[refused.path]}: {refused}{hint}")
        return bindlist.mountPlan(checked.accepted)

    def _checkMountPoints(self, plan):
        from jailtwist.bindlist import BindListError, openMountPoint
        if not plan:
            return
        root = self.jail.openRoot()
        try:
            for mount in plan:
                try:
                    os.close(openMountPoint(root, mount))
                except BindListError as e:
                    self._add(Kind.BIND, self._host(mount.target.lstrip("/")),
                              str(e))
        finally:
            os.close(root)

    # -- the walk ---------------------------------------------------------

    def _pseudoMounts(self):
        """
        Paths (relative to the jail) where a pseudo file system is mounted.
        """
        text = self._mounts
        if text is None:
            try:
                with open("/proc/self/mountinfo", encoding="utf-8",
                          errors="replace") as f:
                    text = f.read()
            except OSError:
                return {}
        result = {}
        # mountinfo names mount points without symlinks.
        prefix = os.path.realpath(self.path).rstrip("/") + "/"
        for line in text.splitlines():
            fields = line.split(" ")
            try:
                mountPoint = _unescape(fields[4])
                fsType = fields[fields.index("-") + 1]
            except (IndexError, ValueError):
                continue
            if fsType in PSEUDO_FILESYSTEMS and mountPoint.startswith(prefix):
                result[mountPoint[len(prefix):]] = fsType
        return result

    def _walk(self):
        policy = self.policy
        pseudo = self._pseudoMounts()
        try:
            rootFd = os.open(self.path, _DIRECTORY)
        except OSError as e:
            self._add(Kind.UNREADABLE, self.path,
                      f"cannot open the jail: {e.strerror}")
            return
        rootStat = os.fstat(rootFd)
        top = _Subtree(
            compare="" in policy.ignorePathOnCompare,
            group="" in policy.ignoreWritableForGroup,
            others="" in policy.ignoreWritableForOthers,
            owner="" in policy.ignoreNotOwnedByRoot,
            devices="" in policy.ignoreDevices)
        if "" in policy.ignorePathEverywhere:
            os.close(rootFd)
            self._report.skipped.append(self.path)
            return
        self._checkDirectory("", rootStat, top, inUserTree=False)
        # Each frame: (directory fd, its relative path with a trailing
        # slash, its flags, the subdirectories still to visit).
        stack = [(rootFd, "", top, self._scan(rootFd, "", top, pseudo))]
        try:
            while stack:
                fd, prefix, flags, subdirs = stack[-1]
                if not subdirs:
                    os.close(fd)
                    stack.pop()
                    continue
                name, st, childFlags = subdirs.pop()
                rel = prefix + name
                if len(stack) > MAX_DEPTH:
                    self._add(Kind.UNREADABLE, self._host(rel),
                              f"not checked: nested deeper than {MAX_DEPTH}"
                              f" directories")
                    continue
                try:
                    childFd = os.open(name, _DIRECTORY, dir_fd=fd)
                except OSError as e:
                    if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                        continue  # vanished or replaced during the walk
                    self._add(Kind.UNREADABLE, self._host(rel),
                              f"cannot open directory: {e.strerror}")
                    continue
                opened = os.fstat(childFd)
                if (opened.st_ino, opened.st_dev) != (st.st_ino, st.st_dev):
                    # Replaced between lstat and open: check what we opened.
                    self._checkDirectory(rel, opened, childFlags,
                                         childFlags.user)
                stack.append((childFd, rel + "/", childFlags,
                              self._scan(childFd, rel + "/", childFlags,
                                         pseudo)))
        finally:
            for frame in stack:
                os.close(frame[0])

    def _scan(self, fd, prefix, flags, pseudo):
        """
        Check every entry of one directory; return its subdirectories still
        to walk as C{(name, stat, flags)}.
        """
        policy = self.policy
        report = self._report
        report.directories += 1
        subdirs = []
        try:
            entries = list(os.scandir(fd))
        except OSError as e:
            self._add(Kind.UNREADABLE, self._host(prefix.rstrip("/")),
                      f"cannot list directory: {e.strerror}")
            return subdirs
        everywhere = policy.ignorePathEverywhere
        for entry in entries:
            name = entry.name
            rel = prefix + name
            if everywhere and rel in everywhere:
                report.skipped.append(self._host(rel))
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # vanished
            mode = st.st_mode
            if stat.S_ISDIR(mode):
                if rel in pseudo:
                    report.skipped.append(self._host(rel))
                    continue
                childFlags = self._childFlags(rel, flags)
                self._checkDirectory(rel, st, childFlags, childFlags.user)
                subdirs.append((name, st, childFlags))
            elif stat.S_ISREG(mode):
                report.files += 1
                self._checkFile(fd, name, rel, st, flags)
            elif stat.S_ISLNK(mode):
                report.files += 1
                if not (flags.compare or rel in policy.ignorePathOnCompare
                        or rel in OWN_FILES):
                    self._compareLink(fd, name, rel)
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                report.files += 1
                self._checkDevice(rel, st, flags)
            else:
                report.files += 1  # sockets (dev/log) and FIFOs are fine
        subdirs.reverse()
        return subdirs

    def _childFlags(self, rel, flags):
        policy = self.policy
        return _Subtree(
            compare=flags.compare or rel in policy.ignorePathOnCompare
            or rel in OWN_FILES or rel in self._bound,
            group=flags.group or rel in policy.ignoreWritableForGroup,
            others=flags.others or rel in policy.ignoreWritableForOthers,
            owner=flags.owner or rel in policy.ignoreNotOwnedByRoot,
            devices=flags.devices or rel in policy.ignoreDevices,
            user=flags.user or rel in USER_TREES)

    def _checkDirectory(self, rel, st, flags, inUserTree):
        """
        Owner and mode of one directory (its contents come later).  C{home}
        and C{tmp} themselves may be writable only with the sticky bit;
        what is below them belongs to the jail's users.
        """
        path = self._host(rel)
        mode = st.st_mode
        top = rel in USER_TREES
        if inUserTree and not top:
            return
        if st.st_uid != 0 and not flags.owner:
            self._add(Kind.OWNER, path,
                      f"directory owned by {userName(st.st_uid)}, not root")
        if top and mode & stat.S_ISVTX:
            return
        sticky = " without the sticky bit" if top else ""
        if mode & stat.S_IWOTH and not flags.others:
            self._add(Kind.WORLD_WRITABLE, path,
                      f"directory writable by others{sticky}"
                      f" (mode {_mode(mode)})")
        if mode & stat.S_IWGRP and not flags.group:
            self._add(Kind.GROUP_WRITABLE, path,
                      f"directory writable by group {groupName(st.st_gid)}"
                      f"{sticky} (mode {_mode(mode)})")

    def _checkFile(self, dirFd, name, rel, st, flags):
        policy = self.policy
        mode = st.st_mode
        path = None
        if mode & 0o111 and not self._privilegeIgnored(rel, mode):
            if mode & (stat.S_ISUID | stat.S_ISGID):
                path = self._host(rel)
                self._reportSetuid(path, st)
            capabilities = _fileCapabilities(dirFd, name)
            if capabilities:
                path = path or self._host(rel)
                self._add(Kind.CAPABILITIES, path,
                          f"file capabilities {capabilities}, executable by"
                          f" {_executors(mode)}")
        if not flags.user:
            if mode & (stat.S_IWOTH | stat.S_IWGRP):
                path = path or self._host(rel)
                if mode & stat.S_IWOTH and not (
                        flags.others or rel in policy.ignoreWritableForOthers):
                    self._add(Kind.WORLD_WRITABLE, path,
                              f"file writable by others (mode {_mode(mode)})")
                if mode & stat.S_IWGRP and not (
                        flags.group or rel in policy.ignoreWritableForGroup):
                    self._add(Kind.GROUP_WRITABLE, path,
                              f"file writable by group {groupName(st.st_gid)}"
                              f" (mode {_mode(mode)})")
            if st.st_uid != 0 and not (
                    flags.owner or rel in policy.ignoreNotOwnedByRoot):
                self._add(Kind.OWNER, path or self._host(rel),
                          f"file owned by {userName(st.st_uid)}, not root")
        if not (flags.compare or rel in policy.ignorePathOnCompare
                or rel in OWN_FILES or rel in self._bound):
            self._compareFile(dirFd, name, rel, st)

    def _privilegeIgnored(self, rel, mode):
        """
        Whether every class that may execute a privileged file (setuid,
        setgid, file capabilities) is covered by jailkit's
        C{ignoresetuidexecutefor*} keys.
        """
        policy = self.policy
        return not (
            (mode & stat.S_IXUSR
             and rel not in policy.ignoreSetuidExecuteForUser)
            or (mode & stat.S_IXGRP
                and rel not in policy.ignoreSetuidExecuteForGroup)
            or (mode & stat.S_IXOTH
                and rel not in policy.ignoreSetuidExecuteForOthers))

    def _reportSetuid(self, path, st):
        mode = st.st_mode
        bits = []
        if mode & stat.S_ISUID:
            bits.append(f"setuid {userName(st.st_uid)}")
        if mode & stat.S_ISGID:
            bits.append(f"setgid {groupName(st.st_gid)}")
        kind = Kind.SETUID if mode & stat.S_ISUID else Kind.SETGID
        self._add(kind, path,
                  f"{' and '.join(bits)}, executable by {_executors(mode)}"
                  f" (mode {_mode(mode)})")

    def _checkDevice(self, rel, st, flags):
        if flags.devices or rel in self.policy.ignoreDevices:
            return
        number = (os.major(st.st_rdev), os.minor(st.st_rdev))
        if stat.S_ISCHR(st.st_mode) and number in HARMLESS_DEVICES:
            return
        what = "character" if stat.S_ISCHR(st.st_mode) else "block"
        self._add(Kind.DEVICE, self._host(rel),
                  f"{what} device {number[0]},{number[1]}"
                  f" (only null, zero, random, urandom and tty belong in a"
                  f" jail)")

    # -- comparison with the host -----------------------------------------

    def _compareFile(self, dirFd, name, rel, st):
        hostPath = self.hostRoot + rel
        try:
            hostStat = os.stat(hostPath)
        except OSError:
            return  # the jail's own file: nothing to compare with
        report = self._report
        if not stat.S_ISREG(hostStat.st_mode):
            self._add(Kind.MODIFIED, self._host(rel),
                      f"a regular file in the jail, but {hostPath} is not")
            return
        report.compared += 1
        if (hostStat.st_ino, hostStat.st_dev) == (st.st_ino, st.st_dev):
            return  # the same file (a hard link)
        if hostStat.st_size != st.st_size:
            self._add(Kind.MODIFIED, self._host(rel),
                      f"differs from {hostPath}: {st.st_size} bytes, the"
                      f" host's has {hostStat.st_size}")
            return
        try:
            same = _sameContent(dirFd, name, st, hostPath, hostStat)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ELOOP, errno.ESTALE):
                return  # replaced or removed during the walk
            self._add(Kind.UNREADABLE, self._host(rel),
                      f"cannot compare with {hostPath}: {e.strerror}")
            return
        if same is None:
            return  # the jail file changed under us
        if not same:
            self._add(Kind.MODIFIED, self._host(rel),
                      f"content differs from {hostPath}")

    def _compareLink(self, dirFd, name, rel):
        hostPath = self.hostRoot + rel
        try:
            hostStat = os.lstat(hostPath)
        except OSError:
            return
        try:
            target = os.readlink(name, dir_fd=dirFd)
        except OSError:
            return
        self._report.compared += 1
        if not stat.S_ISLNK(hostStat.st_mode):
            self._add(Kind.MODIFIED, self._host(rel),
                      f"a symlink to {target} in the jail, but {hostPath} is"
                      f" not a symlink")
            return
        try:
            hostTarget = os.readlink(hostPath)
        except OSError:
            return
        if hostTarget != target:
            self._add(Kind.MODIFIED, self._host(rel),
                      f"points to {target}, {hostPath} to {hostTarget}")

    # -- accounts ---------------------------------------------------------

    def _checkUsers(self):
        """
        jailkit's account checks: every account in the jail's
        C{etc/passwd} (but root) exists on the host with the same uid and
        gid, and a host account whose home is in this jail (C{JAIL/./home})
        has the matching home in the jail and the jk_chrootsh shell.
        """
        host = {}
        try:
            for entry in self._passwd():
                host.setdefault(entry.pw_name, entry)
        except OSError:
            return
        jailed = {}
        try:
            text = self.jail.readFile("etc/passwd", limit=16 * 1024 * 1024)
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.ENOTDIR):
                self._add(Kind.UNREADABLE, self._host("etc/passwd"),
                          f"cannot read: {e.strerror}")
            text = b""
        for line in text.decode("utf-8", "replace").splitlines():
            fields = line.split(":")
            if len(fields) < 7 or not fields[0] or line.startswith("#"):
                continue
            jailed.setdefault(fields[0], fields)
        passwdPath = self._host("etc/passwd")
        for name, fields in jailed.items():
            if name == "root":
                continue
            real = host.get(name)
            if real is None:
                self._add(Kind.USER, passwdPath,
                          f"account {name} does not exist on the host")
                continue
            if (fields[2], fields[3]) != (str(real.pw_uid), str(real.pw_gid)):
                self._add(Kind.USER, passwdPath,
                          f"account {name} has uid:gid {fields[2]}:"
                          f"{fields[3]} in the jail, {real.pw_uid}:"
                          f"{real.pw_gid} on the host")
        prefix = self.path + "/./"
        for name, real in host.items():
            if not real.pw_dir.startswith(prefix):
                continue
            inner = "/" + real.pw_dir[len(prefix):].lstrip("/")
            fields = jailed.get(name)
            if fields is None:
                self._add(Kind.USER, passwdPath,
                          f"account {name} lives in this jail (home"
                          f" {real.pw_dir}) but is not in its etc/passwd")
            elif os.path.normpath(fields[5]) != os.path.normpath(inner):
                self._add(Kind.USER, passwdPath,
                          f"account {name} has home {fields[5]} in the jail,"
                          f" but {real.pw_dir} on the host")
            if os.path.basename(real.pw_shell) != "jk_chrootsh":
                self._add(Kind.USER, passwdPath,
                          f"account {name} lives in this jail but its host"
                          f" shell is {real.pw_shell}, not jk_chrootsh")


def _sameContent(dirFd, name, st, hostPath, hostStat):
    """
    Compare a jail file (opened relative to C{dirFd}, never following a
    symlink) with a host file, byte for byte.

    @return: C{True}/C{False}, or C{None} if the jail file is no longer the
        one that was examined.
    """
    fd = os.open(name, _FILE, dir_fd=dirFd)
    try:
        opened = os.fstat(fd)
        if (opened.st_ino, opened.st_dev) != (st.st_ino, st.st_dev) or \
                not stat.S_ISREG(opened.st_mode):
            return None
        hostFd = os.open(hostPath, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY
                         | os.O_NONBLOCK)
        try:
            # Small files in one read each (plus one byte to notice
            # growth), larger ones a chunk at a time.
            want = min(st.st_size + 1, CHUNK)
            while True:
                a = _read(fd, want)
                if a != _read(hostFd, want):
                    return False
                if len(a) < want:
                    return True
        finally:
            os.close(hostFd)
    finally:
        os.close(fd)


def printable(text):
    """
    C{text} with control characters, backslashes and undecodable bytes
    (surrogate escapes from C{os.fsdecode}) escaped, so that it prints as
    one line of valid UTF-8: a newline becomes C{\\x0a}, a backslash
    C{\\\\}, the byte 0xff C{\\xff}.
    """
    if text.isprintable() and "\\" not in text:
        return text
    out = []
    for char in text:
        code = ord(char)
        if char == "\\":
            out.append("\\\\")
        elif 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif char.isprintable() and not 0xD800 <= code <= 0xDFFF:
            out.append(char)
        elif code < 0x100:
            out.append(f"\\x{code:02x}")
        else:
            out.append(f"\\u{code:04x}")
    return "".join(out)


def _executors(mode):
    return ", ".join(name for bit, name in ((stat.S_IXUSR, "user"),
                                            (stat.S_IXGRP, "group"),
                                            (stat.S_IXOTH, "others"))
                     if mode & bit)


def _fileCapabilities(dirFd, name):
    """
    The file capabilities of C{name} in the directory C{dirFd}, read
    without following a symlink (through the descriptor's /proc link).

    @return: e.g. C{"cap_net_raw=ep"}, or C{""} when it has none.
    """
    try:
        raw = os.getxattr(f"/proc/self/fd/{dirFd}/{name}",
                          "security.capability", follow_symlinks=False)
    except OSError:
        return ""
    return describeCapabilities(raw)


def describeCapabilities(raw):
    """
    Decode a C{security.capability} attribute (C{struct vfs_cap_data},
    revisions 1 to 3) as C{cap_a,cap_b=eip}.
    """
    if len(raw) < 12:
        return "(unreadable security.capability attribute)"
    magic = int.from_bytes(raw[0:4], "little")
    words = 1 if magic & 0xFF000000 == 0x01000000 else 2
    permitted = inheritable = 0
    for i in range(words):
        offset = 4 + 8 * i
        if len(raw) < offset + 8:
            break
        permitted |= int.from_bytes(raw[offset:offset + 4], "little") \
            << (32 * i)
        inheritable |= int.from_bytes(raw[offset + 4:offset + 8],
                                      "little") << (32 * i)
    both = permitted | inheritable
    if not both:
        return ""
    names = [("cap_" + CAPABILITIES[bit].lower())
             if bit < len(CAPABILITIES) else f"cap_{bit}"
             for bit in range(64) if both >> bit & 1]
    flags = ("e" if magic & 1 else "") + ("i" if inheritable else "") + \
        ("p" if permitted else "")
    return ",".join(names) + "=" + flags


def _read(fd, size):
    """
    Read C{size} bytes, fewer only at the end of the file (a short read
    from a network file system must not look like a difference).
    """
    data = os.read(fd, size)
    if len(data) == size or not data:
        return data
    parts = [data]
    got = len(data)
    while got < size:
        more = os.read(fd, size - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _unescape(text):
    """
    Undo mountinfo's octal escapes (C{\\040} for a space).
    """
    if "\\" not in text:
        return text
    out = []
    i = 0
    while i < len(text):
        if text[i] == "\\" and text[i + 1:i + 4].isdigit() and \
                len(text[i + 1:i + 4]) == 3:
            out.append(chr(int(text[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _mode(mode):
    return format(stat.S_IMODE(mode), "04o")


_users = {}
_groups = {}


def _nameOf(cache, lookup, number):
    if number not in cache:
        try:
            cache[number] = lookup(number)[0]
        except KeyError:
            cache[number] = str(number)
    return cache[number]


def userName(uid):
    """
    The name of C{uid} on the host (cached), or the number as a string.
    """
    return _nameOf(_users, pwd.getpwuid, uid)


def groupName(gid):
    """
    The name of C{gid} on the host (cached), or the number as a string.
    """
    return _nameOf(_groups, grp.getgrgid, gid)


# -- which jails ----------------------------------------------------------

def jailsFromPasswd(passwd=pwd.getpwall):
    """
    The jails named by host accounts' homes (C{/srv/jail/./home/u} names
    C{/srv/jail}), in order, each once.
    """
    jails = []
    for entry in passwd():
        home = entry.pw_dir
        index = home.find("/./")
        if index <= 0:
            continue
        jail = os.path.normpath(home[:index])
        if jail not in jails:
            jails.append(jail)
    return jails


def auditsFromConfig(ini, passwd=pwd.getpwall):
    """
    What jailkit's jk_check checks without arguments: every section of
    jk_check.ini (the section name is the jail) with its ignore keys, plus
    every jail named by a host account's home, with the C{[DEFAULT]}
    section's keys as defaults.

    @param ini: a L{jailtwist.config.IniFile}, or C{None} when there is no
        config file.
    @rtype: C{list} of L{JailAudit}
    """
    defaults = ini.section("DEFAULT") if ini is not None else None
    audits = []
    seen = set()
    names = [s for s in ini.sections() if s != "DEFAULT"] if ini else []
    for name in names:
        jail = _jailPath(name, ini.path)
        if jail in seen:
            continue
        seen.add(jail)
        policy = CheckPolicy.fromSection(ini.section(name), jail, defaults)
        audits.append(JailAudit(jail, policy, passwd=passwd))
    for jail in jailsFromPasswd(passwd):
        if jail in seen:
            continue
        seen.add(jail)
        policy = CheckPolicy.fromSection(None, jail, defaults) \
            if defaults is not None else CheckPolicy()
        audits.append(JailAudit(jail, policy, passwd=passwd))
    return audits


def auditFor(jail, ini=None, passwd=pwd.getpwall):
    """
    The audit of a jail named on the command line: its jk_check.ini section
    if it has one, else the C{[DEFAULT]} section, else no ignores.
    """
    jail = _jailPath(jail, "the command line")
    section = defaults = None
    if ini is not None:
        defaults = ini.section("DEFAULT")
        for name in ini.sections():
            if name != "DEFAULT" and os.path.normpath(name) == jail:
                section = ini.section(name)
                break
    policy = CheckPolicy.fromSection(section, jail, defaults)
    return JailAudit(jail, policy, passwd=passwd)


def _jailPath(name, where):
    if not name.startswith("/"):
        raise JailtwistError(
            f"jail {name!r} (from {where}) is not an absolute path:"
            f" name it from /")
    return os.path.normpath(name)
