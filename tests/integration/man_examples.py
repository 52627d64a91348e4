# SPDX-License-Identifier: ISC
"""The EXAMPLES sections of the man pages, read from their mdoc source,
for the tests that run them (issue 17: a documented example that stops
working fails `make check`).

    items = examples("smtpgate-sendmail.8")   # in page order
    items[0].text          # File: a literal block without a prompt (a
                           # config file, a drop-in, a crontab)
    items[1].command       # Command: what the reader types, no prompt
    items[1].output        # the lines the page shows after it
    run_examples(page, run={prefix: fn}, not_run={prefix: "why"})

A command is a line of a literal block (.Bd -literal or .Dl) that starts
with the prompt "# " or "$ "; a line ending in a backslash goes on to the
next, and the command keeps that backslash and newline for the shell to
join, as when the reader pastes it. The lines up to the next prompt are the
command's output. mdoc escapes are undone as the page renders them; any
other escape fails, so that what runs is always what the reader sees.

`run_examples` ties each command (or file) to the one entry of a test's
tables that runs it or says why it cannot run here, so that an example
added to a page fails the test until a test runs it or lists it. `sh`
runs a command as the reader's shell would, `$?` being the status of the
command before it.
"""

import re
import subprocess
from dataclasses import dataclass, field

import pytest

from conftest import ROOT

ESCAPES = {"\\e": "\\", "\\-": "-", "\\(dq": '"', "\\&": ""}
PROMPTS = ("# ", "$ ")


@dataclass
class Command:
    command: str
    output: list = field(default_factory=list)


@dataclass
class File:
    text: str
    intro: str      # the prose just before the block: which file it is


def unescape(line, page):
    out = re.sub(r"\\\(dq|\\[e&-]", lambda m: ESCAPES[m.group(0)], line)
    left = re.sub(r"\\\(dq|\\[e&-]", "", line)
    if "\\" in left:
        pytest.fail(f"{page} EXAMPLES: an escape these tests do not undo: {line!r}")
    return out


def examples(page):
    """The page's EXAMPLES section as [Command | File], in page order."""
    text = (ROOT / "man" / page).read_text()
    section = text.split("\n.Sh EXAMPLES\n", 1)[1].split("\n.Sh ", 1)[0]
    blocks, block, intro = [], None, []
    for line in section.splitlines():
        if block is not None:
            if line == ".Ed":
                blocks.append((block, " ".join(intro)))
                block, intro = None, []
            else:
                block.append(unescape(line, page))
        elif line.startswith(".Bd -literal"):
            block = []
        elif line.startswith(".Dl "):
            blocks.append(([unescape(line[4:], page)], " ".join(intro)))
            intro = []
        elif line == ".Pp":
            intro = []
        else:
            intro.append(re.sub(r"^\.\w+ ", "", line))
    items = []
    for lines, about in blocks:
        if not any(l.startswith(PROMPTS) for l in lines):
            items.append(File("\n".join(lines) + "\n", about))
            continue
        current = None
        for line in lines:
            if current and current.command.endswith("\\") and not current.output:
                current.command += "\n" + line
            elif line.startswith(PROMPTS):
                current = Command(line[2:])
                items.append(current)
            elif current is None:
                pytest.fail(f"{page} EXAMPLES: {line!r} comes before any command")
            else:
                current.output.append(line)
    return items


def example_commands(page):
    """The commands of the page's EXAMPLES, as the reader types them."""
    return [i.command for i in examples(page) if isinstance(i, Command)]


def key(item):
    return item.command if isinstance(item, Command) else item.text


def accounted(page, items, run, not_run):
    """[(item, entry, runs)]: each item with the one key of run or not_run
    that its command (or a file's text) starts with. Fails for an item
    that neither table names (an example nobody runs), for an item two
    entries name, and for an entry that names no item (a listing left
    behind by an edit of the page)."""
    entries = [(k, True) for k in run] + [(k, False) for k in not_run]
    pairs, used = [], set()
    for item in items:
        hits = [(k, r) for k, r in entries if key(item).startswith(k)]
        if not hits:
            pytest.fail(f"{page} EXAMPLES: {key(item)!r} is neither run by this "
                        f"test nor listed with the reason it cannot run here")
        if len(hits) > 1:
            pytest.fail(f"{page} EXAMPLES: {key(item)!r} is named by {hits}")
        pairs.append((item, *hits[0]))
        used.add(hits[0][0])
    stale = [k for k, _ in entries if k not in used]
    assert not stale, f"{page} EXAMPLES no longer has {stale}"
    return pairs


def run_examples(page, run, not_run):
    """Goes through the page's examples in order: each one that run names
    is handed to its function, fn(item, status) with the exit status of
    the command before (for `echo $?`), which runs and checks it and
    returns the CompletedProcess of a command (None for a file); the
    output the page shows after a command must be among what it printed.
    Returns the entries of not_run that were met, for the test to show."""
    status, skipped = 0, []
    for item, entry, runs in accounted(page, examples(page), run, not_run):
        if not runs:
            skipped.append(entry)
            continue
        result = run[entry](item, status)
        if isinstance(item, Command):
            shows(item, result)
            status = result.returncode
    return skipped


def shows(example, result):
    """The output the page shows after the command, line for line, is
    among the lines the command printed (stdout, then stderr), in order."""
    printed = (result.stdout + result.stderr).splitlines()
    it = iter(printed)
    missing = [l for l in example.output if l not in it]
    assert not missing, (example.command, example.output, printed)


def sh(command, status=0, **options):
    """Runs command with sh -c, after a command that exited with status,
    so that `echo $?` answers what it answers the reader; options go to
    subprocess.run (env, cwd)."""
    return subprocess.run(["sh", "-c", f"(exit {status}); {command}"],
                          capture_output=True, text=True, timeout=120, **options)
