# SPDX-License-Identifier: ISC
"""A real HAProxy in front of gateways: tests/data/haproxy-smtpgate.cfg
(the sample configuration of smtpgate(8)) on a free port, started with
-db (in the foreground, its log on standard output) and stopped at the
end of the test (bounded). Used by test_proxy.py (one gateway) and
test_scale_out.py (two)."""

import re
import subprocess
from pathlib import Path

from conftest import free_port, terminate, wait_for_port

CONFIG = Path(__file__).resolve().parent.parent / "data" / "haproxy-smtpgate.cfg"


def configuration(frontend, gateways):
    """The sample with its frontend and one server line a gateway
    (host:port); the sample's server lines beyond them are dropped."""
    lines = []
    for line in CONFIG.read_text().replace("@FRONTEND@", frontend).splitlines():
        m = re.search(r"@GATEWAY(\d+)@", line)
        if m:
            n = int(m.group(1))
            if n > len(gateways):
                continue
            line = line.replace(m.group(0), gateways[n - 1])
        lines.append(line)
    return "\n".join(lines) + "\n"


class HAProxy:
    def __init__(self, folder: Path, gateway_ports):
        self.port = free_port()
        self.config = folder / "haproxy.cfg"
        self.config.write_text(configuration(
            f"127.0.0.1:{self.port}", [f"127.0.0.1:{p}" for p in gateway_ports]))
        self.log_path = folder / "haproxy.log"
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen(["haproxy", "-db", "-f", str(self.config)],
                                        stdout=self.log, stderr=subprocess.STDOUT)
        wait_for_port("127.0.0.1", self.port)

    def log_text(self):
        return self.log_path.read_text(errors="replace")

    def stop(self):
        terminate(self.process)
        self.log.close()
