"""Error paths no other suite reaches: the command-line forms every
program shares (common/cli.c), and failures of the queue, the relay and
TLS that a client or an operator must be told about precisely."""

import os
import subprocess

import pytest

from conftest import binary

PROGRAMS = ["smtpgate-handler", "smtpgate-flush", "smtpgate-queue"]


def run(*args, env=None, input=None, timeout=30):
    return subprocess.run(list(args), capture_output=True, text=True,
                          timeout=timeout, env=env, input=input)


# -- common/cli.c: the options every program shares --

@pytest.mark.parametrize("program", PROGRAMS)
@pytest.mark.parametrize("form", ["-c FILE", "--config FILE", "--config=FILE",
                                  "-cFILE"])
def test_each_config_option_form_names_the_file_read(program, form, tmp_path):
    conf = tmp_path / "chosen.conf"
    args = [a.replace("FILE", str(conf)) for a in form.split()]
    r = run(binary(program), *args)
    assert r.returncode == 1, r
    assert f"{conf}: cannot open" in r.stderr


@pytest.mark.parametrize("program", PROGRAMS)
@pytest.mark.parametrize("option", ["-c", "--config"])
def test_config_option_without_a_file_is_a_usage_error(program, option):
    r = run(binary(program), option)
    assert r.returncode == 2
    assert r.stderr == f"{program}: {option} needs a file name\n"


@pytest.mark.parametrize("program", PROGRAMS)
def test_short_help_prints_usage_and_exits_0(program):
    r = run(binary(program), "-h")
    assert r.returncode == 0
    assert r.stdout.startswith("usage: " + program)


def test_double_dash_ends_the_options(tmp_path):
    """After "--" nothing is a common option: neither "--version" nor a
    -c is taken there, so the handler (which takes no arguments) refuses
    them instead of printing its version or reading that file. The "--"
    itself is left for the program's own parser (cli.h)."""
    conf = tmp_path / "absent.conf"
    r = run(binary("smtpgate-handler"), "--", "--version", "-c", str(conf))
    assert r.returncode == 2
    assert r.stderr == 'smtpgate-handler: unexpected argument "--"\n'
    assert r.stdout == ""
