"""AUTH hardening of issue 16: an attempt whose failure count cannot be
recorded is refused (fail closed, point 13)."""

import lmdb

from smtp_raw import Raw

UNRECORDED = ("454 4.7.0 Temporary authentication failure: "
              "the attempt cannot be recorded, try again later")


def tls_session(g):
    c = Raw(g)
    assert c.greeting().startswith("220 ")
    c.ehlo()
    c.starttls()
    c.ehlo()
    return c


def fill_map(queue, map_size):
    """Fills the queue's LMDB map to the last page, the way a large
    stoplist import would: ever smaller stoplist entries of another
    account, one write transaction each, until none fits; then failure
    counts of other addresses, until not even one of those fits (a write
    to a small tree needs fewer new pages than one to a large tree).
    Returns how many entries went in."""
    env = lmdb.open(str(queue), map_size=map_size, max_dbs=32, subdir=True)
    try:
        n = 0
        for name, size in ((b"stoplist", 16384), (b"stoplist", 1024),
                           (b"stoplist", 1), (b"authfail", 1)):
            db = env.open_db(name, create=False)
            failures = 0
            # Bounded: a 1 MB map holds far fewer entries than this.
            for _ in range(100000):
                key = (b"filler/%08d@example.net" % n if name == b"stoplist"
                       else b"192.0.%d.%d" % (n // 256 % 256, n % 256))
                try:
                    with env.begin(write=True, db=db) as txn:
                        txn.put(key, b"x" * size)
                    n += 1
                    failures = 0
                except lmdb.MapFullError:
                    failures += 1
                    if failures == 3:
                        break
        return n
    finally:
        env.close()


def test_auth_whose_failure_count_cannot_be_written_is_454_4_7_0(gate):
    g = gate(gate_keys={"queue_map_size": "1M", "max_auth_failures": "2"})
    # The first session creates the queue; then the map is filled, so that
    # the authfail record of this address cannot be written.
    with Raw(g) as c:
        assert c.greeting().startswith("220 ")
        assert c.cmd("QUIT").startswith("221 ")
    assert fill_map(g.queue, 1 << 20) > 0
    with tls_session(g) as c:
        # Not counted, so not checked: neither the right password (before:
        # 235) nor, again and again, a wrong one (before: 535 every time,
        # never the 421 of max_auth_failures).
        assert c.auth_plain() == UNRECORDED
        for _ in range(4):
            assert c.auth_plain(password="wrong") == UNRECORDED
        assert c.cmd("NOOP") == "250 2.0.0 Ok"
    assert "authfail record for 127.0.0.1" in g.log_text()
    assert b"127.0.0.1" not in g.db("authfail")
