"""
Tests for L{jailtwist.registry}: jids and names, atomic records, pruning of
jails whose init is gone (pid reuse included), and resolving a jid, a name
or the pid of a process inside a jail to a pinned process.
"""

import json
import os
import shutil
import subprocess

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from jailtwist import enter
from jailtwist.errors import JailtwistError
from jailtwist.registry import JailRecord, JailRegistry, checkName
from tests import harness
from tests.test_launch import BUSYBOX


class RegistryTests(SynchronousTestCase):

    def setUp(self):
        self.registry = JailRegistry(FilePath(self.mktemp()),
                                     clock=lambda: 1234.5)

    def sleeper(self):
        """
        A real process standing in for a jail's init.
        """
        process = subprocess.Popen(["sleep", "30"])
        self.addCleanup(process.wait)
        self.addCleanup(process.kill)
        return process

    def test_registerAndList(self):
        a, b = self.sleeper(), self.sleeper()
        first = self.registry.register("/srv/jails/web", a.pid, ["pid"])
        second = self.registry.register("/srv/jails/web", b.pid, [],
                                        name="other")
        third = self.registry.register("/srv/jails/web/", os.getpid())
        self.assertEqual([r.jid for r in (first, second, third)], [1, 2, 3])
        self.assertEqual([r.name for r in (first, second, third)],
                         ["web", "other", "web-2"])
        self.assertEqual(self.registry.entries(), [first, second, third])
        self.assertEqual(first.initPid, a.pid)
        self.assertEqual(first.isolation, ["pid"])
        self.assertEqual(first.created, 1234.5)
        self.assertEqual(first.startTime, enter.processStartTime(a.pid))

    def test_recordsAreWholeFiles(self):
        record = self.registry.register("/srv/j", os.getpid(), ["fs"])
        names = sorted(os.listdir(self.registry.directory.path))
        self.assertEqual(names, [".lock", ".next-jid", "1.json"])
        with open(self.registry.directory.child("1.json").path) as f:
            self.assertEqual(JailRecord.fromDict(json.load(f)), record)
        self.assertEqual(
            os.stat(self.registry.directory.child("1.json").path).st_mode
            & 0o777, 0o644)

    def test_deadInitPruned(self):
        process = self.sleeper()
        self.registry.register("/srv/j", process.pid)
        process.kill()
        process.wait()
        self.assertEqual(self.registry.entries(), [])
        self.assertFalse(self.registry.directory.child("1.json").exists())

    def test_reusedPidIsNotTheJail(self):
        """
        A record whose pid now belongs to another process (another start
        time) is stale.
        """
        record = self.registry.register("/srv/j", os.getpid())
        path = self.registry.directory.child("1.json")
        data = json.loads(path.getContent())
        data["startTime"] = record.startTime - 1
        path.setContent(json.dumps(data).encode())
        self.assertEqual(self.registry.entries(), [])

    def test_jidsNotReused(self):
        record = self.registry.register("/srv/j", os.getpid())
        self.registry.unregister(record.jid)
        self.assertEqual(self.registry.register("/srv/j", os.getpid()).jid, 2)

    def test_namesUnique(self):
        self.registry.register("/srv/j", os.getpid(), name="web")
        error = self.assertRaises(JailtwistError, self.registry.register,
                                  "/srv/k", os.getpid(), name="web")
        self.assertIn("already named 'web'", str(error))

    def test_nameRules(self):
        for bad in ("", "12", "-x", "a b", "a/b", "x" * 65, "pid:3",
                    "web\n"):
            self.assertRaises(JailtwistError, checkName, bad)
        for good in ("web", "w3", "a.b_c-d", "3d"):
            checkName(good)
        record = self.registry.register("/srv/jails/123", os.getpid())
        self.assertEqual(record.name, "jail-123")

    def test_deadProcessNotRegistered(self):
        process = subprocess.Popen(["true"])
        process.wait()
        self.assertRaises(JailtwistError, self.registry.register, "/srv/j",
                          process.pid)

    def test_lookup(self):
        record = self.registry.register("/srv/j", os.getpid(), name="web")
        for spec in (1, "1", "jid:1", "web", "name:web"):
            self.assertEqual(self.registry.lookup(spec), record)
        for spec in (2, "other", "jid:x"):
            error = self.assertRaises(JailtwistError, self.registry.lookup,
                                      spec)
            self.assertEqual(len(str(error).splitlines()), 1)

    def test_resolveByJidAndName(self):
        process = self.sleeper()
        record = self.registry.register("/srv/j", process.pid, name="web")
        with self.registry.resolve("web") as pinned:
            self.assertEqual((pinned.pid, pinned.root, pinned.record),
                             (process.pid, "/srv/j", record))
            self.assertTrue(pinned.alive())
            process.kill()
            process.wait()
            self.assertFalse(pinned.alive())
        self.assertRaises(JailtwistError, self.registry.resolve, 1)

    def test_emptyRegistry(self):
        self.assertEqual(self.registry.entries(), [])
        self.assertRaises(JailtwistError, self.registry.lookup, "web")


class ResolvePidTests(SynchronousTestCase):
    """
    Resolving C{pid:N} for real chrooted processes.
    """

    def setUp(self):
        harness.isolated(self)
        parent = harness.jailParent(self)
        self.jail = parent.child("jail").path
        os.makedirs(self.jail + "/bin")
        shutil.copy(BUSYBOX, self.jail + "/bin/busybox")
        self.registry = JailRegistry(FilePath(self.mktemp()))

    def chrooted(self):
        process = subprocess.Popen(["chroot", self.jail, "/bin/busybox",
                                    "sleep", "30"])
        self.addCleanup(process.wait)
        self.addCleanup(process.kill)
        harness.waitFor(lambda: os.readlink(f"/proc/{process.pid}/root")
                        == self.jail, what="the chroot")
        return process

    def test_registeredJail(self):
        init = self.chrooted()
        other = self.chrooted()
        record = self.registry.register(self.jail, init.pid, name="j")
        with self.registry.resolve(f"pid:{other.pid}") as pinned:
            self.assertEqual(pinned.pid, other.pid)
            self.assertEqual(pinned.root, self.jail)
            self.assertEqual(pinned.record, record)
        self.assertEqual(self.registry.findByPid(other.pid), record)
        self.assertEqual(self.registry.lookup(f"pid:{other.pid}"), record)

    def test_unregisteredJail(self):
        process = self.chrooted()
        with self.registry.resolve(f"pid:{process.pid}") as pinned:
            self.assertEqual(pinned.root, self.jail)
            self.assertIsNone(pinned.record)

    def test_notInAJail(self):
        error = self.assertRaises(JailtwistError, self.registry.resolve,
                                  f"pid:{os.getpid()}")
        self.assertIn("not in a jail", str(error))
        self.assertRaises(JailtwistError, self.registry.lookup,
                          f"pid:{os.getpid()}")

    def test_noSuchProcess(self):
        process = subprocess.Popen(["true"])
        process.wait()
        self.assertRaises(JailtwistError, self.registry.resolve,
                          f"pid:{process.pid}")


class RecordFormatTests(SynchronousTestCase):
    """
    Records are read and written without json's Python layer (which
    imports re and enum): byte for byte what json.dumps writes, and exactly
    what json.loads reads.
    """

    TEXTS = ["/srv/jail", "web", "a\"b\\c", "tab\tnew\nline\r\x00\x1f\x7f",
             "caf\u00e9 \u2603 \U0001F600", "bad \udcff bytes", "", "/"]

    def test_writtenAsJson(self):
        from jailtwist.registry import _dumps
        for text in self.TEXTS:
            for bind in (False, True):
                record = JailRecord(7, "web", text, 1234, ["caps", text], 99,
                                    1733520000.123456, bind=bind)
                self.assertEqual(_dumps(record.asDict()),
                                 json.dumps(record.asDict(), sort_keys=True))

    def test_readAsJson(self):
        from jailtwist.registry import _loads
        for text in self.TEXTS:
            document = json.dumps({"path": text, "n": [1, -2.5e3, True,
                                                        None, {}]})
            self.assertEqual(_loads(document), json.loads(document))
            self.assertEqual(_loads(f" \n{document}\t\r\n"),
                             json.loads(f" \n{document}\t\r\n"))
        for bad in ["", "{", '{"a": 1} x', "{'a': 1}", '{"a": 01}', "[1,]",
                    '"\\x"', "\ufeff{}", '{"a": "\n"}', "NaN x", "1 2"]:
            self.assertRaises(ValueError, json.loads, bad)
            self.assertRaises(ValueError, _loads, bad)

    def test_hostileRecordSkipped(self):
        """
        A record that is not JSON, or not a record, is skipped.
        """
        registry = JailRegistry(self.mktemp())
        os.makedirs(registry.jails)
        for name, data in [("1.json", b"{not json"), ("2.json", b"[1, 2]"),
                           ("3.json", b'{"jid": "x"}'), ("4.json", b"\xff")]:
            with open(os.path.join(registry.jails, name), "wb") as f:
                f.write(data)
        self.assertEqual(registry.entries(), [])
