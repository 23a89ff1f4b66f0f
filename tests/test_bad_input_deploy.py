"""Issue #12 for export, quantize and the shared output handling: a user mistake ends in one clean line.

Every bad-input case asserts (through ``run_bad``): the exit code, one ``Error:`` line naming the problem,
no traceback, and a folder left exactly as it was (no partial or temporary file, no new folder, existing
files unchanged). The positive tests cover what fsutil now does: create missing output folders (and remove
them again on failure), give outputs the user's umask, check writability up front, and clean up on SIGTERM.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from ghostcli import fsutil
from ghostcli.cli.app import app
from ghostcli.errors import GhostcliError, UsageError

from bad_input import run_bad

E = ["export", "resnet20", "--input-size", "3x8x8"]
FAST_Q = ["--calib-images", "4", "--eval-size", "4", "--runs", "1", "--warmup", "0"]
Q = ["quantize", "resnet20", "--input-size", "3x8x8", *FAST_Q]
LONG = "x" * 250


def _setup(d: Path) -> None:
    """Files the cases collide with; ``run_bad`` checks that they stay byte-identical."""
    (d / "exists.onnx").write_text("keep me")
    (d / "exists.xml").write_text("keep me")
    (d / "half.bin").write_text("keep me")  # the weights file of half.xml
    (d / "afile").write_text("a file, not a folder")
    (d / "folder.onnx").mkdir()
    (d / "empty").mkdir()
    (d / "empty" / "notes.txt").write_text("not an image")


# (id, arguments with {d} for the test folder, exit code, what the error line must contain)
CASES: list[tuple[str, list[str], int, str | list[str]]] = [
    # export: options
    ("format-tflite", [*E, "--format", "tflite", "-o", "{d}/m.tflite"], 2, "unknown export format 'tflite'"),
    ("opset-3", [*E, "--opset", "3", "-o", "{d}/m.onnx"], 2, ["opset must be between 7 and", "got 3"]),
    ("opset-openvino", [*E, "-f", "openvino", "--opset", "17", "-o", "{d}/m.xml"], 2, "--opset applies to"),
    ("batch-0", [*E, "--batch-size", "0", "-o", "{d}/m.onnx"], 2, "--batch-size must be at least 1, got 0"),
    ("batch-negative", [*E, "-b", "-2", "-o", "{d}/m.onnx"], 2, "--batch-size must be at least 1, got -2"),
    ("batch-and-dynamic", [*E, "-b", "2", "--dynamic-batch", "-o", "{d}/m.onnx"], 2, "exclude each other"),
    ("atol-negative", [*E, "--atol", "-1", "-o", "{d}/m.onnx"], 2, "--atol must be a finite number >= 0"),
    ("rtol-nan", [*E, "--rtol", "nan", "-o", "{d}/m.onnx"], 2, "--rtol must be a finite number >= 0"),
    ("fp16-onnx", [*E, "--fp16", "-o", "{d}/m.onnx"], 2, "--fp16"),
    ("no-simplify-openvino", [*E, "-f", "ov", "--no-simplify", "-o", "{d}/m.xml"], 2, "--no-simplify applies"),
    ("input-size-text", ["export", "resnet20", "--input-size", "abc", "-o", "{d}/m.onnx"], 2, "input size 'abc'"),
    ("input-size-zero", ["export", "resnet20", "--input-size", "0x8x8", "-o", "{d}/m.onnx"], 2, "zero dimension"),
    # export: the output path
    ("onnx-suffix", [*E, "-o", "{d}/m.xml"], 2, "must end in .onnx"),
    ("openvino-suffix", [*E, "-f", "openvino", "-o", "{d}/m.onnx"], 2, "must end in .xml"),
    ("exists", [*E, "-o", "{d}/exists.onnx"], 1, ["exists.onnx already exists", "--force"]),
    ("bin-exists", [*E, "-f", "openvino", "-o", "{d}/half.xml"], 1, "half.bin already exists"),
    ("parent-is-file", [*E, "-o", "{d}/afile/m.onnx"], 2, ["cannot write", "afile is a file, not a folder"]),
    ("output-is-folder", [*E, "-o", "{d}/folder.onnx"], 2, "folder.onnx is a directory"),
    ("not-utf8", [*E, "-o", "{d}/m\udcff.onnx"], 2, ["m\\xff.onnx", "not valid UTF-8"]),
    ("name-too-long", [*E, "-o", f"{{d}}/{LONG}.onnx"], 2, "file name too long"),
    # export: the model
    ("unknown-model", ["export", "no_such_model", "-o", "{d}/m.onnx"], 1, "no_such_model"),
    ("weights-missing", [*E, "--weights", "{d}/nope.safetensors", "-o", "{d}/m.onnx"], 1, "nope.safetensors"),
    ("forward-fails", ["export", "resnet20", "--input-size", "1x8x8", "-o", "{d}/new/sub/m.onnx"], 1,
     ["resnet20 fails on input 1x1x8x8", "at layer 'conv1'", "3 channels"]),
    ("forward-fails-openvino", ["export", "resnet20", "--input-size", "1x8x8", "-f", "openvino", "-o",
                                "{d}/new/m.xml"], 1, "at layer 'conv1'"),
    ("verification-fails", [*E, "--atol", "0", "--rtol", "0", "-o", "{d}/new/m.onnx"], 1,
     ["verification failed", "nothing was written (loosen --atol/--rtol, or --no-verify to keep it anyway)"]),
    # quantize: options, all refused before the model is loaded
    ("std-nan", [*Q, "--std", "nan,nan,nan"], 2, ["--std", "finite"]),
    ("std-zero", [*Q, "--std", "0.2,0,0.2"], 2, ["--std", "positive"]),
    ("mean-2-of-3", [*Q, "--mean", "0.5,0.5"], 2, ["--mean needs 1 or 3 values", "3-channel", "got 2"]),
    ("mean-text", [*Q, "--mean", "a,b,c"], 2, "cannot read --mean"),
    ("runs-0", [*Q, "--runs", "0"], 2, "--runs must be at least 1"),
    ("threads-negative", [*Q, "--threads", "-1"], 2, "--threads must be at least 1"),
    ("warmup-negative", [*Q, "--warmup", "-1"], 2, "--warmup"),
    ("calib-images-0", [*Q, "--calib-images", "0"], 2, "calibration images) must be at least 1"),
    ("subset-size-negative", [*Q, "--subset-size", "-5"], 2, "must be at least 1, got -5"),
    ("eval-size-0", [*Q, "--eval-size", "0"], 2, "--eval-size"),
    ("preset-bogus", [*Q, "--preset", "bogus"], 2, "unknown preset 'bogus'"),
    ("max-drop-too-big", [*Q, "--max-accuracy-drop", "150%"], 2, "--max-accuracy-drop"),
    ("max-drop-text", [*Q, "--max-accuracy-drop", "abc"], 2, "'abc'"),
    ("calib-missing", [*Q, "--calib-data", "{d}/nope"], 1, ["calibration data folder", "nope does not exist"]),
    ("calib-is-file", [*Q, "--calib-data", "{d}/afile"], 1, "afile is a file, not a folder"),
    ("eval-missing", [*Q, "--eval-data", "{d}/nope"], 1, "evaluation data folder"),
    ("q-suffix", [*Q, "-o", "{d}/m.onnx"], 2, "must end in .xml"),
    ("q-exists", [*Q, "-o", "{d}/exists.xml"], 1, "exists.xml already exists"),
    ("q-bin-exists", [*Q, "-o", "{d}/half.xml"], 1, "half.bin already exists"),
    ("q-parent-is-file", [*Q, "-o", "{d}/afile/m.xml"], 2, "not a folder"),
    ("q-not-utf8", [*Q, "-o", "{d}/\udcffm.xml"], 2, "not valid UTF-8"),
    ("ignore-type-typo", [*Q, "--ignore-type", "GroupConvolution", "--ignore-type", "Convolusion", "--json"], 2,
     ["unknown OpenVINO operation type 'Convolusion' in --ignore-type: did you mean Convolution?",
      "e.g. Convolution, GroupConvolution, MatMul"]),
    ("ignore-type-case", [*Q, "--ignore-type", "matmul"], 2, ["'matmul'", "did you mean MatMul?", "case-sensitive"]),
    # quantize: after the model is loaded
    ("mean-2-of-3-model", ["quantize", "resnet20", *FAST_Q, "--mean", "0.5,0.5"], 2, "--mean needs 1 or 3 values"),
    ("calib-empty", [*Q, "--calib-data", "{d}/empty"], 1, "no usable images"),
    ("q-forward-fails", ["quantize", "resnet20", "--input-size", "1x8x8", *FAST_Q, "-o", "{d}/new/m.xml"], 1,
     ["fails on input 1x1x8x8", "at layer 'conv1'"]),
    ("drop-needs-labels", [*Q, "--calib-data", "synthetic", "--max-accuracy-drop", "1%", "-o", "{d}/new/m.xml"], 2,
     "labelled"),
]


def _entries(d: Path) -> list[str]:
    """Every path below ``d``, folders included (``run_bad``'s snapshot sees files only)."""
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


@pytest.mark.parametrize(("args", "code", "match"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(tmp_path: Path, args: list[str], code: int, match: str | list[str]) -> None:
    _setup(tmp_path)
    before = _entries(tmp_path)
    run_bad([a.replace("{d}", str(tmp_path)) for a in args], tmp_path, code=code, match=match)
    assert _entries(tmp_path) == before  # no folder created (or left behind) either


@pytest.mark.parametrize("args", [
    [*Q, "--runs", "0"], [*Q, "--threads", "0"], [*Q, "--std", "nan,nan,nan"], [*Q, "--mean", "1,2"],
    [*Q, "--calib-data", "nowhere"], [*Q, "-o", "m.bin"], [*Q, "--ignore-type", "Bogus"], [*E, "--opset", "3"],
    [*E, "--atol", "nan"],
], ids=["runs", "threads", "std", "mean", "calib", "suffix", "ignore-type", "opset", "atol"])
def test_options_are_checked_before_the_model_is_loaded(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> None:
    def no_load(*a: object, **k: object) -> None:
        raise AssertionError("the model was loaded before the options were checked")

    monkeypatch.setattr("ghostcli.resolve.resolve_model", no_load)
    res = CliRunner().invoke(app, args)
    assert res.exit_code in (1, 2) and res.stderr.startswith("Error: "), res.output


# ------------------------------------------------------------------ writability, checked before the work


def _refuse(monkeypatch: pytest.MonkeyPatch, folder: Path, read_only: bool) -> None:
    """Make ``folder`` look unwritable to os.access (root ignores permission bits, so chmod cannot)."""
    real_access, real_statvfs = os.access, os.statvfs

    def access(path: object, mode: int, **kw: object) -> bool:
        return False if Path(path) == folder and mode & os.W_OK else real_access(path, mode, **kw)

    def statvfs(path: object) -> object:
        st = real_statvfs(path)
        if Path(path) != folder or not read_only:
            return st
        return type("StatVfs", (), {"f_flag": st.f_flag | os.ST_RDONLY})()

    monkeypatch.setattr(os, "access", access)
    monkeypatch.setattr(os, "statvfs", statvfs)


@pytest.mark.parametrize(("read_only", "reason"), [(True, "read-only file system"), (False, "permission denied")])
@pytest.mark.parametrize("command", ["export", "quantize", "build"])
def test_unwritable_folder_is_refused_up_front(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, read_only: bool,
                                               reason: str, command: str) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    _refuse(monkeypatch, ro, read_only)
    monkeypatch.setattr("ghostcli.resolve.resolve_model", lambda *a, **k: pytest.fail("work started"))
    args = {"export": [*E, "-o", f"{ro}/m.onnx"], "quantize": [*Q, "-o", f"{ro}/new/m.xml"],
            "build": ["build", "resnet20", "-o", f"{ro}/m.safetensors"]}[command]
    line = run_bad(args, tmp_path, code=1, match=["cannot write", reason])
    assert str(ro) in line and _entries(tmp_path) == ["ro"]


def test_really_unwritable_folder(tmp_path: Path) -> None:
    folder = Path("/proc/sys")
    if not folder.is_dir() or os.access(folder, os.W_OK):
        pytest.skip("no folder this user cannot write")
    run_bad([*E, "-o", "/proc/sys/ghostcli-m.onnx"], tmp_path, code=1, match="cannot write /proc/sys/ghostcli-m.onnx")


def test_permission_bits_for_a_non_root_user() -> None:
    """A real non-root user (``nobody`` via setpriv when the tests run as root) and a folder it may not write."""
    as_user: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: permission bits cannot be tested")
        as_user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    top = Path(tempfile.mkdtemp(prefix="ghostcli-perm-"))
    try:
        top.chmod(0o777)
        for name, mode in (("locked", 0o555), ("closed", 0o600)):
            (top / name).mkdir()
            (top / name).chmod(mode)
        for out in (top / "locked" / "m.onnx", top / "locked" / "new" / "m.onnx", top / "closed" / "sub" / "m.onnx"):
            proc = subprocess.run([*as_user, sys.executable, "-c", "from ghostcli.cli.app import main; main()",
                                   *E, "-o", str(out)], capture_output=True, text=True, timeout=120, check=False)
            assert proc.returncode == 1, proc.stderr
            assert proc.stderr.splitlines() == [f"Error: cannot write {out}: permission denied"]
        assert _entries(top) == ["closed", "locked"]
    finally:
        for name in ("locked", "closed"):
            (top / name).chmod(0o755)
        shutil.rmtree(top)


# ------------------------------------------------------------------ fsutil: folders, modes, SIGTERM


def test_missing_folders_are_created(tmp_path: Path) -> None:
    out = tmp_path / "new" / "sub" / "m.onnx"
    res = CliRunner().invoke(app, [*E, "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["files"] == [str(out)]
    assert _entries(tmp_path) == ["new", "new/sub", "new/sub/m.onnx"]


def test_failure_removes_only_the_folders_it_created(tmp_path: Path) -> None:
    (tmp_path / "have").mkdir()
    with pytest.raises(RuntimeError), fsutil.atomic_path(tmp_path / "have" / "a" / "b" / "f.txt") as tmp:
        assert tmp.parent == tmp_path / "have" / "a" / "b"
        tmp.write_text("half")
        raise RuntimeError("writer failed")
    assert _entries(tmp_path) == ["have"]
    with pytest.raises(RuntimeError), fsutil.atomic_dir(tmp_path / "x" / "m.xml") as tmp_dir:
        (tmp_dir / "m.xml").write_text("half")
        (tmp_path / "x" / "other.txt").write_text("someone else's")  # a folder in use is kept
        raise RuntimeError("writer failed")
    assert _entries(tmp_path) == ["have", "x", "x/other.txt"]


def test_check_output_only_validates(tmp_path: Path) -> None:
    assert fsutil.check_output(tmp_path / "a" / "b" / "m.onnx") == tmp_path / "a" / "b" / "m.onnx"
    assert _entries(tmp_path) == []
    (tmp_path / "f").write_text("x")
    with pytest.raises(UsageError, match="not a folder"):
        fsutil.check_output(tmp_path / "f" / "deeper" / "m.onnx")
    fsutil.check_output(tmp_path / "f", force=True)  # replacing a file is fine with --force


def test_os_refusal_during_the_write_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(GhostcliError, match="cannot write .*f.txt: no space left on device"), \
            fsutil.atomic_path(tmp_path / "new" / "f.txt"):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert _entries(tmp_path) == []


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield 0o640
    os.umask(old)


def test_outputs_follow_the_umask(tmp_path: Path, umask_027: int) -> None:
    with fsutil.atomic_path(tmp_path / "f.ckpt") as tmp:
        tmp.write_bytes(b"x")
    runner = CliRunner()
    assert runner.invoke(app, ["build", "resnet20", "-o", str(tmp_path / "m.safetensors")]).exit_code == 0
    assert runner.invoke(app, [*E, "-o", str(tmp_path / "m.onnx")]).exit_code == 0
    assert runner.invoke(app, [*E, "-f", "openvino", "-o", str(tmp_path / "d" / "m.xml")]).exit_code == 0
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.rglob("*") if p.is_file()}
    assert modes == dict.fromkeys(["f.ckpt", "m.safetensors", "m.onnx", "m.xml", "m.bin"], umask_027)
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o750


def test_sigterm_handler_is_installed_only_for_the_write() -> None:
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        pytest.skip("the test runner handles SIGTERM itself")
    with fsutil.sigterm_raises():
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        with pytest.raises(fsutil.Terminated):
            os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL

    def own(signum: int, frame: object) -> None:  # a caller's handler (train's clean stop) is left alone
        pass

    old = signal.signal(signal.SIGTERM, own)
    try:
        with fsutil.sigterm_raises():
            assert signal.getsignal(signal.SIGTERM) is own
    finally:
        signal.signal(signal.SIGTERM, old)


_SLOW_SAVE = textwrap.dedent("""
    import sys, time
    from ghostcli.deploy import onnx_export
    save = onnx_export.save
    def slow_save(*args, **kwargs):
        files = save(*args, **kwargs)
        print("SAVED", file=sys.stderr, flush=True)
        time.sleep(60)
        return files
    onnx_export.save = slow_save
    from ghostcli.cli.app import main
    main(sys.argv[1:])
""")


def test_sigterm_during_export_leaves_nothing(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    from conftest import StreamLines

    proc = subprocess.Popen([sys.executable, "-c", _SLOW_SAVE, *E, "-o", str(work / "new" / "m.onnx")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr = StreamLines(proc.stderr)
    try:  # wait until the model is written into the temporary folder, 240 s at most
        if stderr.wait_for(lambda line: line.strip() == "SAVED", timeout=240) is None:
            pytest.fail(f"no SAVED within 240 s (rc {proc.poll()}): {stderr.text(timeout=0)[-2000:]}")
        hidden = [p.name for p in (work / "new").iterdir()]
        assert len(hidden) == 1 and hidden[0].startswith(".m.onnx."), hidden
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
    finally:
        proc.kill()
    assert rc != 0 and "Traceback" not in stderr.text(timeout=30)
    assert _entries(work) == []


# ------------------------------------------------------------------ stdout is ghostcli's own


def noisy_resnet20() -> nn.Module:
    """A ``module:factory`` whose loader prints, and whose forward prints on every call."""
    from ghostcli.resolve import resolve_model

    print("Loaded pretrained weights")

    class Noisy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = resolve_model("resnet20").model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            print("forward called")
            return self.net(x)

    return Noisy()


@pytest.mark.parametrize("command", [
    ["export", "--format", "onnx"], ["export", "--format", "openvino"], ["quantize", "--calib-data", "digits", *FAST_Q],
], ids=["onnx", "openvino", "quantize"])
def test_json_is_not_corrupted_by_model_prints(tmp_path: Path, command: list[str]) -> None:
    out = tmp_path / ("m.onnx" if "onnx" in command else "m.xml")
    args = [command[0], "test_bad_input_deploy:noisy_resnet20", *command[1:], "--input-size", "3x8x8",
            "-o", str(out), "--json"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)  # nothing but the JSON
    assert "Loaded pretrained weights" in res.stderr and "forward called" in res.stderr


def test_quantize_stderr_has_no_library_noise(tmp_path: Path, ghostcli_exe: str) -> None:
    proc = subprocess.run([ghostcli_exe, *Q, "--calib-data", "digits", "-o", "m.xml", "--json"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["output"] == "m.xml"
    assert proc.stderr == ""  # no NNCF progress bars, no "No CUDA runtime is found" when stderr is not a terminal
