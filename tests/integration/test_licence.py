# SPDX-License-Identifier: ISC
"""The licence: LICENSE says ISC, and every source file git tracks names it
in an SPDX-License-Identifier line among its first three, so that a file
copied out of the tree still says under what terms."""

import subprocess
from pathlib import Path

from conftest import ROOT

TAG = "SPDX-License-Identifier: ISC"
SOURCE_SUFFIXES = {".c", ".h", ".py", ".sh", ".pl", ".socket", ".service", ".timer"}


def source_files():
    names = subprocess.run(["git", "-C", str(ROOT), "ls-files"], capture_output=True,
                           text=True, check=True).stdout.split()
    for name in names:
        p = Path(name)
        if (p.suffix in SOURCE_SUFFIXES or p.name in ("Makefile", "rules")
                or (p.parts[0] == "man" and p.suffix in (".5", ".8"))
                or (p.parts[0] == "units" and p.suffix == ".conf")):
            yield name


def test_licence_file_is_isc():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("ISC License\n")
    assert "Permission to use, copy, modify, and/or distribute" in text


def test_every_source_file_names_the_licence():
    files = list(source_files())
    assert len(files) > 150
    missing = [f for f in files
               if (ROOT / f).exists()
               and TAG not in "\n".join((ROOT / f).read_text().split("\n")[:3])]
    assert missing == []
