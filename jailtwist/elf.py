# -*- test-case-name: tests.test_elf -*-
"""
Which files a dynamically linked program needs, found the way glibc's
loader finds them, by reading ELF headers with pyelftools: no C{ldd}, and the
program is never executed.

For each object the loader maps, every C{DT_NEEDED} name is searched in
glibc's order:

  1. a name with a C{/} in it is a path;
  2. C{DT_RPATH} of the object that needs the library, then of the object
     that loaded that one, up to the executable, unless the needing object
     has a C{DT_RUNPATH} (an object with both ignores its C{DT_RPATH});
  3. (C{LD_LIBRARY_PATH}: a property of one process, ignored for copying);
  4. C{DT_RUNPATH} of the needing object only;
  5. the directories of C{/etc/ld.so.conf} and the files it includes
     (what C{ldconfig} puts in C{ld.so.cache}), unless C{DF_1_NODEFLIB};
  6. the default directories, C{/lib/TRIPLET /usr/lib/TRIPLET /lib
     /usr/lib} on Debian.

C{$ORIGIN}, C{$LIB} and C{$PLATFORM} (also in braces) are expanded as
Debian's glibc does; a candidate of the wrong ELF class or machine is
skipped as the loader skips it.  Libraries that are only C{dlopen}ed (NSS
modules, gconv) are not visible here: jk_init's sections name them.

The loader's optional C{glibc-hwcaps/} and legacy platform subdirectories
are not searched: the baseline library they would shadow is always there,
and it is what a jail needs (its loader falls back to it).

Everything parsed is cached in the L{ElfResolver}, so resolving thousands
of files for one jail reads each object once.
"""

import copy
import glob
import os
import struct

_MAGIC = b"\x7fELF"
DF_1_NODEFLIB = 0x800

# e_machine numbers -> pyelftools' names, for the machines below.
MACHINE_NAMES = {62: "EM_X86_64", 3: "EM_386", 183: "EM_AARCH64",
                 40: "EM_ARM", 21: "EM_PPC64", 22: "EM_S390", 243: "EM_RISCV"}

# e_machine -> the standard dynamic loader (PT_INTERP of programs).
INTERPRETERS = {
    "EM_X86_64": "/lib64/ld-linux-x86-64.so.2",
    "EM_386": "/lib/ld-linux.so.2",
    "EM_AARCH64": "/lib/ld-linux-aarch64.so.1",
    "EM_ARM": "/lib/ld-linux-armhf.so.3",
    "EM_PPC64": "/lib64/ld64.so.2",
    "EM_S390": "/lib/ld64.so.1",
    "EM_RISCV": "/lib/ld-linux-riscv64-lp64d.so.1",
}

# e_machine -> (multiarch triplet, $PLATFORM) for Debian's glibc.
MACHINES = {
    "EM_X86_64": ("x86_64-linux-gnu", "x86_64"),
    "EM_386": ("i386-linux-gnu", "i686"),
    "EM_AARCH64": ("aarch64-linux-gnu", "aarch64"),
    "EM_ARM": ("arm-linux-gnueabihf", "v7l"),
    "EM_PPC64": ("powerpc64le-linux-gnu", "power8"),
    "EM_S390": ("s390x-linux-gnu", "z196"),
    "EM_RISCV": ("riscv64-linux-gnu", "riscv64"),
}


class ElfObject:
    """
    What the loader reads from one ELF file.

    @ivar path: the path it was read from.
    @ivar elfClass: 32 or 64.
    @ivar machine: pyelftools' C{e_machine} name (C{"EM_X86_64"}).
    @ivar interpreter: C{PT_INTERP} or C{None} (static, or a library).
    @ivar needed: the C{DT_NEEDED} names, in order.
    @ivar rpath: C{DT_RPATH} entries (empty if there is a C{DT_RUNPATH}).
    @ivar runpath: C{DT_RUNPATH} entries.
    @ivar soname: C{DT_SONAME} or C{None}.
    @ivar nodeflib: C{DF_1_NODEFLIB} is set.
    """

    def __init__(self, path, elfClass, machine, interpreter=None, needed=(),
                 rpath=(), runpath=(), soname=None, nodeflib=False):
        self.path = path
        self.elfClass = elfClass
        self.machine = machine
        self.interpreter = interpreter
        self.needed = tuple(needed)
        self.runpath = tuple(runpath)
        self.rpath = () if self.runpath else tuple(rpath)
        self.soname = soname
        self.nodeflib = nodeflib

    def __repr__(self):
        return f"ElfObject({self.path!r})"

    def compatible(self, other):
        """
        Whether the loader would accept C{other} as a library of this one.
        """
        return (self.elfClass == other.elfClass
                and self.machine == other.machine)


def readElf(path):
    """
    Parse the loader-relevant parts of the ELF file at C{path}.

    The few fields the loader uses (program headers, the dynamic section
    and its strings) are read directly with C{struct}, which is about
    thirty times faster than building pyelftools' full model; a file this
    reader finds unusual (extended program header numbering, a string
    table outside every loadable segment...) is handed to pyelftools.

    @return: an L{ElfObject}, or C{None} if C{path} is not a readable ELF
        file (scripts, data, a truncated or corrupt file).
    """
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if head[:4] != _MAGIC:
                return None
            try:
                return _fastParse(path, f, head)
            except _Unusual:
                f.seek(0)
                return _parse(path, f)
    except (OSError, ValueError, KeyError, AssertionError, struct.error):
        return None
    except Exception as e:
        # pyelftools raises its own and construct's errors on bad files.
        if type(e).__module__.split(".")[0] in ("elftools", "construct"):
            return None
        raise


class _Unusual(Exception):
    """
    Something the fast reader leaves to pyelftools.
    """


def _fastParse(path, f, head):
    elfClass = {1: 32, 2: 64}.get(head[4])
    endian = {1: "<", 2: ">"}.get(head[5])
    if elfClass is None or endian is None or len(head) < 52:
        raise _Unusual()
    if elfClass == 64:
        if len(head) < 64:
            raise _Unusual()
        (machine, phoff, phentsize, phnum) = (
            struct.unpack_from(endian + "H", head, 18)[0],
            struct.unpack_from(endian + "Q", head, 32)[0],
            *struct.unpack_from(endian + "HH", head, 54))
        phFormat, phSize = endian + "IIQQQQQQ", 56
        dynFormat = endian + "qQ"
    else:
        (machine, phoff, phentsize, phnum) = (
            struct.unpack_from(endian + "H", head, 18)[0],
            struct.unpack_from(endian + "I", head, 28)[0],
            *struct.unpack_from(endian + "HH", head, 42))
        phFormat, phSize = endian + "IIIIIIII", 32
        dynFormat = endian + "iI"
    if phnum == 0xFFFF or (phnum and phentsize < phSize):
        raise _Unusual()
    f.seek(phoff)
    table = f.read(phnum * phentsize)
    if len(table) < phnum * phentsize:
        raise _Unusual()
    loads = []
    dynamic = interp = None
    for i in range(phnum):
        fields = struct.unpack_from(phFormat, table, i * phentsize)
        if elfClass == 64:
            kind, _, offset, vaddr, _, filesz, _, _ = fields
        else:
            kind, offset, vaddr, _, filesz, _, _, _ = fields
        if kind == 1:
            loads.append((vaddr, offset, filesz))
        elif kind == 2:
            dynamic = (offset, filesz)
        elif kind == 3:
            interp = (offset, filesz)
    interpreter = None
    if interp is not None:
        f.seek(interp[0])
        interpreter = f.read(interp[1]).split(b"\0", 1)[0].decode(
            "utf-8", "surrogateescape")
    needed, rpath, runpath = [], [], []
    soname = None
    flags1 = 0
    if dynamic is not None:
        f.seek(dynamic[0])
        data = f.read(dynamic[1])
        size = struct.calcsize(dynFormat)
        entries = []
        strtab = strsz = None
        for offset in range(0, len(data) - size + 1, size):
            tag, value = struct.unpack_from(dynFormat, data, offset)
            if tag == 0:
                break
            if tag == 5:
                strtab = value
            elif tag == 10:
                strsz = value
            elif tag == 0x6FFFFFFB:
                flags1 = value
            elif tag in (1, 14, 15, 29):
                entries.append((tag, value))
        if entries:
            if strtab is None or strsz is None:
                raise _Unusual()
            for vaddr, offset, filesz in loads:
                if vaddr <= strtab < vaddr + filesz:
                    f.seek(strtab - vaddr + offset)
                    strings = f.read(strsz)
                    break
            else:
                raise _Unusual()
            for tag, value in entries:
                if value >= len(strings):
                    raise _Unusual()
                text = strings[value:strings.index(b"\0", value)].decode(
                    "utf-8", "surrogateescape")
                if tag == 1:
                    needed.append(text)
                elif tag == 14:
                    soname = text
                elif tag == 15:
                    rpath.extend(text.split(":"))
                else:
                    runpath.extend(text.split(":"))
    return ElfObject(path, elfClass, MACHINE_NAMES.get(machine,
                                                       f"EM_{machine}"),
                     interpreter, needed, rpath, runpath, soname,
                     bool(flags1 & DF_1_NODEFLIB))


def _parse(path, f):
    """
    The same facts through pyelftools' full model.
    """
    from elftools.elf.elffile import ELFFile

    elf = ELFFile(f)
    interpreter = None
    needed = []
    rpath = []
    runpath = []
    soname = None
    flags1 = 0
    for segment in elf.iter_segments():
        kind = segment["p_type"]
        if kind == "PT_INTERP":
            interpreter = segment.get_interp_name()
        elif kind == "PT_DYNAMIC":
            for tag in segment.iter_tags():
                name = tag.entry.d_tag
                if name == "DT_NEEDED":
                    needed.append(tag.needed)
                elif name == "DT_RPATH":
                    rpath.extend(tag.rpath.split(":"))
                elif name == "DT_RUNPATH":
                    runpath.extend(tag.runpath.split(":"))
                elif name == "DT_SONAME":
                    soname = tag.soname
                elif name == "DT_FLAGS_1":
                    flags1 = tag.entry.d_val
    machine = elf["e_machine"]
    if isinstance(machine, int):
        machine = MACHINE_NAMES.get(machine, f"EM_{machine}")
    return ElfObject(path, elf.elfclass, machine, interpreter,
                     needed, rpath, runpath, soname,
                     bool(flags1 & DF_1_NODEFLIB))


def readLdSoConf(path="/etc/ld.so.conf"):
    """
    The library directories named by an C{ld.so.conf}, following
    C{include} globs (relative ones relative to the including file's
    directory) in C{ldconfig}'s order; each file is read once, so include
    cycles end.

    @return: a list of directory paths, first first, without duplicates.
    """
    return _readConf(path)[0]


def ldSoConfFiles(path="/etc/ld.so.conf"):
    """
    The configuration files an C{ld.so.conf} consists of: itself and every
    file it includes, in reading order.
    """
    return _readConf(path)[1]


def _readConf(path):
    dirs = []
    files = []
    seen = set()

    def read(conf):
        real = os.path.realpath(conf)
        if real in seen:
            return
        seen.add(real)
        try:
            with open(conf, encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            return
        files.append(conf)
        for line in lines:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            words = line.split()
            if words[0] == "include" and len(words) > 1:
                for pattern in words[1:]:
                    if not pattern.startswith("/"):
                        pattern = os.path.join(os.path.dirname(conf), pattern)
                    for included in sorted(glob.glob(pattern)):
                        read(included)
            elif words[0] == "hwcap":
                continue
            else:
                for word in line.replace(",", " ").replace(":", " ").split():
                    word = word.split("=", 1)[0].rstrip("/") or "/"
                    if word.startswith("/") and word not in dirs:
                        dirs.append(word)

    read(path)
    return dirs, files


class Resolution:
    """
    What one file needs.

    @ivar paths: the host paths to copy (interpreter and libraries), in
        load order, each once; as the loader finds them, so they may pass
        through symlinks (C{/lib/x86_64-linux-gnu/libc.so.6}).
    @ivar missing: C{(name, neededBy)} pairs the loader would not find.
    @ivar viaConf: the subset of C{paths} found only through ld.so.conf
        directories (a jail needs that configuration to find them too).
    """

    def __init__(self):
        self.paths = []
        self.missing = []
        self.viaConf = []


class ElfResolver:
    """
    Resolves the libraries of ELF files, caching every parsed object and
    every directory listing.

    @param ldSoConf: the C{ld.so.conf} to read for step 5.
    @param defaultDirs: override step 6 (tests); normally derived from the
        requesting object's machine.
    """

    def __init__(self, ldSoConf="/etc/ld.so.conf", defaultDirs=None):
        self.ldSoConf = ldSoConf
        self._confDirs = tuple(readLdSoConf(ldSoConf))
        self._defaultDirs = (tuple(defaultDirs) if defaultDirs is not None
                             else None)
        self._objects = {}
        self._listings = {}
        self._lookups = {}

    def object(self, path):
        """
        The parsed L{ElfObject} at C{path}, or C{None} for a non-ELF file.
        """
        try:
            st = os.stat(path)
        except OSError:
            return None
        key = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
        cached = self._objects.get(key)
        if cached is None:
            cached = self._objects[key] = readElf(path) or False
        if cached is False:
            return None
        if cached.path != path:
            # Same file under another name: keep facts, report this name.
            cached = copy.copy(cached)
            cached.path = path
        return cached

    def defaultDirs(self, obj):
        if self._defaultDirs is not None:
            return self._defaultDirs
        triplet = MACHINES.get(obj.machine, (None, None))[0]
        dirs = []
        if triplet:
            dirs += [f"/lib/{triplet}", f"/usr/lib/{triplet}"]
        return tuple(dirs + ["/lib", "/usr/lib"])

    def expand(self, entry, obj, main=False):
        """
        Expand C{$ORIGIN}, C{$LIB} and C{$PLATFORM} in one search path
        entry of C{obj}.

        @param main: C{obj} is the program being run: its origin is the
            directory it really is in (the kernel's C{/proc/self/exe}); a
            library's is the directory it was found in.
        """
        if "$" not in entry:
            return entry
        triplet, platform = MACHINES.get(obj.machine, (None, None))
        origin = os.path.dirname(obj.path)
        if main:
            origin = os.path.dirname(os.path.realpath(obj.path))
        lib = f"lib/{triplet}" if triplet else "lib"
        for name, value in (("ORIGIN", origin), ("LIB", lib),
                            ("PLATFORM", platform or os.uname().machine)):
            entry = entry.replace("${" + name + "}", value)
            entry = entry.replace("$" + name, value)
        return entry

    def _listing(self, directory):
        names = self._listings.get(directory)
        if names is None:
            try:
                names = frozenset(os.listdir(directory))
            except OSError:
                names = frozenset()
            self._listings[directory] = names
        return names

    def _search(self, name, dirs, requester):
        for directory in dirs:
            if not directory or not directory.startswith("/"):
                continue
            if name not in self._listing(directory):
                continue
            candidate = os.path.join(directory, name)
            found = self.object(candidate)
            if found is not None and requester.compatible(found):
                return _cleanPath(candidate)
        return None

    def find(self, name, requester, rpathChain=(), main=False):
        """
        Find the library C{name} needed by C{requester}.

        @param rpathChain: the expanded C{DT_RPATH} directories of the
            objects that loaded C{requester}, nearest first.
        @param main: C{requester} is the program being run.
        @return: C{(path, viaConf)} or C{(None, False)}.
        """
        if "/" in name:
            path = name if name.startswith("/") else None
            if path and self.object(path) is not None:
                return _cleanPath(path), False
            return None, False
        key = (name, requester.machine, requester.elfClass,
               tuple(self.expand(e, requester, main)
                     for e in requester.rpath),
               rpathChain if not requester.runpath else (),
               tuple(self.expand(e, requester, main)
                     for e in requester.runpath),
               requester.nodeflib)
        found = self._lookups.get(key)
        if found is not None:
            return found
        _, _, ownRpath, chain, runpath, nodeflib = key[1:]
        found = (None, False)
        for dirs, viaConf in (
                (ownRpath + chain if not requester.runpath else (), False),
                (runpath, False),
                (self._confDirs if not nodeflib else (), True),
                (self.defaultDirs(requester) if not nodeflib else (), False)):
            path = self._search(name, dirs, requester)
            if path is not None:
                found = (path, viaConf)
                break
        if found[1] and found[0] is not None:
            # Found through ld.so.conf: only "via conf" if the default
            # directories would not have found it as well.
            if self._search(name, self.defaultDirs(requester),
                            requester) is not None:
                found = (found[0], False)
        self._lookups[key] = found
        return found

    def resolve(self, path):
        """
        Everything the loader maps to run (or load) the file at C{path}.

        @return: a L{Resolution}; empty for a file that is not a dynamically
            linked ELF object.
        """
        result = Resolution()
        top = self.object(path)
        if top is None:
            return result
        seen = set()

        def add(found, viaConf):
            if found not in seen:
                seen.add(found)
                result.paths.append(found)
                if viaConf:
                    result.viaConf.append(found)

        # The dynamic loader is mapped first, under its PT_INTERP name; a
        # DT_NEEDED of its name (libc.so.6 needs ld-linux-x86-64.so.2) is
        # that same object, never searched for.  A library has no
        # PT_INTERP: it is loaded by its machine's standard loader.
        interpreter = top.interpreter or INTERPRETERS.get(top.machine)
        rtld = os.path.basename(interpreter) if interpreter else None
        if top.interpreter:
            if self.object(top.interpreter) is not None:
                add(top.interpreter, False)
            else:
                result.missing.append((top.interpreter, path))
        loaded = {os.path.basename(path)}
        if top.soname:
            loaded.add(top.soname)
        queue = [(top, ())]
        while queue:
            obj, chain = queue.pop(0)
            main = obj is top and top.interpreter is not None
            ownRpath = tuple(self.expand(e, obj, main) for e in obj.rpath)
            childChain = ownRpath + chain
            for name in obj.needed:
                if name in loaded:
                    continue
                loaded.add(name)
                if name == rtld and self.object(interpreter) is not None:
                    add(interpreter, False)
                    continue
                found, viaConf = self.find(name, obj, chain, main)
                if found is None:
                    result.missing.append((name, obj.path))
                    continue
                add(found, viaConf)
                lib = self.object(found)
                if lib.soname:
                    loaded.add(lib.soname)
                queue.append((lib, childChain))
        return result


def _cleanPath(path):
    """
    A path to copy: literal unless it climbs with C{..}, in which case the
    kernel's (physical) resolution of its directory is used.
    """
    if "/../" in path or "/./" in path:
        return os.path.join(os.path.realpath(os.path.dirname(path)),
                            os.path.basename(path))
    return path
