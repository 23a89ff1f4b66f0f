"""Every ``ghostcli`` example in README.md, docs/*.md and the ``--help`` texts runs, page by page, in order.

The markers a page uses to declare its stand-ins, setup and skips are described in docs/architecture.md
("How the docs are tested"). Each page runs in its own temporary folder, in-process through the Typer app
(no interpreter start per example), and every example must exit with its documented code (0 unless its
comment starts with ``exit N``). The ``--help`` pages declare their stand-ins here, in HELP_PAGES.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from train_fixtures import free_port, make_image_folder

ROOT = Path(__file__).resolve().parents[1]
DOC_PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

RUN_LANGS = {"", "bash", "console", "sh", "shell"}  # fenced blocks whose `ghostcli` lines are examples
MARKER = re.compile(r"<!--\s*(examples|examples-setup|examples-skip|examples-file):\s*(.*?)\s*-->")
WORD = r"[\w./~-]"  # characters that continue a word: a stand-in never matches next to one
IMAGES = "images"  # a tiny ImageFolder made in every page's folder (2 classes x 6 PNGs of 8x8)
TORCHRUN_TIMEOUT_S = 120


@dataclass
class Step:
    """One thing to do, in page order: run an example (``command``) or write a file (``file``)."""

    where: str  # "README.md:12", "ghostcli train --help, example 2", "setup"
    original: str  # as written: continuations joined, the trailing comment dropped
    exit_code: int = 0
    file: str | None = None  # examples-file: write ``original`` to this path


@dataclass
class Page:
    name: str
    standins: dict[str, str] = field(default_factory=dict)
    skips: list[tuple[str, str]] = field(default_factory=list)  # (substring of the original, reason)
    steps: list[Step] = field(default_factory=list)

    def substitute(self, text: str) -> str:
        """Apply every stand-in at once, to whole words only (``resnet50`` but not ``ghost_resnet50.safetensors``);
        the longest key wins, and no stand-in rewrites another's result."""
        if not self.standins:
            return text
        keys = "|".join(map(re.escape, sorted(self.standins, key=len, reverse=True)))
        return re.sub(rf"(?<!{WORD})(?:{keys})(?!{WORD})", lambda m: self.standins[m.group(0)], text)

    def skip_reason(self, step: Step) -> str | None:
        return next((reason for sub, reason in self.skips if sub in step.original), None)


def split_comment(line: str) -> tuple[str, str]:
    """``cmd  # comment`` -> (cmd, comment); a ``#`` inside quotes or a word is not a comment."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1:].strip()
    return line.rstrip(), ""


def expected_exit(comment: str) -> int:
    """A comment that starts with ``exit N`` documents exit code N; any other comment is prose."""
    m = re.match(r"exit (\d+)\b", comment)
    return int(m.group(1)) if m else 0


def is_example(line: str) -> bool:
    return line.startswith("ghostcli ") or (line.startswith("torchrun ") and " -m ghostcli " in line)


def parse_standins(spec: str) -> dict[str, str]:
    """``resnet50=resnet20 "--epochs 10"="--epochs 1"`` -> {"resnet50": "resnet20", "--epochs 10": "--epochs 1"}."""
    pairs = {}
    for token in shlex.split(spec):
        key, sep, value = token.partition("=")
        assert sep and key, f"a stand-in is KEY=VALUE, got {token!r}"
        pairs[key] = value
    return pairs


def parse_page(path: Path) -> Page:
    """The examples of one Markdown page, with the stand-ins, setup, skips and files it declares."""
    page = Page(path.relative_to(ROOT).as_posix())
    lines = path.read_text(encoding="utf-8").splitlines()
    setup: list[Step] = []
    fence: str | None = None  # the open fence's info string, None outside a block
    block: list[str] = []
    file_for_block: str | None = None
    i = 0
    while i < len(lines):
        raw = lines[i]
        stripped = raw.strip()
        where = f"{page.name}:{i + 1}"
        if fence is None:
            if stripped.startswith("```"):
                fence, block = stripped[3:].strip(), []
            for kind, value in MARKER.findall(stripped) if stripped.startswith("<!--") else ():  # a whole line
                if kind == "examples":
                    page.standins.update(parse_standins(value))
                elif kind == "examples-setup":
                    setup.append(Step(where, value))
                elif kind == "examples-skip":
                    lexer = shlex.shlex(value, posix=True)
                    lexer.whitespace_split = True
                    sub, reason = lexer.get_token() or "", lexer.instream.read().strip()
                    assert reason, f"{where}: examples-skip needs a reason"
                    page.skips.append((sub, reason))
                elif kind == "examples-file":
                    file_for_block = value
            i += 1
            continue
        if stripped == "```":  # the block ends
            if file_for_block is not None:
                page.steps.append(Step(where, textwrap.dedent("\n".join(block) + "\n"), file=file_for_block))
                file_for_block = None
            fence = None
            i += 1
            continue
        block.append(raw)
        text = stripped.removeprefix("$ ")
        if fence in RUN_LANGS and text.startswith(("ghostcli ", "torchrun ")):
            while text.endswith("\\") and i + 1 < len(lines):
                i += 1
                text = text[:-1].rstrip() + " " + lines[i].strip()
            command, comment = split_comment(text)
            if is_example(command):
                page.steps.append(Step(where, command, expected_exit(comment)))
        i += 1
    return with_setup(page, setup)


def output_of(command: str) -> str | None:
    """The ``-o``/``--output`` FILE of a command, if it names one."""
    argv = shlex.split(command)
    return next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("-o", "--output")), None)


def with_setup(page: Page, setup: list[Step]) -> Page:
    """Put the setup commands first, leaving out one whose ``-o`` FILE an example of the page writes itself
    (that example would fail otherwise: outputs are never overwritten), so a page that starts making a file
    needs no change to its setup."""
    made = {output_of(step.original) for step in page.steps if step.file is None} - {None}
    page.steps[:0] = [step for step in setup if output_of(step.original) not in made]
    return page


def help_page(command: str) -> Page:
    """The examples of ``ghostcli [COMMAND] --help`` (the lines of its help text that start with ``ghostcli``)."""
    import typer

    from ghostcli.cli.app import app

    group = typer.main.get_command(app)
    cmd = group if command == "" else group.commands[command]  # type: ignore[attr-defined]
    name = f"ghostcli {command} --help".replace("  ", " ")
    declared = HELP_PAGES.get(command, {})
    page = Page(name, standins=dict(declared.get("standins", {})), skips=list(declared.get("skips", [])))
    for line in (cmd.help or "").splitlines():
        text = line.strip()
        if is_example(text):
            command_text, comment = split_comment(text)
            page.steps.append(Step(f"{name}, example {len(page.steps) + 1}", command_text, expected_exit(comment)))
    return with_setup(page, [Step("setup", s) for s in declared.get("setup", [])])


# The --help pages cannot hold HTML comments, so their stand-ins, setup and skips are declared here, one entry per
# command ("" is `ghostcli --help`), with the meaning of the Markdown markers (docs/architecture.md).
SMALL = {"resnet50": "resnet20", "resnet18": "resnet20", "resnet56": "resnet20"}
FAST_QUANTIZE = "--subset-size 8 --eval-size 16 --runs 3 --warmup 1"
TORCHRUN_SKIP = ("torchrun ", "starts three Python processes (~15 s); tests/test_train_distributed.py runs torchrun")
HELP_PAGES: dict[str, dict] = {
    "": {"standins": SMALL},
    "ghostify": {"standins": {**SMALL, "resnet18.pth": "resnet18_weights.safetensors"},
                 "setup": ["ghostcli build resnet20 -o resnet18_weights.safetensors"]},
    "profile": {"standins": SMALL, "setup": ["ghostcli ghostify resnet50 -o ghost_resnet50.safetensors"]},
    "check": {"standins": {**SMALL, "--max-latency-ratio 1.2": "--max-latency-ratio 100"},
              "setup": ["ghostcli ghostify resnet50 -o ghost_resnet50.safetensors"]},
    "export": {"standins": SMALL, "setup": ["ghostcli ghostify resnet50 -o ghost_resnet50.safetensors"]},
    "quantize": {"standins": {**SMALL, "ghost_resnet50": "ghost_resnet50.safetensors", "DIR": "digits",
                              "~/imagenet/val": "images",
                              "--subset-size 300": FAST_QUANTIZE, "--eval-data ~/imagenet/val": f"--eval-data images {FAST_QUANTIZE}",
                              "--max-accuracy-drop 1%": f"--max-accuracy-drop 99% {FAST_QUANTIZE}",
                              "--calib-data synthetic": f"--calib-data synthetic {FAST_QUANTIZE}",
                              "--calib-images 64": "--calib-images 8 --eval-size 16 --runs 3 --warmup 1",
                              "3x16x16": "3x8x8"},
                 "setup": ["ghostcli ghostify resnet20 -o ghost_resnet50.safetensors"]},
    "train": {"standins": {"3x16x16": "3x8x8", "--epochs 5": "--epochs 1",
                           "-o ghost_kd.safetensors": "--epochs 1 -o ghost_kd.safetensors",
                           "--resume r20.ckpt": "--resume r20.ckpt --epochs 1 --input-size 3x8x8"},
              "setup": ["ghostcli ghostify resnet20 --input-size 3x16x16 -o ghost_resnet20.safetensors",
                        "ghostcli train resnet20 --data digits --input-size 3x8x8 --epochs 1 --checkpoint r20.ckpt "
                        "-o r20_first.safetensors"],
              "skips": [("--device cuda", "needs an NVIDIA GPU"), TORCHRUN_SKIP]},
    "evaluate": {"standins": {"~/imagenette/val": "images"},
                 "setup": ["ghostcli build resnet20 -o resnet20_digits.safetensors",
                           "ghostcli export resnet20 --format openvino -o model_int8.xml",
                           "ghostcli export resnet20 -o model.onnx"]},
}


def _help_commands() -> list[str]:
    import typer

    from ghostcli.cli.app import app

    return ["", *typer.main.get_command(app).commands]  # type: ignore[attr-defined]


# -- running -----------------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    exit_code: int
    output: str


def run_ghostcli(argv: list[str]) -> Outcome:
    """One example in-process; ``> FILE`` writes stdout to FILE, ``| ...`` is ignored."""
    from typer.testing import CliRunner

    from ghostcli.cli.app import app

    if "|" in argv:
        argv = argv[: argv.index("|")]
    redirect = None
    if ">" in argv:
        at = argv.index(">")
        redirect, argv = argv[at + 1], argv[:at] + argv[at + 2:]
    result = CliRunner().invoke(app, argv, catch_exceptions=True)
    output = f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        output += "".join(traceback.format_exception(result.exception))
        return Outcome(-1, output)
    if redirect is not None:
        Path(redirect).write_text(result.stdout, encoding="utf-8")
    return Outcome(result.exit_code, output)


def run_torchrun(argv: list[str]) -> Outcome:
    """``torchrun OPTS -m ghostcli ...`` as a child process (gloo on the CPU)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if not any(a.startswith(("--master_port", "--master-port", "--rdzv")) for a in argv):  # tests may run in parallel
        argv = ["--master_addr", "127.0.0.1", "--master_port", str(free_port()), *argv]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", *argv], capture_output=True, text=True,
                          env=env, timeout=TORCHRUN_TIMEOUT_S)
    return Outcome(proc.returncode, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")


# An example that changed no file is not run again where the same command meets the same argument files (the
# --help pages repeat many of the guides' examples): same command, same inputs, same outcome.
RAN_READ_ONLY: dict[tuple[str, tuple[str, ...], int], str] = {}


def files_in(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (st.st_size, st.st_mtime_ns)
            for p in folder.rglob("*") if p.is_file() and (st := p.stat())}


def run_page(page: Page, folder: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Run the page's steps in ``folder``; returns a report line per skipped example and fails on a wrong exit."""
    (folder / ".git").mkdir()  # the folder is a "repository root": no ghostcli.toml above it is found
    make_image_folder(folder / IMAGES, per_class=6)
    monkeypatch.chdir(folder)
    monkeypatch.setenv("COLUMNS", "200")
    skipped, failures, timings = [], [], []
    for step in page.steps:
        if (reason := page.skip_reason(step)) is not None:
            skipped.append(f"{step.where}: {step.original}  ({reason})")
            continue
        text = page.substitute(step.original)
        if step.file is not None:
            target = folder / step.file
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            continue
        argv = shlex.split(text)
        key = (text, tuple(sorted(a for a in argv[1:] if (folder / a).exists())), step.exit_code)
        if (earlier := RAN_READ_ONLY.get(key)) is not None:
            skipped.append(f"{step.where}: {step.original}  (ran as {earlier}, with the same files)")
            continue
        before, start = files_in(folder), time.perf_counter()
        outcome = run_ghostcli(argv[1:]) if argv[0] == "ghostcli" else run_torchrun(argv[1:])
        timings.append((time.perf_counter() - start, text))
        if outcome.exit_code != step.exit_code:
            failures.append(f"{step.where}: exit {outcome.exit_code}, documented {step.exit_code}\n"
                            f"  as written: {step.original}\n  ran:        {text}\n{outcome.output[-4000:]}")
        elif files_in(folder) == before:
            RAN_READ_ONLY.setdefault(key, step.where)
    if os.environ.get("GHOSTCLI_DOC_TIMES"):
        for seconds, text in timings:
            print(f"{seconds:6.2f} s  {text}")
    assert not failures, f"{page.name}: {len(failures)} example(s) failed\n\n" + "\n\n".join(failures)
    return skipped


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("path", DOC_PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_doc_page_examples(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    page = parse_page(path)
    for line in run_page(page, tmp_path, monkeypatch):
        print("skipped", line)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("command", _help_commands(), ids=lambda c: c or "ghostcli")
def test_help_examples(command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    page = help_page(command)
    for line in run_page(page, tmp_path, monkeypatch):
        print("skipped", line)


def test_the_parser_finds_the_examples() -> None:
    """Guards the extraction itself: a parser that found nothing would let every page pass."""
    assert split_comment("ghostcli list 'a # b'  # exit 3: why") == ("ghostcli list 'a # b'", "exit 3: why")
    assert expected_exit("exit 3: why") == 3 and expected_exit("CI gate, exit 3 on regression") == 0
    page = Page("p", standins={"resnet50": "resnet20", "--epochs 5": "--epochs 1", "DIR": "images"})
    assert page.substitute("train resnet50 ghost_resnet50.safetensors --epochs 5 --data DIR/x DIR") == \
        "train resnet20 ghost_resnet50.safetensors --epochs 1 --data DIR/x images"
    pages = {page.name: page for page in map(parse_page, DOC_PAGES)}
    examples = [s for p in pages.values() for s in p.steps if s.file is None]
    assert len(examples) > 60, len(examples)
    readme = [s.original for s in pages["README.md"].steps]
    assert "ghostcli ghostify resnet50 -o ghost_resnet50.safetensors" in readme
    assert any(s.exit_code == 1 for s in pages["docs/commands.md"].steps)  # `# exit 1` after a console command
    assert any(s.original.startswith("torchrun --nnodes 2") and "-m ghostcli train" in s.original  # `\` joined
               for s in pages["docs/training.md"].steps)
    assert sum(len(help_page(c).steps) for c in _help_commands()) > 20


def test_openvino_telemetry_is_off() -> None:
    """ghostcli sends nothing (docs/security.md). OpenVINO's converter would otherwise fork the process for a
    usage event on every conversion (about a second each, and a forked child can deadlock)."""
    from openvino.tools.ovc import telemetry_stub, telemetry_utils
    from torch import nn

    from ghostcli.runtime.openvino import to_openvino

    to_openvino(nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU()), (1, 3, 4, 4))
    assert telemetry_utils.tm is telemetry_stub
