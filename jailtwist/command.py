# -*- test-case-name: tests.test_command -*-
"""
How every console script starts and ends: L{CommandLine} parses its options
and prints its help, and L{runCommand} turns a failure the user can act on
into one line on stderr and a non-zero exit status, never a traceback.

Only builtin modules are imported here: login shells and jk_chrootlaunch
start through this module, and C{getopt} (which loads C{gettext} and C{re})
or C{twisted.python.usage} would each cost more than the interpreter's own
start-up.
"""

import os
import sys

from jailtwist.errors import JailtwistError


class UsageError(JailtwistError):
    """
    A command line that cannot be parsed: L{runCommand} adds a pointer to
    C{--help} and exits with status 2.
    """

    def __init__(self, message):
        super().__init__(message, 2)


def runCommand(main, argv=None, name=None):
    """
    Call C{main(argv)} and exit with its return value (C{None} means 0).

    L{JailtwistError} becomes C{NAME: message} with its exit code; a
    L{UsageError} or C{twisted.python.usage.UsageError} becomes C{NAME:
    message (see NAME --help)} with exit status 2.
    """
    if argv is None:
        argv = sys.argv[1:]
    if name is None:
        name = os.path.basename(sys.argv[0]) or "jailtwist"
    try:
        status = main(argv)
    except UsageError as e:
        _fail(name, f"{e} (see '{name} --help')", e.exitCode)
    except JailtwistError as e:
        _fail(name, str(e), e.exitCode)
    except KeyboardInterrupt:
        _fail(name, "interrupted", 130)
    except BrokenPipeError:
        # `cmd --help | head`: the reader left; exit quietly like C tools.
        _quietAfterBrokenPipe()
    except Exception as e:
        usage = sys.modules.get("twisted.python.usage")
        if usage is not None and isinstance(e, usage.UsageError):
            _fail(name, f"{e} (see '{name} --help')", 2)
        raise
    sys.exit(status or 0)


def _quietAfterBrokenPipe():
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    sys.exit(141)


def _fail(name, message, status):
    sys.stderr.write(f"{name}: {message}\n")
    sys.stderr.flush()
    sys.exit(status)


class CommandLine:
    """
    A command's options, parsed by the rules of C{getopt.getopt} (options
    first, C{--} or the first argument ends them, long options may be
    shortened to a unique prefix) with the messages, defaults and C{--help}
    text of C{twisted.python.usage.Options}, so a command can leave Twisted
    for this without its users seeing a difference.

    @ivar synopsis: the first line of C{--help}.
    @ivar longdesc: the paragraph after the options.
    @ivar flags: C{(long, short or None, doc)} for each switch.
    @ivar parameters: C{(long, short or None, default, doc)} for each
        option that takes a value.
    @ivar arguments: whether arguments may follow the options.
    @ivar repeated: the parameters that may be given many times: their
        value is the list of what was given.
    @ivar helpShort: whether C{-h} means C{--help}: C{True}, C{False} or
        C{"hidden"} (accepted, not listed).
    """

    def __init__(self, synopsis, longdesc, flags=(), parameters=(),
                 arguments=False, helpShort=False, repeated=()):
        self.synopsis = synopsis
        self.longdesc = longdesc
        self.flags = [("help", "h" if helpShort is True else None,
                       "Display this help and exit."),
                      ("version", None, "Display the jailtwist version and "
                                        "exit.")] + list(flags)
        self.parameters = list(parameters)
        self.arguments = arguments
        self.repeated = frozenset(repeated)
        self._hidden = {"h": "help"} if helpShort == "hidden" else {}

    def parse(self, argv):
        """
        @return: C{(options, arguments)}: a dict with every long name (flags
            C{False} unless given, parameters their default unless given,
            the last one given winning) and the arguments after the
            options.
        @raise UsageError: naming the option that is wrong.
        @raise SystemExit: after printing C{--help} or C{--version}.
        """
        values = {long: False for long, _, _ in self.flags}
        values.update((long, [] if long in self.repeated else default)
                      for long, _, default, _ in self.parameters)
        takes = {long: False for long, _, _ in self.flags}
        takes.update((long, True) for long, _, _, _ in self.parameters)
        shorts = dict(self._hidden)
        shorts.update((short, long) for long, short, *_ in self.flags
                      + self.parameters if short)
        args = list(argv)
        given = []
        while args and args[0].startswith("-") and args[0] != "-":
            word = args.pop(0)
            if word == "--":
                break
            if word.startswith("--"):
                option, equals, value = word[2:].partition("=")
                option = _matchLong(option, takes)
                if takes[option]:
                    if not equals:
                        if not args:
                            raise UsageError(f"option --{option} requires "
                                             f"argument")
                        value = args.pop(0)
                elif equals:
                    raise UsageError(f"option --{option} must not have an "
                                     f"argument")
                given.append((option, value))
                continue
            letters = word[1:]
            while letters:
                letter, letters = letters[0], letters[1:]
                if letter not in shorts:
                    raise UsageError(f"option -{letter} not recognized")
                option = shorts[letter]
                value = ""
                if takes[option]:
                    if not letters:
                        if not args:
                            raise UsageError(f"option -{letter} requires "
                                             f"argument")
                        letters = args.pop(0)
                    value, letters = letters, ""
                given.append((option, value))
        for option, value in given:
            if option == "help":
                sys.stdout.write(self.helpText() + "\n")
                sys.exit(0)
            if option == "version":
                from jailtwist import __version__
                sys.stdout.write(f"jailtwist {__version__}\n")
                sys.exit(0)
            if option in self.repeated:
                values[option].append(value)
            else:
                values[option] = value if takes[option] else True
        if args and not self.arguments:
            raise UsageError("Wrong number of arguments.")
        return values, args

    def helpText(self, width=None):
        """
        @return: the synopsis, the options (sorted, wrapped to C{width} or
            C{$COLUMNS} columns) and the description, laid out as
            C{twisted.python.usage.Options} lays them out.
        """
        import textwrap
        if not width:
            width = int(os.environ.get("COLUMNS", "80"))
        rows = [(long, short, doc, False, None)
                for long, short, doc in self.flags]
        rows += [(long, short, doc, True, default)
                 for long, short, default, doc in self.parameters]
        rows.sort(key=lambda row: row[1] or row[0])
        longest = max(len(long) + takes for long, _, _, takes, _ in rows)
        column = longest + len("  -s, --  ")
        lines = [self.synopsis.rstrip(), "Options:"]
        for long, short, doc, takes, default in rows:
            shown = "%-*s" % (longest, long + ("=" if takes else ""))
            start = "  %2s%c --%s  " % (f"-{short}" if short else "",
                                        "," if short else " ", shown)
            doc = doc.strip()
            if takes and default is not None:
                doc = f"{doc} [default: {default}]"
            wrapped = textwrap.wrap(doc, width - column) or [""]
            lines.append(start + wrapped[0])
            lines.extend(" " * column + more for more in wrapped[1:])
        text = "\n".join(lines) + "\n"
        if self.longdesc:
            text += "\n" + "\n".join(
                textwrap.wrap(self.longdesc, width)).strip() + "\n"
        return text


def _matchLong(option, takes):
    """
    getopt's rule: an exact name, else the one name it is a prefix of.
    """
    if option in takes:
        return option
    candidates = [name for name in takes if name.startswith(option)]
    if not candidates:
        raise UsageError(f"option --{option} not recognized")
    if len(candidates) > 1:
        raise UsageError(f"option --{option} not a unique prefix")
    return candidates[0]
