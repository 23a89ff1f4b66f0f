"""Every ``--help`` page, rendered through the real CLI at 80 and 200 columns, reads as written (issue #18).

Plain text stays plain (rich markup would swallow ``[tool.ghostcli]``), paragraphs reflow to the width
(no hard line breaks mid-sentence), no Python type name shows beside an option or argument, the usage
line names arguments in upper case (``MODEL...``, ``[PATTERN]``), and each example is one whole line that
can be copied, however narrow the terminal.
"""

from __future__ import annotations

import re
from functools import cache

import pytest
import typer
from typer.testing import CliRunner

from ghostcli.cli.app import app

WIDTHS = (80, 200)
TYPE_NAMES = re.compile(r"<(list\[|str>|int|float|path|bool)")

# One sentence of each page that must come out on one line at 200 columns. Those of profile, check and
# build used to be broken by a hard line break in the middle.
SENTENCES = {
    "": ["MACs are multiply-accumulates (the GhostNet paper's 'FLOPs'); JSON 'flops' = 2 x MACs."],
    "list": ["Show the model zoo and the other sources a MODEL argument can name."],
    "build": ["The artifact is a .safetensors file whose metadata holds a JSON recipe (source, options, input size, "
              "ghostcli version), so every other command can load it."],
    "ghostify": ["Every dense Conv2d except the stem becomes primary conv -> BN -> cheap depthwise conv -> BN, keeping "
                 "the layer's geometry and output shape."],
    "profile": ["Several models give one comparison table with ratios against the first.",
                "then timed runs (by default 50, or fewer after 5 s with at least 10)"],
    "check": ["prefer --latency-reference with --max-latency-ratio (both timed in the same run) over --max-latency-ms",
              "ghostcli.toml / [tool.ghostcli] in pyproject.toml"],
    "export": ["(no BatchNormalization, and no Slice where the Ghost channels divide evenly)"],
    "quantize": ["NNCF's accuracy-controlled quantization keeps the most sensitive layers in floating point."],
    "train": ["--batch-size is the global batch, split across the processes;"],
    "evaluate": ["images/s counts time spent in the model only."],
}


def _group() -> typer.core.TyperGroup:
    return typer.main.get_command(app)  # type: ignore[return-value]


def _commands() -> list[str]:
    return ["", *_group().commands]  # type: ignore[attr-defined]


@cache
def render(command: str, width: int) -> str:
    """``ghostcli [COMMAND] --help`` as printed at ``width`` columns."""
    argv = [command, "--help"] if command else ["--help"]
    result = CliRunner().invoke(app, argv, env={"COLUMNS": str(width), "TERMINAL_WIDTH": None})
    assert result.exit_code == 0, result.output
    return result.output


def examples(command: str) -> list[str]:
    """The example commands of the help text as written in the source (lines that start with the program)."""
    group = _group()
    cmd = group if command == "" else group.commands[command]  # type: ignore[attr-defined]
    lines = [line.strip() for line in (cmd.help or "").splitlines()]
    return [line for line in lines if line.startswith(("ghostcli ", "torchrun "))]


def logical_lines(output: str) -> list[str]:
    """The output's lines, stripped, with ``\\``-continued lines joined."""
    joined: list[str] = []
    carry = ""
    for line in output.splitlines():
        text = (carry + " " + line.strip()).strip() if carry else line.strip()
        if text.endswith("\\"):
            carry = text[:-1].rstrip()
            continue
        carry = ""
        joined.append(text)
    return joined


def usage_line(output: str) -> str:
    return next(line.strip() for line in output.splitlines() if "Usage:" in line)


def prose_lines(output: str) -> list[str]:
    """The lines of the description: after the usage line, before the first panel (``╭``)."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if "Usage:" in line) + 1
    end = next(i for i, line in enumerate(lines) if line.lstrip().startswith("╭"))
    return [line.rstrip() for line in lines[start:end]]


def test_every_command_has_a_page_and_examples() -> None:
    assert set(_commands()) == {"", *SENTENCES}
    for command in _commands():
        assert examples(command), f"'ghostcli {command} --help' has no examples"


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("command", list(SENTENCES))
def test_no_type_names(command: str, width: int) -> None:
    """Options show a metavar (CxHxW, FILE, N) or nothing (flags); arguments show their name only."""
    out = render(command, width)
    assert not TYPE_NAMES.search(out), TYPE_NAMES.search(out)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("command", list(SENTENCES))
def test_usage_line(command: str, width: int) -> None:
    usage = usage_line(render(command, width))
    assert "{" not in usage and "}" not in usage, usage
    words = usage.split()
    assert words[:2] == ["Usage:", "ghostcli"]
    for word in words[2 + bool(command):]:  # [OPTIONS], the arguments (COMMAND [ARGS]... for the root)
        assert word.upper() == word, usage


def test_usage_lines_read_like_click() -> None:
    assert usage_line(render("profile", 80)) == "Usage: ghostcli profile [OPTIONS] MODEL..."
    assert usage_line(render("build", 80)) == "Usage: ghostcli build [OPTIONS] NAME"
    assert usage_line(render("list", 80)) == "Usage: ghostcli list [OPTIONS] [PATTERN]"
    assert usage_line(render("check", 80)) == "Usage: ghostcli check [OPTIONS] [MODEL]"
    assert usage_line(render("", 80)) == "Usage: ghostcli [OPTIONS] COMMAND [ARGS]..."


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("command", list(SENTENCES))
def test_examples_are_whole_lines(command: str, width: int) -> None:
    """Each example can be copied from one line (or ``\\``-continued lines), even when wider than the terminal."""
    lines = logical_lines(render(command, width))
    for example in examples(command):
        assert example in lines, f"{example!r} is broken across lines at {width} columns"


@pytest.mark.parametrize("width", WIDTHS)
def test_brackets_are_plain_text(width: int) -> None:
    """Rich markup does not swallow bracketed text; the defaults typer adds survive."""
    check = render("check", width)
    assert "[tool.ghostcli]" in check and "ghostcli.toml /  in" not in check
    ghostify = render("ghostify", width)
    assert "[default: 2]" in ghostify and "[default: keep-stem]" in ghostify
    assert "default: the model's own" in ghostify


@pytest.mark.parametrize("command", list(SENTENCES))
def test_paragraphs_reflow(command: str) -> None:
    """At 200 columns the known sentences are on one line, and no description line ends early mid-paragraph."""
    out = render(command, 200)
    lines = [line.strip() for line in out.splitlines()]
    for sentence in SENTENCES[command]:
        assert any(sentence in line for line in lines), f"{sentence!r} is not on one line"
    prose = prose_lines(out)
    for line, following in zip(prose, prose[1:]):
        if line.strip() and following.strip():  # inside a paragraph: a wrapped line fills the width
            assert len(line) > 200 - 30, f"hard line break after {line.strip()!r}"


def test_help_text_as_written_keeps_its_examples() -> None:
    """The page moves the examples below the options, but the command's help text keeps them (doc tests read it)."""
    profile = _group().commands["profile"]  # type: ignore[attr-defined]
    assert "Examples:" in (profile.help or "")
    out = render("profile", 80)
    assert out.index("Examples:") > out.index("--json")
