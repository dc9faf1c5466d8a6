"""Docker's variable substitution and word splitting (buildkit ``shell/lex.go``).

What the builder does with a word before it uses it: ``$v``, ``${v}``,
``${v:-w}`` ``${v-w}`` ``${v:+w}`` ``${v+w}`` ``${v:?msg}`` ``${v?msg}``,
``${v#pat}`` ``${v##pat}`` ``${v%pat}`` ``${v%%pat}``, ``${v/pat/rep}``
``${v//pat/rep}``, single quotes (literal), double quotes (``$`` still
expands, the escape char escapes only ``"``, ``$`` and itself), and the
escape char (``\\`` or the ``# escape=`` one) outside quotes. Unset
variables expand to nothing; ``$1``..., ``$@`` and the other special
parameters are never set. RUN, CMD and ENTRYPOINT are not expanded by the
builder (the shell does it); which fields of which instruction are expanded
is written in ``instructions.expand``.

Deliberate differences from buildkit, both bugs there: ``process_words``
keeps the text before a ``${v:-w}`` in the same word (buildkit's shared
buffer drops it), and ``${v/p/r}`` inserts ``r`` literally (Go's
ReplaceAllString would expand ``$1`` in it).

Also the predefined build arguments (proxies, ``TARGETPLATFORM`` ...): the
executor scopes ARG and ENV, this module only computes values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from dockyard import errdefs
from dockyard.gofmt import go_quote

_EOF = ""
# What Go prints for scanner.EOF formatted with %c/string(rune(-1)).
_GO_EOF_CHAR = "\ufffd"
_SPECIAL_PARAMS = frozenset("@*#?-$!0")
_HEREDOC_SPACE = frozenset(" \t\r")


class ExpansionError(errdefs.InvalidArgument):
    """A word could not be expanded: bad ``${...}`` syntax, an unmatched
    quote, or a ``${v?msg}`` whose variable is unset."""


GO_SPACES = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
"""Go's ``unicode.IsSpace`` set (Python's isspace also counts \\x1c-\\x1f);
usable with ``str.strip``."""
_GO_SPACE_SET = frozenset(GO_SPACES)


def is_go_space(ch: str) -> bool:
    """Go's ``unicode.IsSpace``."""
    return ch in _GO_SPACE_SET


@dataclass(frozen=True)
class WordResult:
    """One processed word: the expansion, its split into words, and which
    variable names were found and which were not (for "unused ARG" hints)."""

    result: str
    words: tuple[str, ...]
    matched: frozenset[str]
    unmatched: frozenset[str]


class ShellLex:
    """A lexer for one escape char; options as buildkit's ``Lex``.

    ``raw_quotes`` keeps quote characters in the output, ``raw_escapes`` keeps
    escape characters, ``skip_unset_env`` leaves ``$v`` of unset variables as
    written, ``skip_process_quotes`` treats quotes as ordinary characters.
    """

    __slots__ = ("escape", "raw_escapes", "raw_quotes", "skip_process_quotes", "skip_unset_env")

    def __init__(
        self,
        escape: str = "\\",
        *,
        raw_quotes: bool = False,
        raw_escapes: bool = False,
        skip_process_quotes: bool = False,
        skip_unset_env: bool = False,
    ) -> None:
        self.escape = escape
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        self.skip_process_quotes = skip_process_quotes
        self.skip_unset_env = skip_unset_env

    def process_word(self, word: str, env: Mapping[str, str]) -> str:
        """Expand ``word`` as one word (spaces kept, quotes removed)."""
        return self.process_word_with_matches(word, env).result

    def process_words(self, word: str, env: Mapping[str, str]) -> list[str]:
        """Expand ``word`` and split it into words after expansion (quoted
        spaces do not split); only EXPOSE and heredoc detection use this."""
        return list(self.process_word_with_matches(word, env).words)

    def process_word_with_matches(self, word: str, env: Mapping[str, str]) -> WordResult:
        state = _Word(self, word, env)
        try:
            result, words = state.stop_on(None, self.raw_escapes)
        except _LexError as e:
            raise ExpansionError(f"failed to process {go_quote(word)}: {e.args[0]}") from None
        return WordResult(
            result, tuple(words), frozenset(state.matched), frozenset(state.unmatched)
        )


class _LexError(Exception):
    pass


class _Words:
    """Word splitting as the characters come (buildkit's wordsStruct)."""

    __slots__ = ("buf", "in_word", "words")

    def __init__(self) -> None:
        self.buf: list[str] = []
        self.words: list[str] = []
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if is_go_space(ch):
            if self.in_word and self.buf:
                self.words.append("".join(self.buf))
                self.buf.clear()
                self.in_word = False
        else:
            self.buf.append(ch)
            self.in_word = True

    def add_raw_char(self, ch: str) -> None:
        self.buf.append(ch)
        self.in_word = True

    def add_string(self, s: str) -> None:
        for ch in s:
            self.add_char(ch)

    def add_raw_string(self, s: str) -> None:
        self.buf.append(s)
        self.in_word = True

    def get(self) -> list[str]:
        if self.buf:
            word = "".join(self.buf)
            if word:
                self.words.append(word)
            self.buf.clear()
            self.in_word = False
        return self.words


class _Word:
    """The scanning state of one ``process_*`` call."""

    __slots__ = ("env", "lex", "matched", "n", "pos", "raw_escapes", "text", "unmatched")

    def __init__(self, lex: ShellLex, text: str, env: Mapping[str, str]) -> None:
        self.lex = lex
        self.text = text
        self.n = len(text)
        self.pos = 0
        self.env = env
        self.raw_escapes = lex.raw_escapes
        self.matched: set[str] = set()
        self.unmatched: set[str] = set()

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < self.n else _EOF

    def next(self) -> str:
        if self.pos < self.n:
            ch = self.text[self.pos]
            self.pos += 1
            return ch
        return _EOF

    def stop_on(self, stop: str | None, raw_escapes: bool) -> tuple[str, list[str]]:
        saved = self.raw_escapes
        self.raw_escapes = raw_escapes
        try:
            return self._stop_on(stop)
        finally:
            self.raw_escapes = saved

    def _stop_on(self, stop: str | None) -> tuple[str, list[str]]:
        result: list[str] = []
        words = _Words()
        escape = self.lex.escape
        quotes = not self.lex.skip_process_quotes
        text = self.text
        while self.pos < self.n:
            ch = text[self.pos]
            if ch == stop:
                self.pos += 1
                return "".join(result), words.get()
            if ch == "$":
                tmp = self.dollar()
                result.append(tmp)
                words.add_string(tmp)
            elif ch == "<":
                tmp = self.possible_heredoc()
                result.append(tmp)
                words.add_raw_string(tmp)
            elif quotes and ch == "'":
                tmp = self.single_quote()
                result.append(tmp)
                words.add_raw_string(tmp)
            elif quotes and ch == '"':
                tmp = self.double_quote()
                result.append(tmp)
                words.add_raw_string(tmp)
            else:
                self.pos += 1
                if ch == escape:
                    if self.raw_escapes:
                        words.add_raw_char(ch)
                        result.append(ch)
                    if self.pos >= self.n:
                        break
                    ch = text[self.pos]
                    self.pos += 1
                    words.add_raw_char(ch)
                else:
                    words.add_char(ch)
                result.append(ch)
        if stop is not None:
            raise _LexError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(result), words.get()

    def single_quote(self) -> str:
        # Everything up to the next ' is literal; ' cannot be escaped inside.
        out: list[str] = []
        ch = self.next()
        if self.lex.raw_quotes:
            out.append(ch)
        end = self.text.find("'", self.pos)
        if end < 0:
            raise _LexError("unexpected end of statement while looking for matching single-quote")
        out.append(self.text[self.pos : end])
        self.pos = end + 1
        if self.lex.raw_quotes:
            out.append("'")
        return "".join(out)

    def double_quote(self) -> str:
        out: list[str] = []
        ch = self.next()
        if self.lex.raw_quotes:
            out.append(ch)
        escape = self.lex.escape
        while True:
            c = self.peek()
            if c == _EOF:
                raise _LexError(
                    "unexpected end of statement while looking for matching double-quote"
                )
            if c == '"':
                self.pos += 1
                if self.lex.raw_quotes:
                    out.append(c)
                return "".join(out)
            if c == "$":
                out.append(self.dollar())
                continue
            ch = self.next()
            if ch == escape:
                if self.raw_escapes:
                    out.append(ch)
                nxt = self.peek()
                if nxt == _EOF:
                    continue
                if nxt in ('"', "$", escape):
                    ch = self.next()
            out.append(ch)

    def dollar(self) -> str:
        self.pos += 1
        if self.peek() != "{":
            name = self.name()
            if not name:
                return "$"
            value, found = self.get_env(name)
            if not found and self.lex.skip_unset_env:
                return "$" + name
            return value
        self.pos += 1
        c = self.peek()
        if c == _EOF:
            raise _LexError("syntax error: missing '}'")
        if c in "{}:":
            raise _LexError("syntax error: bad substitution")
        name = self.name()
        ch = self.next()
        if ch == "}":
            value, found = self.get_env(name)
            if not found and self.lex.skip_unset_env:
                return "${" + name + "}"
            return value
        if ch == "/":
            return self.replace(name)
        chs = ch or _GO_EOF_CHAR
        null_is_unset = False
        if ch == ":":
            null_is_unset = True
            ch = self.next()
            chs += ch or _GO_EOF_CHAR
        elif ch not in ("+", "-", "?", "#", "%") or ch == _EOF:
            raise _LexError(f"unsupported modifier ({chs}) in substitution")
        return self.modifier(name, ch, chs, null_is_unset)

    def modifier(self, name: str, ch: str, chs: str, null_is_unset: bool) -> str:
        trims = ch in ("#", "%") and ch != _EOF
        if null_is_unset and trims:
            raise _LexError(f"unsupported modifier ({chs}) in substitution")
        word = self.sub_word("}", trims, "syntax error: missing '}'")
        value, is_set = self.get_env(name)
        if self.lex.skip_unset_env and not is_set:
            return "${" + name + chs + word + "}"
        empty = not is_set or (null_is_unset and value == "")
        if ch == "-":
            return word if empty else value
        if ch == "+":
            return "" if empty else word
        if ch == "?":
            if not is_set:
                raise _LexError(f"{name}: {word or 'is not allowed to be unset'}")
            if null_is_unset and value == "":
                raise _LexError(f"{name}: {word or 'is not allowed to be empty'}")
            return value
        if trims:
            greedy = word[:1] == ch
            if greedy:
                word = word[1:]
            if ch == "%":
                return _trim_suffix(word, value, greedy)
            return _trim_prefix(word, value, greedy)
        raise _LexError(f"unsupported modifier ({chs}) in substitution")

    def sub_word(self, stop: str, raw_escapes: bool, missing: str) -> str:
        try:
            word, _ = self.stop_on(stop, raw_escapes)
        except _LexError:
            if self.peek() == _EOF:
                raise _LexError(missing) from None
            raise
        return word

    def replace(self, name: str) -> str:
        replace_all = self.peek() == "/"
        if replace_all:
            self.pos += 1
        pattern = self.sub_word("/", True, "syntax error: missing '/' in ${}")
        replacement = self.sub_word("}", True, "syntax error: missing '}'")
        value, is_set = self.get_env(name)
        if self.lex.skip_unset_env and not is_set:
            return "${" + name + "/" + pattern + "/" + replacement + "}"
        regex = _pattern_regex(pattern, greedy=True, anchored=False)
        if replace_all:
            return regex.sub(lambda _m: replacement, value)
        m = regex.search(value)
        if m:
            value = value[: m.start()] + replacement + value[m.end() :]
        return value

    def name(self) -> str:
        text = self.text
        start = self.pos
        if start >= self.n:
            return ""
        ch = text[start]
        if ch.isdecimal():
            end = start
            while end < self.n and text[end].isdecimal():
                end += 1
            self.pos = end
            return text[start:end]
        if ch in _SPECIAL_PARAMS:
            self.pos += 1
            return ch
        end = start
        while end < self.n and (text[end].isalpha() or text[end].isdecimal() or text[end] == "_"):
            end += 1
        self.pos = end
        return text[start:end]

    def possible_heredoc(self) -> str:
        self.pos += 1
        if self.peek() != "<":
            return "<"
        self.pos += 1
        start = self.pos
        while self.pos < self.n and self.text[self.pos] in _HEREDOC_SPACE:
            self.pos += 1
        return "<<" + self.text[start : self.pos]

    def get_env(self, name: str) -> tuple[str, bool]:
        value = self.env.get(name)
        if value is None:
            self.unmatched.add(name)
            return "", False
        self.matched.add(name)
        return value, True


def _pattern_regex(pattern: str, *, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """A shell wildcard (``*``, ``?``, ``\\`` escapes; no brackets) as a regex."""
    out = ["^"] if anchored else []
    star = ".*" if greedy else ".*?"
    i, n = 0, len(pattern)
    while i < n:
        tok = pattern[i]
        i += 1
        if tok == "*":
            out.append(star)
        elif tok == "?":
            out.append(".")
        elif tok == "\\":
            # \} and \/ inside ${} are escapes of the ${} syntax, not the pattern.
            if i < n and pattern[i] in "}/":
                continue
            nxt = pattern[i] if i < n else _GO_EOF_CHAR
            i += 1
            if nxt not in ("*", "?", "\\"):
                raise _LexError(
                    f"invalid pattern ({pattern}) in substitution: invalid escape '\\{nxt}'"
                )
            out.append(re.escape(nxt))
        else:
            out.append(re.escape(tok))
    return re.compile("".join(out))


def _trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    m = _pattern_regex(pattern, greedy=greedy, anchored=True).search(value)
    return value[m.end() :] if m else value


def _reverse_pattern(pattern: str) -> str:
    # Reverse, but keep each escape in front of the character it escapes.
    tokens: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        if pattern[i] == "\\" and i != n - 1:
            tokens.append(pattern[i : i + 2])
            i += 2
        else:
            tokens.append(pattern[i])
            i += 1
    return "".join(reversed(tokens))


def _trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    # Regexes find leftmost matches; reverse both to find the shortest suffix.
    return _trim_prefix(_reverse_pattern(pattern), value[::-1], greedy)[::-1]


# --- predefined build arguments -------------------------------------------

PROXY_ARGS: tuple[str, ...] = (
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
)
"""Build args usable without an ARG line, and left out of the image history
(Docker's builtinAllowedBuildArgs)."""

PLATFORM_ARGS: tuple[str, ...] = (
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
)
"""Automatic platform args: global scope, but a stage sees them only after it
declares ``ARG NAME`` (no value)."""

_ARCH_ALIASES = {
    "x86_64": ("amd64", ""),
    "x86-64": ("amd64", ""),
    "amd64": ("amd64", ""),
    "aarch64": ("arm64", ""),
    "arm64": ("arm64", ""),
    "armv8l": ("arm64", ""),
    "armhf": ("arm", "v7"),
    "armel": ("arm", "v6"),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "i386": ("386", ""),
    "i686": ("386", ""),
}


def normalize_platform(platform: str) -> tuple[str, str, str]:
    """``"linux/aarch64"`` → ``("linux", "arm64", "")``; ``"linux/arm"`` gets
    variant ``v7`` and ``arm64`` loses a ``v8`` variant, as containerd does."""
    parts = platform.strip().lower().split("/")
    if len(parts) > 3 or not all(parts):
        raise errdefs.InvalidArgument(f'"{platform}": unknown operating system or architecture')
    os_ = parts[0]
    arch = parts[1] if len(parts) > 1 else ""
    variant = parts[2] if len(parts) > 2 else ""
    arch, default_variant = _ARCH_ALIASES.get(arch, (arch, ""))
    if not variant:
        variant = default_variant
    if arch == "arm64" and variant == "v8":
        variant = ""
    if arch == "arm" and not variant:
        variant = "v7"
    return os_, arch, variant


def platform_args(*, target: str, build: str) -> dict[str, str]:
    """Values of the eight platform args for ``target`` and ``build``
    platforms given as ``os/arch[/variant]`` (e.g. ``"linux/amd64"``)."""
    out: dict[str, str] = {}
    for prefix, spec in (("TARGET", target), ("BUILD", build)):
        os_, arch, variant = normalize_platform(spec)
        out[prefix + "PLATFORM"] = "/".join(p for p in (os_, arch, variant) if p)
        out[prefix + "OS"] = os_
        out[prefix + "ARCH"] = arch
        out[prefix + "VARIANT"] = variant
    return out


def is_builtin_arg(name: str) -> bool:
    """True for args that need no ARG line to be passed with --build-arg."""
    return name in PROXY_ARGS
