# SPDX-License-Identifier: ISC
"""smtpgate-metrics.timer under a real systemd (issue 18 point 4): started
as an administrator would, it runs smtpgate-metrics.service as smtpgate,
which writes the metrics file that node_exporter's textfile folder links
to (units/tmpfiles.d/smtpgate.conf, made at boot), and promtool accepts
it. The container and the helpers are in conftest.py beside this file."""

import re

from conftest import wait_until

LINK = "/var/lib/prometheus/node-exporter/smtpgate.prom"
FILE = "/run/smtpgate-metrics/smtpgate.prom"


def test_metrics_timer_writes_the_file_node_exporter_reads(enabled):
    assert enabled.run("readlink", LINK).stdout.strip() == FILE
    enabled.run("systemctl", "start", "smtpgate-metrics.timer")
    try:
        def written():
            r = enabled.run("cat", LINK, check=False)
            return r.returncode == 0 and r.stdout
        try:
            text = wait_until("the timer's first metrics file", written, 60)
        except TimeoutError:
            raise AssertionError(enabled.journal("-u", "smtpgate-metrics.service") +
                                 enabled.run("systemctl", "status", "--no-pager",
                                             "smtpgate-metrics.timer",
                                             check=False).stdout)
        assert re.search(r"^smtpgate_lmdb_map_size_bytes \d+$", text, re.M)
        owner = enabled.run("stat", "-c", "%U %a", FILE).stdout.split()
        assert owner == ["smtpgate", "644"]
        check = enabled.run("promtool", "check", "metrics", input=text, check=False)
        assert (check.returncode, check.stdout + check.stderr) == (0, "")
        # The service ran and succeeded, sandboxed as rated.
        result = enabled.run("systemctl", "show", "-P", "Result",
                             "smtpgate-metrics.service").stdout.strip()
        assert result == "success"
        out = enabled.run("systemd-analyze", "security", "--no-pager",
                          "smtpgate-metrics.service").stdout
        m = re.search(r"Overall exposure level for \S+: (\d+\.\d) (\w+)", out)
        assert m and float(m.group(1)) <= 2.0, out
    finally:
        enabled.run("systemctl", "stop", "smtpgate-metrics.timer", check=False)
