"""How ``ghostcli check`` names its keys (``--max-macs``) and shows its report; the key list of docs/ci.md."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ghostcli.analysis.check_keys import CHECK_KEYS, format_value, render_terms

if TYPE_CHECKING:
    from ghostcli.analysis.check import CheckReport

CLI_TERMS = {  # message terms the command line does not spell --TERM
    "model": "MODEL",
    "check-update-baseline": "'ghostcli check --update-baseline'",
    "write-baseline": "'ghostcli check MODEL --baseline FILE --update-baseline'",
}


def option_name(name: str) -> str:
    """The command line's name for a check key or message term: ``max-macs`` -> ``--max-macs``."""
    return CLI_TERMS.get(name, f"--{name}")


def print_report(report: CheckReport) -> None:
    """The verdict table on stdout, with the recorded values when the baseline was written, and the conditions."""
    from ghostcli import render

    rows = [[r.name, format_value(r.measured, r.unit), "<= " + format_value(r.limit, r.unit),
             "[green]pass[/]" if r.passed else "[red bold]FAIL[/]", r.source, r.detail] for r in report.results]
    if report.baseline_updated:
        m = report.measured
        rows += [[k, format_value(v, u), "-", "recorded", report.baseline or "", ""]
                 for k, v, u in (("macs", m["macs"], "MAC"), ("params", m["params"], "params"),
                                 ("latency_ms", m["latency_median_ms"], "ms"),
                                 ("latency_ratio", m["latency_ratio"], "x")) if v is not None]
    title = f"ghostcli check: {report.model} (input {'x'.join(map(str, report.input_size))})"
    render.stdout.print(render.table(title, ["Limit", "Measured", "Allowed", "Verdict", "From", "Note"], rows,
                                     numeric=(1, 2)))
    if report.baseline_updated:
        render.stdout.print(f"Baseline written to {report.baseline}.", highlight=False, soft_wrap=True)
    render.stdout.print("MACs: fvcore total (conv, linear, norms, pooling); 1 multiply-add = 1 MAC.",
                        highlight=False, soft_wrap=True)
    if report.conditions is not None:
        from ghostcli.cli.profile_view import format_conditions

        render.stdout.print(format_conditions(report.conditions, report.environment), highlight=False,
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
        text = render_terms(k.help, lambda name: f"`{option_name(name)}`")
        rows.append(f"| `{k.key}` | `{option_name(k.key)}` | {text} |")
    return "\n".join(rows)
