"""``.dockerignore``: reading it and matching paths as Docker does.

Reading (moby/patternmatcher ``ignorefile``): a BOM is dropped, lines
starting with ``#`` are comments, blanks are trimmed, each pattern is
cleaned like Go's ``filepath.Clean`` and loses a leading ``/``; ``!`` marks
an exception.

Matching (``PatternMatcher.MatchesOrParentMatches``): patterns use
``filepath.Match`` syntax (``*`` and ``?`` stop at ``/``, ``[...]`` classes,
``\\`` escapes) plus ``**`` for any number of directories; a pattern also
matches everything under a directory it matches; the last matching pattern
wins, so ``!keep`` after ``*`` re-includes ``keep``. When walking, a
matched directory must still be entered if an exception pattern lies
inside it (``may_match_inside``), and only then.

Who applies it: the client when it tars the context. The client always
sends the Dockerfile and ``.dockerignore`` themselves even when matched
(``always_sent``), and the daemon then drops them from the context if the
patterns match them, after reading the Dockerfile.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from dockyard import errdefs


class PatternError(errdefs.InvalidArgument):
    """A pattern is malformed (``syntax error in pattern``, a lone ``!``)."""


BAD_PATTERN = "syntax error in pattern"
_SPECIAL = re.compile(r"[*?\\\[\]]")


def clean(path: str) -> str:
    """Go's ``path.Clean``: ``a//b/./c/..`` → ``a/b``; empty → ``.``."""
    if not path:
        return "."
    rooted = path.startswith("/")
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(part)
    joined = "/".join(out)
    if rooted:
        return "/" + joined
    return joined or "."


def read_patterns(text: str) -> list[str]:
    """The patterns of a ``.dockerignore`` file's text."""
    if text.startswith("\ufeff"):
        text = text[1:]
    patterns = []
    for raw in text.split("\n"):
        raw = raw.removesuffix("\r")
        if raw.startswith("#"):
            continue
        pattern = raw.strip()
        if not pattern:
            continue
        invert = pattern[0] == "!"
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = clean(pattern)
            if len(pattern) > 1 and pattern[0] == "/":
                pattern = pattern[1:]
        patterns.append("!" + pattern if invert else pattern)
    return patterns


@dataclass(frozen=True)
class Pattern:
    text: str  # cleaned, without the leading "!"
    exclusion: bool
    regex: re.Pattern[str]
    dirs: int  # number of path components


def _compile(pattern: str) -> re.Pattern[str]:
    """``filepath.Match`` syntax plus ``**``, anchored at both ends."""
    rest = pattern[2:]
    if pattern.startswith("**") and not _SPECIAL.search(rest):
        # Docker's "suffix match": "**.go" is any path ending in ".go".
        if rest.startswith("/"):
            return re.compile("^(?:.*/)?" + re.escape(rest[1:]) + "\\Z")
        return re.compile("^.*" + re.escape(rest) + "\\Z")
    out = ["^"]
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            if i < n and pattern[i] == "*":
                i += 1
                if i < n and pattern[i] == "/":
                    i += 1  # "**/" is "**"
                out.append(".*" if i == n else "(?:.*/)?")
            else:
                out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            if i >= n:
                raise PatternError(BAD_PATTERN)
            out.append(re.escape(pattern[i]))
            i += 1
        elif ch == "[":
            cls, i = _char_class(pattern, i)
            out.append(cls)
        elif ch == "]":
            raise PatternError(BAD_PATTERN)
        else:
            out.append(re.escape(ch))
    out.append("\\Z")
    return re.compile("".join(out))


def _class_char(pattern: str, i: int) -> tuple[str, int]:
    # Go's getEsc: one possibly escaped char; '-' or ']' here is an error,
    # and a class must not end right after it.
    n = len(pattern)
    if i >= n or pattern[i] in "-]":
        raise PatternError(BAD_PATTERN)
    if pattern[i] == "\\":
        i += 1
        if i >= n:
            raise PatternError(BAD_PATTERN)
    ch = pattern[i]
    i += 1
    if i >= n:
        raise PatternError(BAD_PATTERN)
    return ch, i


def _char_class(pattern: str, i: int) -> tuple[str, int]:
    negated = i < len(pattern) and pattern[i] == "^"
    if negated:
        i += 1
    ranges: list[str] = []
    while True:
        if i < len(pattern) and pattern[i] == "]" and ranges:
            i += 1
            break
        lo, i = _class_char(pattern, i)
        hi = lo
        if pattern[i] == "-":
            hi, i = _class_char(pattern, i + 1)
        if lo <= hi:
            ranges.append(re.escape(lo) + "-" + re.escape(hi) if lo != hi else re.escape(lo))
        else:
            ranges.append("")  # an empty range matches nothing, as in Go
    body = "".join(ranges)
    if negated:
        # Docker hands the class to a regex, so unlike filepath.Match a
        # negated class matches "/" too.
        return f"[^{body}]", i
    return (f"[{body}]" if body else "(?!)"), i


class PatternMatcher:
    """Docker's matcher over cleaned patterns (e.g. from ``read_patterns``).

    Paths are slash-separated and relative to the context root.
    """

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns: list[Pattern] = []
        for p in patterns:
            p = p.strip()
            if not p:
                continue
            p = clean(p)
            exclusion = p[0] == "!"
            if exclusion:
                if len(p) == 1:
                    raise PatternError('illegal exclusion pattern: "!"')
                p = p[1:]
            self.patterns.append(Pattern(p, exclusion, _compile(p), len(p.split("/"))))
        self.exclusions = any(p.exclusion for p in self.patterns)

    def matches(self, path: str) -> bool:
        """True if ``path`` is excluded from the context: a pattern matches
        it or one of its parent directories, and no later exception does."""
        path = clean(path)
        if path == ".":
            return False
        parents: list[str] = []
        parent = path.rpartition("/")[0]
        if parent:
            parts = parent.split("/")
            parents = ["/".join(parts[: k + 1]) for k in range(len(parts))]
        matched = False
        for pattern in self.patterns:
            if pattern.exclusion != matched:
                continue
            hit = pattern.regex.match(path) is not None or any(
                pattern.regex.match(p) is not None for p in parents
            )
            if hit:
                matched = not pattern.exclusion
        return matched

    def may_match_inside(self, directory: str) -> bool:
        """For an excluded directory: must the walk still enter it because an
        exception pattern may re-include something below it? (Docker's
        prefix test, so ``!*/keep`` does not reopen ``a``.)"""
        if not self.exclusions:
            return False
        prefix = clean(directory) + "/"
        return any(p.exclusion and (p.text + "/").startswith(prefix) for p in self.patterns)


ALWAYS_SENT = (".dockerignore",)


def always_sent(dockerfile: str = "Dockerfile") -> tuple[str, ...]:
    """Files the client sends even when the patterns exclude them."""
    return (".dockerignore", clean(dockerfile))


def excluded_after_read(matcher: PatternMatcher, dockerfile: str = "Dockerfile") -> list[str]:
    """What the daemon removes from the context once it has read the
    Dockerfile: each of ``.dockerignore`` and the Dockerfile the patterns
    match."""
    return [name for name in always_sent(dockerfile) if matcher.matches(name)]
