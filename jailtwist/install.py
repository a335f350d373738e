# -*- test-case-name: tests.test_install -*-
"""
Copying host files into a jail safely: the engine behind jk_cp, jk_init and
jk_update.

Every file lands at the same path inside the jail as on the host.  The
jail is treated as hostile all the way down:

  - every directory inside the jail is reached from the jail's root
    descriptor one component at a time with C{O_NOFOLLOW}; a symlink found
    in the jail is resolved I{inside} the jail (L{jailtwist.jail}), so a
    planted symlink or C{..} can never make a write land outside it;
  - a file is written under a temporary name in its final directory and
    renamed over the old one, so a reader (or a full disk, or a kill) never
    sees half a file, and a symlink planted at the final name is replaced,
    never followed;
  - setuid and setgid bits are removed unless asked for (jailkit's
    C{paths_w_setuid}, C{jk_cp -s}); a hardlink (C{-k}) is never made to a
    setuid, setgid or file-capability program, because a link shares the
    host's inode and with it the privilege;
  - device nodes keep their full major and minor numbers.

Where the host has symlinked directories (usrmerge's C{/lib -> usr/lib}),
the jail gets the same symlinks, so programs find their files at the paths
they were built for.  Libraries come from L{jailtwist.elf.ElfResolver}.
"""

import collections
import errno
import glob
import itertools
import os
import shutil
import stat
import subprocess

from jailtwist.config import Section, appendSection, hasSection
from jailtwist.elf import ElfResolver, ldSoConfFiles
from jailtwist.errors import JailtwistError
from jailtwist.passwd import (AccountFiles, GroupEntry, parseGroup,
                              parsePasswd, replaceFile)

_DIRECTORY = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_PRIVILEGE_BITS = stat.S_ISUID | stat.S_ISGID
_CAPABILITY = "security.capability"
_MAX_HOPS = 40
_OPEN_DIRECTORIES = 256
_tempCounter = itertools.count()


class InstallError(JailtwistError):
    """
    A file that could not be put into the jail; the message names it.
    """


class Missing:
    """
    Something asked for that this host does not have.

    @ivar path: the name or path asked for.
    @ivar reason: why it is missing (C{"does not exist"}, C{"needed by
        /usr/bin/x, not found"}).
    """

    def __init__(self, path, reason):
        self.path = path
        self.reason = reason

    def __str__(self):
        return f"{self.path} ({self.reason})"

    def __repr__(self):
        return f"Missing({self.path!r}, {self.reason!r})"


class Installer:
    """
    Puts host files into one jail.

    Use it as a context manager (it holds directory descriptors).

    @param jail: the L{jailtwist.jail.Jail}; it must exist.
    @param resolver: the L{ElfResolver} to find libraries with (shared
        between installers to share its cache).
    @param force: replace files that already exist in the jail (jailkit's
        C{-f}); without it an existing file is left alone.
    @param hardlink: hardlink instead of copying where possible (C{-k});
        never for privileged programs, falls back to copying.
    @param report: called as C{report(action, path)} for everything done:
        actions C{copy link symlink mkdir mknod exists strip}.
    @ivar missing: L{Missing} things found while installing.
    @ivar counts: a C{Counter} of actions.
    @ivar bytes: bytes copied.
    @ivar changes: how many entries were created or replaced.
    @ivar elfAdded: whether an ELF file (program or library) was created or
        replaced: the jail's C{ld.so.cache} needs refreshing.
    """

    def __init__(self, jail, resolver=None, force=False, hardlink=False,
                 report=None):
        self.jail = jail
        self.resolver = resolver if resolver is not None else ElfResolver()
        self.force = force
        self.hardlink = hardlink
        self._report = report or (lambda action, path: None)
        self.missing = []
        self.counts = collections.Counter()
        self.bytes = 0
        self.changes = 0
        self.elfAdded = False
        self._needLdSoConf = False
        self._root = jail.openRoot()
        self._dirs = collections.OrderedDict()
        self._done = set()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        while self._dirs:
            _, (fd, _) = self._dirs.popitem()
            os.close(fd)
        if self._root is not None:
            os.close(self._root)
            self._root = None

    @property
    def changed(self):
        """
        Whether anything in the jail was created or replaced.
        """
        return self.changes > 0

    def _note(self, action, path):
        self.counts[action] += 1
        if action not in ("exists", "strip"):
            self.changes += 1
        self._report(action, path)

    # -- public operations ------------------------------------------------

    def install(self, path, keepSetuid=False, keepOwner=True,
                libraries=True):
        """
        Put the host file, directory, symlink or device C{path} into the
        jail at the same path, with what it needs.

        @param path: an absolute host path.
        @param keepSetuid: keep setuid/setgid bits and file capabilities.
        @param keepOwner: keep the host owner and group (otherwise
            root:root).
        @param libraries: also install the libraries an ELF file needs.
        @return: C{False} if C{path} does not exist on the host (it is
            added to L{missing}), else C{True}.
        """
        path = _hostPath(path)
        key = (path, keepSetuid)
        if key in self._done:
            return True
        self._done.add(key)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            self.missing.append(Missing(path, "does not exist"))
            return False
        except OSError as e:
            raise InstallError(f"cannot examine {path}: {e.strerror}")
        if path == "/":
            raise InstallError("refusing to copy the whole host (/) into "
                               "a jail")
        kind = stat.S_IFMT(st.st_mode)
        if kind == stat.S_IFLNK:
            self._installSymlink(path, keepSetuid, keepOwner, libraries)
        elif kind == stat.S_IFDIR:
            self._installDirectory(path, st, keepSetuid, keepOwner,
                                   libraries)
        elif kind == stat.S_IFREG:
            self._installFile(path, st, keepSetuid, keepOwner)
            if libraries and _mayNeedLibraries(path, st):
                self.installLibraries(path)
        elif kind in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO):
            self._installNode(path, st, keepSetuid, keepOwner)
        else:
            self.missing.append(Missing(path, "is a socket; sockets cannot "
                                              "be copied"))
            return False
        return True

    def installLibraries(self, path):
        """
        Install what the loader needs to run (or load) the host ELF file
        C{path}: its interpreter, its libraries and their symlink chains.
        """
        resolution = self.resolver.resolve(path)
        for name, neededBy in resolution.missing:
            self.missing.append(Missing(name, f"needed by {neededBy}, "
                                              f"not found on this host"))
        for library in resolution.paths:
            self.install(library, libraries=False)
        if resolution.viaConf:
            self._needLdSoConf = True

    def makeDirectory(self, path, mode=0o755):
        """
        Create the directory C{path} in the jail (and its parents, mirroring
        the host's where the host has them), owned by root.
        """
        self._dir(_hostPath(path), createMode=mode)

    def finish(self):
        """
        Complete the jail's loader configuration: if a library was found
        only through C{/etc/ld.so.conf}, copy that configuration too, so
        the jail's C{ld.so.cache} lists the same directories.
        """
        if self._needLdSoConf:
            for conf in ldSoConfFiles(self.resolver.ldSoConf):
                self.install(conf, libraries=False)

    # -- directories --------------------------------------------------------

    def _where(self, canon, name=None):
        inner = canon if name is None else os.path.join(canon, name)
        return self.jail.location + inner

    def _dir(self, path, hops=0, createMode=None):
        """
        The jail directory at (jail) C{path}: created from the host's
        directory or symlink of that path when missing, resolved inside the
        jail when the jail has a symlink there.

        Descriptors are kept in a small LRU cache; use the one returned
        before asking for another directory.

        @return: C{(dirFd, canonicalPath)}.
        """
        if path == "/":
            return self._root, "/"
        cached = self._dirs.get(path)
        if cached is not None:
            self._dirs.move_to_end(path)
            return cached
        if hops > _MAX_HOPS:
            raise InstallError(f"too many symlinks resolving {path} in "
                               f"{self.jail.location}")
        parentFd, parentCanon = self._dir(os.path.dirname(path), hops,
                                          createMode)
        name = os.path.basename(path)
        st = _lstatAt(parentFd, name)
        if st is None:
            st = self._createDirectory(parentFd, parentCanon, name, path,
                                       createMode)
        if stat.S_ISDIR(st.st_mode):
            try:
                fd = os.open(name, _DIRECTORY, dir_fd=parentFd)
            except OSError as e:
                where = self._where(parentCanon, name)
                raise InstallError(f"cannot open {where}: {e.strerror}")
            canon = os.path.join(parentCanon, name)
        elif stat.S_ISLNK(st.st_mode):
            target = os.readlink(name, dir_fd=parentFd)
            base = "/" if target.startswith("/") else parentCanon
            fd, canon = self._follow(base, target, hops + 1, createMode)
            fd = os.dup(fd)
        else:
            raise InstallError(
                f"{self._where(parentCanon, name)} is not a directory in the "
                f"jail, but {path} must be one: remove it")
        self._dirs[path] = (fd, canon)
        while len(self._dirs) > _OPEN_DIRECTORIES:
            _, (old, _) = self._dirs.popitem(last=False)
            os.close(old)
        return fd, canon

    def _follow(self, base, target, hops, createMode):
        current = base
        for part in target.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                current = os.path.dirname(current)
                continue
            _, current = self._dir(os.path.join(current, part), hops,
                                   createMode)
        return self._dir(current, hops, createMode)

    def _createDirectory(self, parentFd, parentCanon, name, path,
                         createMode):
        try:
            host = os.lstat(path)
        except OSError:
            host = None
        where = self._where(parentCanon, name)
        try:
            if host is not None and stat.S_ISLNK(host.st_mode):
                os.symlink(os.readlink(path), name, dir_fd=parentFd)
                os.chown(name, host.st_uid, host.st_gid, dir_fd=parentFd,
                         follow_symlinks=False)
                self._note("symlink", path)
            else:
                if host is not None and not stat.S_ISDIR(host.st_mode):
                    raise InstallError(f"{path} is not a directory on the "
                                       f"host, cannot create {where} from it")
                if host is not None:
                    mode = stat.S_IMODE(host.st_mode) & ~_PRIVILEGE_BITS
                else:
                    mode = 0o755 if createMode is None else createMode
                os.mkdir(name, 0o700, dir_fd=parentFd)
                os.chown(name, 0, 0, dir_fd=parentFd, follow_symlinks=False)
                os.chmod(name, mode, dir_fd=parentFd, follow_symlinks=False)
                if host is not None:
                    os.utime(name, ns=(host.st_atime_ns, host.st_mtime_ns),
                             dir_fd=parentFd, follow_symlinks=False)
                self._note("mkdir", path)
        except FileExistsError:
            pass
        except OSError as e:
            raise InstallError(f"cannot create {where}: {e.strerror}")
        return os.stat(name, dir_fd=parentFd, follow_symlinks=False)

    # -- entries ------------------------------------------------------------

    def _installDirectory(self, path, st, keepSetuid, keepOwner, libraries):
        self._dir(path)
        try:
            entries = sorted(os.scandir(path), key=lambda e: e.name)
        except OSError as e:
            raise InstallError(f"cannot read directory {path}: {e.strerror}")
        for entry in entries:
            if entry.path == self.jail.location:
                # Copying a directory that holds the jail: not the jail
                # itself, or the copy would never end.
                continue
            self.install(entry.path, keepSetuid, keepOwner, libraries)

    def _installSymlink(self, path, keepSetuid, keepOwner, libraries):
        resolved = self.makeSymlink(path)
        if resolved != "/":
            self.install(resolved, keepSetuid, keepOwner, libraries)

    def makeSymlink(self, path):
        """
        Recreate the host symlink C{path} in the jail (owned as the host's),
        not what it points to.

        @return: the host path it points to, normalised.
        """
        path = _hostPath(path)
        dirFd, canon = self._dir(os.path.dirname(path))
        name = os.path.basename(path)
        target = os.readlink(path)
        existing = _lstatAt(dirFd, name)
        if existing is not None and stat.S_ISLNK(existing.st_mode) \
                and os.readlink(name, dir_fd=dirFd) == target:
            self._note("exists", path)
        elif existing is not None and not self.force:
            self._note("exists", path)
        else:
            _refuseDirectory(existing, self._where(canon, name), path)
            temp = _tempName()
            try:
                os.symlink(target, temp, dir_fd=dirFd)
                host = os.lstat(path)
                os.chown(temp, host.st_uid, host.st_gid, dir_fd=dirFd,
                         follow_symlinks=False)
                os.rename(temp, name, src_dir_fd=dirFd, dst_dir_fd=dirFd)
            except OSError as e:
                _unlinkQuietly(temp, dirFd)
                raise InstallError(f"cannot create symlink "
                                   f"{self._where(canon, name)}: {e.strerror}")
            self._note("symlink", path)
        return symlinkTarget(path, target)

    def makeMountPoint(self, path, directory):
        """
        Create an empty mount point for the host path C{path} in the jail,
        owned by root: a directory (the host's mode) or an empty file (mode
        0644).  Parents are created as for a copy.  What is already there
        is kept if it is of the same kind.

        @raise InstallError: if something of the other kind is there.
        """
        path = _hostPath(path)
        if directory:
            self._dir(path)
            return
        dirFd, name, where, existing = self._destination(path)
        if existing is not None:
            if not stat.S_ISREG(existing.st_mode):
                raise InstallError(f"{where} is not a regular file in the "
                                   f"jail, but {path} is one: remove it")
            self._note("exists", path)
            return
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                         | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dirFd)
            try:
                os.fchown(fd, 0, 0)
                os.fchmod(fd, 0o644)
            finally:
                os.close(fd)
        except OSError as e:
            raise InstallError(f"cannot create {where}: {e.strerror}")
        self._note("mountpoint", path)

    def _destination(self, path):
        """
        Where the host's non-directory C{path} goes in the jail.

        @return: C{(dirFd, name, where, existing)}: the directory, the
            name in it, the host path of the destination (for messages) and
            its lstat or C{None}.
        @raise InstallError: if the jail has a directory there.
        """
        dirFd, canon = self._dir(os.path.dirname(path))
        name = os.path.basename(path)
        where = self._where(canon, name)
        existing = _lstatAt(dirFd, name)
        _refuseDirectory(existing, where, path)
        return dirFd, name, where, existing

    def _installFile(self, path, st, keepSetuid, keepOwner):
        dirFd, name, where, existing = self._destination(path)
        if existing is not None:
            same = (existing.st_dev, existing.st_ino) == (st.st_dev,
                                                          st.st_ino)
            if not self.force or same:
                self._note("exists", path)
                return
        privileged = bool(st.st_mode & _PRIVILEGE_BITS) or \
            _hasCapabilities(path)
        if _mayNeedLibraries(path, st) and \
                self.resolver.object(path) is not None:
            self.elfAdded = True
        if self.hardlink and not privileged and self._link(path, dirFd, name):
            self._note("link", path)
            return
        mode = stat.S_IMODE(st.st_mode)
        if not keepSetuid and mode & _PRIVILEGE_BITS:
            mode &= ~_PRIVILEGE_BITS
            self._note("strip", path)
        owner = (st.st_uid, st.st_gid) if keepOwner else (0, 0)
        temp = _tempName()
        try:
            source = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as e:
            raise InstallError(f"cannot read {path}: {e.strerror}")
        try:
            current = os.fstat(source)
            if not stat.S_ISREG(current.st_mode):
                raise InstallError(f"{path} changed while being copied")
            target = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                             | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                             dir_fd=dirFd)
            try:
                self.bytes += _copyData(source, target)
                os.fchown(target, *owner)
                os.fchmod(target, mode)
                if keepSetuid and privileged:
                    try:
                        _copyCapabilities(path, target)
                    except OSError as e:
                        self.missing.append(Missing(
                            path, f"its file capabilities could not be kept "
                                  f"in the jail: {e.strerror}"))
                os.utime(target, ns=(current.st_atime_ns,
                                     current.st_mtime_ns))
            finally:
                os.close(target)
            os.rename(temp, name, src_dir_fd=dirFd, dst_dir_fd=dirFd)
        except OSError as e:
            _unlinkQuietly(temp, dirFd)
            raise InstallError(f"cannot copy {path} to {where}: {e.strerror}")
        except BaseException:
            _unlinkQuietly(temp, dirFd)
            raise
        finally:
            os.close(source)
        self._note("copy", path)

    def _link(self, path, dirFd, name):
        temp = _tempName()
        try:
            os.link(path, temp, dst_dir_fd=dirFd, follow_symlinks=False)
        except OSError:
            return False
        try:
            os.rename(temp, name, src_dir_fd=dirFd, dst_dir_fd=dirFd)
        except OSError:
            _unlinkQuietly(temp, dirFd)
            return False
        return True

    def _installNode(self, path, st, keepSetuid, keepOwner):
        dirFd, name, where, existing = self._destination(path)
        if existing is not None:
            same = (stat.S_IFMT(existing.st_mode) == stat.S_IFMT(st.st_mode)
                    and existing.st_rdev == st.st_rdev)
            if same or not self.force:
                self._note("exists", path)
                return
        mode = stat.S_IMODE(st.st_mode)
        if not keepSetuid:
            mode &= ~_PRIVILEGE_BITS
        owner = (st.st_uid, st.st_gid) if keepOwner else (0, 0)
        temp = _tempName()
        try:
            os.mknod(temp, stat.S_IFMT(st.st_mode) | 0o600, st.st_rdev,
                     dir_fd=dirFd)
            os.chown(temp, *owner, dir_fd=dirFd, follow_symlinks=False)
            os.chmod(temp, mode, dir_fd=dirFd, follow_symlinks=False)
            os.utime(temp, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dirFd,
                     follow_symlinks=False)
            os.rename(temp, name, src_dir_fd=dirFd, dst_dir_fd=dirFd)
        except OSError as e:
            _unlinkQuietly(temp, dirFd)
            raise InstallError(f"cannot create {where}: {e.strerror}")
        self._note("mknod", path)


class InstallPlan:
    """
    What an L{Installer} would add to a jail, found without changing
    anything (a dry run of C{jk_init}, the check mode of the Ansible
    collection).  It stands in for the installer L{JailBuilder} or
    L{jailtwist.bindjail.BindCollector} drive, walks the same host paths,
    and records each one the jail does not have at the same path (looked
    up inside the jail, symlinks resolved there, never followed out).

    Use it as a context manager.  The jail need not exist yet.

    @ivar added: jail paths that would be created, in the order met.
    @ivar missing: L{Missing} things, as an L{Installer} reports them.
    """

    def __init__(self, jail, resolver=None):
        self.jail = jail
        self.resolver = resolver if resolver is not None else ElfResolver()
        self.missing = []
        self.added = []
        self._done = set()
        self._needLdSoConf = False
        try:
            self._root = jail.openRoot()
        except JailtwistError:
            self._root = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self._root is not None:
            os.close(self._root)
            self._root = None

    def exists(self, path):
        """
        Whether the jail has something at C{path} (as seen inside it).
        """
        if self._root is None:
            return False
        try:
            dirFd, name = self.jail.openParent(path, root=self._root)
        except OSError:
            return False
        try:
            return _lstatAt(dirFd, name) is not None
        finally:
            os.close(dirFd)

    def record(self, path):
        """
        Note C{path} as added unless the jail has it.
        """
        if path not in self._done:
            self._done.add(path)
            if not self.exists(path):
                self.added.append(path)

    def install(self, path, keepSetuid=False, keepOwner=True,
                libraries=True):
        path = _hostPath(path)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            self.missing.append(Missing(path, "does not exist"))
            return False
        if path in self._done:
            return True
        if path == "/":
            raise InstallError("refusing to copy the whole host (/) into "
                               "a jail")
        kind = stat.S_IFMT(st.st_mode)
        if kind == stat.S_IFSOCK:
            self.missing.append(Missing(path, "is a socket; sockets cannot "
                                              "be copied"))
            return False
        self.record(path)
        if kind == stat.S_IFLNK:
            target = symlinkTarget(path)
            if target != "/":
                self.install(target, keepSetuid, keepOwner, libraries)
        elif kind == stat.S_IFDIR:
            for entry in sorted(os.scandir(path), key=lambda e: e.name):
                if entry.path != self.jail.location:
                    self.install(entry.path, keepSetuid, keepOwner,
                                 libraries)
        elif kind == stat.S_IFREG and libraries and \
                _mayNeedLibraries(path, st):
            self.installLibraries(path)
        return True

    # The installer's own walk of libraries and loader configuration,
    # through this class's install().
    installLibraries = Installer.installLibraries
    finish = Installer.finish

    def makeDirectory(self, path, mode=0o755):
        self.record(_hostPath(path))

    def makeSymlink(self, path):
        path = _hostPath(path)
        self.record(path)
        return symlinkTarget(path)


def refreshLibraryCache(jail):
    """
    Rebuild the jail's C{etc/ld.so.cache} with C{ldconfig -r JAIL} (which
    chroots into the jail, so its configuration is read from inside).

    @raise InstallError: if ldconfig fails; its message is included.
    """
    dirFd, _ = jail.openParent("/etc/ld.so.cache", create=True)
    os.close(dirFd)
    ldconfig = (shutil.which("ldconfig")
                or shutil.which("ldconfig", path="/usr/sbin:/sbin"))
    if ldconfig is None:
        raise InstallError("ldconfig is not installed (Debian package "
                           "libc-bin): cannot refresh the jail's ld.so.cache")
    result = subprocess.run([ldconfig, "-r", jail.location],
                            stdin=subprocess.DEVNULL, capture_output=True,
                            text=True)
    if result.returncode != 0:
        message = result.stderr.strip().splitlines()
        raise InstallError(f"ldconfig -r {jail.location} failed: "
                           + (message[-1] if message else
                              f"exit status {result.returncode}"))


def _hostPath(path):
    path = getattr(path, "path", path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not path.startswith("/"):
        raise InstallError(f"{path} is not an absolute path")
    if "\0" in path:
        raise InstallError(f"{path!r} contains a NUL byte")
    return os.path.normpath(path).replace("//", "/")


def symlinkTarget(path, target=None):
    """
    The host path the host symlink C{path} points to, normalised (its
    C{..} taken from the real directory, as the kernel would).

    @param target: the link's text, if already read.
    """
    if target is None:
        target = os.readlink(path)
    if target.startswith("/"):
        return os.path.normpath(target)
    directory = os.path.dirname(path)
    if ".." in target.split("/"):
        directory = os.path.realpath(directory)
    return os.path.normpath(os.path.join(directory, target))


def _mayNeedLibraries(path, st):
    """
    jailkit's test for files worth a library lookup: anything executable,
    or with C{lib} or C{.so} in its path.
    """
    return bool(st.st_mode & 0o111) or "lib" in path or ".so" in path


def _lstatAt(dirFd, name):
    try:
        return os.stat(name, dir_fd=dirFd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _refuseDirectory(existing, where, path):
    if existing is not None and stat.S_ISDIR(existing.st_mode):
        raise InstallError(f"{where} is a directory in the jail but {path} "
                           f"is not: remove it first")


def _tempName():
    return f".jailtwist-{os.getpid()}-{next(_tempCounter)}"


def _unlinkQuietly(name, dirFd):
    try:
        os.unlink(name, dir_fd=dirFd)
    except OSError:
        pass


def _hasCapabilities(path):
    try:
        os.getxattr(path, _CAPABILITY, follow_symlinks=False)
    except OSError:
        return False
    return True


def _copyCapabilities(path, fd):
    try:
        value = os.getxattr(path, _CAPABILITY, follow_symlinks=False)
    except OSError:
        return
    os.setxattr(fd, _CAPABILITY, value)


def _writeAll(fd, data):
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _copyData(source, target):
    """
    Copy everything from descriptor C{source} to C{target} in the kernel
    where possible.

    @return: the number of bytes copied.
    """
    total = 0
    try:
        while True:
            n = os.copy_file_range(source, target, 1 << 30)
            if n == 0:
                return total
            total += n
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL,
                           errno.EOPNOTSUPP) or total:
            raise
    try:
        while True:
            n = os.sendfile(target, source, None, 1 << 30)
            if n == 0:
                return total
            total += n
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOSYS) or total:
            raise
    while True:
        chunk = os.read(source, 1 << 20)
        if not chunk:
            return total
        _writeAll(target, chunk)
        total += len(chunk)


# -- jk_init: sections of jk_init.ini ----------------------------------------

#: The keys of a jk_init.ini section.  C{libraries}, C{executables},
#: C{regularfiles} and C{directories} are jailkit's old names for C{paths};
#: C{paths_optional} is jailtwist's: paths copied when this host has them and
#: skipped without a warning when it does not.
INIT_KEYS = frozenset([
    "comment", "paths", "libraries", "executables", "regularfiles",
    "directories", "paths_optional", "paths_w_owner", "paths_w_setuid",
    "devices", "emptydirs", "users", "groups", "includesections",
    "need_logsocket", "need_proc",
])

_PATH_KEYS = ("paths", "libraries", "executables", "regularfiles",
              "directories")
_GLOB_CHARACTERS = frozenset("*?[")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def findProgram(name, searchPath=None):
    """
    jailkit's lookup of a bare name (C{paths = ls}) through C{$PATH}.

    @return: the absolute path (symlinks not resolved) or C{None}.
    """
    if searchPath is None:
        searchPath = os.environ.get("PATH") or DEFAULT_PATH
    for directory in searchPath.split(":"):
        if not directory.startswith("/"):
            continue
        candidate = os.path.join(directory, name)
        if os.path.exists(candidate):
            return os.path.normpath(candidate)
    return None


def expandEntry(entry, searchPath=None):
    """
    The host paths one C{paths} entry names: an absolute path, a glob
    (sorted matches) or a bare program name looked up in C{$PATH}.

    @return: a list, empty when nothing on this host matches.
    """
    if not entry.startswith("/"):
        found = findProgram(entry, searchPath)
        return [found] if found else []
    if _GLOB_CHARACTERS & set(entry):
        return sorted(glob.glob(entry))
    return [entry] if os.path.lexists(entry) else []


class InitConfig:
    """
    A jk_init.ini: named sections, each a recipe for part of a jail.

    Keys of a C{[DEFAULT]} section are inherited by every section, as
    jailkit's Python tools read this file with C{configparser}.
    """

    def __init__(self, ini):
        self.ini = ini
        self.path = ini.path
        default = ini.section("DEFAULT")
        self._default = {} if default is None else \
            {key: default.getString(key) for key in default.keys()}

    def sections(self):
        """
        The section names, in file order, C{DEFAULT} excluded.
        """
        return [name for name in self.ini.sections() if name != "DEFAULT"]

    def section(self, name):
        """
        @return: the L{jailtwist.config.Section} called C{name} with the
            C{[DEFAULT]} keys merged in, or C{None}.
        """
        section = self.ini.section(name)
        if section is None or name == "DEFAULT":
            return None
        if self._default:
            items = dict(self._default)
            items.update((key, section.getString(key))
                         for key in section.keys())
            section = Section(self.path, name, items)
        section.checkKeys(INIT_KEYS)
        return section

    def plan(self, names):
        """
        The sections to process for C{names}, includes first (depth first,
        as jailkit), each once even when includes form a cycle.

        @return: C{(order, unknown)}: section names in processing order, and
            C{(name, includedBy)} pairs for includes that do not exist.
        """
        order = []
        unknown = []
        seen = set()

        def visit(name, includedBy):
            if name in seen:
                return
            seen.add(name)
            section = self.section(name)
            if section is None:
                unknown.append((name, includedBy))
                return
            for include in section.getList("includesections"):
                visit(include, name)
            order.append(name)

        for name in names:
            visit(name, None)
        return order, unknown


class JailBuilder:
    """
    Applies jk_init.ini sections to a jail through an L{Installer}.

    @param installer: the L{Installer} for the jail.
    @param config: the L{InitConfig}.
    @param socketdConfig: the jk_socketd.ini that C{need_logsocket} adds the
        jail's C{/dev/log} to.
    @param searchPath: C{$PATH} for bare program names.
    @param hostEtc: where the host's C{passwd} and C{group} are.
    @param plan: for a dry run, the L{InstallPlan} the installer (the plan
        itself, or a collector recording into it) records into; nothing
        else is changed either: accounts, the log socket and the proc mount
        that would be added are listed in L{planned}.
    @ivar notes: lines worth telling the user (a log socket added...).
    @ivar planned: with C{plan}, what would be done besides files.
    """

    def __init__(self, installer, config, socketdConfig, searchPath=None,
                 hostEtc="/etc", plan=None):
        self.installer = installer
        self.jail = installer.jail
        self.config = config
        self.socketdConfig = socketdConfig
        self.searchPath = searchPath
        self.hostEtc = hostEtc
        self.plan = plan
        self.dryRun = plan is not None
        self.notes = []
        self.planned = []

    def build(self, names):
        """
        Process the sections C{names} and their includes.
        """
        order, unknown = self.config.plan(names)
        self.installer.missing.extend(
            _unknownSections(unknown, self.config.path))
        for name in order:
            self.apply(self.config.section(name))
        if self.dryRun:
            self.plan.record("/etc/passwd")
            self.plan.record("/etc/group")
        else:
            copyAccounts(self.jail, [], [], self.hostEtc)

    def _paths(self, section, key, optional=False, **kw):
        for entry in section.getList(key):
            found = expandEntry(entry, self.searchPath)
            if not found and not optional:
                self.installer.missing.append(
                    _missingEntry(entry, section, key))
            for path in found:
                self.installer.install(path, **kw)

    def apply(self, section):
        """
        Process one section (not its includes).
        """
        for key in _PATH_KEYS:
            self._paths(section, key)
        self._paths(section, "paths_optional", optional=True)
        self._paths(section, "paths_w_owner", keepOwner=True)
        self._paths(section, "paths_w_setuid", keepOwner=True,
                    keepSetuid=True)
        for directory in section.getList("emptydirs"):
            if not directory.startswith("/"):
                raise section.error(f"{directory} is not an absolute path",
                                    "emptydirs")
            self.installer.makeDirectory(directory)
        users = section.getList("users")
        groups = section.getList("groups")
        if users or groups:
            added = []
            for name in copyAccounts(self.jail, users, groups, self.hostEtc,
                                     dryRun=self.dryRun, added=added):
                self.installer.missing.append(
                    Missing(name, f"no such account on this host; "
                                  f"[{section.name}] users/groups"))
            self.planned.extend(f"{name} in etc/passwd or etc/group"
                                for name in added if self.dryRun)
        if section.getBool("need_proc"):
            self.installer.makeDirectory("/proc", 0o555)
            if self.dryRun:
                if procMountState(self.jail) != (True, True):
                    self.planned.append(f"proc mounted on "
                                        f"{self.jail.location}/proc")
            else:
                self.notes.extend(mountProc(self.jail))
        if section.getBool("need_logsocket"):
            self.installer.makeDirectory("/dev")
            if self.dryRun:
                if not hasSection(self.socketdConfig,
                                  self.jail.location + "/dev/log"):
                    self.planned.append(f"[{self.jail.location}/dev/log] in "
                                        f"{self.socketdConfig}")
            elif addLogSocket(self.jail, self.socketdConfig):
                self.notes.append(
                    f"added [{self.jail.location}/dev/log] to "
                    f"{self.socketdConfig}: restart jk_socketd")
        for device in section.getList("devices"):
            if not device.startswith("/"):
                raise section.error(f"{device} is not an absolute path",
                                    "devices")
            self.installer.install(device, keepOwner=False, libraries=False)


def _missingEntry(entry, section, key):
    where = "not found in $PATH" if not entry.startswith("/") \
        else "does not exist"
    return Missing(entry, f"{where}; [{section.name}] {key}")


def _unknownSections(unknown, path):
    return [Missing(f"[{name}]",
                    (f"included by [{includedBy}], no such section in {path}"
                     if includedBy else
                     f"no such section in {path}; jk_init -l lists them"))
            for name, includedBy in unknown]


def preflight(config, names, searchPath=None, resolver=None):
    """
    What building C{names} would find missing on this host, found before
    anything is created (for C{jk_init --strict}): paths, devices and
    included sections, and the libraries of the programs named directly
    (not of files inside named directories).

    @return: a list of L{Missing}.
    """
    resolver = resolver if resolver is not None else ElfResolver()
    order, unknown = config.plan(names)
    missing = _unknownSections(unknown, config.path)
    for name in order:
        section = config.section(name)
        for key in _PATH_KEYS + ("paths_w_owner", "paths_w_setuid",
                                 "devices"):
            for entry in section.getList(key):
                found = expandEntry(entry, searchPath)
                if not found:
                    missing.append(_missingEntry(entry, section, key))
                for path in found:
                    if os.path.isfile(path):
                        for library, neededBy in \
                                resolver.resolve(path).missing:
                            missing.append(Missing(
                                library, f"needed by {neededBy}, not found "
                                         f"on this host"))
    return missing


def addLogSocket(jail, socketdConfig):
    """
    Add C{[JAIL/dev/log]} with jailkit's limits to jk_socketd.ini, once.

    @return: whether it was added.
    """
    directory = os.path.dirname(socketdConfig)
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    return appendSection(socketdConfig, jail.location + "/dev/log",
                         [("base", "512"), ("peak", "2048"),
                          ("interval", "10.0")])


def mountProc(jail, fstab="/etc/fstab", mountinfo="/proc/self/mountinfo"):
    """
    jailkit's C{need_proc}, without its missing slash: record a proc mount
    on C{JAIL/proc} in C{/etc/fstab} (once, atomically) and mount it now
    unless it is mounted.

    @return: lines for the user.
    """
    target = jail.location + "/proc"
    notes = []
    try:
        with open(fstab, encoding="utf-8") as f:
            lines = f.read()
        mode = stat.S_IMODE(os.stat(fstab).st_mode)
    except FileNotFoundError:
        lines, mode = "", 0o644
    present, mounted = procMountState(jail, lines, mountinfo)
    if not present:
        if lines and not lines.endswith("\n"):
            lines += "\n"
        lines += f"proc\t{target}\tproc\tdefaults\t0\t0\n"
        _replaceHostFile(fstab, lines.encode("utf-8"), mode)
        notes.append(f"added a proc mount on {target} to {fstab}")
    if not mounted:
        result = subprocess.run(["mount", "-t", "proc", "proc", target],
                                capture_output=True, text=True,
                                stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise InstallError(f"cannot mount proc on {target}: "
                               + result.stderr.strip())
        notes.append(f"mounted proc on {target}")
    return notes


def procMountState(jail, fstabText=None, mountinfo="/proc/self/mountinfo"):
    """
    @param fstabText: the content of C{/etc/fstab} (read when C{None}).
    @return: C{(recorded, mounted)}: whether C{/etc/fstab} has a mount on
        C{JAIL/proc}, and whether something is mounted there now.
    """
    target = jail.location + "/proc"
    if fstabText is None:
        try:
            with open("/etc/fstab", encoding="utf-8") as f:
                fstabText = f.read()
        except FileNotFoundError:
            fstabText = ""
    recorded = any(len(fields) > 1 and fields[1] == target
                   for fields in (line.split()
                                  for line in fstabText.splitlines())
                   if fields and not fields[0].startswith("#"))
    with open(mountinfo, encoding="utf-8") as f:
        mounted = any(line.split()[4] == target for line in f)
    return recorded, mounted


def _replaceHostFile(path, data, mode):
    directory, name = os.path.split(path)
    dirFd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        replaceFile(dirFd, name, data, mode)
    finally:
        os.close(dirFd)


def copyAccounts(jail, users, groups, hostEtc="/etc", dryRun=False,
                 added=None):
    """
    Copy the named accounts (names or numeric ids) from the host's
    C{passwd} and C{group} into the jail's, under the passwd lock and
    atomically; the jail's files are created (empty) if missing, as
    jailkit's jk_init does.  Entries the jail has (same name or id) are
    left alone; a user's primary group comes along; a home with C{/./} in
    it is written as the jail sees it; group members are kept only if the
    jail knows them.

    @param dryRun: change nothing, only find what would be added.
    @param added: a list the names of the entries added (or that would
        be) are appended to.
    @return: the names that exist on neither the host nor the jail.
    """
    def host(name):
        try:
            with open(os.path.join(hostEtc, name), encoding="utf-8") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    hostUsers = parsePasswd(host("passwd"))
    hostGroups = parseGroup(host("group"))
    if dryRun:
        try:
            etcFd, _ = jail.openParent("/etc/passwd")
        except (OSError, JailtwistError):
            etcFd = None
    else:
        etcFd, _ = jail.openParent("/etc/passwd", create=True)
    notFound = []
    files = AccountFiles(etcFd, jail.location + "/etc", lock=not dryRun)
    try:
        with files:
            jailUsers = files.passwd() if etcFd is not None else []
            newUsers = []
            for entry in _newEntries(users, hostUsers, jailUsers, "uid",
                                     notFound):
                if "/./" in entry.home:
                    entry = entry.replace(
                        home="/" + entry.home.rsplit("/./", 1)[1])
                newUsers.append(entry)
            known = {u.name for u in jailUsers + newUsers}
            groups = list(groups) + [str(u.gid) for u in newUsers]
            jailGroups = files.group() if etcFd is not None else []
            newGroups = [
                GroupEntry(entry.name, entry.password, entry.gid,
                           [m for m in entry.members if m in known])
                for entry in _newEntries(groups, hostGroups, jailGroups,
                                         "gid", notFound)]
            if added is not None:
                added.extend([f"user {e.name}" for e in newUsers]
                             + [f"group {e.name}" for e in newGroups])
            if not dryRun:
                files.appendPasswd(newUsers)
                files.appendGroup(newGroups)
                for name in ("passwd", "group"):
                    if _lstatAt(etcFd, name) is None:
                        replaceFile(etcFd, name, b"")
    finally:
        if etcFd is not None:
            os.close(etcFd)
    return notFound


def _newEntries(wanted, hostEntries, jailEntries, idField, notFound):
    """
    The host entries named (by name or id) in C{wanted} that the jail does
    not have (by name or id); names found nowhere go to C{notFound}.
    """
    new = []
    for name in wanted:
        entry = _lookup(hostEntries, name, idField)
        if entry is None:
            if _lookup(jailEntries, name, idField) is None:
                notFound.append(name)
            continue
        if not any(e.name == entry.name
                   or getattr(e, idField) == getattr(entry, idField)
                   for e in jailEntries + new):
            new.append(entry)
    return new


def _lookup(entries, wanted, idField):
    number = int(wanted) if wanted.isdigit() else None
    for entry in entries:
        if entry.name == wanted or getattr(entry, idField) == number:
            return entry
    return None


# -- jk_update ----------------------------------------------------------------

#: Directories jk_update scans when none are named (jailkit's).
UPDATE_DIRECTORIES = ("/bin", "/lib", "/usr", "/opt")

#: Paths in a jail that belong to the jail, not the host: jk_update never
#: looks at them.
JAIL_OWNED = frozenset([
    "/home", "/tmp", "/var/tmp", "/proc", "/sys", "/dev", "/run",
    "/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow",
    "/etc/ld.so.cache", "/etc/jailkit", "/etc/.pwd.lock",
])


class Change:
    """
    One difference between a jail and the host.

    @ivar kind: C{"update"} (the host's file differs), C{"remove"} (the host
        no longer has it) or C{"add"} (a library now needed is missing).
    @ivar path: the path (the same in the jail and on the host).
    @ivar keepSetuid: an update keeps the jail copy's setuid/setgid bits.
    """

    def __init__(self, kind, path, keepSetuid=False, directory=False):
        self.kind = kind
        self.path = path
        self.keepSetuid = keepSetuid
        self.directory = directory

    def __repr__(self):
        return f"Change({self.kind!r}, {self.path!r})"

    def __eq__(self, other):
        return isinstance(other, Change) and \
            (self.kind, self.path) == (other.kind, other.path)

    def describe(self, jail, dryRun):
        where = jail.location + self.path
        noun = "directory" if self.directory else "file"
        if self.kind == "update":
            return (f"will update outdated file {where}" if dryRun
                    else f"updated outdated file {where}")
        if self.kind == "remove":
            return (f"will remove deprecated {noun} {where}" if dryRun
                    else f"removed deprecated {noun} {where}")
        return (f"will add missing library {where}" if dryRun
                else f"added missing library {where}")


class JailUpdate:
    """
    Compares a jail with the host and brings its copies up to date.

    Only root-owned entries (or entries owned as the host's file is) are
    touched: files the jail's accounts own, C{home/}, C{tmp/} and the
    jail's own account files and loader cache (L{JAIL_OWNED}) are never
    looked at.

    @param jail: the L{jailtwist.jail.Jail}.
    @param skips: paths (jail form or host form) to leave alone.
    """

    def __init__(self, jail, resolver=None, skips=()):
        self.jail = jail
        self.resolver = resolver if resolver is not None else ElfResolver()
        prefix = jail.location
        self.skips = set()
        for skip in skips:
            skip = os.path.normpath(skip)
            if skip.startswith(prefix + "/"):
                skip = skip[len(prefix):]
            self.skips.add(skip)

    def scan(self, directories=UPDATE_DIRECTORIES):
        """
        @return: the L{Change}s needed, in path order.
        """
        changes = []
        elves = []
        seen = set()
        root = self.jail.openRoot()
        try:
            for directory in directories:
                directory = os.path.normpath("/" + directory.strip("/"))
                prefix = self.jail.location
                if directory.startswith(prefix + "/"):
                    directory = directory[len(prefix):]
                try:
                    canon = self.jail.realPath(directory, root=root)
                    fd = _resolveDirectoryFd(root, canon)
                except OSError:
                    continue
                try:
                    self._scanDirectory(fd, canon, changes, elves, seen)
                finally:
                    os.close(fd)
            existing = set()
            for path in elves:
                for library in self.resolver.resolve(path).paths:
                    if library in existing:
                        continue
                    existing.add(library)
                    try:
                        fd = self.jail.open(library, os.O_PATH, root=root)
                        os.close(fd)
                    except OSError:
                        changes.append(Change("add", library))
        finally:
            os.close(root)
        return changes

    def _skipped(self, path):
        return path in self.skips or path in JAIL_OWNED

    def _scanDirectory(self, fd, canon, changes, elves, seen):
        key = os.fstat(fd)
        key = (key.st_dev, key.st_ino)
        if key in seen or self._skipped(canon):
            return
        seen.add(key)
        listing = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC,
                          dir_fd=fd)
        try:
            names = sorted(os.listdir(listing))
        finally:
            os.close(listing)
        for name in names:
            path = os.path.join(canon, name)
            if self._skipped(path) or name.startswith(".jailtwist-"):
                continue
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            try:
                host = os.lstat(path)
            except FileNotFoundError:
                host = None
            if st.st_uid != 0 and (host is None or host.st_uid != st.st_uid):
                continue
            if stat.S_ISDIR(st.st_mode):
                try:
                    child = os.open(name, _DIRECTORY, dir_fd=fd)
                except OSError:
                    continue
                try:
                    before = len(changes)
                    self._scanDirectory(child, path, changes, elves, seen)
                    if host is None and all(
                            c.kind == "remove" for c in changes[before:]):
                        changes.append(Change("remove", path,
                                              directory=True))
                finally:
                    os.close(child)
                continue
            if host is None:
                changes.append(Change("remove", path))
                continue
            if _differs(fd, name, st, path, host):
                changes.append(Change(
                    "update", path,
                    keepSetuid=bool(st.st_mode & _PRIVILEGE_BITS)))
            elif stat.S_ISREG(st.st_mode) and _mayNeedLibraries(path, st):
                elves.append(path)

    def apply(self, changes, hardlink=False, report=None):
        """
        Make the L{Change}s.

        @return: the L{Installer} used (its counts and L{Missing} list).
        """
        with Installer(self.jail, self.resolver, force=True,
                       hardlink=hardlink, report=report) as installer:
            root = installer._root
            for change in changes:
                if change.kind == "remove":
                    _removeInJail(self.jail, root, change.path,
                                  change.directory)
                    installer.changes += 1
                else:
                    installer.install(change.path,
                                      keepSetuid=change.keepSetuid)
            installer.finish()
        return installer


def _resolveDirectoryFd(root, canon):
    fd = os.dup(root)
    for part in canon.strip("/").split("/"):
        if not part:
            continue
        try:
            child = os.open(part, _DIRECTORY, dir_fd=fd)
        finally:
            os.close(fd)
        fd = child
    return fd


def _differs(dirFd, name, st, path, host):
    """
    Whether the jail entry C{name} (stat C{st}) differs from the host's
    C{path} (lstat C{host}): type, symlink target, device, or content.
    """
    if stat.S_IFMT(st.st_mode) != stat.S_IFMT(host.st_mode):
        return True
    if stat.S_ISLNK(st.st_mode):
        return os.readlink(name, dir_fd=dirFd) != os.readlink(path)
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        return st.st_rdev != host.st_rdev
    if not stat.S_ISREG(st.st_mode):
        return False
    if (st.st_dev, st.st_ino) == (host.st_dev, host.st_ino):
        return False
    if st.st_size != host.st_size:
        return True
    return not _sameContent(dirFd, name, path)


def _sameContent(dirFd, name, path):
    try:
        a = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                    dir_fd=dirFd)
    except OSError:
        return False
    try:
        with open(path, "rb") as b:
            while True:
                chunkA = os.read(a, 1 << 20)
                chunkB = b.read(1 << 20)
                if chunkA != chunkB:
                    return False
                if not chunkA:
                    return True
    except OSError:
        return False
    finally:
        os.close(a)


def _removeInJail(jail, root, path, directory):
    dirFd, name = jail.openParent(path, root=root)
    try:
        if directory:
            os.rmdir(name, dir_fd=dirFd)
        else:
            os.unlink(name, dir_fd=dirFd)
    except OSError as e:
        if directory and e.errno in (errno.ENOTEMPTY, errno.EEXIST):
            return
        raise InstallError(f"cannot remove {jail.location}{path}: "
                           f"{e.strerror}")
    finally:
        os.close(dirFd)
