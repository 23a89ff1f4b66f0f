"""``--plot FILE`` for ``profile`` and ``ghostify``: the report's per-layer numbers as a chart.

The chart is drawn from :class:`PlotData`, which is built from the same report (and the same row
order) the tables print; the data also travels inside the file (PNG text chunk, SVG metadata, a JSON
script element in HTML) so that what a chart shows can be checked. ``.png`` and ``.svg`` are drawn
with matplotlib (the ``plot`` extra, imported only here); ``.html`` is one self-contained page with
the SVG inline.
"""

from __future__ import annotations

import html
import importlib.util
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ghostcli.errors import UsageError
from ghostcli.fsutil import atomic_path, check_output, display_path

if TYPE_CHECKING:
    from ghostcli.analysis.report import ProfileReport
    from ghostcli.convert.report import GhostifyReport

FORMATS = (".png", ".svg", ".html")
DATA_KEY = "ghostcli-plot-data"


@dataclass
class Panel:
    """One chart: a value per label for each series (``None``: the series has no such row)."""

    title: str
    unit: str
    series: dict[str, list[float | None]]


@dataclass
class PlotData:
    """What a chart shows: row labels (top to bottom), panels side by side, and a caption."""

    title: str
    labels: list[str]
    panels: list[Panel]
    caption: list[str] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)  # label -> remark drawn beside its row


def check_plot_output(path: Path, force: bool) -> Path:
    """Refuse a ``--plot`` path before any work: unknown format, an existing file without ``force``, no matplotlib."""
    if path.suffix.lower() not in FORMATS:
        raise UsageError(f"--plot writes {', '.join(FORMATS)}: got {display_path(path)}")
    if importlib.util.find_spec("matplotlib") is None:
        raise UsageError("--plot needs matplotlib: pip install 'ghostcli[plot]'")
    return check_output(path, force)


def profile_plot_data(report: ProfileReport) -> PlotData:
    """Per-layer time (``--layer-times``) and MACs of every profiled model, in the time table's row order."""
    from ghostcli.cli.profile_view import format_conditions, layer_time_rows
    from ghostcli.units import format_count, format_macs, format_ms

    models, names, times = layer_time_rows(report)
    if not models:
        raise UsageError("--plot draws the per-layer times: the report has none (was timing skipped?)")
    macs: dict[str, list[float | None]] = {}
    for p, tt in zip(models, times):
        leaves = p.layers or p.modules
        macs[p.name] = [_macs_inside(name, leaves) if name in tt else None for name in names]
    caption = [f"{p.name}: median {format_ms(p.latency[0].median_ms) if p.latency else '-'}, "
               f"{format_macs(p.macs)}, {format_count(p.params)} params" for p in models]
    caption.append(format_conditions(report.conditions, report.environment))
    return PlotData(
        title="Time and MACs per layer",
        labels=names,
        panels=[Panel("time per layer", "ms", {p.name: [tt[n].ms if n in tt else None for n in names]
                                              for p, tt in zip(models, times)}),
                Panel("MACs per layer", "MMac", {k: [None if v is None else v / 1e6 for v in vs]
                                                 for k, vs in macs.items()})],
        caption=caption,
    )


def _macs_inside(name: str, leaves: list) -> float:
    """MACs of the module ``name``: the leaves at or below it (a Ghost module's primary and cheap convs)."""
    return float(sum(m.macs for m in leaves if m.name == name or m.name.startswith(name + ".")))


def ghostify_plot_data(name: str, report: GhostifyReport, target: Any = None) -> PlotData:
    """Per conv: params and MACs before and after, why a kept conv was kept and, with a ``--target``
    report (:class:`ghostcli.target.TargetReport`), the time measured on the target before and after."""
    from ghostcli.option_names import spell_options
    from ghostcli.units import format_count, format_macs

    rows = report.rows
    labels = [r.name for r in rows]
    panels = [Panel("params per conv", "k", {"before": [r.params_before / 1e3 for r in rows],
                                              "after": [r.params_after / 1e3 for r in rows]})]
    if report.macs_before is not None:
        panels.append(Panel("MACs per conv", "MMac", {
            "before": [None if r.macs_before is None else r.macs_before / 1e6 for r in rows],
            "after": [None if r.macs_after is None else r.macs_after / 1e6 for r in rows]}))
    if target is not None:
        measured = {d["name"]: d for d in target.decisions}
        panels.append(Panel(f"time per conv on {target.target}", "ms", {
            "before": [measured[r.name]["time_before_ms"] if r.name in measured else None for r in rows],
            "after": [measured[r.name]["time_after_ms"] if r.name in measured else None for r in rows]}))
    caption = [f"{name}: {report.replaced} convs replaced, {report.kept} kept; params "
               f"{format_count(report.params_before)} -> {format_count(report.params_after)}"
               + (f", MACs {format_macs(report.macs_before)} -> {format_macs(report.macs_after)}"
                  if report.macs_before is not None and report.macs_after is not None else ""),
               "options: " + ", ".join(f"{k} {v}" for k, v in report.options.items())]
    if target is not None:
        caption.append(f"measured {target.ratio_vs_original:.3f}x of the original, {target.ratio_vs_paper:.3f}x of "
                       f"the paper ghostify; {target.conditions}")
    notes = {r.name: "kept: " + spell_options(r.reason) for r in rows if r.action != "ghost"}
    return PlotData(title=f"ghostify {name}: what happened to each conv", labels=labels, panels=panels,
                    caption=caption, notes=notes)


def write_plot(data: PlotData, path: Path) -> Path:
    """Draw ``data`` into ``path`` (.png, .svg or .html), atomically."""
    suffix = path.suffix.lower()
    payload = json.dumps(asdict(data))
    if suffix == ".html":
        svg = _draw(data, "svg", payload).decode()
        body = svg[svg.index("<svg"):]  # drop the XML declaration and doctype inside the page
        page = ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
                f"<title>{html.escape(data.title)}</title></head><body>\n{body}\n"
                + "".join(f"<p>{html.escape(line)}</p>\n" for line in data.caption)
                + f"<script type=\"application/json\" id=\"{DATA_KEY}\">{html.escape(payload, quote=False)}"
                "</script>\n</body></html>\n")
        content = page.encode()
    else:
        content = _draw(data, suffix[1:], payload)
    with atomic_path(path) as tmp:
        tmp.write_bytes(content)
    return path


def _draw(data: PlotData, fmt: str, payload: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(len(data.labels), 1)
    fig, axes = plt.subplots(1, len(data.panels), figsize=(6.5 * len(data.panels), 1.5 + 0.22 * n),
                             sharey=True, squeeze=False)
    ys = list(range(n))
    for ax, panel in zip(axes[0], data.panels):
        k = max(len(panel.series), 1)
        height = 0.8 / k
        for i, (label, values) in enumerate(panel.series.items()):
            offs = [y - 0.4 + height * (i + 0.5) for y in ys]
            ax.barh(offs, [v or 0.0 for v in values], height=height, label=label)
        ax.set_title(panel.title)
        ax.set_xlabel(panel.unit)
        ax.grid(axis="x", alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    first = axes[0][0]
    first.set_yticks(ys)
    first.set_yticklabels([f"{lab}  ({data.notes[lab]})" if lab in data.notes else lab for lab in data.labels],
                          fontsize="x-small")
    first.invert_yaxis()
    fig.suptitle(data.title)
    fig.text(0.01, 0.005, "\n".join(data.caption), fontsize="x-small", va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.03 + 0.015 * len(data.caption), 1, 0.97))
    buf = io.BytesIO()
    meta = {"Description": payload} if fmt in ("png", "svg") else {}
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        fig.savefig(buf, format=fmt, dpi=110, metadata=meta, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()
