"""Go's ``text/tabwriter`` (elastic tabstops) with the options the docker CLI
uses for its tables: ``NewWriter(out, 10, 1, 3, ' ', 0)``.

Cells end at a tab; the last cell of a line is not part of any column. A
column block is a run of consecutive lines that have a cell in that column;
its width is the widest cell plus padding, at least ``minwidth``. A line with
a single cell ends all blocks (Go flushes there).
"""

from __future__ import annotations


def _width(text: str) -> int:
    return len(text)  # Go counts runes


def _format_block(lines: list[list[str]], minwidth: int, padding: int) -> list[str]:
    out: list[str] = []
    widths: list[int] = []

    def write_lines(start: int, end: int) -> None:
        for line in lines[start:end]:
            parts: list[str] = []
            for j, cell in enumerate(line):
                if j < len(widths):
                    parts.append(cell + " " * (widths[j] - _width(cell)))
                else:
                    parts.append(cell)
            out.append("".join(parts))

    def fmt(line0: int, line1: int) -> None:
        column = len(widths)
        this = line0
        while this < line1:
            if column >= len(lines[this]) - 1:
                this += 1
                continue
            write_lines(line0, this)
            line0 = this
            width = minwidth
            while this < line1 and column < len(lines[this]) - 1:
                width = max(width, _width(lines[this][column]) + padding)
                this += 1
            widths.append(width)
            fmt(line0, this)
            widths.pop()
            line0 = this
        write_lines(line0, line1)

    fmt(0, len(lines))
    return out


def tabwrite(text: str, *, minwidth: int = 10, padding: int = 3) -> str:
    """Align tab-separated ``text`` as docker's tables are aligned."""
    rows = text.split("\n")
    trailing = rows[-1]
    rows = rows[:-1]
    out: list[str] = []
    block: list[list[str]] = []
    for row in rows:
        cells = row.split("\t")
        block.append(cells)
        if len(cells) == 1:
            out.extend(_format_block(block, minwidth, padding))
            block = []
    if trailing:
        block.append(trailing.split("\t"))
        formatted = _format_block(block, minwidth, padding)
        out.extend(formatted[:-1])
        return "".join(line + "\n" for line in out) + formatted[-1]
    out.extend(_format_block(block, minwidth, padding))
    return "".join(line + "\n" for line in out)
