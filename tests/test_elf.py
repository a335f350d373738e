"""
Tests for L{jailtwist.elf}: the ELF reader and glibc's library search
order, on objects built with the real toolchain and checked against the
real loader.
"""

import atexit
import os
import shutil
import subprocess
import tempfile

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from jailtwist import elf
from jailtwist.elf import ElfResolver, readElf, readLdSoConf, ldSoConfFiles

LOADER = "/lib64/ld-linux-x86-64.so.2"
_fixtures = None


def _gcc(*args):
    gcc = shutil.which("gcc")
    if gcc is None:
        raise AssertionError("gcc is not installed: the ELF fixtures are "
                             "compiled (bootstrap.sh installs gcc as a test "
                             "package)")
    subprocess.run([gcc] + list(args), check=True, capture_output=True)


def fixtures():
    """
    Build (once per test run) a tree of small libraries and programs:

      a/liba.so              no dependencies
      b/libb.so              needs liba.so
      lib/x86_64-linux-gnu/libb.so, x86_64/libb.so   copies of libb.so
      rpath                  needs libb.so; DT_RPATH $ORIGIN/b:TREE/a
      runpath                needs libb.so; DT_RUNPATH TREE/b
      libdst                 needs libb.so; DT_RUNPATH TREE/$LIB
      platform               needs libb.so; DT_RUNPATH TREE/${PLATFORM}
      a/libnoname.so         liba.so's code, without a soname
      slash                  needs TREE/a/libnoname.so by path
      notelf/liba.so         a text file named like a library
    """
    global _fixtures
    if _fixtures is not None:
        return _fixtures
    tree = tempfile.mkdtemp(prefix="jt-elf-")
    atexit.register(shutil.rmtree, tree, True)
    t = FilePath(tree)
    for d in ("a", "b", "lib/x86_64-linux-gnu", "x86_64", "notelf",
              "conf.d", "src"):
        t.preauthChild(d).makedirs()
    src = t.child("src")
    src.child("a.c").setContent(b"int a(void) { return 1; }\n")
    src.child("b.c").setContent(b"int a(void); int b(void) { return a(); }\n")
    src.child("main.c").setContent(
        b"int b(void); int main(void) { return b() - 1; }\n")
    src.child("slash.c").setContent(
        b"int a(void); int main(void) { return a() - 1; }\n")
    _gcc("-shared", "-fPIC", "-Wl,-soname,liba.so", "-o",
         t.child("a").child("liba.so").path, src.child("a.c").path)
    _gcc("-shared", "-fPIC", "-Wl,-soname,libb.so", "-o",
         t.child("b").child("libb.so").path, src.child("b.c").path,
         "-L" + t.child("a").path, "-la")
    for d in ("lib/x86_64-linux-gnu", "x86_64"):
        shutil.copy(t.child("b").child("libb.so").path,
                    t.preauthChild(d).child("libb.so").path)
    main = src.child("main.c").path
    libs = ["-L" + t.child("b").path, "-lb",
            "-Wl,-rpath-link," + t.child("a").path]
    _gcc("-o", t.child("rpath").path, main, *libs,
         "-Wl,--disable-new-dtags",
         "-Wl,-rpath,$ORIGIN/b:" + t.child("a").path)
    _gcc("-o", t.child("runpath").path, main, *libs,
         "-Wl,--enable-new-dtags", "-Wl,-rpath," + t.child("b").path)
    _gcc("-o", t.child("libdst").path, main, *libs,
         "-Wl,--enable-new-dtags", "-Wl,-rpath," + tree + "/$LIB")
    _gcc("-o", t.child("platform").path, main, *libs,
         "-Wl,--enable-new-dtags", "-Wl,-rpath," + tree + "/${PLATFORM}")
    _gcc("-shared", "-fPIC", "-o", t.child("a").child("libnoname.so").path,
         src.child("a.c").path)
    _gcc("-o", t.child("slash").path, src.child("slash.c").path,
         t.child("a").child("libnoname.so").path)
    t.child("notelf").child("liba.so").setContent(b"not an ELF file\n")
    # An ld.so.conf with a relative include glob and an include cycle.
    t.child("ld.so.conf").setContent(
        b"# test configuration\ninclude conf.d/*.conf\n"
        + t.child("notelf").path.encode() + b"\n")
    t.child("conf.d").child("10-a.conf").setContent(
        t.child("a").path.encode() + b"   # the a directory\n")
    t.child("conf.d").child("20-loop.conf").setContent(
        b"include " + t.child("ld.so.conf").path.encode() + b"\nhwcap 0 x\n")
    t.child("empty.conf").setContent(b"")
    _fixtures = t
    return t


class ReaderTests(SynchronousTestCase):
    """
    L{readElf} reads what the loader reads.
    """

    def test_fixture(self):
        t = fixtures()
        obj = readElf(t.child("rpath").path)
        self.assertEqual(obj.elfClass, 64)
        self.assertEqual(obj.machine, "EM_X86_64")
        self.assertEqual(obj.interpreter, LOADER)
        self.assertEqual(obj.needed, ("libb.so", "libc.so.6"))
        self.assertEqual(obj.rpath, ("$ORIGIN/b", t.child("a").path))
        self.assertEqual(obj.runpath, ())
        lib = readElf(t.child("b").child("libb.so").path)
        self.assertEqual(lib.soname, "libb.so")
        self.assertIsNone(lib.interpreter)
        self.assertEqual(readElf(t.child("runpath").path).runpath,
                         (t.child("b").path,))

    def test_notElf(self):
        t = fixtures()
        self.assertIsNone(readElf(t.child("notelf").child("liba.so").path))
        self.assertIsNone(readElf(t.child("nothing").path))
        truncated = FilePath(self.mktemp())
        truncated.setContent(
            FilePath("/usr/bin/true").getContent()[:100])
        self.assertIsNone(readElf(truncated.path))

    def test_agreesWithPyelftools(self):
        """
        The fast reader gives exactly what pyelftools' full model gives,
        over the ELF files of /usr/bin and the fixtures.
        """
        t = fixtures()
        paths = [t.child(n).path for n in ("rpath", "runpath", "slash")]
        for name in sorted(os.listdir("/usr/bin")):
            path = os.path.join("/usr/bin", name)
            if os.path.isfile(path) and not os.path.islink(path):
                paths.append(path)
        compared = 0
        for path in paths:
            with open(path, "rb") as f:
                head = f.read(64)
                if head[:4] != b"\x7fELF":
                    continue
                fast = elf._fastParse(path, f, head)
                f.seek(0)
                full = elf._parse(path, f)
            self.assertEqual(fast.__dict__, full.__dict__, path)
            compared += 1
        self.assertGreater(compared, 20)


class LdSoConfTests(SynchronousTestCase):
    """
    L{readLdSoConf} follows includes (relative globs, cycles) as ldconfig.
    """

    def test_includes(self):
        t = fixtures()
        conf = t.child("ld.so.conf").path
        self.assertEqual(readLdSoConf(conf),
                         [t.child("a").path, t.child("notelf").path])
        self.assertEqual(ldSoConfFiles(conf), [
            conf, t.child("conf.d").child("10-a.conf").path,
            t.child("conf.d").child("20-loop.conf").path])

    def test_missing(self):
        self.assertEqual(readLdSoConf(self.mktemp()), [])

    def test_host(self):
        """
        This host's configuration names the multiarch directory.
        """
        self.assertIn("/usr/lib/x86_64-linux-gnu", readLdSoConf())


class SearchOrderTests(SynchronousTestCase):
    """
    L{ElfResolver} follows glibc's search order.
    """

    def resolver(self, conf="empty.conf"):
        return ElfResolver(ldSoConf=fixtures().child(conf).path)

    def test_rpathInherited(self):
        """
        DT_RPATH of the executable ($ORIGIN expanded) finds libb.so, and
        is searched again for libb.so's own liba.so.
        """
        t = fixtures()
        result = self.resolver().resolve(t.child("rpath").path)
        self.assertEqual(result.missing, [])
        self.assertEqual(result.paths[0], LOADER)
        self.assertIn(t.child("b").child("libb.so").path, result.paths)
        self.assertIn(t.child("a").child("liba.so").path, result.paths)
        self.assertEqual(result.viaConf, [])

    def test_originOfProgramIsReal(self):
        """
        A program reached through a symlink elsewhere (as /usr/bin/jps ->
        /usr/lib/jvm/.../bin/jps) has its real directory as $ORIGIN.
        """
        t = fixtures()
        links = FilePath(self.mktemp())
        links.makedirs()
        os.symlink(t.child("rpath").path, links.child("prog").path)
        result = self.resolver().resolve(links.child("prog").path)
        self.assertEqual(result.missing, [])
        self.assertIn(t.child("b").child("libb.so").path, result.paths)

    def test_runpathNotInherited(self):
        """
        DT_RUNPATH applies only to the object that has it: libb.so's liba.so
        is not found through the executable's RUNPATH...
        """
        t = fixtures()
        result = self.resolver().resolve(t.child("runpath").path)
        self.assertEqual(result.missing,
                         [("liba.so", t.child("b").child("libb.so").path)])

    def test_ldSoConf(self):
        """
        ...but through ld.so.conf, skipping a file that is not ELF in a
        directory listed earlier, and reported as found through it.
        """
        t = fixtures()
        result = self.resolver("ld.so.conf").resolve(t.child("runpath").path)
        self.assertEqual(result.missing, [])
        liba = t.child("a").child("liba.so").path
        self.assertIn(liba, result.paths)
        self.assertEqual(result.viaConf, [liba])

    def test_dynamicStringTokens(self):
        t = fixtures()
        resolver = self.resolver("ld.so.conf")
        result = resolver.resolve(t.child("libdst").path)
        self.assertIn(t.preauthChild("lib/x86_64-linux-gnu/libb.so").path,
                      result.paths)
        result = resolver.resolve(t.child("platform").path)
        self.assertIn(t.preauthChild("x86_64/libb.so").path, result.paths)

    def test_slash(self):
        t = fixtures()
        result = self.resolver().resolve(t.child("slash").path)
        self.assertEqual(result.missing, [])
        self.assertIn(t.child("a").child("libnoname.so").path, result.paths)

    def test_libraryNeedsLoader(self):
        """
        A library's DT_NEEDED of the loader (libc.so.6 needs
        ld-linux-x86-64.so.2) is the standard loader, as ldd shows it.
        """
        paths = self.resolver().resolve(
            "/lib/x86_64-linux-gnu/libnss_files.so.2").paths
        self.assertIn(LOADER, paths)
        self.assertNotIn("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", paths)

    def test_notDynamic(self):
        result = self.resolver().resolve("/etc/hostname")
        self.assertEqual((result.paths, result.missing), ([], []))
        busybox = "/bin/busybox"
        if os.path.exists(busybox) and readElf(busybox).interpreter is None:
            self.assertEqual(self.resolver().resolve(busybox).paths, [])

    def test_agreesWithLoader(self):
        """
        For the fixture and some host programs, the resolver finds the same
        files as the real loader's --list (compared by real path).
        """
        t = fixtures()
        resolver = ElfResolver()
        for path in [t.child("rpath").path, "/usr/bin/ssh", "/usr/bin/git",
                     "/usr/bin/bash", "/usr/lib/openssh/sftp-server"]:
            if not os.path.exists(path):
                continue
            out = subprocess.run([LOADER, "--list", path], capture_output=True,
                                 text=True, check=True,
                                 env={"PATH": "/usr/bin:/bin"}).stdout
            loader = set()
            for line in out.splitlines():
                line = line.strip()
                if "=>" in line:
                    line = line.split("=>", 1)[1].strip()
                if line.startswith("/"):
                    loader.add(os.path.realpath(line.split(" (")[0]))
            mine = {os.path.realpath(p) for p in resolver.resolve(path).paths}
            self.assertEqual(mine, loader, path)

    def test_cached(self):
        """
        Each object is parsed once however often it is needed.
        """
        parsed = []
        real = elf.readElf
        self.patch(elf, "readElf",
                   lambda path: parsed.append(path) or real(path))
        resolver = ElfResolver()
        first = resolver.resolve("/usr/bin/ls").paths
        count = len(parsed)
        self.assertEqual(resolver.resolve("/usr/bin/ls").paths, first)
        resolver.resolve("/usr/bin/cp")
        self.assertEqual(len(parsed), count + 1 + len(
            set(resolver.resolve("/usr/bin/cp").paths) - set(first)))
