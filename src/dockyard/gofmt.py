"""Go's ``fmt`` and ``strconv`` as far as we must print like Go programs do:
``%v`` of values decoded from JSON (slices ``[a b]``, maps ``map[k:v]``,
floats printed the way Go prints a float64) and ``Sprintf`` with the common
verbs for ``--format`` templates; ``strconv.Quote``, ``%q``/``%v`` of string
slices, runes and ``time.Duration`` for the builder's history strings and
messages that must read like dockerd's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any


class _Missing:
    """A map key that is not there: Go templates print it as ``<no value>``."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<no value>"

    def __bool__(self) -> bool:
        return False


MISSING = _Missing()


def go_float(value: float) -> str:
    """Go's ``%v`` of a float64: the shortest digits, in exponent form when
    the exponent is < -4 or >= 6 (so 1000000 prints as ``1e+06``)."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if str(value).startswith("-") else "0"
    sign, digits, exp = Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exp, int)
    text = "".join(map(str, digits))
    point = len(text) + exp  # position of the decimal point
    x = point - 1
    prefix = "-" if sign else ""
    if x < -4 or x >= 6:
        mant = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{prefix}{mant}e{'-' if x < 0 else '+'}{abs(x):02d}"
    if point <= 0:
        return f"{prefix}0.{'0' * -point}{text}"
    if point >= len(text):
        return prefix + text + "0" * (point - len(text))
    return f"{prefix}{text[:point]}.{text[point:]}"


def format_value(value: Any, *, top: bool = True) -> str:
    """Go ``%v`` (as ``fmt.Sprint`` / the template printer would write it)."""
    if value is MISSING:
        return "<no value>"
    if value is None:
        return "<no value>" if top else "<nil>"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, Mapping):
        items = sorted(value.items(), key=lambda kv: str(kv[0]))
        inner = " ".join(
            f"{format_value(k, top=False)}:{format_value(v, top=False)}" for k, v in items
        )
        return f"map[{inner}]"
    if isinstance(value, Sequence | tuple | set | frozenset):
        return "[" + " ".join(format_value(v, top=False) for v in value) + "]"
    return str(value)


def go_type(value: Any) -> str:
    """The Go type a JSON-decoded value would have, for error messages."""
    if value is None or value is MISSING:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "map[string]interface {}"
    if isinstance(value, list | tuple):
        return "[]interface {}"
    return type(value).__name__


def go_quote(text: str) -> str:
    """``strconv.Quote`` (Go's ``%q`` of a string)."""
    out = ['"']
    for ch in text:
        if ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        elif ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        else:
            code = ord(ch)
            if code < 0x80:
                out.append(f"\\x{code:02x}")
            elif code < 0x10000:
                out.append(f"\\u{code:04x}")
            else:
                out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


_GO_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


def go_list_q(items: list[str] | tuple[str, ...] | None) -> str:
    """Go's ``%q`` of a ``[]string``: ``["sh" "-c"]``."""
    return "[" + " ".join(go_quote(s) for s in items or ()) + "]"


def go_list_v(items: list[str] | tuple[str, ...] | None) -> str:
    """Go's ``%v`` of a ``[]string``: ``[/bin/sh -c]``."""
    return "[" + " ".join(items or ()) + "]"


def go_duration(ns: int) -> str:
    """Go's ``time.Duration.String``."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)

    def frac(value: int, unit: int) -> str:
        whole, rest = divmod(value, unit)
        if not rest:
            return str(whole)
        digits = len(str(unit)) - 1
        return f"{whole}." + f"{rest:0{digits}d}".rstrip("0")

    if ns < 1_000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return f"{sign}{frac(ns, 1_000)}µs"
    if ns < 1_000_000_000:
        return f"{sign}{frac(ns, 1_000_000)}ms"
    hours, rest = divmod(ns, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    out = sign
    if hours:
        out += f"{hours}h"
    if hours or minutes:
        out += f"{minutes}m"
    return out + frac(rest, 1_000_000_000) + "s"


def go_rune_q(value: int) -> str:
    """Go's ``%q`` of an int (a rune literal): ``'\\x00'``, ``'A'``."""
    escapes = {7: "\\a", 8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r"}
    if value in escapes:
        return f"'{escapes[value]}'"
    if value in (39, 92):
        return f"'\\{chr(value)}'"
    if 32 <= value < 127:
        return f"'{chr(value)}'"
    if value < 128:
        return f"'\\x{value:02x}'"
    return f"'\\u{value:04x}'"


def go_json(value: Any) -> str:
    """``json.Marshal`` without HTML escaping, as docker's ``json`` function."""
    if value is MISSING:
        return "null"
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_json_default)
    if hasattr(value, "to_json"):
        # A formatter context marshals itself with json.Marshal, which
        # escapes HTML characters (they can only occur inside strings).
        text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return text


def _json_default(value: Any) -> Any:
    to_json = getattr(value, "to_json", None)
    if callable(to_json):
        return to_json()
    if value is MISSING:
        return None
    raise TypeError(f"json: unsupported type: {type(value).__name__}")


_VERB = re.compile(r"%([-+# 0]*)(\*|\d+)?(?:\.(\*|\d+)?)?([a-zA-Z%])")


def sprintf(fmt: str, *args: Any) -> str:
    """Go ``fmt.Sprintf`` for %v %s %d %q %x %X %o %b %f %e %g %t %c %T %%."""
    out: list[str] = []
    pos = 0
    argi = 0
    for m in _VERB.finditer(fmt):
        out.append(fmt[pos : m.start()])
        pos = m.end()
        flags, width, prec, verb = m.group(1), m.group(2), m.group(3), m.group(4)
        if verb == "%":
            out.append("%")
            continue
        if width == "*":
            width = str(args[argi]) if argi < len(args) else None
            argi += 1
        if prec == "*":
            prec = str(args[argi]) if argi < len(args) else None
            argi += 1
        if argi >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = args[argi]
        argi += 1
        has_prec = "." in m.group(0)
        body = _format_verb(verb, flags, int(prec) if prec else (0 if has_prec else None), arg)
        if width:
            w = int(width)
            if "-" in flags:
                body = body.ljust(w)
            elif "0" in flags and verb in "dfegxXob" and not isinstance(arg, str):
                neg = body.startswith("-")
                body = ("-" if neg else "") + body.lstrip("-").rjust(w - neg, "0")
            else:
                body = body.rjust(w)
        out.append(body)
    out.append(fmt[pos:])
    if argi < len(args):
        extra = ", ".join(f"{go_type(a)}={format_value(a, top=False)}" for a in args[argi:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def _bad(verb: str, arg: Any) -> str:
    return f"%!{verb}({go_type(arg)}={format_value(arg, top=False)})"


def _format_verb(verb: str, flags: str, prec: int | None, arg: Any) -> str:
    if verb == "v":
        if isinstance(arg, str) and "#" in flags:
            return go_quote(arg)
        return format_value(arg, top=False)
    if verb == "T":
        return go_type(arg)
    if verb == "s":
        if isinstance(arg, int | float | bool) or arg is None:
            return _bad(verb, arg)
        text = format_value(arg, top=False)
        return text[:prec] if prec is not None else text
    if verb == "q":
        if isinstance(arg, str):
            return go_quote(arg)
        if isinstance(arg, list):
            return "[" + " ".join(_format_verb("q", flags, prec, a) for a in arg) + "]"
        return _bad(verb, arg)
    if verb == "t":
        return format_value(arg, top=False) if isinstance(arg, bool) else _bad(verb, arg)
    if verb in "dxXobc":
        if isinstance(arg, bool) or not isinstance(arg, int):
            if verb in "xX" and isinstance(arg, str):
                text = arg.encode().hex()
                return text.upper() if verb == "X" else text
            return _bad(verb, arg)
        if verb == "c":
            return chr(arg)
        spec = {"d": "d", "x": "x", "X": "X", "o": "o", "b": "b"}[verb]
        sign = "+" if "+" in flags else ""
        return format(arg, sign + spec)
    if verb in "feEgG":
        if isinstance(arg, bool) or not isinstance(arg, int | float):
            return _bad(verb, arg)
        if verb in "gG" and prec is None:
            return go_float(float(arg))
        return format(float(arg), f".{6 if prec is None else prec}{verb}")
    return f"%!{verb}({go_type(arg)}={format_value(arg, top=False)})"
