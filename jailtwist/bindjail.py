# -*- test-case-name: tests.test_bindjail -*-
"""
Building a jail assembled from read-only binds: the engine behind
C{jk_init --bind} and C{jk_update} on such a jail.

L{BindCollector} stands in for the L{jailtwist.install.Installer} that
L{jailtwist.install.JailBuilder} drives, so a bind jail is built from the
same jk_init.ini sections with the same resolver.  Where the installer
would copy a program, library or shared directory, the collector records
its host path for the bind list (L{jailtwist.bindlist}) and creates an
empty, root-owned mount point.  What stays the jail's own is still made by
the installer: symlinks (C{bin -> usr/bin}, C{sh -> dash}), device nodes,
empty directories, accounts, and C{etc/jailkit/} (read from outside the
jail by the ways in, so it must be real files).

Host symlinks are never bound: the jail gets the same symlink and the
path it points to is bound, so every list entry is a real host path.
The jail's C{etc/ld.so.cache} is the host's (bound), so libraries are found
where the host's loader finds them and nothing in the jail drifts.
"""

import os
import stat

from jailtwist.bindlist import (
    LIST, RECORDS, BindListError, MissingEntry, RefusedEntry, checkEntries,
    checkHostPath, formatBindList, isUnder, listPresent, mountPlan,
    parseBindList, readBindList, readRecord, recordName)
from jailtwist.errors import JailtwistError
from jailtwist.install import Missing, _mayNeedLibraries, symlinkTarget
from jailtwist.passwd import replaceFile, requireRootDirectory

#: Host paths under here are copied (the jail's own configuration).
OWN_CONFIGURATION = "/etc/jailkit"

#: Top directories whose content marks a jail holding copies of the host.
_COPY_MARKS = ("usr", "bin", "sbin", "lib", "lib64", "lib32", "libx32",
               "opt")

#: The loader's cache: bound whenever an ELF file is.
LOADER_CACHE = "/etc/ld.so.cache"


class MixedJail(JailtwistError):
    """
    A copied jail asked to take binds, or a bind jail asked to take copies.
    """


def isCopiedJail(jail):
    """
    Whether C{jail} (a L{jailtwist.jail.Jail}) holds copies of host files:
    it has no bind list and one of C{usr bin sbin lib* opt} exists in it
    (a jail with only accounts, C{home/} and C{dev/} can become either).
    """
    root = jail.openRoot()
    try:
        if listPresent(root):
            return False
        for name in _COPY_MARKS:
            try:
                os.stat(name, dir_fd=root, follow_symlinks=False)
                return True
            except FileNotFoundError:
                continue
        return False
    finally:
        os.close(root)


def _readJailList(jail):
    root = jail.openRoot()
    try:
        return readBindList(root)
    except BindListError as e:
        raise BindListError(f"jail {jail.location}: {e}") from None
    finally:
        os.close(root)


def readEntries(jail, warn=None):
    """
    The entries of C{jail}'s bind list (an empty list without one, even
    if the host kept a record for a jail once at its path): the
    host's record of it (L{jailtwist.bindlist.RECORDS}) when there is one,
    so what a root inside the jail wrote there is never taken over;
    otherwise (a jail moved, or built by an older jailtwist) the jail's own
    list, adopted as it is.

    @param warn: called with a line when the jail's list is not the
        record (it is ignored) or is adopted without one.
    @return: C{(lineNumber, path)} pairs.
    @raise jailtwist.bindlist.BindListError: if the list cannot be trusted.
    """
    # An untrusted list in the jail stops the run even with a record: the
    # rewrite would keep its mode and owner.
    data = _readJailList(jail)
    if data is None:
        # Not (yet) a bind jail: a record left by a jail once at this path
        # is not taken over.
        return []
    record = readRecord(jail.location)
    where = f"{jail.location}/{LIST}"
    if record is not None:
        if data != record and warn is not None:
            warn(f"{where} differs from the host's record "
                 f"{RECORDS}/{recordName(jail.location)}: the record is "
                 f"used and the jail's list rewritten")
        data = record
    elif warn is not None:
        warn(f"the host has no record of {where}: its entries are adopted "
             f"as they are (check them: a root inside the jail could have "
             f"added some)")
    return parseBindList(data or b"")


def listRecorded(jail):
    """
    Whether C{jail}'s own bind list is the host's record of it.
    """
    try:
        return _readJailList(jail) == readRecord(jail.location)
    except BindListError:
        return False


def writeBindList(jail, paths):
    """
    Replace C{jail}'s bind list with one naming C{paths}, and the host's
    record of it (L{jailtwist.bindlist.RECORDS}, created root 0755 if
    needed), atomically (written aside, synced, renamed), root-owned, mode
    0644, creating C{etc/jailkit} (root, 0755) if needed.
    """
    data = formatBindList(paths)
    try:
        os.mkdir(RECORDS, 0o755)
    except FileExistsError:
        pass
    dirFd = os.open(RECORDS, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW
                    | os.O_CLOEXEC)
    try:
        requireRootDirectory(dirFd, RECORDS)
        replaceFile(dirFd, recordName(jail.location), data, 0o644)
    finally:
        os.close(dirFd)
    dirFd, name = jail.openParent(LIST, create=True)
    try:
        requireRootDirectory(dirFd,
                             f"{jail.location}/{os.path.dirname(LIST)}")
        replaceFile(dirFd, name, data, 0o644)
    finally:
        os.close(dirFd)


def removeMountPoint(jail, path):
    """
    Remove the mount point jailtwist made for C{path} in C{jail}: an empty
    regular file or an empty directory owned by root.  Anything else there
    is left alone.
    """
    try:
        dirFd, name = jail.openParent(path)
    except OSError:
        return
    try:
        st = os.stat(name, dir_fd=dirFd, follow_symlinks=False)
        if st.st_uid != 0:
            return
        if stat.S_ISREG(st.st_mode) and st.st_size == 0:
            os.unlink(name, dir_fd=dirFd)
        elif stat.S_ISDIR(st.st_mode):
            os.rmdir(name, dir_fd=dirFd)
    except OSError:
        pass
    finally:
        os.close(dirFd)


class BindCollector:
    """
    The host paths a bind jail needs, gathered the way an
    L{jailtwist.install.Installer} would copy them.

    @param installer: the L{jailtwist.install.Installer} of the jail, for
        what stays the jail's own (symlinks, devices, directories,
        C{etc/jailkit}, mount points).
    @param dryRun: change nothing in the jail, only collect (C{jk_update
        -d}).
    @ivar paths: host paths (real, checked) to bind, as L{HostPath}s by
        path.
    @ivar refused: L{RefusedEntry}s met (a section naming C{/var/x}).
    @ivar missing: the installer's L{Missing} list (shared).
    """

    def __init__(self, installer, dryRun=False):
        self.installer = installer
        self.dryRun = dryRun
        self.jail = installer.jail
        self.resolver = installer.resolver
        self.missing = installer.missing
        self.paths = {}
        self.refused = []
        self._seen = set()
        self._elf = False

    # -- the Installer interface JailBuilder uses ---------------------------

    def install(self, path, keepSetuid=False, keepOwner=True,
                libraries=True):
        """
        Record C{path} (and what it needs) for binding, or make it in the
        jail when it is the jail's own.
        """
        path = os.path.normpath(path)
        if path in self._seen:
            return True
        self._seen.add(path)
        if path == OWN_CONFIGURATION or \
                path.startswith(OWN_CONFIGURATION + "/"):
            return self._own(path, keepSetuid, keepOwner, libraries)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            self.missing.append(Missing(path, "does not exist"))
            return False
        except OSError as e:
            self.missing.append(Missing(path, f"cannot examine: "
                                              f"{e.strerror}"))
            return False
        kind = stat.S_IFMT(st.st_mode)
        if kind in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK):
            return self._own(path, keepSetuid, keepOwner, libraries)
        real = os.path.join(os.path.realpath(os.path.dirname(path)),
                            os.path.basename(path))
        if real != path:
            # A symlinked directory on the way (usrmerge's bin -> usr/bin):
            # the jail gets the same symlinks, the real path is bound.
            self.makeDirectory(os.path.dirname(path))
            return self.install(real, keepSetuid, keepOwner, libraries)
        if kind == stat.S_IFLNK:
            target = symlinkTarget(path) if self.dryRun else \
                self.installer.makeSymlink(path)
            if target != "/":
                self.install(target, keepSetuid, keepOwner, libraries)
            return True
        if not self._record(path):
            return False
        if kind == stat.S_IFDIR:
            self._walk(path, libraries)
        elif libraries and _mayNeedLibraries(path, st):
            self.installLibraries(path)
        return True

    def installLibraries(self, path):
        """
        Record the loader, libraries and symlinks the ELF file C{path}
        needs.
        """
        resolution = self.resolver.resolve(path)
        for name, neededBy in resolution.missing:
            self.missing.append(Missing(name, f"needed by {neededBy}, "
                                              f"not found on this host"))
        if resolution.paths or self.resolver.object(path) is not None:
            self._elf = True
        for library in resolution.paths:
            self.install(library, libraries=False)

    def makeDirectory(self, path, mode=0o755):
        if not self.dryRun:
            self.installer.makeDirectory(path, mode)

    def _own(self, path, keepSetuid, keepOwner, libraries):
        """
        Make C{path} in the jail as a copy does: it is the jail's own.
        """
        if self.dryRun:
            return True
        return self.installer.install(path, keepSetuid, keepOwner,
                                      libraries)

    def finish(self):
        """
        Bind the host's loader cache when an ELF file is bound.
        """
        if self._elf:
            self.install(LOADER_CACHE, libraries=False)

    # -- recording ----------------------------------------------------------

    def _record(self, path):
        try:
            self.paths[path] = checkHostPath(path, self.jail.location)
        except RefusedEntry as e:
            self.refused.append(e)
            return False
        except MissingEntry:
            self.missing.append(Missing(path, "does not exist"))
            return False
        return True

    def _walk(self, top, libraries):
        """
        What the files of a bound directory need from outside it: the
        targets of symlinks that leave it, and the libraries of its
        programs and shared objects (executable, or C{.so} in the name).
        C{/usr/share} holds architecture-independent data (FHS), no ELF
        objects: only its symlinks are followed, which saves a C{stat} of
        each of its thousands of files.
        """
        if isUnder(top, "/usr/share"):
            libraries = False
        pending = [top]
        while pending:
            try:
                entries = list(os.scandir(pending.pop()))
            except OSError:
                continue
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(entry.path)
                    elif entry.is_symlink():
                        target = symlinkTarget(entry.path)
                        if not isUnder(target, top):
                            target = os.path.realpath(entry.path)
                            if not isUnder(target, top) and \
                                    os.path.lexists(target):
                                self.install(target, libraries=libraries)
                    elif libraries and (".so" in entry.name or
                                        entry.stat(follow_symlinks=False)
                                        .st_mode & 0o111):
                        if entry.is_file(follow_symlinks=False):
                            self.installLibraries(entry.path)
                except OSError:
                    continue

    # -- results ------------------------------------------------------------

    def resolveAgain(self, refused):
        """
        Resolve again entries of the old list that the host now has in
        another form (a file became a symlink after an upgrade): their old
        mount points go, and the path is collected as a section's would be
        (the symlink recreated, its target listed).

        @param refused: L{RefusedEntry}s with C{onHost} set.
        """
        for entry in refused:
            if not self.dryRun:
                removeMountPoint(self.jail, entry.path)
            self.install(entry.path)

    def merge(self, entries):
        """
        Add the entries of an existing list, checked again.

        @param entries: C{(lineNumber, path)} pairs.
        @return: the L{jailtwist.bindlist.CheckedList} of those entries.
        """
        checked = checkEntries(entries, self.jail.location)
        for entry in checked.accepted:
            self.paths.setdefault(entry.path, entry)
        return checked

    def plan(self):
        """
        @return: the L{jailtwist.bindlist.BindMount}s of what was
            collected.
        """
        return mountPlan(self.paths.values())

    def makeMountPoints(self):
        """
        Create the mount point of every mount of the plan.
        """
        for mount in self.plan():
            self.installer.makeMountPoint(mount.target, mount.directory)

    def write(self, keep=()):
        """
        Create the mount points and write the list: what was collected,
        plus C{keep} (entries of the old list to keep as they are, such as
        ones the host lacks for now).
        """
        self.makeMountPoints()
        writeBindList(self.jail, list(self.paths) + list(keep))

