# SPDX-License-Identifier: ISC
"""Every program: --help, --version, -c, $SMTPGATE_CONF, bad configs."""

import os
import subprocess

import pytest

from conftest import binary

PROGRAMS = ["smtpgate-handler", "smtpgate-flush", "smtpgate-queue", "smtpgate-sendmail"]


def run(*args, env=None):
    return subprocess.run(list(args), capture_output=True, text=True,
                          timeout=30, env=env)


@pytest.mark.parametrize("program", PROGRAMS)
def test_help_prints_usage_and_exits_0(program):
    r = run(binary(program), "--help")
    assert r.returncode == 0
    assert r.stdout.startswith("usage: " + program)


@pytest.mark.parametrize("program", PROGRAMS)
def test_version_prints_name_and_version(program):
    r = run(binary(program), "--version")
    assert r.returncode == 0
    assert r.stdout.startswith(program + " ")


@pytest.mark.parametrize("program", PROGRAMS)
def test_bad_config_is_one_line_with_file_and_line(program, tmp_path):
    conf = tmp_path / "smtpgate.conf"
    conf.write_text("[gate]\nmax_recipients = 10\nno_such_key = 1\n")
    r = run(binary(program), "-c", str(conf))
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1
    assert f"{conf}:3: unknown key \"no_such_key\" in [gate]" in lines[0]


@pytest.mark.parametrize("program", PROGRAMS)
def test_smtpgate_conf_variable_names_the_default_config(program, tmp_path):
    conf = tmp_path / "other.conf"
    conf.write_text("[gate]\ntimeout = forever\n")
    env = dict(os.environ, SMTPGATE_CONF=str(conf))
    r = run(binary(program), env=env)
    assert r.returncode != 0
    assert f"{conf}:2: timeout:" in r.stderr


@pytest.mark.parametrize("program", PROGRAMS)
def test_missing_config_file_is_named(program, tmp_path):
    r = run(binary(program), "-c", str(tmp_path / "absent.conf"))
    assert r.returncode != 0
    assert "absent.conf: cannot open" in r.stderr
