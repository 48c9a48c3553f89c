"""The value checks of the configuration: one `Spec` per kind of value (a choice, a bounded
number, a file path, a size...). Each validates one YAML value, records a message naming the
key and what is allowed, and returns the converted value or INVALID.

`runtime.config.schema` attaches them to the dataclass fields they belong to.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

#: Returned by a spec (or a section) whose value was rejected; the error is already recorded.
INVALID: Any = object()

_MAX_SHOWN = 60


def show(value: Any) -> str:
    """How a rejected value appears in an error message: short, YAML-flavoured."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN - 3] + "..."


def dotted(path: tuple) -> str:
    """("audio", "files", "playlist", 2) -> "audio.files.playlist[2]"."""
    text = ""
    for part in path:
        if not isinstance(part, int) and not part.isprintable():
            part = repr(part)  # one message, one line, whatever the key holds
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


class Problems:
    """What a spec needs from the loader: a place to report, and where a key was set."""

    def error(self, path: tuple, message: str) -> None:
        raise NotImplementedError

    def base_dir(self, path: tuple) -> Path:
        """Directory of the file that set `path` (the working directory for --set)."""
        raise NotImplementedError


def _is_int(value: Any) -> bool:
    # bool is a subclass of int in Python; `threads: true` must not mean 1
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return _is_int(value) or isinstance(value, float)


@dataclass(frozen=True)
class Spec:
    """Base check: `convert` returns the typed value or INVALID (after reporting why)."""

    nullable: bool = False

    def describe(self) -> str:
        raise NotImplementedError

    def convert(self, value: Any, path: tuple, problems: Problems) -> Any:
        if value is None and self.nullable:
            return None
        result = self._convert(value, path, problems)
        if result is INVALID:
            problems.error(path, f"must be {self.allowed()} (got {show(value)})")
        return result

    def allowed(self) -> str:
        return ("null or " if self.nullable else "") + self.describe()

    def _convert(self, value: Any, path: tuple, problems: Problems) -> Any:
        raise NotImplementedError


@dataclass(frozen=True)
class Choice(Spec):
    """One of a fixed set of strings or integers."""

    options: tuple = ()

    def describe(self) -> str:
        return "one of " + ", ".join(str(option) for option in self.options)

    def allowed(self) -> str:
        # null is accepted but left out of the list: "one of 16000, 22050, ..." reads better
        # and the commented default.yaml says what null means
        return self.describe()

    def _convert(self, value, path, problems):
        # `sink: null` (the null sink) reads as YAML null; the option is the word itself.
        if value is None and "null" in self.options:
            return "null"
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            return INVALID
        return value if value in self.options else INVALID


@dataclass(frozen=True)
class Int(Spec):
    lo: int = 0
    hi: int = 0

    def describe(self) -> str:
        return f"an integer from {self.lo} to {self.hi}"

    def _convert(self, value, path, problems):
        return value if _is_int(value) and self.lo <= value <= self.hi else INVALID


@dataclass(frozen=True)
class Float(Spec):
    """A number (an integer is fine); hi None = no upper limit; lo_open = lo itself excluded."""

    lo: float = 0.0
    hi: float | None = None
    lo_open: bool = False

    def describe(self) -> str:
        if self.hi is None:
            return f"a number {'>' if self.lo_open else '>='} {self.lo:g}"
        return f"a number from {self.lo:g} to {self.hi:g}"

    def _convert(self, value, path, problems):
        if not _is_number(value):
            return INVALID
        try:
            number = float(value)
        except OverflowError:  # an integer with hundreds of digits
            return INVALID
        if not math.isfinite(number) or number < self.lo or (self.lo_open and number == self.lo):
            return INVALID
        if self.hi is not None and number > self.hi:
            return INVALID
        return number


@dataclass(frozen=True)
class Bool(Spec):
    def describe(self) -> str:
        return "true or false"

    def _convert(self, value, path, problems):
        return value if isinstance(value, bool) else INVALID


@dataclass(frozen=True)
class Text(Spec):
    """A string; device names may be empty (= the system default)."""

    def describe(self) -> str:
        return "a string"

    def _convert(self, value, path, problems):
        return value if isinstance(value, str) else INVALID


@dataclass(frozen=True)
class OctalMode(Spec):
    """A file mode written as a quoted octal string: unquoted 0660 is YAML 1.1 octal = 432."""

    def describe(self) -> str:
        return 'a quoted octal string from "0000" to "0777"'

    def _convert(self, value, path, problems):
        if not isinstance(value, str) or not re.fullmatch(r"[0-7]{3,4}", value):
            return INVALID
        mode = int(value, 8)
        return mode if mode <= 0o777 else INVALID


@dataclass(frozen=True)
class FilePath(Spec):
    """A non-empty path string; `resolve(value, base_dir)` turns it into a Path."""

    resolve: Callable[[str, Path], Path] | None = None

    def describe(self) -> str:
        return "a non-empty path string"

    def convert(self, value, path, problems):
        if value is None and self.nullable:
            return None
        allowed = self.allowed()
        if isinstance(value, str) and value.strip() and "\0" not in value:
            try:
                return self.resolve(value, problems.base_dir(path))
            except RuntimeError:  # pathlib cannot expand "~nosuchuser/x"
                allowed += " whose ~ names a known user"
        problems.error(path, f"must be {allowed} (got {show(value)})")
        return INVALID


@dataclass(frozen=True)
class PathList(Spec):
    """A list of paths, each resolved like FilePath."""

    item: FilePath = field(default_factory=FilePath)

    def describe(self) -> str:
        return "a list of path strings"

    def convert(self, value, path, problems):
        if not isinstance(value, list):
            problems.error(path, f"must be {self.describe()} (got {show(value)})")
            return INVALID
        items = [self.item.convert(entry, path + (index,), problems)
                 for index, entry in enumerate(value)]
        return INVALID if any(entry is INVALID for entry in items) else tuple(items)


@dataclass(frozen=True)
class Names(Spec):
    """A list of non-empty strings (e.g. thermal zone types, in order of preference)."""

    def describe(self) -> str:
        return "a list of non-empty strings"

    def _convert(self, value, path, problems):
        if not isinstance(value, list) or not all(isinstance(item, str) and item.strip()
                                                  for item in value):
            return INVALID
        return tuple(value)


@dataclass(frozen=True)
class Size(Spec):
    """[width, height] in pixels."""

    lo: int = 16
    hi: int = 7680

    def describe(self) -> str:
        return f"[width, height] with integers from {self.lo} to {self.hi}"

    def _convert(self, value, path, problems):
        if not isinstance(value, list) or len(value) != 2:
            return INVALID
        if not all(_is_int(side) and self.lo <= side <= self.hi for side in value):
            return INVALID
        return (value[0], value[1])


@dataclass(frozen=True)
class Section(Spec):
    """A nested mapping validated into `cls` (walked by the loader, not converted here)."""

    cls: type | None = None

    def describe(self) -> str:
        return "a mapping"
