"""Issue #12 for `check` and `evaluate`: every user mistake ends in one `Error:` line, never a traceback.

Each case asserts (through ``run_bad``): the exit code (1 error, 2 usage), one ``Error:`` line that names
the problem, no traceback, and no file created, removed or changed in the test's folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest
import torch

from ghostcli.cli.app import app

from bad_input import run_bad
from train_fixtures import make_image_folder

BASELINE = {"schema_version": "1.0", "kind": "ghostcli.baseline", "name": "resnet20", "macs": 40_931_968,
            "params": 269_722}


def _baseline(folder: Path, name: str = "base.json", text: str | None = None, **fields: object) -> Path:
    """Write a baseline file (``text`` verbatim, else BASELINE updated with ``fields``) and return its path."""
    path = folder / name
    path.write_text(text if text is not None else json.dumps({**BASELINE, **fields}))
    return path


# ---------------------------------------------------------------- check: options (usage errors, exit 2)

CHECK_USAGE = [
    (["--max-macs", "0"], "--max-macs: expected a positive number"),
    (["--max-macs", "-1"], "--max-macs: expected a positive number"),
    (["--max-macs", "1e999"], "not a finite number"),
    (["--max-macs", "nan"], "--max-macs: cannot read 'nan'"),
    (["--max-params", "0k"], "--max-params: expected a positive number"),
    (["--max-latency-ms", "inf"], "--max-latency-ms: expected a positive number"),
    (["--max-latency-ms", "abc"], "--max-latency-ms: cannot read 'abc'"),
    (["--max-macs", "1G", "--tolerance", "abc", "--baseline", "b.json"], "--tolerance: cannot read 'abc'"),
    (["--max-macs", "1G", "--tolerance", "-5%", "--baseline", "b.json"], "tolerance must be a non-negative"),
    (["--max-macs", "1G", "--tolerance", "2%"], "--tolerance is the growth allowed over a baseline"),
    (["--max-latency-ms", "100", "--runs", "0"], "--runs: expected an integer >= 1, got 0"),
    (["--max-latency-ms", "100", "--threads", "-1"], "--threads: expected an integer >= 1, got -1"),
    (["--max-latency-ms", "100", "--batch-size", "0"], "--batch-size: expected an integer >= 1, got 0"),
    (["--max-macs", "1G", "--input-size", "3x0x8"], "has a zero dimension"),
    (["--max-macs", "1G", "--device", "tpu"], "unknown device 'tpu'"),
    (["--max-latency-ms", "100", "--device", "openvino", "--channels-last"], "--channels-last applies to cpu and cuda"),
    (["--config", "nowhere.toml"], "config file nowhere.toml does not exist"),
]


@pytest.mark.parametrize(("args", "match"), CHECK_USAGE, ids=[" ".join(a) for a, _ in CHECK_USAGE])
def test_check_bad_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], match: str) -> None:
    monkeypatch.chdir(tmp_path)
    no_config = [] if "--config" in args else ["--no-config"]
    run_bad(["check", "resnet20", *args, *no_config], tmp_path, code=2, match=match)


def test_check_model_typo_suggests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    run_bad(["check", "resnt20", "--max-macs", "1G", "--no-config"], tmp_path, code=1,
            match=["unknown model 'resnt20'", "did you mean resnet20"])


# ---------------------------------------------------------------- check: baselines (exit 1)

BAD_BASELINES = [
    ("inf-macs", '{"schema_version": "1.0", "kind": "ghostcli.baseline", "name": "r", "macs": 1e999, "params": 1}',
     "'macs' must be a finite non-negative number"),
    ("nan-params", '{"schema_version": "1.0", "kind": "ghostcli.baseline", "name": "r", "macs": 1, "params": NaN}',
     "'params' must be a finite non-negative number"),
    ("bool-macs", '{"schema_version": "1.0", "kind": "ghostcli.baseline", "name": "r", "macs": true, "params": 1}',
     "'macs' must be a finite non-negative number"),
    ("string-macs", '{"schema_version": "1.0", "kind": "ghostcli.baseline", "name": "r", "macs": "1G", "params": 1}',
     "'macs' must be a finite non-negative number"),
    ("negative-latency", json.dumps({**BASELINE, "latency_median_ms": -3}), "'latency_median_ms' must be"),
    ("not-an-object", "[1, 2, 3]", "is not a ghostcli baseline"),
    ("missing-keys", '{"schema_version": "1.0", "kind": "ghostcli.baseline", "name": "r"}', "lacks macs, params"),
    ("profile-without-models", '{"schema_version": "1.0", "kind": "ghostcli.profile", "models": 3}',
     "lacks a list of models"),
    ("binary", None, "is not JSON"),
    ("zero-input-size", json.dumps({**BASELINE, "input_size": [3, 0, 32]}),
     "'input_size' must be three positive integers"),
    ("other-input-size", json.dumps({**BASELINE, "input_size": [3, 64, 64]}),
     ["recorded at input size 3x64x64, this check measures 3x32x32", "--input-size 3x64x64"]),
]


@pytest.mark.parametrize(("text", "match"), [(t, m) for _, t, m in BAD_BASELINES], ids=[i for i, _, _ in BAD_BASELINES])
def test_check_bad_baseline_files(tmp_path: Path, text: str | None, match: str | list[str]) -> None:
    base = tmp_path / "base.json"
    if text is None:
        base.write_bytes(b"\xff\xfe\x00garbage")
    else:
        base.write_text(text)
    run_bad(["check", "resnet20", "--baseline", str(base), "--no-config"], tmp_path, code=1, match=match)


def test_check_baseline_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "base").mkdir()
    run_bad(["check", "resnet20", "--baseline", str(tmp_path / "base"), "--no-config"], tmp_path, code=1,
            match="is a directory")


# ---------------------------------------------------------------- check: --update-baseline targets

def test_update_baseline_into_a_directory(tmp_path: Path) -> None:
    (tmp_path / "base").mkdir()
    run_bad(["check", "resnet20", "--baseline", str(tmp_path / "base"), "--update-baseline", "--no-config"],
            tmp_path, code=2, match=["is a directory", "expected a file path"])


def test_update_baseline_below_a_file(tmp_path: Path) -> None:
    (tmp_path / "ci").write_text("a file, not a folder")
    run_bad(["check", "resnet20", "--baseline", str(tmp_path / "ci" / "b.json"), "--update-baseline", "--no-config"],
            tmp_path, code=2, match=["cannot write", "is a file, not a folder"])


def test_update_baseline_into_a_read_only_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Refused before anything is measured, with the reason; the existing baseline is left as it was."""
    ro = tmp_path / "ci"
    ro.mkdir()
    _baseline(ro)
    if os.geteuid() == 0:  # root may write anywhere: make the folder read as not writable for this user
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == ro else real_access(p, mode, **kw))
    measured = []
    monkeypatch.setattr("ghostcli.analysis.profile.profile_models", lambda *a, **k: measured.append(1))
    ro.chmod(0o555)
    try:
        run_bad(["check", "resnet20", "--baseline", str(ro / "base.json"), "--update-baseline", "--no-config"],
                tmp_path, code=1, match=[f"cannot write {ro / 'base.json'}", "permission denied"])
    finally:
        ro.chmod(0o755)
    assert not measured


# ---------------------------------------------------------------- check: config files (exit 2)

def test_check_config_that_is_a_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "conf").mkdir()
    run_bad(["check", "resnet20", "--config", "conf"], tmp_path, code=2, match="config file conf is a directory")


@pytest.mark.parametrize("text", ['tool = "x"\n', '[tool]\nghostcli = 3\n'])
def test_check_pyproject_whose_tool_is_not_a_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text(text)
    run_bad(["check", "resnet20", "--config", "pyproject.toml"], tmp_path, code=2, match="has no [tool.ghostcli] table")


def test_check_broken_pyproject_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found on the way up to the repository root: a TOML syntax error is reported, not silently ignored."""
    (tmp_path / ".git").mkdir()
    (tmp_path / "pyproject.toml").write_text('[tool.ghostcli]\nmax-macs = "1G\n')
    monkeypatch.chdir(tmp_path)
    run_bad(["check", "resnet20"], tmp_path, code=2, match=["pyproject.toml is not valid TOML", "--no-config"])


def test_check_nan_in_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / "ghostcli.toml").write_text("model = 'resnet20'\nmax-macs = nan\n")
    monkeypatch.chdir(tmp_path)
    run_bad(["check"], tmp_path, code=2, match="ghostcli.toml max-macs: expected a positive number, got nan")


# ---------------------------------------------------------------- evaluate

@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small image folders (read-only by convention: cases only read them)."""
    root = tmp_path_factory.mktemp("eval_bad")
    corrupt = make_image_folder(root / "corrupt", per_class=3, size=8, classes=("a", "b"))
    (corrupt / "b" / "broken.png").write_bytes(b"not a png")
    flat = root / "flat"
    make_image_folder(root / "tmp_flat", per_class=2, size=8, classes=("x",))
    (root / "tmp_flat" / "x").rename(flat)
    (root / "empty").mkdir()
    (root / "file.txt").write_text("not a folder")
    many = make_image_folder(root / "many", per_class=1, size=8, classes=tuple(f"c{i:02d}" for i in range(12)))
    return {"corrupt": corrupt, "one": make_image_folder(root / "one", per_class=2, size=8, classes=("a",)),
            "flat": flat, "empty": root / "empty", "file": root / "file.txt", "many": many,
            "two": make_image_folder(root / "two", per_class=2, size=8, classes=("a", "b"))}


EVAL_USAGE = [
    (["--precision", "int4"], "--precision 'int4' is not one of f32, bf16, f16"),
    (["--precision", "bf16"], "applies to OpenVINO .xml models only"),
    (["--split", "test"], "--split must be one of train, val, got 'test'"),
    (["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    (["--workers", "-1"], "--workers must be 0"),
    (["--input-size", "abc"], "cannot read input size 'abc'"),
    (["--device", "tpu"], "unknown device 'tpu'"),
]


@pytest.mark.parametrize(("args", "match"), EVAL_USAGE, ids=[" ".join(a) for a, _ in EVAL_USAGE])
def test_evaluate_bad_options(tmp_path: Path, args: list[str], match: str) -> None:
    run_bad(["evaluate", "resnet20", "--data", "digits", *args], tmp_path, code=2, match=match)


def test_evaluate_split_of_a_plain_folder(tmp_path: Path, folders: dict[str, Path]) -> None:
    run_bad(["evaluate", "resnet20", "--data", str(folders["two"]), "--split", "val", "--input-size", "3x8x8"],
            tmp_path, code=2, match="has no train/ and val/ folders")


def test_evaluate_channel_mismatch_names_the_layer(tmp_path: Path) -> None:
    run_bad(["evaluate", "resnet20", "--data", "digits", "--input-size", "1x8x8"], tmp_path, code=1,
            match=["fails on input 1x1x8x8", "layer 'conv1'", "to have 3 channels, but got 1"])


@pytest.mark.parametrize("workers", ["0", "2"])
def test_evaluate_corrupt_image_is_one_clean_line(tmp_path: Path, folders: dict[str, Path], workers: str) -> None:
    line = run_bad(["evaluate", "resnet20", "--data", str(folders["corrupt"]), "--input-size", "3x8x8",
                    "--workers", workers, "--batch-size", "4"], tmp_path, code=1,
                   match=["cannot decode image", "broken.png"])
    assert "worker" not in line and "Caught" not in line


@pytest.mark.parametrize(("key", "match"), [
    ("one", "has only 1 class folder (a); classification needs at least 2 classes"),
    ("flat", "has no class subfolders"),
    ("empty", "no usable images"),
    ("file", "is a file, not a folder of images"),
    ("many", "has 10 outputs but the data has 12 classes"),
])
def test_evaluate_unusable_data(tmp_path: Path, folders: dict[str, Path], key: str, match: str) -> None:
    run_bad(["evaluate", "resnet20", "--data", str(folders[key]), "--input-size", "3x8x8"], tmp_path, code=1,
            match=match)


def test_evaluate_missing_data_folder(tmp_path: Path) -> None:
    run_bad(["evaluate", "resnet20", "--data", str(tmp_path / "nowhere")], tmp_path, code=1,
            match="data folder " + str(tmp_path / "nowhere") + " does not exist")


def test_evaluate_model_typo_suggests(tmp_path: Path) -> None:
    run_bad(["evaluate", "resnt20", "--data", "digits"], tmp_path, code=1, match="did you mean resnet20")


def test_evaluate_weights_with_wrong_shapes(tmp_path: Path) -> None:
    from ghostcli.models import build_model

    sd = build_model("resnet20").state_dict()
    sd["fc.weight"], sd["fc.bias"] = torch.zeros(3, 64), torch.zeros(3)
    torch.save(sd, tmp_path / "w.pt")
    run_bad(["evaluate", "resnet20", "--data", "digits", "--input-size", "3x8x8", "--weights", str(tmp_path / "w.pt")],
            tmp_path, code=1, match=["w.pt does not match the model", "fc.weight"])


def test_evaluate_exported_model_refuses_pytorch_options(tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(b"whatever")
    run_bad(["evaluate", str(tmp_path / "m.onnx"), "--data", "digits", "--amp"], tmp_path, code=2,
            match="--amp applies to PyTorch models, not to an exported .onnx file")


def test_evaluate_missing_exported_model(tmp_path: Path) -> None:
    run_bad(["evaluate", str(tmp_path / "m.xml"), "--data", "digits"], tmp_path, code=1, match="no such model file")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_evaluate_cuda_without_cuda(tmp_path: Path) -> None:
    run_bad(["evaluate", "resnet20", "--data", "digits", "--device", "cuda"], tmp_path, code=1,
            match="CUDA is not available")


# ---------------------------------------------------------------- user code: stdout stays ghostcli's

def _user_module(folder: Path, name: str, body: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.py").write_text(textwrap.dedent(body))


def test_evaluate_model_that_fails_mid_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A forward that passes the one-image probe but fails on a full batch: one line naming the model."""
    code = tmp_path.parent / f"{tmp_path.name}_code"
    _user_module(code, "ghostcli_test_batchfail", """
        import torch
        from ghostcli.models import build_model

        class BatchFail(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.inner = build_model("resnet20")

            def forward(self, x):
                if x.shape[0] > 1:
                    raise ValueError("batches above 1 are not supported")
                return self.inner(x)

        def make():
            return BatchFail()
    """)
    monkeypatch.syspath_prepend(str(code))
    monkeypatch.setattr("sys.dont_write_bytecode", True)
    run_bad(["evaluate", "ghostcli_test_batchfail:make", "--data", "digits", "--input-size", "3x8x8"], tmp_path,
            code=1, match=["evaluating ghostcli_test_batchfail:make failed", "ValueError: batches above 1"])


NOISY = """
        import torch
        from ghostcli.models import build_model

        class Noisy(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.inner = build_model("resnet20")

            def forward(self, x):
                print("hello from forward")
                return self.inner(x)

        def make():
            return Noisy()
"""


@pytest.mark.parametrize("command", [
    ["evaluate", "ghostcli_test_noisy:make", "--data", "digits", "--input-size", "3x8x8", "--batch-size", "180"],
    ["check", "ghostcli_test_noisy:make", "--max-macs", "1G", "--input-size", "3x8x8", "--no-config"],
], ids=["evaluate", "check"])
def test_json_stays_parseable_when_the_model_prints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runner,
                                                    command: list[str]) -> None:
    _user_module(tmp_path, "ghostcli_test_noisy", NOISY)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, [*command, "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["model"] == "ghostcli_test_noisy:make"
    assert "hello from forward" in res.stderr


def test_evaluate_folder_is_not_labelled_a_split(tmp_path: Path, folders: dict[str, Path], runner) -> None:
    res = runner.invoke(app, ["evaluate", "resnet20", "--data", str(folders["two"]), "--input-size", "3x8x8"])
    assert res.exit_code == 0, res.output
    assert "split" not in res.stdout and "4 images, 2 classes" in res.stdout
    (tmp_path / "train").symlink_to(folders["two"])
    (tmp_path / "val").symlink_to(folders["two"])
    res = runner.invoke(app, ["evaluate", "resnet20", "--data", str(tmp_path), "--split", "train",
                              "--input-size", "3x8x8", "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert (d["split"], d["images"], d["num_classes"]) == ("train", 4, 2)


def test_evaluate_unreadable_ir_prints_one_line(tmp_path: Path, ghostcli_exe: str) -> None:
    """Native libraries (OpenVINO's frontends: absl/TensorFlow logs) print nothing beside our error."""
    (tmp_path / "bad.xml").write_text("<net>")
    r = subprocess.run([ghostcli_exe, "evaluate", str(tmp_path / "bad.xml"), "--data", "digits"], check=False,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "is not a readable OpenVINO IR" in r.stderr


@pytest.mark.skipif(len(os.sched_getaffinity(0)) > 3, reason="needs more workers than CPUs, cheaply")
def test_evaluate_too_many_workers_is_our_note_not_torch_advice(runner) -> None:
    workers = len(os.sched_getaffinity(0)) + 1
    res = runner.invoke(app, ["evaluate", "resnet20", "--data", "digits", "--input-size", "3x8x8", "--batch-size",
                              "360", "--workers", str(workers)])
    assert res.exit_code == 0, res.output
    assert "UserWarning" not in res.stderr and res.stderr.strip() == ""
    assert f"--workers {workers} is more than" in res.stdout


def test_train_on_one_class_says_two_are_needed(tmp_path: Path, folders: dict[str, Path]) -> None:
    run_bad(["train", "resnet20", "--data", str(folders["one"]), "-o", str(tmp_path / "m.safetensors"),
             "--input-size", "3x8x8", "--epochs", "1"], tmp_path, code=1,
            match=["has only 1 class folder", "at least 2 classes"])
