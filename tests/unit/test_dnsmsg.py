"""The DNS message codec: round trips, compression, truncation, and that no
bytes at all raise anything but DnsFormatError."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dockyard import errdefs
from dockyard.network import dnsmsg
from dockyard.network.dnsmsg import DnsFormatError, Message, Question, Record

HEADER = struct.Struct("!HHHHHH")

labels_st = st.lists(st.binary(min_size=1, max_size=20), min_size=0, max_size=5).map(tuple)
record_st = st.builds(
    Record,
    labels_st,
    st.integers(1, 65535).filter(lambda t: t != dnsmsg.OPT),
    st.integers(0, 65535),
    st.integers(0, 2**32 - 1),
    st.binary(max_size=40),
)
message_st = st.builds(
    Message,
    st.integers(0, 65535),
    st.integers(0, 65535),
    st.lists(st.builds(Question, labels_st, st.integers(0, 65535), st.integers(0, 65535)))
    .map(tuple)
    .filter(lambda qs: len(qs) <= 4),
    st.lists(record_st, max_size=4).map(tuple),
    st.lists(record_st, max_size=2).map(tuple),
    st.lists(record_st, max_size=2).map(tuple),
)


def test_error_kind() -> None:
    assert issubclass(DnsFormatError, errdefs.InvalidArgument)


def test_query_parses_back() -> None:
    data = dnsmsg.query("Db.Example.com.", dnsmsg.A, ident=0x1234)
    msg = dnsmsg.parse(data)
    assert msg.id == 0x1234
    assert msg.flags == dnsmsg.RD and not msg.qr and msg.opcode == 0
    assert msg.questions == (Question((b"Db", b"Example", b"com"), dnsmsg.A, dnsmsg.CLASS_IN),)
    assert msg.questions[0].name == "Db.Example.com"
    assert msg.edns_size is None


def test_edns_query() -> None:
    msg = dnsmsg.parse(dnsmsg.query("db", dnsmsg.AAAA, ident=1, edns=1232))
    assert msg.edns_size == 1232
    assert dnsmsg.udp_limit(msg) == 1232
    assert dnsmsg.udp_limit(dnsmsg.parse(dnsmsg.query("db", ident=1))) == 512
    assert dnsmsg.udp_limit(dnsmsg.parse(dnsmsg.query("db", ident=1, edns=100))) == 512
    assert dnsmsg.udp_limit(dnsmsg.parse(dnsmsg.query("db", ident=1, edns=65000))) == 4096


def test_a_reply() -> None:
    q = dnsmsg.parse(dnsmsg.query("db", ident=7))
    labels = q.questions[0].labels
    answers = (dnsmsg.a_record(labels, "10.0.0.5", 600), dnsmsg.a_record(labels, "10.0.0.6", 600))
    data = dnsmsg.encode(dnsmsg.reply(q, answers=answers, authoritative=True))
    r = dnsmsg.parse(data)
    assert r.id == 7 and r.qr and r.rcode == dnsmsg.NOERROR and not r.tc
    assert r.flags & dnsmsg.AA and r.flags & dnsmsg.RA and r.flags & dnsmsg.RD
    assert r.questions == q.questions
    assert [(a.name, a.rtype, a.ttl, a.rdata) for a in r.answers] == [
        ("db", dnsmsg.A, 600, bytes([10, 0, 0, 5])),
        ("db", dnsmsg.A, 600, bytes([10, 0, 0, 6])),
    ]
    # The answers' names point at the question's (offset 12).
    assert data.count(b"\x02db\x00") == 1
    assert data.count(b"\xc0\x0c") == 2


@pytest.mark.parametrize("rcode", [dnsmsg.NXDOMAIN, dnsmsg.SERVFAIL, dnsmsg.REFUSED, dnsmsg.NOTIMP])
def test_error_replies(rcode: int) -> None:
    q = dnsmsg.parse(dnsmsg.query("x.example", ident=9, edns=4096))
    r = dnsmsg.parse(dnsmsg.encode(dnsmsg.reply(q, rcode=rcode)))
    assert (r.id, r.rcode, r.qr, r.answers) == (9, rcode, True, ())
    assert r.questions == q.questions
    assert r.edns_size == dnsmsg.EDNS_PAYLOAD  # OPT echoed for an EDNS query


def test_aaaa_record() -> None:
    rr = dnsmsg.aaaa_record((b"db",), "fd00::1", 60)
    assert rr.rdata == bytes.fromhex("fd000000000000000000000000000001")


def test_udp_truncation_sets_tc() -> None:
    q = dnsmsg.parse(dnsmsg.query("many", ident=3))
    labels = q.questions[0].labels
    answers = tuple(dnsmsg.a_record(labels, f"10.0.{i // 256}.{i % 256}", 600) for i in range(100))
    full = dnsmsg.encode(dnsmsg.reply(q, answers=answers))
    assert len(full) > 512 and not dnsmsg.parse(full).tc
    cut = dnsmsg.encode(dnsmsg.reply(q, answers=answers), limit=512)
    r = dnsmsg.parse(cut)
    assert len(cut) <= 512 and r.tc
    assert 0 < len(r.answers) < 100
    assert r.answers == answers[: len(r.answers)]


def test_truncation_keeps_opt() -> None:
    q = dnsmsg.parse(dnsmsg.query("many", ident=3, edns=600))
    labels = q.questions[0].labels
    answers = tuple(dnsmsg.a_record(labels, "10.0.0.1", 600) for _ in range(100))
    cut = dnsmsg.encode(dnsmsg.reply(q, answers=answers), limit=dnsmsg.udp_limit(q))
    r = dnsmsg.parse(cut)
    assert len(cut) <= 600 and r.tc and r.edns_size == dnsmsg.EDNS_PAYLOAD


def test_compression_pointer_followed() -> None:
    # Question "a.example" at 12; the answer's name is "b" + pointer to "example" (offset 14).
    body = b"\x01a\x07example\x00" + struct.pack("!HH", 1, 1)
    answer = b"\x01b\xc0\x0e" + struct.pack("!HHIH", 1, 1, 30, 4) + bytes([1, 2, 3, 4])
    data = HEADER.pack(5, 0x8180, 1, 1, 0, 0) + body + answer
    msg = dnsmsg.parse(data)
    assert msg.questions[0].name == "a.example"
    assert msg.answers[0].name == "b.example"
    assert msg.answers[0].rdata == bytes([1, 2, 3, 4])


def test_pointer_chain() -> None:
    # name at 12 "example"; at 21 "b"->12; answer "c" -> 21 : c.b.example
    body = b"\x07example\x00" + struct.pack("!HH", 1, 1)  # 12..24
    q2 = b"\x01b\xc0\x0c" + struct.pack("!HH", 1, 1)  # at 25
    answer = b"\x01c\xc0\x19" + struct.pack("!HHIH", 1, 1, 0, 0)
    data = HEADER.pack(1, 0, 2, 1, 0, 0) + body + q2 + answer
    msg = dnsmsg.parse(data)
    assert [q.name for q in msg.questions] == ["example", "b.example"]
    assert msg.answers[0].name == "c.b.example"


@pytest.mark.parametrize(
    "name_bytes",
    [
        b"\xc0\x0c",  # points at itself
        b"\xc0\x0e",  # points forwards
        b"\x01a\xc0\x0c",  # points at its own start: a loop
        b"\x01a\xc0",  # pointer cut short
        b"\x40abc\x00",  # extended label type
        b"\x80abc\x00",  # reserved label type
        b"\x05ab",  # label runs past the end
        b"\x01a",  # no terminating root label
    ],
)
def test_bad_names(name_bytes: bytes) -> None:
    data = HEADER.pack(1, 0, 1, 0, 0, 0) + name_bytes + struct.pack("!HH", 1, 1)
    with pytest.raises(DnsFormatError):
        dnsmsg.parse(data)


def test_two_pointer_loop() -> None:
    # A question "a" -> pointer to 16, and at 16 a pointer back to 12.
    data = HEADER.pack(1, 0, 1, 0, 0, 0) + b"\x01a\xc0\x10\xc0\x0c" + b"\x00\x01\x00\x01"
    with pytest.raises(DnsFormatError):
        dnsmsg.parse(data)


def test_name_too_long() -> None:
    name = b"".join(b"\x3f" + b"x" * 63 for _ in range(4)) + b"\x00"  # 257 bytes
    data = HEADER.pack(1, 0, 1, 0, 0, 0) + name + b"\x00\x01\x00\x01"
    with pytest.raises(DnsFormatError):
        dnsmsg.parse(data)
    with pytest.raises(DnsFormatError):
        dnsmsg.labels_of(".".join(["x" * 63] * 4))
    with pytest.raises(DnsFormatError):
        dnsmsg.labels_of("a" * 64)
    with pytest.raises(DnsFormatError):
        dnsmsg.labels_of("a..b")
    with pytest.raises(DnsFormatError):
        dnsmsg.labels_of("é.example")


def test_truncated_input() -> None:
    data = dnsmsg.encode(
        dnsmsg.reply(
            dnsmsg.parse(dnsmsg.query("db.example", ident=1, edns=1232)),
            answers=(dnsmsg.a_record((b"db", b"example"), "10.0.0.5", 600),),
        )
    )
    dnsmsg.parse(data)
    for n in range(len(data)):
        with pytest.raises(DnsFormatError):
            dnsmsg.parse(data[:n])


def test_labels_of() -> None:
    assert dnsmsg.labels_of("db") == (b"db",)
    assert dnsmsg.labels_of("db.") == (b"db",)
    assert dnsmsg.labels_of(".") == ()
    assert dnsmsg.labels_of("") == ()


def test_formerr() -> None:
    r = dnsmsg.formerr(b"\xab\xcd\x01\x00garbage")
    assert r is not None
    msg = dnsmsg.parse(r)
    assert (msg.id, msg.rcode, msg.qr, msg.flags & dnsmsg.RD) == (0xABCD, 1, True, dnsmsg.RD)
    assert dnsmsg.formerr(b"\x00") is None
    assert dnsmsg.formerr(b"\xab\xcd\x81\x80") is None  # a response: never answered


def test_root_question_round_trip() -> None:
    q = Message(1, 0, (Question((), dnsmsg.NS),))
    assert dnsmsg.parse(dnsmsg.encode(q)) == q


def test_compression_case_insensitive() -> None:
    msg = Message(
        1, dnsmsg.QR, (Question((b"DB", b"Net"), 1),), (Record((b"db", b"net"), 1, 1, 1, b"abcd"),)
    )
    data = dnsmsg.encode(msg)
    assert b"\x02db" not in data  # the answer's name reuses the question's bytes
    assert dnsmsg.parse(data).answers[0].labels == (b"DB", b"Net")


@given(message_st)
@settings(max_examples=300)
def test_round_trip(msg: Message) -> None:
    try:
        data = dnsmsg.encode(msg)
    except DnsFormatError:
        return  # a name over 255 bytes
    assert dnsmsg.parse(data) == _case_as_encoded(msg, dnsmsg.parse(data))


def _case_as_encoded(msg: Message, parsed: Message) -> Message:
    """Compression is case-insensitive (RFC 1035 2.3.3), so a name may come
    back with the case of an earlier equal name: compare case-folded, and
    return the parsed message when everything else is equal."""

    def fold(m: Message) -> tuple:
        q = tuple((tuple(x.lower() for x in q.labels), q.qtype, q.qclass) for q in m.questions)
        rs = tuple(
            tuple(
                (tuple(x.lower() for x in r.labels), r.rtype, r.rclass, r.ttl, r.rdata) for r in s
            )
            for s in (m.answers, m.authority, m.additional)
        )
        return (m.id, m.flags, q, rs)

    assert fold(msg) == fold(parsed)
    return parsed


@given(message_st, st.integers(12, 600))
@settings(max_examples=200)
def test_encode_limit(msg: Message, limit: int) -> None:
    try:
        full = dnsmsg.encode(msg)
    except DnsFormatError:
        return
    cut = dnsmsg.encode(msg, limit=limit)
    parsed = dnsmsg.parse(cut)
    if len(full) <= limit:
        assert cut == full
    else:
        # Only records are dropped; questions always stay.
        assert parsed.tc or not (msg.answers or msg.authority or msg.additional)
        header_and_questions = len(dnsmsg.encode(Message(msg.id, msg.flags, msg.questions)))
        assert len(cut) <= max(limit, header_and_questions)


@given(st.binary(max_size=600))
@settings(max_examples=2000)
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    try:
        dnsmsg.parse(data)
    except DnsFormatError:
        pass
    dnsmsg.formerr(data)


@given(message_st, st.data())
@settings(max_examples=500)
def test_fuzz_mutated_messages(msg: Message, data: st.DataObject) -> None:
    try:
        wire = bytearray(dnsmsg.encode(msg))
    except DnsFormatError:
        return
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(wire) - 1))
        wire[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(wire)))
    try:
        dnsmsg.parse(bytes(wire[:cut]))
    except DnsFormatError:
        pass
