# -*- test-case-name: tests.test_lsh -*-
"""
jk_lsh's policy: which command an account may run, decided from
C{jk_lsh.ini} before anything is executed.

The decision happens in three steps, each of which can refuse with
jailkit's exit status and syslog text (L{LshRefusal}):

  1. B{parse}: the section for the account is chosen as jailkit's C tools
     choose it (C{[user]}, then C{[group NAME]}, then C{[DEFAULT]}; the
     first match only) and its keys are typed (L{LshPolicy.fromText}).
  2. B{split}: the command string from C{-c} becomes words: split on spaces
     with every shell metacharacter refused, or, with
     C{allow_word_expansion}, expanded like C{wordexp(WRDE_NOCMD)} (quotes,
     C{$VAR}, C{~}) with command substitution and metacharacters refused
     (L{splitCommand}).
  3. B{resolve and decide}: the program is looked up as jailkit does (an
     absolute name as given, otherwise under each of C{paths}), resolved
     inside the root the program will run in (a jail, or C{/}) the way the
     kernel would after C{chroot} - symlinks and C{..} included, never
     leaving the root - and allowed only if it is the very same file as one
     of C{executables} (L{LshPolicy.decide}).  What runs is then the path
     the administrator listed, so a symlink or hardlink planted by the user
     can name an allowed program but never substitute another one.

Nothing here executes anything or imports Twisted: C{jk_chrootsh} calls it
before entering a jail, C{jk_lsh} before C{exec}.
"""

import os
import stat

from jailtwist.config import ConfigError, parseIni
from jailtwist.errors import JailtwistError

#: Where jk_lsh reads its policy (relative to the root it applies to).
CONFIG = "/etc/jailkit/jk_lsh.ini"

KEYS = ("executables", "paths", "allow_word_expansion", "umask",
        "environment")

# Characters a shell would act on, refused in commands that are split on
# spaces (there is no shell to give them a meaning, so a command using
# them was not meant for jk_lsh).
_SHELL_SPECIAL = set("$`;|&<>(){}'\"\\\n\r")

# Refused unquoted by wordexp (WRDE_BADCHAR).
_BAD_UNQUOTED = set("|&;<>(){}\n")

_GLOB = set("*?[")


class LshRefusal(JailtwistError):
    """
    A command (or a configuration) jk_lsh will not run.

    @ivar logMessage: the syslog text, as jailkit words it.
    @ivar exitCode: jailkit's exit status for this refusal.
    """

    def __init__(self, logMessage, exitCode):
        super().__init__(logMessage, exitCode)
        self.logMessage = logMessage


class WordExpansionError(ValueError):
    """
    A command string that cannot be split into words; the message says why.
    """


def printable(text):
    """
    C{text} for a log line: control characters (a line break that would
    forge a second log line, terminal escapes) written as escapes.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def checkCommandLine(argv, user, uid):
    """
    jk_lsh runs commands only: its last two arguments must be C{-c
    COMMAND} (anything before, such as C{--login}, is ignored).

    @raise LshRefusal: exit 7 for anything else (an interactive session).
    """
    if len(argv) < 3 or argv[-2] != "-c":
        raise LshRefusal(
            f"WARNING: user {user} ({uid}) tried to get an interactive "
            f"shell session ({printable(' '.join(argv))}), which is never "
            f"allowed by jk_lsh", 7)


def chooseSection(ini, user, group):
    """
    jailkit's section precedence: C{[user]}, C{[group GROUP]}, C{[DEFAULT]}.

    @return: the first L{jailtwist.config.Section} found, or C{None}.
    """
    for name in (user, f"group {group}", "DEFAULT"):
        section = ini.section(name)
        if section is not None:
            return section
    return None


class LshCommand:
    """
    A command jk_lsh allows: what to execute, inside which root.

    @ivar executable: the program to execute, as listed in C{executables}
        (a path inside the root).
    @ivar argv: the argument vector; C{argv[0]} is C{executable}.
    @ivar environment: C{dict} of variables C{environment=} sets.
    @ivar umask: the umask to set, or C{None} to keep the inherited one.
    """

    def __init__(self, executable, argv, environment, umask):
        self.executable = executable
        self.argv = argv
        self.environment = environment
        self.umask = umask

    def describe(self):
        """
        The command as jailkit logs it: the words joined by spaces.
        """
        return printable(" ".join(self.argv))

    def __repr__(self):
        return f"LshCommand({self.argv!r}, umask={self.umask!r})"


class LshPolicy:
    """
    The jk_lsh rules that apply to one account.

    @ivar configPath: the configuration file, for messages.
    @ivar section: the name of the section in use.
    @ivar executables: absolute paths of the programs allowed.
    @ivar paths: directories a bare program name is looked up in.
    @ivar allowWordExpansion: expand words like C{wordexp(WRDE_NOCMD)}
        instead of splitting on spaces.
    @ivar umask: the umask for the program, or C{None} to inherit (jailkit
        sets 0000 when C{umask} is absent; jailtwist does not).
    @ivar environment: C{dict} of variables to set.
    """

    def __init__(self, executables, paths=(), allowWordExpansion=False,
                 umask=None, environment=None, configPath=CONFIG,
                 section="DEFAULT"):
        self.executables = list(executables)
        self.paths = list(paths)
        self.allowWordExpansion = allowWordExpansion
        self.umask = umask
        self.environment = dict(environment or {})
        self.configPath = configPath
        self.section = section

    @classmethod
    def fromText(cls, text, user, group, configPath=CONFIG):
        """
        The policy for C{user} (whose primary group is C{group}) in the
        ini text C{text}.

        @raise LshRefusal: exit 1 for a file that cannot be used, 3 when no
            section applies, 5 when the section has no C{executables}.
        """
        try:
            ini = parseIni(text, configPath)
        except ConfigError as e:
            raise LshRefusal(f"configfile {configPath} cannot be used: {e}",
                             1)
        section = chooseSection(ini, user, group)
        if section is None:
            raise LshRefusal(
                f"did neither find a section '{user}', nor 'group {group}' "
                f"nor 'DEFAULT' in configfile {configPath}", 3)
        try:
            section.checkKeys(KEYS)
            executables = section.getList("executables")
            if not executables:
                raise LshRefusal(f"section {section.name} does not have a "
                                 f"key executables", 5)
            for path in executables:
                if not path.startswith("/"):
                    raise section.error(
                        f"{path!r} is not an absolute path", "executables")
            paths = section.getList("paths")
            for path in paths:
                if not path.startswith("/"):
                    raise section.error(
                        f"{path!r} is not an absolute path", "paths")
            expand = section.getBool("allow_word_expansion", False)
            umask = _parseUmask(section)
            environment = _parseEnvironment(section)
        except ConfigError as e:
            raise LshRefusal(f"configfile {configPath} cannot be used: {e}",
                             1)
        return cls(executables, paths, expand, umask, environment,
                   configPath, section.name)

    def decide(self, argv, user, uid, root, environ):
        """
        Decide what to run for a jk_lsh invocation.

        @param argv: the whole argument vector jk_lsh was started with
            (C{argv[0]} included), e.g. C{["jk_lsh", "-c", "scp -t ."]}.
        @param user: the account name, for messages.
        @param uid: the account's uid, for messages.
        @param root: the L{jailtwist.jail.Jail} the program will run in
            (C{Jail("/")} for an account that is not jailed).
        @param environ: the environment the program will get (without
            L{environment}), for C{$VAR} expansion.
        @rtype: L{LshCommand}
        @raise LshRefusal: exit 7 for an interactive session, 6 for a
            command that cannot be split, 4 for a program not allowed,
            255 for an allowed program that is missing.
        """
        checkCommandLine(argv, user, uid)
        command = argv[-1]
        env = dict(environ)
        env.update(self.environment)
        try:
            words = splitCommand(command, self.allowWordExpansion, env)
        except WordExpansionError as e:
            raise LshRefusal(
                f"WARNING: user {user} ({uid}) tried to run "
                f"'{printable(command)}', which is an illegal word "
                f"expansion: {e}", 6)
        shown = printable(" ".join(words))
        if not words:
            raise LshRefusal(
                f"WARNING: user {user} ({uid}) tried to run "
                f"'{printable(command)}', which is not allowed according to "
                f"{self.configPath}", 4)
        allowed = self._allowedFiles(root)
        for candidate in self._candidates(words[0]):
            identity = _identity(root, candidate)
            if identity is None:
                continue
            executable = allowed.get(identity)
            if executable is None:
                break
            problem = _serverOnly(executable, words[1:])
            if problem:
                raise LshRefusal(
                    f"WARNING: user {user} ({uid}) tried to run '{shown}', "
                    f"which is not allowed according to {self.configPath}: "
                    f"{problem}", 4)
            return LshCommand(executable, [executable] + words[1:],
                              self.environment, self.umask)
        else:
            if any(c in self.executables for c in self._candidates(words[0])):
                raise LshRefusal(
                    f"WARNING: running {printable(words[0])} failed for user "
                    f"{user} ({uid}): No such file or directory; check the "
                    f"permissions and libraries for {printable(words[0])}",
                    255)
        raise LshRefusal(
            f"WARNING: user {user} ({uid}) tried to run '{shown}', which is "
            f"not allowed according to {self.configPath}", 4)

    def _candidates(self, name):
        """
        The paths jailkit tries for the program name C{name}: the name
        itself when absolute, else each of C{paths} joined with it.
        """
        if name.startswith("/"):
            return [name]
        return [path.rstrip("/") + "/" + name for path in self.paths]

    def _allowedFiles(self, root):
        """
        Map the identity of every existing allowed program to the path
        listed for it.
        """
        allowed = {}
        for path in self.executables:
            identity = _identity(root, path)
            if identity is not None:
                allowed.setdefault(identity, path)
        return allowed


# The options OpenSSH's scp client puts on the command it runs on the
# server (scp -t / scp -f, "legacy" protocol).
_SCP_SERVER_OPTIONS = set("tfdrpvq")


def _serverOnly(executable, args):
    """
    An allowed C{scp} runs only as the server end of a copy: C{-t} or C{-f}
    with the options the scp client sends and one path.  Anything else
    (C{-S PROGRAM}, C{-o ProxyCommand=...}, C{-F FILE}, a copy to another
    host) would let scp start other programs, which is how rssh and lshell
    policies were bypassed.

    An allowed C{rsync} runs only as the server end an rsync client starts
    over ssh (L{_rsyncServerOnly}).

    @return: why C{args} are refused, or C{None}.
    """
    name = os.path.basename(executable)
    if name == "rsync":
        return _rsyncServerOnly(args)
    if name != "scp":
        return None
    mode = False
    paths = []
    options = True
    for arg in args:
        if options and arg == "--":
            options = False
        elif options and arg.startswith("-") and len(arg) > 1:
            letters = set(arg[1:])
            if not letters <= _SCP_SERVER_OPTIONS:
                return (f"scp runs only as a server (-t or -f), not with "
                        f"{arg}")
            mode = mode or bool(letters & {"t", "f"})
        else:
            paths.append(arg)
    if not mode:
        return "scp runs only as a server (-t or -f)"
    if len(paths) > 1:
        return "scp as a server takes one path"
    return None


def _rsyncServerOnly(args):
    """
    C{rsync --server ...}, as an rsync client runs it on the remote side,
    and nothing else: as a client rsync starts any program as its remote
    shell (C{-e PROGRAM}, C{--rsh}), and as a daemon over ssh (C{--server
    --daemon}) it reads C{rsyncd.conf} from the home, whose C{pre-xfer exec}
    runs any command.  (In server mode C{-e.xxx} carries the client's
    protocol flags, and starts nothing.)

    @return: why C{args} are refused, or C{None}.
    """
    if not args or args[0] != "--server":
        return "rsync runs only as a server (rsync --server, as an rsync " \
               "client starts it)"
    for arg in args[1:]:
        option = arg.split("=", 1)[0]
        if len(option) > 3 and ("--daemon".startswith(option)
                                or "--config".startswith(option)):
            return f"rsync runs only as a server, not as a daemon ({arg})"
    return None


def statInRoot(root, path, rootFd=None):
    """
    The C{stat} of what C{path} names inside C{root} (a
    L{jailtwist.jail.Jail}), resolved as the kernel would resolve it after a
    C{chroot} to C{root}: symlinks and C{..} stay inside.

    @param rootFd: an open descriptor of the root, to save reopening it.
    @return: an C{os.stat_result}, or C{None} if there is nothing there.
    """
    try:
        fd = root.open(path, os.O_PATH, root=rootFd)
    except (OSError, ValueError):
        return None
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)


def _identity(root, path):
    """
    The C{(st_dev, st_ino)} of the regular file C{path} names inside
    C{root} (see L{statInRoot}); C{None} if there is none.
    """
    st = statInRoot(root, path)
    if st is None or not stat.S_ISREG(st.st_mode):
        return None
    return (st.st_dev, st.st_ino)


def _parseUmask(section):
    raw = section.getString("umask")
    if raw is None:
        return None
    word = raw.strip()
    try:
        value = int(word, 8)
    except ValueError:
        raise section.error(f"{word!r} is not an octal umask", "umask")
    if not 0 <= value <= 0o777:
        raise section.error(f"{word!r} is not a umask (000 to 777)", "umask")
    return value


def _parseEnvironment(section):
    environment = {}
    for item in section.getList("environment"):
        key, equals, value = item.partition("=")
        key = key.strip()
        if not equals or not key.replace("_", "a").isalnum() \
                or key[0].isdigit():
            raise section.error(f"{item!r} is not KEY=VALUE", "environment")
        environment[key] = value.strip()
    return environment


def splitCommand(command, expand, environ):
    """
    Split a C{-c} command string into words.

    Without C{expand} (jailkit's default): split on spaces; a command that
    contains any character a shell would act on (C{$ ` ; | & < > ( ) { }},
    quotes, backslash, line breaks) is refused, since no shell is there to
    give it that meaning.

    With C{expand} (C{allow_word_expansion}): like C{wordexp(3)} with
    C{WRDE_NOCMD}: quotes and backslashes, C{$NAME}/C{${NAME}} (unset is
    empty, unquoted results are split on blanks) and a leading C{~} are
    expanded; command substitution, arithmetic, unquoted metacharacters and
    unbalanced quotes are refused, and so are unquoted glob characters,
    which jailtwist does not expand (it decides before entering the jail).

    @raise WordExpansionError: naming what was refused.
    """
    if "\0" in command:
        raise WordExpansionError("NUL byte")
    if not expand:
        bad = sorted(set(command) & _SHELL_SPECIAL)
        if bad:
            raise WordExpansionError(
                "illegal character " + " ".join(repr(c) for c in bad))
        return [word for word in command.split(" ") if word]
    return _WordExpander(command, environ).words()


class _WordExpander:
    """
    The subset of C{wordexp(WRDE_NOCMD)} jk_lsh commands use.
    """

    def __init__(self, text, environ):
        self.text = text
        self.environ = environ
        self.pos = 0
        self.result = []
        self.current = None

    def _add(self, chars):
        if self.current is None:
            self.current = []
        self.current.append(chars)

    def _end(self):
        if self.current is not None:
            self.result.append("".join(self.current))
        self.current = None

    def words(self):
        text = self.text
        while self.pos < len(text):
            c = text[self.pos]
            if c in " \t":
                self._end()
                self.pos += 1
            elif c in _BAD_UNQUOTED:
                raise WordExpansionError(f"illegal character {c!r}")
            elif c == "`":
                raise WordExpansionError("command substitution not allowed")
            elif c == "'":
                end = text.find("'", self.pos + 1)
                if end < 0:
                    raise WordExpansionError("shell syntax error "
                                             "(unbalanced quote)")
                self._add(text[self.pos + 1:end])
                self.pos = end + 1
            elif c == '"':
                self._doubleQuoted()
            elif c == "\\":
                if self.pos + 1 >= len(text):
                    raise WordExpansionError("shell syntax error "
                                             "(trailing backslash)")
                self._add(text[self.pos + 1])
                self.pos += 2
            elif c == "$":
                value = self._variable()
                if value is None:
                    self._add("$")
                else:
                    self._split(value)
            elif c == "~" and self.current is None:
                self._tilde()
            elif c in _GLOB:
                raise WordExpansionError(
                    f"pathname expansion ({c!r}) is not supported: quote it")
            else:
                self._add(c)
                self.pos += 1
        self._end()
        return self.result

    def _split(self, value):
        """
        Field splitting of an unquoted expansion.
        """
        parts = value.replace("\t", " ").replace("\n", " ").split(" ")
        for i, part in enumerate(parts):
            if i:
                self._end()
            if part:
                self._add(part)

    def _doubleQuoted(self):
        text = self.text
        self.pos += 1
        self._add("")
        while True:
            if self.pos >= len(text):
                raise WordExpansionError("shell syntax error "
                                         "(unbalanced quote)")
            c = text[self.pos]
            if c == '"':
                self.pos += 1
                return
            if c == "`":
                raise WordExpansionError("command substitution not allowed")
            if c == "\\" and self.pos + 1 < len(text) \
                    and text[self.pos + 1] in '$`"\\\n':
                self._add(text[self.pos + 1])
                self.pos += 2
            elif c == "$":
                value = self._variable()
                self._add("$" if value is None else value)
            else:
                self._add(c)
                self.pos += 1

    def _variable(self):
        """
        Expand the C{$...} at the current position.

        @return: the value, or C{None} for a lone C{$}.
        """
        text = self.text
        start = self.pos + 1
        if text.startswith("((", start):
            raise WordExpansionError("arithmetic expansion not allowed")
        if text.startswith("(", start):
            raise WordExpansionError("command substitution not allowed")
        if text.startswith("{", start):
            end = text.find("}", start)
            if end < 0:
                raise WordExpansionError("shell syntax error (unbalanced "
                                         "${)")
            name = text[start + 1:end]
            if not _isName(name):
                raise WordExpansionError(
                    f"unsupported parameter expansion ${{{name}}}")
            self.pos = end + 1
            return self.environ.get(name, "")
        end = start
        while end < len(text) and (text[end].isalnum() or text[end] == "_") \
                and text[end].isascii():
            end += 1
        name = text[start:end]
        if not name:
            self.pos = start
            return None
        if not _isName(name):
            raise WordExpansionError(f"unsupported parameter ${name}")
        self.pos = end
        return self.environ.get(name, "")

    def _tilde(self):
        text = self.text
        end = self.pos + 1
        if end < len(text) and text[end] not in "/ \t":
            raise WordExpansionError("~user expansion is not supported")
        self._add(self.environ.get("HOME", "~"))
        self.pos = end


def _isName(name):
    return bool(name) and not name[0].isdigit() and name.isascii() and \
        name.replace("_", "a").isalnum()
