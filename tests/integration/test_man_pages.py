# SPDX-License-Identifier: ISC
"""The man pages: lint-clean, renderable, and true to the code.

smtpgate.conf(5) and the example config are compared with the loader's own
key table (build/tests/tools/config_keys prints it), both ways."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import BUILD, ROOT

MAN = ROOT / "man"
PAGES = sorted(MAN.glob("*.[58]"))
CONF5 = MAN / "smtpgate.conf.5"
EXAMPLE = MAN / "smtpgate.conf.example"


def test_there_are_the_six_pages():
    assert [p.name for p in PAGES] == [
        "smtpgate-flush.8", "smtpgate-handler.8", "smtpgate-queue.8",
        "smtpgate-sendmail.8",
        "smtpgate.8", "smtpgate.conf.5"]


@pytest.fixture(scope="module")
def manpath(tmp_path_factory):
    """A manpath with our pages and every page they cross-reference, and a
    mandoc.db for it, so that mandoc can check each .Xr."""
    root = tmp_path_factory.mktemp("manpath")
    refs = set()
    for page in PAGES:
        section = page.suffix[1:]
        (root / f"man{section}").mkdir(exist_ok=True)
        shutil.copy(page, root / f"man{section}" / page.name)
        refs |= set(re.findall(r"\bXr ([\w.+-]+) (\d)", page.read_text()))
    for name, section in sorted(refs):
        folder = root / f"man{section}"
        folder.mkdir(exist_ok=True)
        if list(folder.glob(f"{name}.{section}*")):
            continue
        found = subprocess.run(["man", "-w", section, name], capture_output=True,
                               text=True)
        if found.returncode == 0:
            shutil.copy(found.stdout.strip(), folder)
    subprocess.run(["makewhatis", str(root)], check=True)
    return root


def test_pages_are_mandoc_lint_clean_including_style(manpath):
    r = subprocess.run(["mandoc", "-Tlint", "-Wstyle", *map(str, PAGES)],
                       capture_output=True, text=True,
                       env=dict(os.environ, MANPATH=str(manpath)))
    # The messages themselves in the failure, not pytest's shortened
    # comparison of the whole output ("mandoc: ... (2 times)").
    messages = (r.stdout + r.stderr).strip()
    assert r.returncode == 0 and not messages, \
        f"mandoc -Tlint -Wstyle exited {r.returncode}:\n{messages}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_page_renders_with_man_l(page):
    r = subprocess.run(["man", "-l", str(page)], capture_output=True, text=True,
                       env=dict(os.environ, MANWIDTH="80", MAN_KEEP_FORMATTING="0",
                                MANPAGER="cat", PAGER="cat"))
    assert r.returncode == 0 and r.stderr == ""
    text = re.sub(r".\x08", "", r.stdout)  # man-db's overstrike bold
    name = page.name.rsplit(".", 1)[0]
    assert re.search(rf"^NAME\n\s+{re.escape(name)} \S+ \w", text, re.M)
    assert "SEE ALSO" in text


def loader_keys():
    out = subprocess.run([str(BUILD / "tests/tools/config_keys")], check=True,
                         capture_output=True, text=True).stdout
    keys = {}
    for line in out.splitlines():
        section, key, default = (line.split(" ", 2) + [""])[:3]
        keys[(section, key)] = default
    assert len(keys) > 20
    return keys


def documented_keys():
    """{(section, key): item text} from the key lists of smtpgate.conf(5):
    `.It Ic KEY No = ...` under `.Ss The [SECTION] section`."""
    items = {}
    section = None
    current = None
    for line in CONF5.read_text().splitlines():
        m = re.match(r"\.Ss The \[(\w+)(?: NAME)?\] section", line)
        if m:
            section, current = m.group(1), None
            continue
        if line.startswith((".Ss", ".Sh")):
            section, current = None, None
            continue
        m = re.match(r"\.It Ic (\w+) No = ", line)
        if section and m:
            current = (section, m.group(1))
            assert current not in items, f"{current} documented twice"
            items[current] = ""
        elif current:
            items[current] += line + "\n"
    return items


def test_every_loader_key_is_in_smtpgate_conf_5_and_nothing_else():
    assert set(documented_keys()) == set(loader_keys())


def test_smtpgate_conf_5_gives_each_key_its_loaders_default():
    documented = documented_keys()
    for key, default in loader_keys().items():
        text = documented[key]
        assert "Default:" in text, f"{key}: no Default:"
        after = text.split("Default:", 1)[1]
        if default:
            assert re.search(rf"^\.(Ql|Pa) {re.escape(default)}( [.,])?$", after, re.M), \
                f"{key}: default {default} not shown"
        else:
            assert re.match(r"\s*(none|empty|the host name)", after), \
                f"{key}: default should say none/empty"


def example_keys():
    """{(section, key): value} of the example config, commented or not."""
    keys = {}
    section = None
    for line in EXAMPLE.read_text().splitlines():
        m = re.match(r"^;?\[(\w+)[^\]]*\]$", line)
        if m:
            section = m.group(1)
            continue
        m = re.match(r"^;?(\w+) = ?(.*?)(\s+;.*)?$", line)
        if m and section:
            keys[(section, m.group(1))] = m.group(2).strip()
    return keys


def test_example_config_shows_every_key_with_its_default():
    example = example_keys()
    keys = loader_keys()
    assert set(example) == set(keys)
    for key, default in keys.items():
        if default:
            assert example[key] == default, key


def test_example_config_loads(tmp_path):
    r = subprocess.run([str(BUILD / "tests/tools/config_keys"), "-c", str(EXAMPLE)],
                       capture_output=True, text=True)
    assert (r.returncode, r.stdout) == (0, "ok\n")
    # With the account uncommented (and a real hash) it loads too.
    text = EXAMPLE.read_text()
    text = re.sub(r"^;(\[account|login|networks|dkim_default_domain|sender|blocked|demo)",
                  r"\1", text, flags=re.M)
    text = text.replace(";password = $y$j9T$...",
                        "password = $6$saltsalt$" + "a" * 86)
    (tmp_path / "dkim").mkdir()
    subprocess.run(["openssl", "genpkey", "-algorithm", "ED25519", "-out",
                    str(tmp_path / "dkim/example.com.sel1.pem")], check=True)
    text = text.replace(";dkim_key = example.com sel1 /etc/smtpgate/dkim/",
                        "dkim_key = example.com sel1 dkim/")
    (tmp_path / "smtpgate.conf").write_text(text)
    r = subprocess.run([str(BUILD / "tests/tools/config_keys"), "-c",
                        str(tmp_path / "smtpgate.conf")], capture_output=True, text=True)
    assert (r.returncode, r.stdout) == (0, "ok\n")


def documented_replies():
    """The `.It Ql "..."` lines of the REPLIES section of smtpgate.conf(5),
    as plain text."""
    text = CONF5.read_text()
    section = text.split("\n.Sh REPLIES\n", 1)[1].split("\n.Sh ", 1)[0]
    replies = []
    for line in section.splitlines():
        m = re.match(r'^\.It Ql "?(.*?)"?$', line)
        if m:
            replies.append(m.group(1).replace("\\&", "").replace("\\e", "\\"))
    return replies


def handler_replies():
    out = subprocess.run([str(BUILD / "smtpgate-handler"), "--list-replies"],
                         check=True, capture_output=True, text=True).stdout
    return out.splitlines()


def test_every_reply_the_handler_can_send_is_in_smtpgate_conf_5_and_back():
    listed = handler_replies()
    documented = documented_replies()
    assert len(listed) > 40
    # "%s" is what the page writes as hostname, ID, NAME, N and the like.
    patterns = [re.compile(re.escape(r).replace("%s", r"[\w.:-]+") + "$") for r in listed]
    undocumented = [r for r, p in zip(listed, patterns)
                    if not any(p.match(d) for d in documented)]
    assert undocumented == []
    unknown = [d for d in documented if not any(p.match(d) for p in patterns)]
    assert unknown == []
    # One entry per reply of the table, in its order.
    assert len(documented) == len(listed)
    assert all(p.match(d) for p, d in zip(patterns, documented))


def help_text(program):
    return subprocess.run([str(BUILD / program), "--help"], check=True,
                          capture_output=True, text=True).stdout


@pytest.mark.parametrize("program", ["smtpgate-handler", "smtpgate-flush",
                                     "smtpgate-queue", "smtpgate-sendmail"])
def test_every_option_in_help_is_in_the_programs_page(program):
    page = (MAN / f"{program}.8").read_text()
    options = set(re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", help_text(program)))
    assert {"-c", "--help", "--version"} <= options
    missing = [o for o in sorted(options)
               if not re.search(rf"\bFl {re.escape(o[1:])}(?![\w-])", page)]
    assert missing == []


def test_every_smtpgate_queue_command_is_in_its_page():
    text = help_text("smtpgate-queue")
    commands = text.split("Commands:\n", 1)[1].split("Options:\n", 1)[0]
    names = {line.split()[0] for line in commands.splitlines() if line.strip()}
    assert {"list", "show", "stat", "errors", "retry", "delete", "suppress",
            "stoplist", "check-config"} <= names
    page = (MAN / "smtpgate-queue.8").read_text()
    missing = [n for n in sorted(names)
               if not re.search(rf"^\.It Cm {re.escape(n)}\b", page, re.M)]
    assert missing == []


def test_no_page_lists_an_item_twice_in_one_list():
    """An option or command described twice, with two different texts
    (issue 17: --callbacks-only in smtpgate-flush(8), events in
    smtpgate-queue(8)), leaves the reader to guess which one holds.
    Options, commands and keys; the replies' list has one item a row of
    the reply table, and two rows may read alike."""
    for page in PAGES:
        stack = []
        for n, line in enumerate(page.read_text().splitlines(), 1):
            if line.startswith(".Bl"):
                stack.append(set())
            elif line.startswith(".El"):
                stack.pop()
            elif re.match(r"\.It (Fl|Cm|Ic) ", line) and stack:
                assert line not in stack[-1], f"{page.name}:{n}: {line} again"
                stack[-1].add(line)


def test_config_is_installed_readable_by_its_group_only():
    """The configuration holds password hashes and the relay password:
    smtpgate(8) and the README install it 0640, group smtpgate, never
    with a world-readable cp."""
    readme = (ROOT / "README.md").read_text()
    page = (ROOT / "man/smtpgate.8").read_text().replace("\\e\n", "")
    for text in (readme, page):
        assert re.search(r"install -m 0640 -g smtpgate\s+\S*smtpgate\.conf\.example", text)
        assert not re.search(r"\bcp\s+\S*smtpgate\.conf\.example", text)
