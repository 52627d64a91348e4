# SPDX-License-Identifier: ISC
"""The checks at the end of data (SPEC section 4): the seven required
header fields, From: with one address, X-Campaign-Id / X-Letter-Id,
reject_incomplete = no, line and size limits."""

import pytest

from conftest import message
from smtp_raw import Raw, queued_id

# The session suite runs against both launch modes (conftest.py).
pytestmark = pytest.mark.both_modes

REQUIRED = ["Message-Id", "Date", "From", "To", "Subject", "MIME-Version",
            "Content-Type"]


def without(msg, name):
    head, sep, body = msg.partition(b"\r\n\r\n")
    lines = [l for l in head.split(b"\r\n")
             if not l.lower().startswith(name.lower().encode() + b":")]
    return b"\r\n".join(lines) + sep + body


def send(g, msg, session=None):
    c = session or Raw(g)
    if not session:
        c.login()
    assert c.cmd("MAIL FROM:<sender@example.com>") == "250 2.1.0 Ok"
    assert c.cmd("RCPT TO:<rcpt@example.net>") == "250 2.1.5 Ok"
    assert c.cmd("DATA").startswith("354 ")
    c.send(msg + b".\r\n")
    reply = c.reply_line()
    if not session:
        c.close()
    return reply


@pytest.mark.parametrize("name", REQUIRED)
def test_missing_required_header_is_550_5_6_0_naming_it(gate, name):
    g = gate()
    assert send(g, without(message(), name)) == f"550 5.6.0 no {name}:"
    assert g.db("msg") == {}


def test_from_without_address_is_550_no_email_in_from(gate):
    g = gate()
    msg = message().replace(b"From: Sender <sender@example.com>", b"From: Sender")
    assert send(g, msg) == "550 5.6.0 no email in From:"


def test_two_from_headers_are_550_5_6_0(gate):
    g = gate()
    msg = message(extra="From: other@example.com\r\n")
    assert send(g, msg) == "550 5.6.0 more than one From:"


def test_header_names_match_case_insensitively(gate):
    g = gate()
    msg = message().replace(b"Message-Id:", b"MESSAGE-ID:").replace(b"MIME-Version:", b"mime-version:")
    queued_id(send(g, msg))


def test_folded_from_header_is_understood(gate):
    g = gate()
    msg = message().replace(b"From: Sender <sender@example.com>",
                            b"From: Sender\r\n <sender@example.com>")
    queued_id(send(g, msg))


@pytest.mark.parametrize("header", ["X-Campaign-Id", "X-Letter-Id"])
@pytest.mark.parametrize("value", ["has space", "a" * 129, "", "ünï", "a.b"])
def test_bad_id_header_is_550_5_6_0(gate, header, value):
    g = gate()
    reply = send(g, message(extra=f"{header}: {value}\r\n"))
    assert reply.startswith("550 5.6.0 " + header)


def test_campaign_and_letter_ids_go_to_the_envelope(gate):
    g = gate()
    qid = queued_id(send(g, message(extra="X-Campaign-Id: spring_sale-2026\r\n"
                                          "X-Letter-Id: " + "L" * 128 + "\r\n")))
    env = g.db("env")[qid.encode()].decode()
    assert "issue=spring_sale-2026" in env.split("\n")
    assert "uniq=" + "L" * 128 in env.split("\n")


def test_incomplete_message_with_reject_incomplete_no_is_250_and_logged_bounced(gate):
    g = gate(gate_keys={"reject_incomplete": "no"})
    reply = send(g, without(message(), "To"))
    qid = queued_id(reply)
    assert g.db("msg") == {}
    assert g.db("env") == {}
    (record,) = g.db("log").values()
    lines = record.decode().split("\n")
    assert "status=bounced" in lines
    assert "to=rcpt@example.net" in lines
    assert any(l.startswith("msg=635 6.7.8 no To") for l in lines)
    assert qid


def test_line_of_998_octets_is_accepted(gate):
    g = gate()
    queued_id(send(g, message(body="x" * 998 + "\r\n")))


def test_stuffed_line_of_998_octets_is_accepted(gate):
    g = gate()
    qid = queued_id(send(g, message(body="." + "." + "x" * 997 + "\r\n")))
    assert g.db("msg")[qid.encode()].endswith(b"\r\n." + b"x" * 997 + b"\r\n")


def test_line_of_999_octets_is_refused_after_end_of_data(gate):
    g = gate()
    with Raw(g) as c:
        c.login()
        reply = send(g, message(body="x" * 999 + "\r\nmore\r\n"), session=c)
        assert reply == "554 5.6.0 Message has a line longer than 998 octets"
        assert c.cmd("NOOP") == "250 2.0.0 Ok"
    assert g.db("msg") == {}


def test_very_long_line_is_refused_after_end_of_data(gate):
    g = gate()
    with Raw(g) as c:
        c.login()
        reply = send(g, message(body="y" * 100000 + "\r\n"), session=c)
        assert reply.startswith("554 5.6.0 ")
        assert c.cmd("NOOP") == "250 2.0.0 Ok"


def test_message_over_max_size_is_read_to_the_end_then_552_5_3_4(gate):
    g = gate(gate_keys={"max_message_size": "10K"})
    big = message(body=("z" * 70 + "\r\n") * 300)   # ~21 KB
    with Raw(g) as c:
        c.login()
        assert send(g, big, session=c) == "552 5.3.4 Message size exceeds fixed limit"
        # Read to the real end: the next command is understood.
        assert c.cmd("NOOP") == "250 2.0.0 Ok"
    assert g.db("msg") == {}


def test_message_just_under_max_size_is_queued(gate):
    g = gate(gate_keys={"max_message_size": "10K"})
    msg = message()
    while 10240 - len(msg) > 500:
        msg += b"z" * 98 + b"\r\n"
    msg += b"z" * (10240 - len(msg) - 2) + b"\r\n"
    assert len(msg) == 10240
    queued_id(send(g, msg))


def test_bdat_over_max_size_is_552_5_3_4_at_last(gate):
    g = gate(gate_keys={"max_message_size": "10K"})
    big = message(body=("z" * 70 + "\r\n") * 300)
    with Raw(g) as c:
        c.login()
        assert c.cmd("MAIL FROM:<sender@example.com>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<rcpt@example.net>") == "250 2.1.5 Ok"
        half = len(big) // 2
        c.send(f"BDAT {half}\r\n".encode() + big[:half])
        assert c.reply_line().startswith("250 2.0.0 ")
        c.send(f"BDAT {len(big) - half} LAST\r\n".encode() + big[half:])
        assert c.reply_line() == "552 5.3.4 Message size exceeds fixed limit"
        assert c.cmd("NOOP") == "250 2.0.0 Ok"


HEADER_TOO_BIG = "552 5.3.4 Message header exceeds fixed limit (1000 fields, 256 KB)"
NOT_A_FIELD = ("550 5.6.0 Header line is not a field; an empty line must come "
               "before the body")


def test_header_of_1000_fields_is_queued_and_1001_refused(gate):
    g = gate()
    # message() has seven fields of its own.
    extra = "".join(f"X-Filler-{i}: {i}\r\n" for i in range(993))
    queued_id(send(g, message(extra=extra)))
    with Raw(g) as c:
        c.login()
        reply = send(g, message(extra=extra + "X-One-More: 1\r\n"), session=c)
        assert reply == HEADER_TOO_BIG
        # Read to the real end: the next command is understood.
        assert c.cmd("NOOP") == "250 2.0.0 Ok"
    assert len(g.db("msg")) == 1


def test_header_section_over_256_kb_is_refused(gate):
    g = gate()
    fold = "".join(f"\r\n\tfold {i:06d} " + "x" * 60 for i in range(3600))
    msg = message().replace(b"Subject: Hello", ("Subject: big" + fold).encode())
    assert len(msg) > 256 * 1024
    with Raw(g) as c:
        c.login()
        assert send(g, msg, session=c) == HEADER_TOO_BIG
        assert c.cmd("NOOP") == "250 2.0.0 Ok"
    assert g.db("msg") == {}


@pytest.mark.parametrize("line", [b"Hello, no empty line before me",
                                  b"From sender@example.com Thu Nov 26 10:00:00 2026",
                                  b": no name", b"Bad Name: value"])
def test_header_line_that_is_no_field_is_550_5_6_0(gate, line):
    g = gate()
    head, _, body = message().partition(b"\r\n\r\n")
    # After the required fields, so that only this line is wrong; the
    # second From: below it must not hide behind it either.
    msg = head + b"\r\n" + line + b"\r\nFrom: other@example.org\r\n\r\n" + body
    assert send(g, msg) == NOT_A_FIELD
    assert g.db("msg") == {}


def test_continuation_as_first_header_line_is_550_5_6_0(gate):
    g = gate()
    assert send(g, b" folded: before any field\r\n" + message()) == NOT_A_FIELD


def test_message_of_only_header_fields_is_queued(gate):
    g = gate()
    head, _, _ = message().partition(b"\r\n\r\n")
    qid = queued_id(send(g, head + b"\r\n"))
    assert g.db("msg")[qid.encode()].endswith(head + b"\r\n")


def test_message_is_signed_as_received_not_normalised(gate, keys):
    import dkim
    g = gate()
    body = "tabs\tand  spaces  \r\n\r\n\r\n"
    msg = message(body=body)
    qid = queued_id(send(g, msg))
    stored = g.db("msg")[qid.encode()]
    assert stored.endswith(msg)
    assert dkim.verify(stored, dnsfunc=keys.dnsfunc())


def test_from_domain_without_key_uses_default_domain(gate, keys):
    import dkim
    g = gate()
    qid = queued_id(send(g, message(sender="someone@other.example")))
    stored = g.db("msg")[qid.encode()]
    assert b"d=example.com" in stored
    assert dkim.verify(stored, dnsfunc=keys.dnsfunc())


def test_message_without_any_key_is_queued_unsigned_and_logged(gate, keys):
    from conftest import DEMO_LOGIN
    g = gate(accounts={"demo": {"login": DEMO_LOGIN, "password": keys.password_hash}})
    qid = queued_id(send(g, message()))
    assert b"DKIM-Signature" not in g.db("msg")[qid.encode()]
    assert "message not signed" in g.log_text()


def test_one_journal_entry_per_message(gate):
    g = gate()
    qid = queued_id(send(g, message()))
    lines = [l for l in g.log_text().splitlines() if l.startswith("smtpgate-handler: message ")]
    assert len(lines) == 1
    line = lines[0]
    for field in (f"queue_id={qid}", "account=demo", "client=127.0.0.1",
                  "rcpts=1", "outcome=queued", "size="):
        assert field in line


def test_queue_full_is_452_4_3_1_and_nothing_half_written(gate):
    g = gate(gate_keys={"queue_map_size": "1M", "max_message_size": "2M"})
    big = message(body=("q" * 98 + "\r\n") * 12000)   # ~1.2 MB: over the map
    with Raw(g) as c:
        c.login()
        assert send(g, big, session=c) == "452 4.3.1 Insufficient system storage"
        assert c.cmd("NOOP") == "250 2.0.0 Ok"
    assert g.db("msg") == {} and g.db("env") == {} and g.db("due") == {}
    assert g.db("issue") == {}
