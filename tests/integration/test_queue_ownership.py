# SPDX-License-Identifier: ISC
"""A queue created by root (an administrator running smtpgate-queue
before the service ever ran) belongs to the owner of the folder above it,
so that the handlers and smtpgate-flush, running as that user, can write
it (SPEC section 7; queue/queue.c give_to_parent_owner)."""

import os

import pytest

from conftest import Gate

NOBODY = 65534


@pytest.mark.skipif(os.geteuid() != 0, reason="only root creates files for another user")
def test_queue_made_by_root_belongs_to_the_owner_of_its_parent(tmp_path, keys):
    parent = tmp_path / "state"
    parent.mkdir()
    os.chown(parent, NOBODY, NOBODY)
    g = Gate(tmp_path, keys, gate_keys={"queue": str(parent / "queue")})
    r = g.queue_tool("stoplist", "add", "demo", "x@example.org", check=False)
    assert r.returncode == 0, r.stderr
    made = [parent / "queue"] + sorted((parent / "queue").iterdir())
    assert {p.name for p in made[1:]} >= {"data.mdb", "lock.mdb"}
    assert {(p.name, p.stat().st_uid, p.stat().st_gid) for p in made} == \
        {(p.name, NOBODY, NOBODY) for p in made}


@pytest.mark.skipif(os.geteuid() != 0, reason="only root creates files for another user")
def test_queue_below_a_root_folder_stays_root_s(tmp_path, keys):
    parent = tmp_path / "state"
    parent.mkdir()
    g = Gate(tmp_path, keys, gate_keys={"queue": str(parent / "queue")})
    assert g.queue_tool("stoplist", "add", "demo", "x@example.org",
                        check=False).returncode == 0
    assert {p.stat().st_uid for p in (parent / "queue").iterdir()} == {0}
