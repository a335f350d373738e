# -*- test-case-name: tests.test_config -*-
"""
Reading jailkit's C{/etc/jailkit/*.ini} files into typed values, with errors
that name the file, the section and the key.

jailkit's C tools treat C{[DEFAULT]} as an ordinary section (it is the last
fallback of jk_lsh and jk_chrootsh), so this reader never merges it into the
other sections the way L{configparser} would; otherwise it reads what
jailkit's Python tools read with L{configparser}.
"""

import os

from jailtwist.errors import JailtwistError

_TRUE = {"1", "yes", "true", "on"}
_FALSE = {"0", "no", "false", "off", ""}


class ConfigError(JailtwistError):
    """
    A config file that cannot be used; the message names file, section, key.
    """

    def __init__(self, path, message, section=None, key=None):
        where = str(path)
        if section is not None:
            where += f": [{section}]"
        if key is not None:
            where += f" {key}"
        super().__init__(f"{where}: {message}")
        self.path = path
        self.section = section
        self.key = key


class Section:
    """
    One section of an ini file, with typed getters that raise L{ConfigError}.
    """

    def __init__(self, path, name, items):
        self.path = path
        self.name = name
        self._items = dict(items)

    def __contains__(self, key):
        return key in self._items

    def keys(self):
        return list(self._items)

    def error(self, message, key=None):
        return ConfigError(self.path, message, self.name, key)

    def checkKeys(self, allowed):
        """
        Refuse any key not in C{allowed}: a misspelt key must not be ignored.
        """
        for key in self._items:
            if key not in allowed:
                raise self.error(
                    "unknown key (expected one of: "
                    + ", ".join(sorted(allowed)) + ")", key)

    def getString(self, key, default=None):
        return self._items.get(key, default)

    def getNumber(self, key, default, kind=int, minimum=None, maximum=None):
        raw = self._items.get(key)
        if raw is None:
            return default
        try:
            value = kind(raw.strip())
        except ValueError:
            noun = "an integer" if kind is int else "a number"
            raise self.error(f"{raw.strip()!r} is not {noun}", key)
        if value != value or value in (float("inf"), float("-inf")):
            raise self.error(f"{raw.strip()!r} is not a finite number", key)
        if minimum is not None and value < minimum:
            raise self.error(f"{value} is below the minimum {minimum}", key)
        if maximum is not None and value > maximum:
            raise self.error(f"{value} is above the maximum {maximum}", key)
        return value

    def getInt(self, key, default, minimum=None, maximum=None):
        return self.getNumber(key, default, int, minimum, maximum)

    def getFloat(self, key, default, minimum=None, maximum=None):
        return self.getNumber(key, default, float, minimum, maximum)

    def getBool(self, key, default=False):
        """
        jailkit's truth values; unlike jailkit, C{0}/C{no} really mean no.
        """
        raw = self._items.get(key)
        if raw is None:
            return default
        word = raw.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise self.error(f"{raw.strip()!r} is not a yes/no value", key)

    def getList(self, key, default=()):
        """
        A comma-separated list, blanks removed (jailkit's C{paths = a, b}).
        """
        raw = self._items.get(key)
        if raw is None:
            return list(default)
        return [part.strip() for part in raw.replace("\n", ",").split(",")
                if part.strip()]

    def getChoice(self, key, default, choices):
        raw = self._items.get(key)
        if raw is None:
            return default
        word = raw.strip()
        if word not in choices:
            raise self.error(
                f"{word!r} is not one of: {', '.join(choices)}", key)
        return word


class IniFile:
    """
    A parsed jailkit ini file: ordered sections, C{[DEFAULT]} included.
    """

    def __init__(self, path, sections):
        self.path = path
        self._sections = sections

    def sections(self):
        return list(self._sections)

    def __contains__(self, name):
        return name in self._sections

    def section(self, name):
        """
        @return: the L{Section} called C{name}, or C{None}.
        """
        items = self._sections.get(name)
        if items is None:
            return None
        return Section(self.path, name, items)

    def __iter__(self):
        for name in self._sections:
            yield self.section(name)


def parseIni(text, path="<string>"):
    """
    Parse ini text in jailkit's format: C{[section]} headers, C{key = value}
    lines (keys are case-insensitive), C{#} and C{;} comment lines, and
    indented lines that continue the previous value.

    Written by hand rather than with L{configparser}, which with C{re} and
    C{enum} costs a login shell about 8 ms before it does anything.

    @raise ConfigError: naming the line for anything it cannot read.
    """
    sections = {}
    current = None
    key = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            # An empty or comment line ends a continued value.
            key = None if not line else key
            continue
        if raw[0] in " \t" and key is not None:
            current[key] = (current[key] + "\n" + line).strip("\n")
            continue
        if line[0] == "[":
            if line[-1] != "]" or len(line) < 3:
                raise ConfigError(path, f"line {number}: cannot parse "
                                        f"{line}")
            name = line[1:-1].strip()
            if name in sections:
                raise ConfigError(path, f"section appears twice "
                                        f"(line {number})", name)
            current = sections[name] = {}
            key = None
            continue
        if current is None:
            raise ConfigError(path, f"line {number}: text before the first "
                                    f"[section]")
        name, equals, value = line.partition("=")
        name = name.strip().lower()
        if not equals or not name:
            raise ConfigError(path, f"line {number}: cannot parse {line}")
        if name in current:
            raise ConfigError(path, f"key appears twice (line {number})",
                              sectionName(sections, current), name)
        current[name] = value.strip()
        key = name
    return IniFile(path, sections)


def sectionName(sections, items):
    """
    @return: the name of the section whose items are C{items}.
    """
    for name, each in sections.items():
        if each is items:
            return name


def readIni(path):
    """
    Read and parse the ini file at C{path} (a C{str} or C{FilePath}).
    """
    path = getattr(path, "path", path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError:
        raise ConfigError(path, "not a UTF-8 text file")
    except OSError as e:
        raise ConfigError(path, f"cannot read: {os.strerror(e.errno)}")
    return parseIni(text, path)


def appendSection(path, name, items):
    """
    Append C{[name]} with C{items} to the ini file at C{path} in jailkit's
    layout, unless a section of that name is already there.

    @return: C{True} if the section was added.
    """
    path = getattr(path, "path", path)
    if hasSection(path, name):
        return False
    lines = [f"\n[{name}]\n"] + [f"{key} = {value}\n"
                                 for key, value in items]
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(lines))
    return True


def hasSection(path, name):
    """
    Whether the ini file at C{path} exists and has a section C{[name]}.
    """
    path = getattr(path, "path", path)
    return os.path.exists(path) and name in readIni(path)


def replaceSection(text, name, items, path="<string>"):
    """
    The ini text C{text} with section C{[name]} holding exactly C{items}:
    replaced where it is (its comments go with it), or appended.  The
    other sections and comments are kept as they are.

    @param items: C{(key, value)} pairs; values on one line.
    @raise ConfigError: if C{text} cannot be parsed, or a name, key or
        value would not read back as written.
    """
    parseIni(text, path)
    if not name or "]" in name or not name.isprintable():
        raise ConfigError(path, f"{name!r} cannot be a section name")
    body = [f"[{name}]\n"]
    for key, value in items:
        if not key.isidentifier() or not value.isprintable():
            raise ConfigError(path, f"{key!r} = {value!r} cannot be written "
                                    f"on one line", name, key)
        body.append(f"{key} = {value}\n")
    lines = text.splitlines(keepends=True)
    start = end = None
    for number, line in enumerate(lines):
        header = line.strip()
        if header.startswith("[") and header.endswith("]"):
            if start is not None:
                end = number
                break
            if header[1:-1].strip() == name:
                start = number
    if start is None:
        if text and not text.endswith("\n"):
            text += "\n"
        return text + ("\n" if text else "") + "".join(body)
    if end is None:
        end = len(lines)
    # Blank and comment lines at its end belong to what follows.
    while end > start + 1 and (not lines[end - 1].strip()
                               or lines[end - 1].lstrip()[0] in "#;"):
        end -= 1
    if end < len(lines) and lines[end].strip() and \
            lines[end].lstrip()[0] == "[":
        body.append("\n")
    return "".join(lines[:start] + body + lines[end:])
