# -*- test-case-name: tests.test_bindlist -*-
"""
The bind list of a jail assembled from read-only binds (C{jk_init --bind}):
where it lives, its format, reading it safely, which host paths it may name,
and the mount plan it stands for.

A bind jail holds no copies of host programs, libraries or shared data.
Instead, C{etc/jailkit/bind.list} inside the jail names the host paths the
jail needs; the ways into the jail bind-mount each of them read-only,
nosuid and nodev at the same path inside, in a private mount namespace, so
the host's own files (updated with the host) are what the jail sees.

The list (L{LIST}):

  - lives at C{etc/jailkit/bind.list} in the jail, next to the jail's
    jk_lsh policy: C{etc/jailkit} is the jail's own configuration, read from
    outside by the ways in, and never bound from the host;
  - must be a regular file owned by root and not writable by group or
    others, reached from the jail's root through directories of the same
    kind, with no symlink anywhere (L{readBindList});
  - holds one absolute host path per line, as UTF-8; blank lines and lines
    starting with C{#} are ignored; nothing is unquoted or trimmed, so a
    path cannot contain a newline;
  - counts only if it is, byte for byte, the host's record of it
    (L{RECORDS}, written with it by C{jk_init --bind} and C{jk_update}):
    a root inside the jail can rewrite the jail's copy but not the record
    (L{checkRecord}).

An entry is refused (L{RefusedEntry}, one line) unless it is absolute and
normalised (no C{.}, C{..}, C{//} or trailing slash), lies on the safe list
(L{SAFE_PREFIXES} and L{SAFE_ETC}: programs, libraries and shared data,
plus a few named files of C{/etc} that hold no secrets), is neither the jail
nor above or below it, and every component of its host path is owned by
root, not writable by group or others and not a symlink (L{checkHostPath}).
The safe list is an allow list: a new file under C{/etc} or C{/var} holding
a secret is never bound by accident.  An entry missing on the host is not
refused: it is reported and skipped.

Nothing here mounts anything: L{mountPlan} turns a checked list into the
C{BindMount}s for the ways in to make.  Only the standard library and
jailtwist's light modules are imported (the login path reads the list).
"""

import os
import stat

from jailtwist.errors import JailtwistError
from jailtwist.jail import (
    BIND_LIST as LIST, TrustedFileError, bindListPresent as listPresent,
    openTrustedComponent, readTrusted, requireTrusted, trustedWalk)

#: Where the bind list lives, relative to the jail's root.

#: The first lines of a list written by jailtwist.
HEADER = (b"# jailtwist bind list: host paths bound read-only (nosuid, nodev)"
          b" at the same\n# path in this jail when it is entered.  Written by"
          b" jk_init --bind and jk_update;\n# one absolute host path per line"
          b" (see jk_init(8)).\n")

#: Host trees whose contents may be bound: programs, libraries, shared
#: data.  C{/lib*}, C{/bin} and C{/sbin} are real directories only on hosts
#: without usrmerge (elsewhere they are symlinks, and so never an entry).
SAFE_PREFIXES = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64",
                 "/libx32", "/opt")

#: Files and directories of C{/etc} that may be bound: loader, name service,
#: network, time zone, shell, terminal, editor and TLS trust configuration.
#: None of them holds a secret; accounts (C{passwd}, C{group}) are the
#: jail's own.
SAFE_ETC = frozenset("/etc/" + name for name in """
    ld.so.cache ld.so.conf ld.so.conf.d nsswitch.conf host.conf hosts
    resolv.conf gai.conf protocols services networks rpc mdns.allow
    localtime timezone motd issue issue.net shells bash.bashrc bashrc
    profile profile.d inputrc environment.d terminfo vim joe nanorc lesskey
    wgetrc mc perl mime.types magic magic.mime mailcap papersize
    locale.alias alternatives ssl/certs ssl/openssl.cnf ca-certificates.conf
    gitconfig screenrc tmux.conf debian_version lsb-release os-release
    python3 manpath.config
""".split())

#: Trees that are never bound, named in the refusal so the reason is plain
#: (everything else off the safe list is refused as "not on the safe list").
NEVER = ("/proc", "/sys", "/dev", "/home", "/root", "/run", "/tmp",
         "/var/tmp", "/boot", "/etc/shadow", "/etc/gshadow", "/etc/passwd",
         "/etc/group", "/etc/sudoers", "/etc/ssh", "/etc/ssl/private",
         "/etc/jailkit", "/var", "/srv", "/mnt", "/media")

#: Where the host keeps its own record of each bind jail's list (one file
#: per jail, named by L{recordName}): root's, outside every jail, so a root
#: inside a jail cannot forge the list that counts (L{readRecord}).
RECORDS = "/etc/jailkit/bind.d"

_MAX_LIST = 4 * 1024 * 1024
_DIRECTORY = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

class _Record:
    """
    A small immutable record (a plain class: C{collections.namedtuple}
    costs about 2 ms of import on the launch and login paths).
    """

    __slots__ = ()
    _fields = ()

    def __init__(self, *values):
        for name, value in zip(self._fields, values, strict=True):
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} is immutable")

    def _values(self):
        return tuple(getattr(self, name) for name in self._fields)

    def _replace(self, **changes):
        values = dict(zip(self._fields, self._values()))
        values.update(changes)
        return type(self)(*(values[name] for name in self._fields))

    def __iter__(self):
        return iter(self._values())

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self):
        return hash(self._values())

    def __repr__(self):
        return f"{type(self).__name__}{self._values()!r}"


class BindMount(_Record):
    """
    One mount for the ways in to make: bind C{source} (a host path) at
    C{target} (the same path, as seen inside the jail), read-only, nosuid,
    nodev; C{directory} says whether it is a directory or a file (the mount
    point in the jail must be of the same kind).
    """

    __slots__ = _fields = ("source", "target", "directory")


class HostPath(_Record):
    """
    A host path that passed L{checkHostPath}: C{directory} as in
    L{BindMount}.
    """

    __slots__ = _fields = ("path", "directory")


class BindListError(JailtwistError):
    """
    A bind list that cannot be trusted or read; the message says why and
    what to do.
    """


class RefusedEntry(JailtwistError):
    """
    An entry that must not be bound.

    @ivar path: the entry as given.
    @ivar reason: why, in a few words.
    @ivar onHost: whether the entry itself is acceptable and what the host
        has at that path is not (a symlink, an untrusted directory, a
        device): after a host upgrade, the path is worth resolving again.
    """

    def __init__(self, path, reason, onHost=False):
        # A path that is not plainly absolute and printable is quoted, so
        # the refusal stays one line that shows what was written.
        shown = path if path.startswith("/") and path.isprintable() \
            else repr(path)
        super().__init__(f"{shown}: refused, {reason}")
        self.path = path
        self.reason = reason
        self.onHost = onHost


class MissingEntry(JailtwistError):
    """
    An entry the host does not have (reported and skipped, not refused).
    """

    def __init__(self, path):
        super().__init__(f"{path}: not on this host, skipped")
        self.path = path


def isUnder(path, prefix):
    """
    Whether C{path} is C{prefix} or below it (whole components).
    """
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


_SAFE = frozenset(SAFE_PREFIXES) | SAFE_ETC


def _lineage(path):
    """
    The normalised absolute C{path} and each of its ancestors but C{/}.
    """
    lineage = {path}
    while True:
        path = path.rsplit("/", 1)[0]
        if not path:
            return lineage
        lineage.add(path)


def checkSyntax(path, jail=None):
    """
    The checks on an entry's text alone: absolute, normalised, on the safe
    list, not overlapping the jail.

    @param jail: the jail's directory on the host (a C{str}), or C{None}.
    @raise RefusedEntry: saying why.
    """
    if not path.startswith("/"):
        raise RefusedEntry(path, "not an absolute path")
    if "\0" in path or "\n" in path:
        raise RefusedEntry(path, "contains a NUL or newline")
    if path == "/":
        raise RefusedEntry(path, "the whole host cannot be bound")
    if os.path.normpath(path) != path or path.startswith("//"):
        raise RefusedEntry(path, "not normalised (no '.', '..', '//' or "
                                 "trailing '/'): write "
                                 + os.path.normpath(path))
    if jail is not None and (isUnder(path, jail) or isUnder(jail, path)):
        raise RefusedEntry(path, f"overlaps the jail {jail} (it would "
                                 f"appear inside itself)")
    # isUnder(path, p) for a normalised path is "p is one of its
    # ancestors or itself": set look-ups, not a scan of every list.
    lineage = _lineage(path)
    for prefix in NEVER:
        if prefix in lineage:
            raise RefusedEntry(path, f"{prefix} is never bound into a jail")
    if lineage.isdisjoint(_SAFE):
        raise RefusedEntry(path, "not on the safe list (/usr, /bin, /sbin, "
                                 "/lib*, /opt and named /etc files; see "
                                 "jk_init(8))")


class _Walker:
    """
    L{jailtwist.jail.trustedWalk} for many paths under one root, each
    directory on the way opened and checked once (the binds of a jail share
    most of their parents: /usr, /usr/lib, ...; this keeps a login through
    a bind jail within a few milliseconds of one through a copied jail).
    """

    def __init__(self, root):
        self.root = root
        self.directories = {}

    def close(self):
        for fd in self.directories.values():
            os.close(fd)
        self.directories = {}

    def _directory(self, walked):
        """
        The checked directory C{walked} ("" for the root), opened once.
        """
        if not walked:
            return self.root
        if walked in self.directories:
            return self.directories[walked]
        parent, name = walked.rsplit("/", 1)
        fd, st = openTrustedComponent(self._directory(parent), name, walked)
        try:
            if not stat.S_ISDIR(st.st_mode):
                raise TrustedFileError(f"{walked} is not a directory")
            requireTrusted(walked, st)
        except BaseException:
            os.close(fd)
            raise
        self.directories[walked] = fd
        return fd

    def open(self, inner, final=None):
        """
        As C{trustedWalk(root, inner, final=final)}.
        """
        parts = [p for p in inner.split("/") if p and p != "."]
        if not parts or ".." in parts:
            raise TrustedFileError(f"{inner} is not a plain path")
        walked = "/" + "/".join(parts)
        parent = walked.rsplit("/", 1)[0]
        fd, st = openTrustedComponent(self._directory(parent), parts[-1],
                                      walked)
        try:
            (final or requireTrusted)(walked, st)
        except BaseException:
            os.close(fd)
            raise
        return fd


def openHostPath(path, walker=None):
    """
    Open the host path C{path} from C{/} one component at a time with
    C{O_NOFOLLOW}, requiring every component to be owned by root, not
    writable by group or others and not a symlink.  The ways in mount
    exactly this object (L{prepareBinds} pins it), so nothing swapped in
    after the check is bound.

    @param walker: a L{_Walker} on C{/} shared by several calls.
    @return: an C{O_PATH} descriptor (close it).
    @raise RefusedEntry: for a symlink or an untrusted component.
    @raise MissingEntry: if a component does not exist.
    """
    own = walker is None
    if own:
        walker = _Walker(os.open("/", os.O_PATH | os.O_DIRECTORY
                                 | os.O_CLOEXEC))
    try:
        return walker.open(path)
    except TrustedFileError as e:
        if str(e).endswith(" does not exist"):
            raise MissingEntry(path) from None
        raise RefusedEntry(path, f"host path untrusted: {e}",
                           onHost=True) from None
    finally:
        if own:
            walker.close()
            os.close(walker.root)


def checkHostPath(path, jail=None, walker=None, keep=None):
    """
    Every check on one entry: L{checkSyntax}, then the host path itself
    (L{openHostPath}); it must be a regular file or a directory.

    @param walker: as for L{openHostPath}.
    @param keep: a C{dict} in which to keep the checked descriptor, under
        C{path}, instead of closing it.
    @return: a L{HostPath}.
    @raise RefusedEntry: saying why.
    @raise MissingEntry: if the host does not have it.
    """
    checkSyntax(path, jail)
    fd = openHostPath(path, walker)
    try:
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise RefusedEntry(path, "neither a regular file nor a directory "
                                     "(devices are the jail's own, in dev/)",
                               onHost=True)
        if keep is not None:
            keep[path], fd = fd, None
    finally:
        if fd is not None:
            os.close(fd)
    return HostPath(path, stat.S_ISDIR(mode))


def parseBindList(data):
    """
    The entries of a list's text.

    @param data: the list's content (C{bytes}).
    @return: C{(lineNumber, path)} pairs, in file order.
    """
    entries = []
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line or line.startswith(b"#"):
            continue
        entries.append((number, os.fsdecode(line)))
    return entries


def formatBindList(paths):
    """
    The text of a list naming C{paths} (sorted, each once).

    @raise RefusedEntry: for a path that cannot be written as a line.
    """
    lines = []
    for path in sorted(set(paths)):
        if "\n" in path or "\0" in path:
            raise RefusedEntry(path, "contains a NUL or newline")
        lines.append(os.fsencode(path) + b"\n")
    return HEADER + b"".join(lines)


def readBindList(jailRoot):
    """
    The bind list of the jail whose root directory descriptor is
    C{jailRoot}, read without following any symlink and only if it and
    every directory on the way are root-owned and not writable by group or
    others.

    @return: the list's content (C{bytes}), or C{None} if the jail has no
        list (it is not a bind jail).
    @raise BindListError: if there is a list that cannot be trusted.
    """
    if not listPresent(jailRoot):
        return None
    try:
        return readTrusted(jailRoot, LIST, limit=_MAX_LIST)
    except TrustedFileError as e:
        raise BindListError(f"bind list {LIST} cannot be trusted: {e} (it "
                            f"and its directories must be owned by root "
                            f"and writable by root only)") from None


def recordName(location):
    """
    The file name under L{RECORDS} of the record for the jail at
    C{location}: its normalised path with C{%} and C{/} escaped, so a
    moved jail has no record until C{jk_update} writes one.
    """
    location = os.path.normpath(location)
    return location.replace("%", "%25").replace("/", "%2F") + ".list"


def readRecord(location):
    """
    The host's record of the bind list of the jail at C{location}, read as
    L{readBindList} reads the jail's (no symlink, root-owned and root-only
    writable all the way from C{/}).

    @return: its content (C{bytes}), or C{None} if there is none.
    @raise BindListError: if there is a record that cannot be trusted.
    """
    name = RECORDS.lstrip("/") + "/" + recordName(location)
    root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return readTrusted(root, name, limit=_MAX_LIST)
    except TrustedFileError as e:
        if str(e).endswith(" does not exist"):
            return None
        raise BindListError(f"the host's record of the bind list of "
                            f"{location} cannot be trusted: {e}") from None
    finally:
        os.close(root)


def checkRecord(data, location):
    """
    Require the jail's list C{data} to be the one jk_init --bind or
    jk_update last wrote, as the host recorded it (L{RECORDS}): a root
    inside the jail can rewrite the jail's own copy, never the record.

    @raise BindListError: one line saying what to run.
    """
    record = readRecord(location)
    if record is None:
        raise BindListError(
            f"{location}: the host has no record of its bind list in "
            f"{RECORDS} (the jail was moved, or built by an older "
            f"jailtwist): run jk_update -j {location} to record it")
    if record != data:
        raise BindListError(
            f"{location}/{LIST} differs from the host's record "
            f"{RECORDS}/{recordName(location)} (changed inside the jail or "
            f"by hand): run jk_update -j {location} to restore it, or "
            f"jk_init --bind to change it")


def _unescapeMount(field):
    # /proc/self/mountinfo escapes space, tab, newline and backslash.
    for code, char in (("\\040", " "), ("\\011", "\t"),
                       ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def mountPoints():
    """
    The mount points this process sees (from C{/proc/self/mountinfo}).
    """
    with open("/proc/self/mountinfo", "rb") as f:
        data = f.read().decode("utf-8", "surrogateescape")
    points = set()
    for line in data.splitlines():
        fields = line.split(" ", 5)
        if len(fields) > 4:
            point = fields[4]
            points.add(_unescapeMount(point) if "\\" in point else point)
    return points


def checkSubmounts(plan, points):
    """
    Refuse a bound directory that has a mount below it: a bind carries the
    mount it is on only, so what the host hides under the submount would
    show in the jail.

    @param plan: L{BindMount}s.
    @param points: from L{mountPoints}.
    @return: L{RefusedEntry}s (one per refused mount, in plan order).
    """
    refused = []
    for mount in plan:
        if not mount.directory:
            continue
        below = sorted(p for p in points
                       if p != mount.source and isUnder(p, mount.source))
        if below:
            refused.append(RefusedEntry(
                mount.source, f"{below[0]} is a mount point below it (its "
                              f"submounts would not be bound and what they "
                              f"cover would show); bind the paths beside "
                              f"it instead", onHost=True))
    return refused


class CheckedList:
    """
    A bind list checked entry by entry.

    @ivar accepted: L{HostPath}s that may be bound, in list order.
    @ivar refused: L{RefusedEntry}s (one line each).
    @ivar missing: L{MissingEntry}s (reported and skipped).
    @ivar lines: the line number of each entry's path.
    """

    def __init__(self):
        self.accepted = []
        self.refused = []
        self.missing = []
        self.lines = {}


def checkEntries(paths, jail=None, keep=None):
    """
    Check every entry with L{checkHostPath} (the host's directories on
    the way opened once for all of them).

    @param paths: entry texts, or C{(lineNumber, path)} pairs from
        L{parseBindList}.
    @param jail: the jail's directory on the host.
    @param keep: as for L{checkHostPath}.
    @rtype: L{CheckedList}
    """
    result = CheckedList()
    seen = set()
    walker = _Walker(os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC))
    try:
        for item in paths:
            number, path = item if isinstance(item, tuple) else (None, item)
            if path in seen:
                continue
            seen.add(path)
            result.lines[path] = number
            try:
                result.accepted.append(
                    checkHostPath(path, jail, walker, keep))
            except RefusedEntry as e:
                result.refused.append(e)
            except MissingEntry as e:
                result.missing.append(e)
    finally:
        walker.close()
        os.close(walker.root)
    return result


def mountPlan(accepted):
    """
    The mounts that assemble a jail from checked entries: parents before
    children (so a child mount is never hidden by a later parent mount),
    and entries already covered by a bound parent directory dropped.

    @param accepted: L{HostPath}s (from L{CheckedList.accepted}).
    @return: a list of L{BindMount}.
    """
    plan = []
    covering = set()
    for entry in sorted(accepted, key=lambda e: e.path.split("/")):
        if not covering.isdisjoint(_lineage(entry.path)):
            continue
        plan.append(BindMount(entry.path, entry.path, entry.directory))
        if entry.directory:
            covering.add(entry.path)
    return plan


def openMountPoint(jailRoot, mount, walker=None):
    """
    Open the mount point of C{mount} inside the jail whose root directory
    descriptor is C{jailRoot}, checked so that nothing the jail's users can
    change is mounted over or shadows the bound path: no symlink on the
    way, every directory owned by root and not writable by group or others,
    and the mount point itself of the source's kind (directory or regular
    file), owned by root and not writable by group or others.

    @param mount: a L{BindMount}.
    @param walker: a L{_Walker} on C{jailRoot} shared by several calls.
    @return: an C{O_PATH} descriptor of the mount point (close it); mount
        on it (not on its path) so nothing swapped in later is used.
    @raise BindListError: saying what is wrong.
    """
    kind = "directory" if mount.directory else "regular file"

    def final(walked, st):
        isDirectory = stat.S_ISDIR(st.st_mode)
        if isDirectory != mount.directory or not (
                isDirectory or stat.S_ISREG(st.st_mode)):
            raise TrustedFileError(f"{walked} is not a {kind}")
        if st.st_uid != 0 or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise TrustedFileError(f"{walked} is not owned by root or is "
                                   f"writable by group or others")
    try:
        if walker is not None:
            return walker.open(mount.target, final)
        return trustedWalk(jailRoot, mount.target, final=final)
    except TrustedFileError as e:
        raise BindListError(f"mount point for {mount.source}: {e}") from None


def loadPlan(jail):
    """
    Read, check and plan the binds of C{jail}, for the ways in.

    @param jail: a L{jailtwist.jail.Jail}.
    @return: C{(plan, checked)}: the L{BindMount}s (empty for a jail that
        is not a bind jail) and the L{CheckedList} (its C{refused} and
        C{missing} for the user).
    @raise BindListError: if the list cannot be trusted.
    """
    root = jail.openRoot()
    try:
        data = readBindList(root)
    finally:
        os.close(root)
    checked = checkEntries(parseBindList(data or b""), jail.location)
    return mountPlan(checked.accepted), checked


class PreparedBinds:
    """
    The binds of one entry into a jail, checked and pinned by the process
    that still has the real credentials (before any user namespace, in
    which root-owned files show as unmapped): for each mount of the plan,
    an C{O_PATH} descriptor of the checked host source and of the checked
    mount point.  L{jailtwist.enter.assembleBinds} mounts exactly these
    objects: it reopens each path in the entry's own mount namespace and
    requires the same device and inode.

    @ivar plan: the L{BindMount}s.
    @ivar checked: the L{CheckedList} (C{missing} is for the user).
    @ivar pins: C{(mount, hostFd, pointFd)} for each mount of the plan.
    @ivar rootFd: an C{O_PATH} descriptor of the jail's root (a duplicate
        of the one given to L{prepareBinds}).
    """

    def __init__(self, plan, checked, pins, rootFd):
        self.plan = plan
        self.checked = checked
        self.pins = pins
        self.rootFd = rootFd

    def covering(self, inner):
        """
        The mount of the plan that C{inner} (a path inside the jail) is
        bound from, or C{None} if it is the jail's own.
        """
        for mount in self.plan:
            if isUnder(inner, mount.target):
                return mount
        return None

    def close(self):
        for mount, hostFd, pointFd in self.pins:
            os.close(hostFd)
            os.close(pointFd)
        self.pins = []
        if self.rootFd is not None:
            os.close(self.rootFd)
            self.rootFd = None


class BoundView:
    """
    A bind jail as a jailed process sees it once its binds are mounted, for
    lookups made before entering it: a program inside a directory the jail
    binds whole is not in the jail's own tree (its mount point is empty).

    Paths resolve as in L{jailtwist.jail.Jail.open}, except that where the
    plan mounts something, the walk goes on in the pinned host source of
    L{PreparedBinds} instead (symlinks there resolve inside the jail, as
    they will).  Only lookups (C{O_PATH}) are possible.
    """

    def __init__(self, jail, prepared):
        self.jail = jail
        self.location = jail.location
        self._sources = {mount.target: hostFd
                         for mount, hostFd, pointFd in prepared.pins}
        # Below the deepest mount nothing is mounted: a deep path costs no
        # more than in the jail's own tree.
        self._depth = max((target.count("/") for target in self._sources),
                          default=0)

    def _mounted(self, trail, part):
        if len(trail) >= self._depth:
            return None
        return self._sources.get("/" + "/".join(trail + [part]))

    def open(self, inner, flags=os.O_PATH, mode=0o644, followLast=True,
             root=None):
        return self.jail.open(inner, flags, mode, followLast, root,
                              overlay=self._mounted)


def prepareBinds(jailRoot, location):
    """
    Read, check, plan and pin the binds of the jail whose root directory
    descriptor is C{jailRoot} (the descriptor the way in enters: the list
    is never looked up again by path).

    @param location: the jail's host path (for the overlap check and the
        messages).
    @return: a L{PreparedBinds}, or C{None} if the jail is not a bind jail.
    @raise BindListError: if the list cannot be trusted or is not the
        host's record of it (L{checkRecord}), an entry is refused (the
        first refusal, with its line; a directory with a mount below it is
        refused too, L{checkSubmounts}), or a mount point is unsafe:
        nothing may run in a half-assembled jail.
    """
    data = readBindList(jailRoot)
    if data is None:
        return None
    checkRecord(data, location)
    kept = {}
    pins = []
    prepared = PreparedBinds([], None, pins, os.dup(jailRoot))
    points = _Walker(jailRoot)
    try:
        checked = checkEntries(parseBindList(data), location, kept)
        prepared.checked = checked
        prepared.plan = mountPlan(checked.accepted)
        if not checked.refused:
            checked.refused = checkSubmounts(prepared.plan, mountPoints())
        if checked.refused:
            first = checked.refused[0]
            more = len(checked.refused) - 1
            raise BindListError(
                f"{location}/{LIST} line {checked.lines.get(first.path)}: "
                f"{first}" + (f" (and {more} more refused)" if more else "")
                + "; fix the list (jk_update -j JAIL rewrites it) or run "
                  "jk_check")
        for mount in prepared.plan:
            try:
                pointFd = openMountPoint(jailRoot, mount, points)
            except BindListError as e:
                raise BindListError(f"{location}: {e}") from None
            pins.append((mount, kept.pop(mount.source), pointFd))
    except BaseException:
        prepared.close()
        raise
    finally:
        points.close()
        for fd in kept.values():
            os.close(fd)
    return prepared
