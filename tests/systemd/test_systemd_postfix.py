# SPDX-License-Identifier: ISC
"""Postfix, which tools/deps.sh installs as the relay tier of
tests/integration/test_scale_out.py, never runs as a service of its own
nor takes port 25: deps.sh answers its debconf question "No
configuration", so there is no /etc/postfix/main.cf, and without one
neither of its units starts a master, even when started as a boot to
multi-user.target would. The test's Postfix is a private instance
(tests/integration/private_postfix.py)."""

import shutil
from pathlib import Path

import pytest


def test_postfix_installed_for_the_tests_leaves_port_25_alone(container):
    if not shutil.which("postfix"):
        pytest.skip("SKIPPED: postfix is not installed (sh tools/deps.sh)")
    if Path("/etc/postfix/main.cf").exists():
        pytest.skip("SKIPPED: Postfix is configured on this machine by its administrator "
                    "(not the deps.sh install this test is about)")
    assert not container.path("/etc/postfix/main.cf").exists()
    try:
        container.run("systemctl", "start", "postfix.service", check=False, timeout=60)
        units = {u: container.run("systemctl", "show", "-p", "ActiveState", "-p",
                                  "ConditionResult", u).stdout.split()
                 for u in ("postfix.service", "postfix@-.service")}
        masters = container.run("pgrep", "-a", "-x", "master", check=False).stdout
        port_25 = container.run("ss", "-Hltn", "sport = :25", check=False).stdout
        journal = container.journal("-u", "postfix.service", "-u", "postfix@-.service")
    finally:
        container.run("systemctl", "stop", "postfix.service", "postfix@-.service",
                      check=False, timeout=60)
    assert units["postfix.service"] == ["ActiveState=inactive", "ConditionResult=no"], \
        (units, journal)
    assert "ActiveState=active" not in units["postfix@-.service"], (units, journal)
    assert masters == "" and port_25 == "", (masters, port_25, journal)
    print(f"postfix units after systemctl start postfix.service: {units}\n{journal}")
