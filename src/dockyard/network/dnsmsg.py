"""DNS messages (RFC 1035, EDNS0 of RFC 6891) from bytes and to bytes; no I/O.

Owns the wire format the embedded DNS server needs: parsing a message
(header, questions, resource records, compressed names) and building replies
(A/AAAA answers, empty NOERROR, NXDOMAIN, SERVFAIL, REFUSED, FORMERR). A UDP
reply larger than the client can take (512 bytes, or its EDNS0 payload size)
loses records from the end and gets the TC bit, so the client retries over TCP.

Rules the parser enforces, so that any bytes at all end in a Message or in
DnsFormatError and nothing else: every length is checked against the data
before use; a label is at most 63 bytes and a name at most 255 on the wire;
a compression pointer must point before every position the name has been
read from so far, which rules out loops; label types 0x40 and 0x80 are refused.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from dockyard import errdefs

# Header flag bits (RFC 1035 4.1.1).
QR = 0x8000
OPCODE_MASK = 0x7800
AA = 0x0400
TC = 0x0200
RD = 0x0100
RA = 0x0080
RCODE_MASK = 0x000F

# Response codes.
NOERROR = 0
FORMERR = 1
SERVFAIL = 2
NXDOMAIN = 3
NOTIMP = 4
REFUSED = 5

# Record types and classes.
A = 1
NS = 2
CNAME = 5
SOA = 6
PTR = 12
MX = 15
TXT = 16
AAAA = 28
OPT = 41
ANY = 255
CLASS_IN = 1

UDP_LIMIT = 512  # RFC 1035 4.2.1: the most a client without EDNS0 takes over UDP
EDNS_PAYLOAD = 4096  # what we advertise, and the most we send over UDP
TCP_LIMIT = 65535  # TCP messages carry a 16-bit length

_HEADER = struct.Struct("!HHHHHH")
_RR_FIXED = struct.Struct("!HHIH")  # type, class, ttl, rdlength
_MAX_NAME = 255
_MAX_LABEL = 63
_MAX_POINTER = 0x3FFF


class DnsFormatError(errdefs.InvalidArgument):
    """The bytes (or the name to encode) are not a well-formed DNS message."""


@dataclass(frozen=True)
class Question:
    labels: tuple[bytes, ...]
    qtype: int
    qclass: int = CLASS_IN

    @property
    def name(self) -> str:
        """Dotted, without the root dot; latin-1 so that every byte survives."""
        return ".".join(label.decode("latin-1") for label in self.labels)


@dataclass(frozen=True)
class Record:
    labels: tuple[bytes, ...]
    rtype: int
    rclass: int
    ttl: int
    rdata: bytes

    @property
    def name(self) -> str:
        return ".".join(label.decode("latin-1") for label in self.labels)


@dataclass(frozen=True)
class Message:
    id: int
    flags: int
    questions: tuple[Question, ...] = ()
    answers: tuple[Record, ...] = ()
    authority: tuple[Record, ...] = ()
    additional: tuple[Record, ...] = ()

    @property
    def qr(self) -> bool:
        return bool(self.flags & QR)

    @property
    def opcode(self) -> int:
        return (self.flags & OPCODE_MASK) >> 11

    @property
    def rcode(self) -> int:
        return self.flags & RCODE_MASK

    @property
    def tc(self) -> bool:
        return bool(self.flags & TC)

    @property
    def edns_size(self) -> int | None:
        """The UDP payload size of the OPT record (its class field), if any."""
        for rr in self.additional:
            if rr.rtype == OPT:
                return rr.rclass
        return None


# --- parsing ---------------------------------------------------------------


def parse(data: bytes) -> Message:
    """A whole message; bytes after its last record are ignored."""
    if len(data) < _HEADER.size:
        raise DnsFormatError("dns message shorter than its header")
    ident, flags, qd, an, ns, ar = _HEADER.unpack_from(data)
    pos = _HEADER.size
    questions = []
    for _ in range(qd):
        labels, pos = _read_name(data, pos)
        if pos + 4 > len(data):
            raise DnsFormatError("dns question truncated")
        qtype, qclass = struct.unpack_from("!HH", data, pos)
        pos += 4
        questions.append(Question(labels, qtype, qclass))
    sections = []
    for count in (an, ns, ar):
        records = []
        for _ in range(count):
            rr, pos = _read_record(data, pos)
            records.append(rr)
        sections.append(tuple(records))
    return Message(ident, flags, tuple(questions), *sections)


def _read_record(data: bytes, pos: int) -> tuple[Record, int]:
    labels, pos = _read_name(data, pos)
    if pos + _RR_FIXED.size > len(data):
        raise DnsFormatError("dns record truncated")
    rtype, rclass, ttl, rdlength = _RR_FIXED.unpack_from(data, pos)
    pos += _RR_FIXED.size
    if pos + rdlength > len(data):
        raise DnsFormatError("dns record data truncated")
    return Record(labels, rtype, rclass, ttl, bytes(data[pos : pos + rdlength])), pos + rdlength


def _read_name(data: bytes, pos: int) -> tuple[tuple[bytes, ...], int]:
    """The labels of the name at pos, and the position after it in the message."""
    labels: list[bytes] = []
    wire = 1  # the root label
    end: int | None = None  # where the message continues once a pointer was followed
    floor = pos  # pointers must go strictly below this, so they cannot loop
    while True:
        if pos >= len(data):
            raise DnsFormatError("dns name runs past the end of the message")
        n = data[pos]
        kind = n & 0xC0
        if kind == 0xC0:
            if pos + 1 >= len(data):
                raise DnsFormatError("dns compression pointer truncated")
            target = ((n & 0x3F) << 8) | data[pos + 1]
            if target >= floor:
                raise DnsFormatError("dns compression pointer does not point backwards")
            if end is None:
                end = pos + 2
            pos = floor = target
        elif kind:
            raise DnsFormatError(f"dns label type {kind:#x} is not supported")
        elif n == 0:
            return tuple(labels), (pos + 1 if end is None else end)
        else:
            if pos + 1 + n > len(data):
                raise DnsFormatError("dns label runs past the end of the message")
            wire += n + 1
            if wire > _MAX_NAME:
                raise DnsFormatError("dns name longer than 255 bytes")
            labels.append(bytes(data[pos + 1 : pos + 1 + n]))
            pos += n + 1


# --- building --------------------------------------------------------------


def labels_of(name: str) -> tuple[bytes, ...]:
    """ "db", "db." or "Db.example.com" as labels; "" and "." are the root."""
    if name in ("", "."):
        return ()
    if name.endswith("."):
        name = name[:-1]
    try:
        labels = tuple(part.encode("ascii") for part in name.split("."))
    except UnicodeEncodeError:
        raise DnsFormatError(f"dns name {name!r} is not ASCII") from None
    _check_labels(labels)
    return labels


def _check_labels(labels: tuple[bytes, ...]) -> None:
    if any(not 0 < len(label) <= _MAX_LABEL for label in labels):
        raise DnsFormatError("dns label empty or longer than 63 bytes")
    if sum(len(label) + 1 for label in labels) + 1 > _MAX_NAME:
        raise DnsFormatError("dns name longer than 255 bytes")


def query(
    name: str, qtype: int = A, *, ident: int, rd: bool = True, edns: int | None = None
) -> bytes:
    """A client's query, as a stub resolver sends it."""
    additional = (opt_record(edns),) if edns is not None else ()
    msg = Message(ident, RD if rd else 0, (Question(labels_of(name), qtype),), (), (), additional)
    return encode(msg)


def opt_record(payload: int = EDNS_PAYLOAD) -> Record:
    return Record((), OPT, payload, 0, b"")


def a_record(labels: tuple[bytes, ...], address: str, ttl: int) -> Record:
    return Record(labels, A, CLASS_IN, ttl, ipaddress.IPv4Address(address).packed)


def aaaa_record(labels: tuple[bytes, ...], address: str, ttl: int) -> Record:
    return Record(labels, AAAA, CLASS_IN, ttl, ipaddress.IPv6Address(address).packed)


def reply(
    q: Message,
    *,
    rcode: int = NOERROR,
    answers: tuple[Record, ...] = (),
    authoritative: bool = False,
) -> Message:
    """The reply to q: same id, opcode, RD and questions; RA set (we recurse
    by forwarding); an OPT record when q had one (RFC 6891 6.1.1)."""
    flags = QR | (q.flags & (OPCODE_MASK | RD)) | RA | (rcode & RCODE_MASK)
    if authoritative:
        flags |= AA
    additional = (opt_record(),) if q.edns_size is not None else ()
    return Message(q.id, flags, q.questions, answers, (), additional)


def udp_limit(q: Message) -> int:
    """The largest UDP reply the sender of q accepts."""
    size = q.edns_size
    if size is None:
        return UDP_LIMIT
    return max(UDP_LIMIT, min(size, EDNS_PAYLOAD))


def formerr(data: bytes) -> bytes | None:
    """A FORMERR for bytes that did not parse, or None when there is nothing
    to answer: no id to echo, or the bytes claim to be a response (answering
    those could start a loop between two servers)."""
    if len(data) < 3 or data[2] & 0x80:
        return None
    ident = int.from_bytes(data[:2], "big")
    opcode_rd = (data[2] << 8) & (OPCODE_MASK | RD)
    return _HEADER.pack(ident, QR | opcode_rd | RA | FORMERR, 0, 0, 0, 0)


def encode(msg: Message, *, limit: int | None = None) -> bytes:
    """The wire form of msg, names compressed. With a limit, records that do
    not fit are left out (the OPT record is kept) and TC is set."""
    w = _Writer()
    for q in msg.questions:
        w.name(q.labels)
        w.buf += struct.pack("!HH", q.qtype, q.qclass)
    opts = [rr for rr in msg.additional if rr.rtype == OPT]
    others = [rr for rr in msg.additional if rr.rtype != OPT]
    reserve = sum(1 + _RR_FIXED.size + len(rr.rdata) for rr in opts)
    counts = [len(msg.questions), 0, 0, 0]
    truncated = False
    for index, records in ((1, msg.answers), (2, msg.authority), (3, others)):
        for rr in records:
            mark = w.mark()
            w.record(rr)
            if limit is not None and len(w.buf) + reserve > limit:
                w.rollback(mark)
                truncated = True
                break
            counts[index] += 1
        if truncated:
            break
    for rr in opts:
        w.record(rr)
        counts[3] += 1
    flags = msg.flags | TC if truncated else msg.flags
    w.buf[: _HEADER.size] = _HEADER.pack(msg.id, flags, *counts)
    return bytes(w.buf)


class _Writer:
    """A growing message and the offsets of the names already in it."""

    def __init__(self) -> None:
        self.buf = bytearray(_HEADER.size)
        self.names: dict[tuple[bytes, ...], int] = {}

    def name(self, labels: tuple[bytes, ...]) -> None:
        _check_labels(labels)
        for i in range(len(labels)):
            suffix = tuple(label.lower() for label in labels[i:])
            offset = self.names.get(suffix)
            if offset is not None:
                self.buf += (0xC000 | offset).to_bytes(2, "big")
                return
            if len(self.buf) <= _MAX_POINTER:
                self.names[suffix] = len(self.buf)
            self.buf.append(len(labels[i]))
            self.buf += labels[i]
        self.buf.append(0)

    def record(self, rr: Record) -> None:
        self.name(rr.labels)
        self.buf += _RR_FIXED.pack(rr.rtype, rr.rclass, rr.ttl, len(rr.rdata))
        self.buf += rr.rdata

    def mark(self) -> int:
        return len(self.buf)

    def rollback(self, size: int) -> None:
        del self.buf[size:]
        # Names added since the mark point into the bytes just removed.
        self.names = {k: v for k, v in self.names.items() if v < size}
