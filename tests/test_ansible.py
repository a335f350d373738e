"""
Tests for the Ansible collection in C{ansible/}: built with ansible-galaxy,
installed into a scratch collections path, and driven by real
C{ansible-playbook} runs with C{connection: local} against this machine
(inside C{tests/isolated}: accounts go to the /etc overlay, jails to the
private /mnt), its modules run by the Python of the installed package.
"""

import grp
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from jailtwist.bindlist import LIST as BIND_LIST
from jailtwist.lsh import LshPolicy
from tests import harness

SOURCE = FilePath(os.path.realpath(__file__)).parent().parent()
COLLECTION = SOURCE.child("ansible")
CALLBACKS = FilePath(__file__).parent().child("ansible")
SHIPPED = FilePath(sys.prefix).preauthChild(
    "share/jailtwist/etc/jailkit/jk_init.ini")
SFTP_SERVER = "/usr/lib/openssh/sftp-server"


def installCollection(testCase):
    """
    Build the collection with ansible-galaxy and install it into a scratch
    collections path, removed when the test ends.

    @return: the scratch directory (the ansible commands' home).
    """
    for tool in ("ansible-galaxy", "ansible-playbook", "ansible-doc"):
        if not harness.BIN.child(tool).exists():
            raise AssertionError(
                f"{tool} is missing next to {sys.executable}: install "
                f"ansible-core into the venv (bootstrap.sh test does)")
    directory = tempfile.mkdtemp(prefix="jtansible", dir="/var/tmp")
    testCase.addCleanup(shutil.rmtree, directory, True)
    for argv in (["ansible-galaxy", "collection", "build", COLLECTION.path,
                  "--output-path", directory],
                 ["ansible-galaxy", "collection", "install", "-p",
                  os.path.join(directory, "collections"),
                  os.path.join(directory, "jailtwist-jails-0.1.0.tar.gz")]):
        result = _ansible(directory, argv)
        if result.returncode:
            raise AssertionError(f"{' '.join(argv[:3])} failed: "
                                 f"{result.stdout}{result.stderr}")
    return directory


def _environment(directory):
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("ANSIBLE_")}
    env.update({
        "HOME": directory,
        "ANSIBLE_COLLECTIONS_PATH": os.path.join(directory, "collections"),
        "ANSIBLE_LOCAL_TEMP": os.path.join(directory, "tmp"),
        "ANSIBLE_REMOTE_TEMP": os.path.join(directory, "tmp"),
        "ANSIBLE_CALLBACK_PLUGINS": CALLBACKS.path,
        "ANSIBLE_STDOUT_CALLBACK": "jtresults",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "PYTHONWARNINGS": "ignore",
        # ansible refuses to start without a UTF-8 locale.
        "LC_ALL": "C.UTF-8",
    })
    return env


def _ansible(directory, argv):
    return subprocess.run([harness.BIN.child(argv[0]).path] + argv[1:],
                          env=_environment(directory), capture_output=True,
                          text=True, timeout=300, cwd=directory)


class CollectionTests(SynchronousTestCase):
    """
    The playbook a fleet would run: a copied sftp jail, a bind jail, a new
    jailed account with its jk_lsh policy and an existing account moved in
    with its home; then removals and bad input.
    """

    def setUp(self):
        self.root = harness.jailParent(self).path
        self.ansible = installCollection(self)
        self.sftp = self.root + "/sftp"
        self.bound = self.root + "/bound"
        self.accounts = []
        self.addCleanup(self._removeAccounts)

    def _removeAccounts(self):
        for name in self.accounts:
            subprocess.run(["userdel", name], capture_output=True)

    def playbook(self, plays, *options, name="site"):
        """
        Run C{plays} (written as JSON, which is YAML) with
        C{ansible-playbook} against localhost.

        @return: C{(tasks, recap)}: the results of every task by name, and
            the recap of localhost.
        """
        path = os.path.join(self.ansible, f"{name}.yml")
        with open(path, "w") as f:
            json.dump(plays, f, indent=1)
        result = _ansible(self.ansible, [
            "ansible-playbook", "-i", "localhost,", path, *options])
        lines = [line for line in result.stdout.splitlines()
                 if line.startswith('{"tasks"')]
        if not lines:
            self.fail(f"ansible-playbook printed no results (exit "
                      f"{result.returncode}):\n{result.stdout}\n"
                      f"{result.stderr}")
        report = json.loads(lines[-1])
        tasks = {task["task"]: task for task in report["tasks"]}
        return tasks, report["stats"]["localhost"]

    def assertRecap(self, tasks, recap, changed):
        """
        No task failed and C{changed} tasks changed something.
        """
        failed = {name: task["result"].get("msg")
                  for name, task in tasks.items() if task["status"] != "ok"}
        self.assertEqual(failed, {})
        self.assertEqual(recap["failures"], 0)
        self.assertEqual(
            recap["changed"], changed,
            {name: task["result"].get("changes")
             for name, task in tasks.items() if task["result"]["changed"]})

    def site(self):
        """
        The fleet playbook of the README, on this machine's jails.
        """
        return [{
            "hosts": "localhost", "connection": "local",
            "gather_facts": False,
            "vars": {"ansible_python_interpreter": sys.executable},
            "tasks": [
                {"name": "copied jail",
                 "jailtwist.jails.jail": {
                     "path": self.sftp, "sections": ["jk_lsh", "sftp", "scp"],
                     "config": SHIPPED.path}},
                {"name": "bind jail",
                 "jailtwist.jails.jail": {
                     "path": self.bound, "sections": ["jk_lsh", "sftp"],
                     "bind": True, "config": SHIPPED.path}},
                {"name": "new account",
                 "jailtwist.jails.jailed_user": {
                     "name": "jtansnew", "jail": self.sftp, "password": "*",
                     "lsh_executables": [SFTP_SERVER, "/usr/bin/scp"],
                     "lsh_paths": ["/usr/bin", "/usr/lib/openssh"],
                     "lsh_umask": "077"}},
                {"name": "moved account",
                 "jailtwist.jails.jailed_user": {
                     "name": "jtansmove", "jail": self.bound,
                     "move_home": True}},
            ]}]

    def existingAccount(self):
        """
        An account with a home outside the jails and a file in it.
        """
        home = self.root + "/homes/jtansmove"
        os.makedirs(home)
        result = subprocess.run(["useradd", "-M", "-d", home, "-s",
                                 "/bin/sh", "jtansmove"],
                                capture_output=True, text=True)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.accounts.append("jtansmove")
        entry = pwd.getpwnam("jtansmove")
        with open(home + "/notes.txt", "w") as f:
            f.write("kept\n")
        for path in (home, home + "/notes.txt"):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        return home

    def test_site(self):
        """
        Check mode changes nothing and shows what would be added; the first
        run builds the jails and accounts; the second changes nothing.
        """
        home = self.existingAccount()
        self.accounts.append("jtansnew")
        before = pwd.getpwnam("jtansmove")
        hostFiles = ("/etc/passwd", "/etc/group", "/etc/shadow",
                     "/etc/jailkit/jk_socketd.ini")
        hostBefore = [FilePath(path).getContent() for path in hostFiles]

        tasks, recap = self.playbook(self.site(), "--check", "--diff")
        self.assertRecap(tasks, recap, 4)
        copied = tasks["copied jail"]["result"]
        self.assertIn(SFTP_SERVER, copied["changes"])
        self.assertIn(SFTP_SERVER + "\n", copied["diff"]["after"])
        self.assertIn("/etc/jailkit/jk_lsh.ini", copied["changes"])
        bound = tasks["bind jail"]["result"]
        self.assertIn(f"bind {SFTP_SERVER}", bound["changes"])
        self.assertNotIn(SFTP_SERVER, bound["changes"])
        lsh = tasks["new account"]["result"]["diff"][1]["after"]
        self.assertIn("[jtansnew]\nexecutables = /usr/lib/openssh/"
                      "sftp-server, /usr/bin/scp\n", lsh)
        self.assertEqual(os.listdir(self.root), ["homes"])
        self.assertRaises(KeyError, pwd.getpwnam, "jtansnew")
        self.assertEqual(pwd.getpwnam("jtansmove"), before)
        self.assertTrue(os.path.exists(home + "/notes.txt"))
        self.assertEqual([FilePath(path).getContent() for path in hostFiles],
                         hostBefore)

        tasks, recap = self.playbook(self.site())
        self.assertRecap(tasks, recap, 4)
        with open("/etc/jailkit/jk_socketd.ini") as f:
            self.assertIn(f"[{self.sftp}/dev/log]", f.read())
        self.assertTrue(os.path.isfile(self.sftp + SFTP_SERVER))
        with open(self.bound + "/" + BIND_LIST) as f:
            self.assertIn(SFTP_SERVER, f.read().splitlines())
        # Listed, not copied: an empty mount point.
        self.assertEqual(os.path.getsize(self.bound + SFTP_SERVER), 0)
        new = pwd.getpwnam("jtansnew")
        self.assertEqual(new.pw_dir, self.sftp + "/./home/jtansnew")
        self.assertEqual(new.pw_shell, harness.script("jk_chrootsh"))
        self.assertTrue(os.path.isdir(self.sftp + "/home/jtansnew"))
        with open(self.sftp + "/etc/passwd") as f:
            self.assertIn(f"jtansnew:x:{new.pw_uid}:{new.pw_gid}::"
                          f"/home/jtansnew:/usr/sbin/jk_lsh\n", f.read())
        with open(self.sftp + "/etc/jailkit/jk_lsh.ini") as f:
            policy = LshPolicy.fromText(
                f.read(), "jtansnew", grp.getgrgid(new.pw_gid).gr_name)
        self.assertEqual((policy.section, policy.executables, policy.umask),
                         ("jtansnew", [SFTP_SERVER, "/usr/bin/scp"], 0o077))
        moved = pwd.getpwnam("jtansmove")
        self.assertEqual(moved.pw_dir, f"{self.bound}/.{home}")
        with open(self.bound + home + "/notes.txt") as f:
            self.assertEqual(f.read(), "kept\n")
        self.assertFalse(os.path.exists(home))

        tasks, recap = self.playbook(self.site())
        self.assertRecap(tasks, recap, 0)

        tasks, recap = self.playbook(self.site(), "--check", "--diff")
        self.assertRecap(tasks, recap, 0)

        self.removals()

    def removals(self):
        """
        Removing jails: refused while an account lives in one, for what is
        not a jail, and for system directories; done (once) otherwise.
        Bad input fails with one clear line and changes nothing.
        """
        unsafe = self.root + "/open"
        os.mkdir(unsafe)
        os.chmod(unsafe, 0o777)
        spare = self.root + "/spare"

        def task(title, module, **args):
            return {"name": title, module: args, "ignore_errors": True}
        jail, user = "jailtwist.jails.jail", "jailtwist.jails.jailed_user"
        plays = [{
            "hosts": "localhost", "connection": "local",
            "gather_facts": False,
            "vars": {"ansible_python_interpreter": sys.executable},
            "tasks": [
                task("in use", jail, path=self.sftp, state="absent"),
                task("not a jail", jail, path=self.root, state="absent"),
                task("system", jail, path="/srv", state="absent"),
                task("spare", jail, path=spare, sections=["uidbasics"],
                     config=SHIPPED.path),
                task("remove", jail, path=spare, state="absent"),
                task("removed", jail, path=spare, state="absent"),
                task("unknown section", jail, path=self.root + "/x",
                     sections=["uidbasics", "nosuchsection"],
                     config=SHIPPED.path),
                task("unsafe path", jail, path=unsafe + "/jail",
                     sections=["uidbasics"], config=SHIPPED.path),
                task("relative path", jail, path="relative/jail",
                     sections=["uidbasics"], config=SHIPPED.path),
                task("mixed", jail, path=self.sftp, sections=["uidbasics"],
                     bind=True, config=SHIPPED.path),
                task("bad policy", user, name="jtansnew", jail=self.sftp,
                     lsh_executables=["scp"]),
                task("root", user, name="root", jail=self.sftp),
            ]}, {
            "hosts": "localhost", "connection": "local",
            "gather_facts": False,
            "vars": {"ansible_python_interpreter": "/usr/bin/python3"},
            "tasks": [task("no jailtwist", jail, path=spare,
                           sections=["uidbasics"])],
        }]
        tasks, recap = self.playbook(plays, name="removals")

        def failure(name):
            result = tasks[name]
            self.assertEqual(result["status"], "failed", result)
            message = result["result"]["msg"]
            self.assertNotIn("\n", message)
            return message
        self.assertIn("account jtansnew has its home", failure("in use"))
        self.assertTrue(os.path.isfile(self.sftp + SFTP_SERVER))
        self.assertIn("has no etc/passwd", failure("not a jail"))
        self.assertIn("system directory", failure("system"))
        self.assertTrue(os.path.isdir("/srv"))
        self.assertTrue(tasks["spare"]["result"]["changed"])
        self.assertTrue(tasks["remove"]["result"]["changed"])
        self.assertFalse(tasks["removed"]["result"]["changed"])
        self.assertFalse(os.path.lexists(spare))
        self.assertIn("no section [nosuchsection]",
                      failure("unknown section"))
        self.assertFalse(os.path.lexists(self.root + "/x"))
        self.assertIn("is not safe", failure("unsafe path"))
        self.assertIn(f"{unsafe} is writable by group or others",
                      failure("unsafe path"))
        self.assertEqual(os.listdir(unsafe), [])
        self.assertIn("must be absolute", failure("relative path"))
        self.assertIn("holds copies of host files", failure("mixed"))
        self.assertIn("'scp' must be an absolute path",
                      failure("bad policy"))
        self.assertIn("root cannot be jailed", failure("root"))
        self.assertIn("jailtwist cannot be imported", failure("no jailtwist"))
        self.assertIn("/opt/jailtwist/bin/python", failure("no jailtwist"))

    def test_doc(self):
        """
        ansible-doc reads the modules' documentation.
        """
        for module, option in (("jailtwist.jails.jail", "sections"),
                               ("jailtwist.jails.jailed_user",
                                "lsh_executables")):
            result = _ansible(self.ansible, ["ansible-doc", module])
            self.assertEqual(result.returncode, 0, result.stderr)
            self.assertIn(option, result.stdout)
            self.assertIn("EXAMPLES", result.stdout)
