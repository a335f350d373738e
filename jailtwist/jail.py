# -*- test-case-name: tests.test_jail -*-
"""
A jail: its directory, jailkit's safety checks on it, and safe access to the
files inside it.

Every tool that touches a jail goes through L{Jail}:

  - L{Jail.checkSafe} is jailkit's test that a jail may be used at all:
    with C{parents=True} the Python tools' C{chroot_is_safe} (jk_init, jk_cp,
    jk_check), with C{parents=False} the C tools' C{basicjailissafe}
    (jk_chrootsh, jk_uchroot, jk_chrootlaunch).  It raises L{UnsafeJail}
    with one line that says what is wrong and what to do about it.

  - L{Jail.openRoot}, L{Jail.openParent}, L{Jail.open} and L{Jail.readFile}
    reach a path inside the jail the way a process chrooted into it would:
    every component is opened relative to a directory file descriptor with
    C{O_NOFOLLOW}; a symlink met on the way is read and resolved I{inside}
    the jail (an absolute target starts again at the jail's root, C{..}
    never climbs above it).  A symlink or C{..} planted in the jail can
    therefore redirect a read or a write only to somewhere else in the same
    jail, never out of it, and nothing is raced: no path is ever handed to
    the kernel to resolve from the host's root.

  - L{trustedWalk} and L{readTrusted} read a file that decides what runs
    (the jail's passwd, its jk_lsh.ini, its bind list) the stricter way:
    no symlink at all, every component owned by root and not writable by
    group or others.  Logins and bind lists share them.

Module-level only the standard library is imported (login shells use this).
"""

import errno
import os
import stat

from jailtwist.errors import JailtwistError

# Directories under a jail that jailkit's Python tools check (chroot_is_safe)
# plus lib and lib64, which hold every library a jailed program loads.
SAFE_SUBDIRECTORIES = ("etc", "usr", "var", "bin", "dev", "proc", "sbin",
                       "sys", "lib", "lib64")

# Directories under a jail that jailkit's C tools check (basicjailissafe).
BASIC_SUBDIRECTORIES = ("dev", "etc", "lib", "usr", "bin", "sbin")

# Symlinks followed while resolving one path before giving up (the kernel's
# limit is the same).
MAX_SYMLINKS = 40

_DIRECTORY = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeJail(JailtwistError):
    """
    A jail (or one of its parents) that must not be used: wrong owner,
    writable by group or others, a symlink, setuid.  The message is one line
    naming the path, the reason and the fix.

    @ivar path: the offending host path (a C{str}).
    """

    def __init__(self, path, reason, fix, exitCode=None):
        super().__init__(f"{path} {reason}: {fix}", exitCode)
        self.path = path


class Jail:
    """
    A jail directory on the host.

    @ivar location: the jail's absolute, normalised path (a C{str}).
    """

    def __init__(self, path):
        path = getattr(path, "path", path)
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not path or not path.startswith("/"):
            raise JailtwistError(
                f"jail {path!r} is not an absolute path: name it from /")
        if "\0" in path:
            raise JailtwistError(f"jail {path!r} contains a NUL byte")
        self.location = os.path.normpath(path).replace("//", "/")

    @property
    def path(self):
        """
        The jail as a L{twisted.python.filepath.FilePath}.  Imported on
        first use: login shells use L{location} and never load Twisted.
        """
        from twisted.python.filepath import FilePath
        return FilePath(self.location)

    def __repr__(self):
        return f"Jail({self.location!r})"

    def __eq__(self, other):
        return isinstance(other, Jail) and other.location == self.location

    def __hash__(self):
        return hash(self.location)

    # -- safety -----------------------------------------------------------

    def checkSafe(self, parents=True, missingOk=False):
        """
        Refuse a jail that a jailed user could tamper with.

        With C{parents=True} (jailkit's Python C{chroot_is_safe}): the jail,
        its C{etc usr var bin dev proc sbin sys lib lib64} when present, and
        every parent directory up to but not including C{/} must be
        directories owned by root:root and not writable by group or others.
        A subdirectory may instead be a symlink whose target starts with
        C{usr/} (usrmerge: C{bin -> usr/bin}).

        With C{parents=False} (jailkit's C C{basicjailissafe}): the jail
        must be a directory (not a symlink) owned by root:root, not writable
        by group or others and not setuid/setgid; its C{dev etc lib usr bin
        sbin}, when present, resolved the way a jailed process would see
        them (symlinks followed inside the jail, never to the host), must be
        owned by root:root and not writable by group or others.

        @param missingOk: accept a jail that does not exist yet (jk_init
            creates it) as long as the directories above it are safe.
        @raise UnsafeJail: naming the first offending path.
        """
        jail = self.location
        if jail == "/":
            raise UnsafeJail("/", "cannot be a jail",
                             "build the jail in a directory of its own")
        if parents:
            for parent in _parents(jail):
                _checkDirectory(parent, allowUsrLink=False, parent=True)
        try:
            st = os.lstat(jail)
        except FileNotFoundError:
            if missingOk:
                if parents:
                    return
                raise UnsafeJail(jail, "does not exist",
                                 "create it (jk_init builds jails)")
            raise UnsafeJail(jail, "does not exist",
                             "create it first, e.g. with jk_init -j " + jail)
        except OSError as e:
            raise UnsafeJail(jail, f"cannot be examined ({e.strerror})",
                             "check the path")
        if stat.S_ISLNK(st.st_mode):
            raise UnsafeJail(jail, "is a symlink",
                             "name the real directory ("
                             + os.path.realpath(jail) + ") instead")
        _checkStat(jail, st, allowUsrLink=False, setuid=not parents)
        if parents:
            for name in SAFE_SUBDIRECTORIES:
                _checkDirectory(os.path.join(jail, name), allowUsrLink=True,
                                missingOk=True)
        else:
            root = self.openRoot()
            try:
                for name in BASIC_SUBDIRECTORIES:
                    self._checkResolvedDirectory(root, name)
            finally:
                os.close(root)

    def _checkResolvedDirectory(self, root, name):
        try:
            fd = _resolveDirectory(root, name.split("/"), create=False)
        except FileNotFoundError:
            return
        except OSError as e:
            raise UnsafeJail(os.path.join(self.location, name),
                             f"cannot be examined ({e.strerror})",
                             "make it a real directory owned by root")
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        _checkStat(os.path.join(self.location, name), st,
                   allowUsrLink=False, setuid=True)

    # -- access inside the jail -------------------------------------------

    def openRoot(self):
        """
        Open the jail directory itself.

        @return: an C{O_PATH} directory file descriptor (close it yourself);
            usable as C{dir_fd} for C{os.open}, C{os.stat}, C{os.mkdir}...
        @raise JailtwistError: if the jail is missing, not a directory or a
            symlink.
        """
        try:
            return os.open(self.location, _DIRECTORY)
        except OSError as e:
            if e.errno == errno.ENOTDIR:
                raise JailtwistError(
                    f"{self.location} is not a directory (or is a symlink):"
                    f" name the real jail directory")
            raise JailtwistError(
                f"cannot open jail {self.location}: {e.strerror}")

    def child(self, inner):
        """
        L{hostPath} as a L{twisted.python.filepath.FilePath}.
        """
        from twisted.python.filepath import FilePath
        return FilePath(self.hostPath(inner))

    def hostPath(self, inner):
        """
        The host path (a C{str}) of C{inner} (a path as seen inside the
        jail), purely lexically, with C{..} stopped at the jail root.  For
        messages and for handing to external programs; open files with
        L{openParent}.
        """
        parts = _components(inner)
        clean = []
        for part in parts:
            if part == "..":
                if clean:
                    clean.pop()
            else:
                clean.append(part)
        if not clean:
            return self.location
        return os.path.join(self.location, *clean)

    def openParent(self, inner, create=False, mode=0o755, root=None,
                   followLast=False, overlay=None):
        """
        Resolve every directory of C{inner} inside the jail.

        Each component is opened with C{O_NOFOLLOW} relative to its parent's
        file descriptor; symlinks are resolved inside the jail; C{..} stops
        at the jail root.  The last component is not opened.

        @param inner: a path as seen inside the jail (C{"/etc/passwd"} or
            C{"etc/passwd"}).
        @param create: create missing directories (owned by root, C{mode}).
        @param root: a descriptor from L{openRoot} to resolve from (saves
            reopening the jail for every file); not closed.
        @param followLast: if the last component is a symlink, resolve it
            too (inside the jail), so the name returned is not a symlink.
        @param overlay: what is mounted over parts of the jail, as for
            L{_walk} (then the name may be empty: see there).
        @return: C{(dirFd, name)}: a directory descriptor (the caller closes
            it) and the last component's name, never C{.} or C{..}, and
            empty only as C{overlay} allows.
        @raise OSError: as the kernel reports it (C{ENOENT}, C{ENOTDIR},
            C{ELOOP}...); C{EISDIR} when C{inner} ends at a directory
            without naming an entry in it (C{"/"}, C{"a/.."}).
        """
        ownRoot = root is None
        if ownRoot:
            root = self.openRoot()
        try:
            return _walk(root, _components(inner), create, mode, followLast,
                         overlay=overlay)
        finally:
            if ownRoot:
                os.close(root)

    def realPath(self, inner, root=None):
        """
        The canonical path of C{inner} inside the jail: every symlink
        resolved as a jailed process would see it, C{..} applied.  The last
        component need not exist; the directories above it must.

        @return: an absolute path as seen inside the jail (C{"/"} for the
            root).
        @raise OSError: if a directory on the way is missing or not one.
        """
        ownRoot = root is None
        if ownRoot:
            root = self.openRoot()
        trail = []
        try:
            try:
                dirFd, name = _walk(root, _components(inner), False, 0o755,
                                    True, trail=trail)
            except OSError as e:
                if e.errno != errno.EISDIR:
                    raise
                return "/" + "/".join(trail)
            os.close(dirFd)
            return "/" + "/".join(trail + [name])
        finally:
            if ownRoot:
                os.close(root)

    def open(self, inner, flags=os.O_RDONLY, mode=0o644, followLast=True,
             root=None, overlay=None):
        """
        Open C{inner} inside the jail.

        @param followLast: if the last component is a symlink, resolve it
            inside the jail (as a jailed process would); if false, a symlink
            there fails with C{ELOOP}.
        @param overlay: what is mounted over parts of the jail, as for
            L{_walk}; then only C{O_PATH} opens (lookups) are possible.
        @return: a file descriptor (close it yourself), opened with
            C{flags | O_NOFOLLOW | O_CLOEXEC} on the resolved name.
        """
        if overlay is not None and flags != os.O_PATH:
            raise ValueError("only O_PATH lookups go through an overlay")
        dirFd, name = self.openParent(inner, root=root, followLast=followLast,
                                      overlay=overlay)
        if not name:
            return dirFd
        try:
            return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode,
                           dir_fd=dirFd)
        finally:
            os.close(dirFd)

    def readFile(self, inner, limit=16 * 1024 * 1024):
        """
        The content of C{inner} inside the jail (symlinks resolved inside
        the jail), at most C{limit} bytes.

        @rtype: C{bytes}
        @raise OSError: if it cannot be read.
        """
        fd = self.open(inner, os.O_RDONLY | os.O_NONBLOCK)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(errno.EINVAL, "not a regular file", inner)
            chunks = []
            size = 0
            while size <= limit:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            if size > limit:
                raise OSError(errno.EFBIG, "file too large", inner)
            return b"".join(chunks)
        finally:
            os.close(fd)


def _components(inner):
    inner = getattr(inner, "path", inner)
    if isinstance(inner, bytes):
        inner = os.fsdecode(inner)
    if "\0" in inner:
        raise ValueError(f"{inner!r} contains a NUL byte")
    return [part for part in inner.split("/") if part and part != "."]


def _parents(path):
    """
    The directories above C{path}, from the top, excluding C{/}.
    """
    parts = path.strip("/").split("/")[:-1]
    return ["/" + "/".join(parts[:i + 1]) for i in range(len(parts))]


def _checkDirectory(path, allowUsrLink, missingOk=False, parent=False):
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if missingOk:
            return
        raise UnsafeJail(path, "does not exist",
                         "create it (owned by root:root, mode 0755)")
    except OSError as e:
        raise UnsafeJail(path, f"cannot be examined ({e.strerror})",
                         "check the path")
    _checkStat(path, st, allowUsrLink, setuid=False, parent=parent)


def _checkStat(path, st, allowUsrLink, setuid, parent=False):
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(path)
        if (allowUsrLink and target.startswith("usr/")
                and ".." not in target.split("/")):
            if st.st_uid != 0 or st.st_gid != 0:
                raise UnsafeJail(path, f"is owned by {st.st_uid}:"
                                       f"{st.st_gid}, not root:root",
                                 f"chown -h root:root {path}")
            return
        if allowUsrLink:
            raise UnsafeJail(path, f"is a symlink to {target}",
                             "only usrmerge links like bin -> usr/bin are "
                             "allowed; replace it with a real directory")
        raise UnsafeJail(path, f"is a symlink to {target}",
                         "use the real directory instead")
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeJail(path, "is not a directory",
                         "remove it or replace it with a directory")
    elsewhere = ", or build the jail elsewhere (e.g. under /srv)" \
        if parent else ""
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and \
            st.st_mode & stat.S_ISVTX and parent:
        # /tmp and its like: changing them is not the answer.
        raise UnsafeJail(path, "is writable by group or others (a shared "
                               "directory like /tmp)",
                         "build the jail elsewhere, under directories "
                         "owned by root that only root can write "
                         "(e.g. /srv/jails)")
    if st.st_uid != 0 or st.st_gid != 0:
        raise UnsafeJail(path, f"is owned by {st.st_uid}:{st.st_gid}, "
                               f"not root:root",
                         f"chown root:root {path} and chmod go-w {path}"
                         + elsewhere)
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeJail(path, "is writable by group or others",
                         f"chmod go-w {path}" + elsewhere)
    if setuid and st.st_mode & (stat.S_ISUID | stat.S_ISGID):
        raise UnsafeJail(path, "is setuid or setgid", f"chmod ug-s {path}")


def _resolveDirectory(root, parts, create, mode=0o755):
    """
    Walk C{parts} (all directories) from the directory descriptor C{root},
    resolving symlinks inside C{root}.

    @return: a new descriptor of the directory reached.
    """
    return _walk(root, parts, create, mode, True, wantDirectory=True)


def _walk(root, parts, create, mode, followLast, wantDirectory=False,
          trail=None, overlay=None):
    """
    Walk C{parts} from the directory descriptor C{root}, which acts as the
    root: an absolute symlink target restarts there and C{..} stops there.
    Every directory is opened with C{O_NOFOLLOW} relative to its parent, so
    nothing is resolved by the kernel from anywhere else.

    @param trail: a list that is left holding the names of the directories
        from C{root} to the one returned (the canonical path).
    @param overlay: for a jail whose parts are mounted over it: called with
        the names of the directories walked so far and the next name (the
        canonical path C{/usr/lib} is C{(["usr"], "lib")}; the list must
        not be kept), it returns a descriptor of what is mounted there (the
        walk continues in a duplicate of it) or C{None}.  A last component
        found in it is returned as C{(descriptor, "")}: the descriptor is
        the thing itself.  Not with C{create}.
    @return: C{(dirFd, name)}, or with C{wantDirectory} the descriptor of
        the directory that C{parts} names.
    """
    if trail is None:
        trail = []
    del trail[:]
    stack = [os.dup(root)]
    pending = [p for p in reversed(parts) if p not in ("", ".")]
    links = 0
    created = 0

    if overlay is not None and create:
        raise ValueError("nothing is created through an overlay")

    def mounted(part):
        if overlay is None:
            return None
        return overlay(trail, part)

    def expand(part):
        nonlocal links
        links += 1
        if links > MAX_SYMLINKS:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), part)
        target = os.readlink(part, dir_fd=stack[-1])
        if target.startswith("/"):
            while len(stack) > 1:
                os.close(stack.pop())
            del trail[:]
        pending.extend(p for p in reversed(target.split("/"))
                       if p not in ("", "."))

    try:
        while pending:
            part = pending.pop()
            if part == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                    trail.pop()
                continue
            if not pending and not wantDirectory:
                # What is mounted there hides what the jail has there.
                over = mounted(part)
                if over is not None:
                    return os.dup(over), ""
                if followLast:
                    try:
                        st = os.stat(part, dir_fd=stack[-1],
                                     follow_symlinks=False)
                    except FileNotFoundError:
                        st = None
                    if st is not None and stat.S_ISLNK(st.st_mode):
                        expand(part)
                        continue
                return stack.pop(), part
            over = mounted(part)
            if over is not None:
                if not stat.S_ISDIR(os.fstat(over).st_mode):
                    raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR),
                                  part)
                stack.append(os.dup(over))
                trail.append(part)
                continue
            try:
                fd = os.open(part, _DIRECTORY, dir_fd=stack[-1])
            except FileNotFoundError:
                if not create:
                    raise
                created += 1
                if created > 4096:
                    raise OSError(errno.EAGAIN, "directory keeps vanishing",
                                  part)
                try:
                    os.mkdir(part, mode, dir_fd=stack[-1])
                    os.chown(part, 0, 0, dir_fd=stack[-1],
                             follow_symlinks=False)
                    os.chmod(part, mode, dir_fd=stack[-1],
                             follow_symlinks=False)
                except FileExistsError:
                    pass
                pending.append(part)
                continue
            except NotADirectoryError:
                st = os.stat(part, dir_fd=stack[-1], follow_symlinks=False)
                if not stat.S_ISLNK(st.st_mode):
                    raise
                expand(part)
                continue
            stack.append(fd)
            trail.append(part)
        if wantDirectory:
            return stack.pop()
        raise OSError(errno.EISDIR, os.strerror(errno.EISDIR))
    finally:
        for fd in stack:
            os.close(fd)


# -- files of a jail that decide what runs, read from outside it -------------

#: Where a bind jail (C{jk_init --bind}) keeps its list of bound host paths
#: (L{jailtwist.bindlist}); here so that a way in can tell a copied jail
#: without importing that module.
BIND_LIST = "etc/jailkit/bind.list"


def bindListPresent(jailRoot):
    """
    Whether the jail whose root directory descriptor is C{jailRoot} has a
    bind list at L{BIND_LIST}: something is there, or a symlink stands on
    the way to it (a symlink is never followed;
    L{jailtwist.bindlist.readBindList} then refuses it rather than taking
    the jail for one without binds).
    """
    fd = os.dup(jailRoot)
    try:
        parts = BIND_LIST.split("/")
        for i, part in enumerate(parts):
            st = os.stat(part, dir_fd=fd, follow_symlinks=False)
            if i == len(parts) - 1 or stat.S_ISLNK(st.st_mode):
                return True
            child = os.open(part, _DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
    except OSError:
        return False
    finally:
        os.close(fd)


def hasBindList(jailPath):
    """
    Whether the jail directory C{jailPath} is a bind jail
    (L{bindListPresent}).
    """
    try:
        root = os.open(jailPath, _DIRECTORY)
    except OSError:
        return False
    try:
        return bindListPresent(root)
    finally:
        os.close(root)


class TrustedFileError(Exception):
    """
    A file that is missing, or that the account could have changed.
    """


def trustedWalk(root, inner, owner=0, final=None):
    """
    Walk C{inner} from the directory descriptor C{root} without following
    any symlink, requiring every directory on the way to be owned by
    C{owner} (root) and not writable by group or others.

    @param final: called with the last component's C{stat} result; by
        default it must satisfy the same rule.
    @return: an C{O_PATH} descriptor of the last component (close it).
    @raise TrustedFileError: naming the offending path.
    """
    parts = [p for p in inner.split("/") if p and p != "."]
    if not parts or ".." in parts:
        raise TrustedFileError(f"{inner} is not a plain path")
    fd = os.dup(root)
    try:
        walked = ""
        for i, part in enumerate(parts):
            walked += "/" + part
            new, st = openTrustedComponent(fd, part, walked)
            os.close(fd)
            fd = new
            last = i == len(parts) - 1
            if last and final is not None:
                final(walked, st)
                continue
            if not last and not stat.S_ISDIR(st.st_mode):
                raise TrustedFileError(f"{walked} is not a directory")
            requireTrusted(walked, st, owner)
        result, fd = fd, None
        return result
    finally:
        if fd is not None:
            os.close(fd)


def openTrustedComponent(parent, name, walked):
    """
    One step of a trusted walk: open C{name} in the directory descriptor
    C{parent} (C{O_PATH}), refusing a symlink.

    @param walked: the path so far, for messages.
    @return: C{(descriptor, stat)} (close the descriptor).
    @raise TrustedFileError: naming C{walked}.
    """
    try:
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC,
                     dir_fd=parent)
    except FileNotFoundError:
        raise TrustedFileError(f"{walked} does not exist")
    except OSError as e:
        raise TrustedFileError(f"{walked}: {e.strerror}")
    st = os.fstat(fd)
    if stat.S_ISLNK(st.st_mode):
        os.close(fd)
        raise TrustedFileError(f"{walked} is a symlink")
    return fd, st


def requireTrusted(walked, st, owner=0):
    """
    The rule of a trusted walk: C{st} (of C{walked}) belongs to C{owner}
    (root) and is not writable by group or others.

    @raise TrustedFileError: naming C{walked}.
    """
    if st.st_uid != owner:
        raise TrustedFileError(f"{walked} is not owned by root")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise TrustedFileError(f"{walked} is writable by group or others")


def readTrusted(root, inner, limit=4 * 1024 * 1024):
    """
    The content of the regular file C{inner} under C{root}, reached by
    L{trustedWalk} (owned by root, not writable by group or others, no
    symlinks, on a path of such directories).

    @raise TrustedFileError: if there is no such file.
    """
    def regular(walked, st):
        if not stat.S_ISREG(st.st_mode):
            raise TrustedFileError(f"{walked} is not a regular file")
        if st.st_uid != 0 or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise TrustedFileError(f"{walked} is not owned by root or is "
                                   f"writable by group or others")
    pathFd = trustedWalk(root, inner, final=regular)
    try:
        fd = os.open(f"/proc/self/fd/{pathFd}",
                     os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as e:
        raise TrustedFileError(f"{inner}: {e.strerror}")
    finally:
        os.close(pathFd)
    try:
        data = os.read(fd, limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise TrustedFileError(f"{inner} is larger than {limit} bytes")
    return data
