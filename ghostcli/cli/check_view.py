"""How ``ghostcli check`` shows its report and the help of its keys; the key list of docs/ci.md."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ghostcli.analysis.check_keys import CHECK_KEYS, format_value
from ghostcli.option_names import spell_options
from ghostcli.units import format_input_size

if TYPE_CHECKING:
    from ghostcli.analysis.check import CheckReport

_SETTING = re.compile(r"`([a-z][a-z0-9_]*)`")


def spell_help(text: str, quote: str = "") -> str:
    """``text`` (a check key's help) with each backquoted setting as its option: ``--latency-reference``.

    ``quote`` goes around each option (docs/ci.md). Help is made when the command is defined, before
    :mod:`ghostcli.option_names` knows the command; a test holds the two spellings to the same result.
    """
    return _SETTING.sub(lambda m: f"{quote}--{m[1].replace('_', '-')}{quote}", text)


def print_report(report: CheckReport) -> None:
    """The verdict table on stdout, with the recorded values when the baseline was written, and the conditions."""
    from ghostcli import render

    rows = [[r.name, format_value(r.measured, r.unit), "<= " + format_value(r.limit, r.unit),
             "[green]pass[/]" if r.passed else "[red bold]FAIL[/]", spell_options(r.source), r.detail]
            for r in report.results]
    if report.baseline_updated:
        m = report.measured
        rows += [[k, format_value(v, u), "-", "recorded", report.baseline or "", ""]
                 for k, v, u in (("macs", m["macs"], "MAC"), ("params", m["params"], "params"),
                                 ("latency_ms", m["latency_median_ms"], "ms"),
                                 ("latency_ratio", m["latency_ratio"], "x")) if v is not None]
    title = f"ghostcli check: {report.model} (input {format_input_size(report.input_size)})"
    render.stdout.print(render.table(title, ["Limit", "Measured", "Allowed", "Verdict", "From", "Note"], rows,
                                     numeric=(1, 2)))
    if report.baseline_updated:
        render.stdout.print(f"Baseline written to {report.baseline}.", highlight=False, soft_wrap=True)
    if report.format == "pytorch":
        render.stdout.print("MACs: fvcore total (conv, linear, norms, pooling); 1 multiply-add = 1 MAC.",
                            highlight=False, soft_wrap=True)
    else:
        render.stdout.print("MACs, parameters and weights: counted on the exported graph (conv, matmul and pooling "
                            "MACs, BatchNorm folded into the convs; weight constants as stored); 1 multiply-add = "
                            "1 MAC.", highlight=False, soft_wrap=True)
    if report.conditions is not None:
        from ghostcli.cli.profile_view import format_conditions

        render.stdout.print(format_conditions(report.conditions, report.environment), highlight=False,
                            soft_wrap=True)
    if report.runtime is not None:
        from ghostcli.cli.profile_view import runtime_text

        render.stdout.print(f"Runtime: {report.model}: {runtime_text(report.runtime)}.", highlight=False,
                            soft_wrap=True)


def regression_message(report: CheckReport) -> str:
    """``1 of 2 limits exceeded: macs 40.93 MMac > 40.90 MMac``."""
    fails = report.failures
    what = "; ".join(f"{r.name} {format_value(r.measured, r.unit)} > {format_value(r.limit, r.unit)}" for r in fails)
    return f"{len(fails)} of {len(report.results)} limits exceeded: {what}"


def keys_markdown() -> str:
    """The table of check keys in docs/ci.md (between its ``check-keys`` markers), generated from CHECK_KEYS."""
    rows = ["| key | option | meaning |", "|---|---|---|"]
    for k in CHECK_KEYS.values():
        option = "MODEL" if k.key == "model" else f"--{k.key}"
        rows.append(f"| `{k.key}` | `{option}` | {spell_help(k.help, quote='`')} |")
    return "\n".join(rows)
