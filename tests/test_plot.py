"""--plot: the chart file is valid, written atomically, and shows the numbers of the report the command printed."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ghostcli.cli.app import app
from ghostcli.cli.plot import DATA_KEY

from bad_input import run_bad

FAST = ["--runs", "3", "--warmup", "1", "--input-size", "3x16x16"]


def _embedded(path: Path) -> dict:
    """The plot data a file carries: PNG text chunk, SVG metadata, or the HTML page's JSON script."""
    if path.suffix == ".png":
        from PIL import Image

        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            return json.loads(im.text["Description"])
    if path.suffix == ".svg":
        root = ET.parse(path).getroot()
        assert root.tag.endswith("svg")
        desc = next(el for el in root.iter() if el.tag.endswith("description"))
        return json.loads("".join(desc.itertext()))
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>") and "<svg" in text and "</html>" in text
    start = text.index(f'id="{DATA_KEY}">') + len(f'id="{DATA_KEY}">')
    return json.loads(text[start:text.index("</script>", start)].replace("&amp;", "&").replace("&lt;", "<")
                      .replace("&gt;", ">"))


@pytest.fixture(scope="module")
def ghost(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("g") / "g20.safetensors"
    res = CliRunner().invoke(app, ["ghostify", "resnet20", "-o", str(out)])
    assert res.exit_code == 0, res.stderr
    return out


@pytest.mark.parametrize("suffix", [".png", ".svg", ".html"])
def test_profile_plot_shows_the_printed_layer_times(ghost: Path, tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"chart{suffix}"
    res = CliRunner().invoke(app, ["profile", "resnet20", str(ghost), *FAST, "--plot", str(out), "--json"])
    assert res.exit_code == 0, res.stderr
    report = json.loads(res.stdout)
    data = _embedded(out)
    names = [t["name"] for t in report["models"][0]["layer_times"]]
    assert data["labels"][: len(names)] == names or set(names) <= set(data["labels"])
    time_panel, macs_panel = data["panels"]
    for m in report["models"]:
        by_name = {t["name"]: t["ms"] for t in m["layer_times"]}
        shown = dict(zip(data["labels"], time_panel["series"][m["name"]]))
        assert {k: v for k, v in shown.items() if v is not None} == by_name
    assert report["models"][0]["layers"] == []  # collected for the chart, not printed unless asked
    ref = dict(zip(data["labels"], macs_panel["series"]["resnet20"]))
    assert ref["layer1.0.conv1"] == pytest.approx(16 * 16 * 9 * 16 * 16 / 1e6)  # a 3x3 conv 16->16 at 16x16
    assert any(line.startswith("Conditions: device: cpu") for line in data["caption"])
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary file left beside it


def test_ghostify_plot_rows_are_the_report_rows(tmp_path: Path) -> None:
    out = tmp_path / "g.svg"
    res = CliRunner().invoke(app, ["ghostify", "resnet20", "--min-channels", "32", "--plot", str(out), "--json"])
    assert res.exit_code == 0, res.stderr
    rows = json.loads(res.stdout)["rows"]
    data = _embedded(out)
    assert data["labels"] == [r["name"] for r in rows]
    params = data["panels"][0]["series"]
    assert params["before"] == [r["params_before"] / 1e3 for r in rows]
    assert params["after"] == [r["params_after"] / 1e3 for r in rows]
    assert data["notes"]["layer1.0.conv1"] == "kept: 16 output channels < --min-channels 32"
    text = out.read_text()
    assert "layer3.2.conv2" in text  # labels stay text (searchable), not paths


def test_ghostify_plot_with_target_shows_the_measured_times(tmp_path: Path) -> None:
    out = tmp_path / "g.svg"
    res = CliRunner().invoke(app, ["ghostify", "resnet20", "--target", "cpu", "--threads", "1", "--mode", "conv",
                                   "--plot", str(out), "--json"])
    assert res.exit_code == 0, res.stderr
    payload = json.loads(res.stdout)
    data = _embedded(out)
    panel = next(p for p in data["panels"] if p["title"] == "time per conv on cpu")
    measured = {d["name"]: d for d in payload["target"]["decisions"]}
    shown = dict(zip(data["labels"], zip(panel["series"]["before"], panel["series"]["after"])))
    assert {n: (d["time_before_ms"], d["time_after_ms"]) for n, d in measured.items()} == \
        {n: v for n, v in shown.items() if n in measured}
    assert shown["conv1"] == (None, None)  # the stem is no candidate: nothing measured for it
    assert any("of the paper ghostify" in line for line in data["caption"])


def test_plot_refuses_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "old.png").write_bytes(b"keep me")
    run_bad(["ghostify", "resnet20", "--plot", str(tmp_path / "old.png")], tmp_path, code=1, match="already exists")
    run_bad(["profile", "resnet20", "--plot", str(tmp_path / "c.pdf")], tmp_path, code=2,
            match="--plot writes .png, .svg, .html")
    run_bad(["profile", "resnet20", "--no-latency", "--plot", str(tmp_path / "c.png")], tmp_path, code=2,
            match="cannot be combined with --no-latency")


def test_a_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = Path.write_bytes

    def disk_full(self: Path, data: bytes) -> int:
        if self.name.startswith(".g.png."):  # the temporary file beside the output: half written, then ENOSPC
            real(self, data[:100])
            raise OSError(28, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", disk_full)
    line = run_bad(["ghostify", "resnet20", "--plot", str(tmp_path / "new" / "g.png")], tmp_path, code=1,
                   match="no space left on device")
    assert "g.png" in line and list(tmp_path.iterdir()) == []  # neither the file nor the folder made for it
