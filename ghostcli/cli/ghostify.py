"""`ghostcli ghostify`: replace a model's dense convs with Ghost modules, report and optionally save it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ghostcli.cli.common import ForceOpt, InputSizeOpt, JsonOpt, ModelArg, OutputOpt, TrustFactoryOpt, WeightsOpt
from ghostcli.units import format_input_size

HELP = """Rebuild MODEL with Ghost modules in place of its dense convolutions (GhostNet, Han et al. 2020).

Every dense Conv2d except the stem becomes primary conv -> BN -> cheap depthwise conv -> BN, keeping the
layer's geometry and output shape. A ReLU that followed the conv's BN moves inside both branches, so
runtimes fuse it into the convs. With --weights the Ghost modules inherit the trained weights (the primary
convs' filters and the BatchNorm parameters); the cheap depthwise convs are new.

Prints one row per conv (replaced, or kept and why) and the totals. MACs are conv + linear
multiply-accumulates counted by fvcore (BatchNorm excluded, the paper's "FLOPs"); JSON flops = 2 x MACs.
With -o the result is saved as a .safetensors artifact whose recipe rebuilds it, so that every other
command can load it.

--mode stage rebuilds whole stages of residual blocks instead (G-Ghost, Han et al. IJCV 2022): the first
and last blocks keep their weights, the middle blocks compute 1 - --cheap-ratio of the channels, and the
rest come from a cheap 1x1 conv plus a pooled mix of the stage's features: dense and grouped convs only,
no depthwise ones (the form for GPUs). Its merge and cheap layers are new: fine-tune before use.

With --target the conversion fits the machine it runs on: ghostify times every layer of the original
and of its Ghost versions (s = 2, 3, 4) on that runtime and precision, keeps each conv whose Ghost module
is not faster there (the report says why, with both times), never compresses more than --ratio asks,
and checks the result against the original and the paper ghostify in one interleaved timing run: it is
never slower than either beyond the noise of that run. --latency-budget / --macs-budget instead convert
greedily, the most time saved per MAC removed first, until the budget holds. The choice is saved in the
artifact's recipe, so the model rebuilds identically on any machine.

With --calib-data a trained model keeps its accuracy without retraining: after the structural change
ghostify fits the new layers to the original on unlabelled images (labels are never read). Each Ghost
module's cheap filters come from a least-squares fit on the original's activations, the primary conv
computing the original channels that predict the others best where the layer's readers can be permuted
(their weights are, so every tensor keeps its channel order and meaning and the artifact rebuilds as
before); then each Ghost module and G-Ghost stage is trained briefly to reproduce the original's output,
its inputs taken from the ghostified model so that errors do not pile up, and the whole model is trained
on the calibration images to match the original's outputs. --distill-epochs K adds K epochs of
distillation from the original over all training images of DATA. A table shows each layer's
relative error before and after every stage, the top-1 agreement with the original on held-out images,
the time and the peak memory.

With --calib-data and a budget (and no --target) ghostify chooses which convs to convert by measured
redundancy: on the calibration images it fits each candidate conv's Ghost form in closed form and ranks
the convs by the fit's relative error (0: the cheap channels are exactly depthwise transforms of the
primary ones), then converts the most redundant first. --macs-budget 2.5G (or 0.75x of the original's
MACs) converts until the predicted MACs hold, and calibrates once. --max-agreement-drop 2% finds by
bisection the most convs whose calibrated model keeps the top-1 agreement with the original on the
held-out images at 98% or more: about log2(N + 1) calibrations for N candidate convs, every one measured.
The chosen convs go into the artifact's recipe by name, so it rebuilds exactly; a table shows the ranking
and the agreement-vs-MACs points tried.

Examples:

  ghostcli ghostify resnet50 -o out/ghost_resnet50.safetensors

  ghostcli ghostify resnet50 --target openvino-f32 --threads 1 -o out/ghost_resnet50_ov.safetensors

  ghostcli ghostify resnet50 --target cpu-channels-last --macs-budget 3G

  ghostcli ghostify resnet50 --mode stage --cheap-ratio 0.5 -o out/g_ghost_resnet50.safetensors

  ghostcli ghostify resnet50 --ratio 4 --exclude 'layer4.*' --json

  ghostcli ghostify resnet20 --module v2

  ghostcli ghostify resnet18 --weights resnet18.pth -o ghost_resnet18.safetensors

  ghostcli ghostify resnet56 --input-size 3x32x32 --min-channels 32

  ghostcli ghostify resnet20 --input-size 3x8x8 --calib-data digits --calib-images 32 -o ghost_resnet20_calibrated.safetensors

  ghostcli ghostify resnet20 --input-size 3x8x8 --calib-data digits --calib-images 32 --macs-budget 0.75x

  ghostcli ghostify resnet20 --input-size 3x8x8 --calib-data digits --calib-images 32 --include layer3.2 --max-agreement-drop 10%
"""


def _shape(row: Any) -> str:
    k = format_input_size(row.kernel) or "?"
    stride = "" if all(s == 1 for s in row.stride) else " /" + format_input_size(list(dict.fromkeys(row.stride)))
    groups = f" g{row.groups}" if row.groups != 1 else ""
    return f"{k} {row.in_channels}->{row.out_channels}{stride}{groups}"


def _arrow(a: float | None, b: float | None, fmt: Any) -> str:
    if a is None or b is None:
        return "?"
    return fmt(a) if a == b else f"{fmt(a)} -> {fmt(b)}"


def ghostify_command(
    model: ModelArg,
    ratio: Annotated[int, typer.Option("--ratio", "-s", metavar="S", help="Ghost ratio s: 1/s of the channels come "
                                                                          "from the primary conv.")] = 2,
    dw_kernel: Annotated[int | None, typer.Option(
        "--dw-kernel", "-d", metavar="D", help="Kernel size d of the cheap depthwise conv (odd; default 3). With "
        "--target and no -d, d=3 and d=1 (the paper's ablation) are both measured and the faster is kept.")] = None,
    include: Annotated[list[str] | None, typer.Option("--include", metavar="GLOB", help="Only convert layers matching this glob "
                                                      "(repeatable; 'layer3' also matches 'layer3.*').")] = None,
    exclude: Annotated[list[str] | None, typer.Option("--exclude", metavar="GLOB", help="Never convert layers matching this glob "
                                                      "(repeatable).")] = None,
    min_channels: Annotated[int, typer.Option("--min-channels", metavar="N", help="Keep convs with fewer output "
                                                                                  "channels.")] = 0,
    min_fan_in: Annotated[int, typer.Option("--min-fan-in", metavar="N", help="Keep convs whose fan-in k*k*in_channels is "
                                                                 "smaller (e.g. 128 for INT8 ResNet-50: the Ghost "
                                                                 "module does not pay back there).")] = 0,
    keep_stem: Annotated[bool, typer.Option("--keep-stem/--no-keep-stem", help="Keep the conv(s) that read the "
                                                                               "input image.")] = True,
    input_size: InputSizeOpt = None,
    weights: WeightsOpt = None,
    output: OutputOpt = None,
    json_out: JsonOpt = False,
    force: ForceOpt = False,
    allow_empty: Annotated[bool, typer.Option("--allow-empty", help="Succeed even when no layer is "
                                                                    "eligible.")] = False,
    trust_factory: TrustFactoryOpt = False,
    mode: Annotated[str | None, typer.Option("--mode", metavar="M", help="conv: a Ghost module per conv (C-Ghost, the default); stage: G-Ghost stages; auto (the default with --target): per stage whichever measures fastest.")] = None,
    module: Annotated[str, typer.Option("--module", metavar="V", help="v1: the GhostNet module (the default); v2: GhostNetV2's, with DFC attention (its gate starts open and needs training or --calib-data).")] = "v1",
    cheap_ratio: Annotated[float, typer.Option("--cheap-ratio", metavar="R", help="G-Ghost: the fraction of a stage's channels made by the cheap operations.")] = 0.5,
    target: Annotated[str | None, typer.Option("--target", "-t", metavar="T", help="Convert only what is faster on T, measured here: openvino-f32, openvino-bf16, openvino-int8, cpu, cpu-channels-last, cuda.", rich_help_panel="Hardware-aware")] = None,
    threads: Annotated[int | None, typer.Option("--threads", metavar="N", help="CPU threads the --target timings use (default: the runtime's).", rich_help_panel="Hardware-aware")] = None,
    latency_budget: Annotated[str | None, typer.Option("--latency-budget", metavar="F", help="With --target: convert until the latency on T is at most F of the original's (0.7x, 70%).", rich_help_panel="Hardware-aware")] = None,
    macs_budget: Annotated[str | None, typer.Option("--macs-budget", metavar="N", help="With --target: convert until the MACs are at most N (2.5G), fastest-saving convs first. With --calib-data instead: the most redundant convs first (2.5G, or 0.75x of the original's).", rich_help_panel="Hardware-aware")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", metavar="FILE", help="Also draw each conv's params and MACs before and after, and why a kept conv was kept, into FILE (.png, .svg or a self-contained .html; needs the 'plot' extra: matplotlib).")] = None,
    calib_data: Annotated[str | None, typer.Option("--calib-data", metavar="DATA", help="Fit the new layers to the original on these images, labels unused: digits, fashion-mnist, idx:PATH (MNIST-format files), a folder of images, synthetic (noise), or synthetic-bn when there is no data (images optimised until every BatchNorm layer sees its running statistics; the model needs BatchNorm).", rich_help_panel="Keeping accuracy")] = None,
    calib_images: Annotated[int | None, typer.Option("--calib-images", metavar="N", help="Images the calibration fits on (default 256).", rich_help_panel="Keeping accuracy")] = None,
    distill_epochs: Annotated[int | None, typer.Option("--distill-epochs", metavar="K", help="Then distil from the original for K epochs over all training images of DATA (soft targets only; default 0).", rich_help_panel="Keeping accuracy")] = None,
    max_agreement_drop: Annotated[str | None, typer.Option("--max-agreement-drop", metavar="P", help="With --calib-data: convert the most redundant convs while the calibrated model's top-1 agreement with the original on held-out images stays within P of 100% (2%), measured by bisection.", rich_help_panel="Keeping accuracy")] = None,
) -> None:
    from ghostcli.artifacts import check_artifact_output
    from ghostcli.errors import ConversionError
    from ghostcli.units import parse_input_size

    if output is not None:
        check_artifact_output(output, force)
    if plot is not None:
        from ghostcli.cli.plot import check_plot_output

        check_plot_output(plot, force)
    if mode == "stage" and module != "v1":
        from ghostcli.errors import UsageError

        raise UsageError(f"--module {module} is the module each converted conv becomes; --mode stage converts no "
                         "single conv (its G-Ghost stages keep dense convs): not both")
    size = parse_input_size(input_size) if input_size else None
    select_opts = _select_options(target, calib_data, macs_budget, max_agreement_drop, mode)
    target_opts = _target_options(target, threads, latency_budget, None if select_opts else macs_budget, mode,
                                  calibrating=calib_data is not None, dw_kernel=dw_kernel)
    calib_opts = _calibrate_options(calib_data, calib_images, distill_epochs)

    import dataclasses

    from ghostcli import render
    from ghostcli.convert import GhostifyOptions, ghostify
    from ghostcli.ghostify_options import DEFAULT_DW_KERNEL
    from ghostcli.resolve import resolve_model

    d = DEFAULT_DW_KERNEL if dw_kernel is None else dw_kernel
    opts = GhostifyOptions(ratio, d, tuple(include or ()), tuple(exclude or ()), min_channels, keep_stem,
                           min_fan_in, cheap_ratio=cheap_ratio, module=module)
    loaded = resolve_model(model, weights=weights, trust_factory=trust_factory)
    if loaded.is_ghostified:
        how = f"with {loaded.recipe.ghostify}" if loaded.recipe.ghostify else "it contains Ghost modules"
        raise ConversionError(f"{loaded.name} is already ghostified ({how}); ghostify the original model instead")
    if output is not None and loaded.recipe.source.startswith("pickle:"):
        raise ConversionError(f"{loaded.name} is a pickled model without a recipe: its ghostified version could not "
                              "be rebuilt from an artifact; build it from a named architecture with --weights")
    chw: tuple[int, ...] = size or tuple(loaded.input_size)
    shown = format_input_size(chw)
    kernels = ", ".join(str(k) for k in (d, *target_opts.dw_kernels)) + " (measured)" \
        if target_opts and target_opts.dw_kernels else str(d)
    render.info(f"ghostify {loaded.name}: ratio {ratio}, dw kernel {kernels}, input {shown}"
                + (f", target {target_opts.target}" if target_opts else ""))
    measured = None
    selection = None
    if select_opts is not None:
        from ghostcli.calibrate.select import select_layers

        with render.progress_bar() as bar:
            selection = select_layers(loaded.model, opts, select=select_opts, calibration=calib_opts, input_size=chw,
                                      progress=bar)
        gmodel, report, opts = selection.model, selection.report, selection.options
    elif target_opts is None:
        if mode == "stage":
            opts = _stage_options(loaded.model, opts)
        gmodel, report = ghostify(loaded.model, opts, input_size=chw, allow_empty=allow_empty)
    else:
        from ghostcli.target import ghostify_for_target

        with render.progress_bar() as bar:
            gmodel, report, measured = ghostify_for_target(loaded.model, opts, target=target_opts,
                                                           input_size=chw, progress=bar)
        opts = GhostifyOptions.from_dict(report.options)
    if report.forward_error is not None:
        raise ConversionError(f"{loaded.name} does not run at input size {shown} ({report.forward_error}); "
                              "pass the size it expects with --input-size")
    calibration = selection.calibration if selection is not None else None
    if calib_opts is not None and selection is None:
        from ghostcli.calibrate import calibrate_model

        with render.progress_bar() as bar:
            calibration = calibrate_model(loaded.model, gmodel, options=calib_opts, input_size=chw, progress=bar)
    saved = None
    if output is not None:
        from ghostcli.artifacts import save_artifact

        extra = dict(loaded.recipe.extra)
        if measured is not None:
            extra["target"] = measured.recipe_summary()
        if calibration is not None:
            extra["calibration"] = _calibration_summary(calibration)
        if selection is not None:
            extra["selection"] = _selection_summary(selection.selection)
        recipe = dataclasses.replace(loaded.recipe, ghostify=opts.to_dict(), input_size=list(chw), extra=extra)
        saved = save_artifact(gmodel, output, recipe, force=force)
    for w in report.warnings + (calibration.notes if calibration is not None else []) + (
            selection.selection.notes if selection is not None else []):
        render.warn(w)
    if plot is not None:
        from ghostcli.cli.plot import ghostify_plot_data, write_plot

        write_plot(ghostify_plot_data(loaded.name, report, measured), plot)
        render.info(f"wrote {plot}")
    if json_out:
        render.print_json("ghostify", {"model": loaded.name, "source": loaded.recipe.source, "weights": loaded.weights,
                           "output": str(saved) if saved else None, **report.to_dict(),
                           "target": measured.to_dict() if measured is not None else None,
                           "calibration": calibration,
                           "selection": selection.selection if selection is not None else None})
        return
    _print_report(loaded.name, report, saved, calibrated=calibration is not None)
    if measured is not None:
        _print_target(measured)
    if calibration is not None:
        _print_calibration(calibration)
    if selection is not None:
        _print_selection(selection.selection)


def _stage_options(model: Any, opts: Any) -> Any:
    """--mode stage without --target: every eligible stage that --include / --exclude keep, and no single conv."""
    import dataclasses

    from ghostcli.convert.stage import stages_in_play

    stages = stages_in_play(model, opts, "stage")
    return dataclasses.replace(opts, include=(), exclude=("*",), stages=tuple(stages))


def _select_options(target: str | None, calib_data: str | None, macs_budget: str | None,
                    max_agreement_drop: str | None, mode: str | None) -> Any:
    """The SelectOptions of layer selection by measured redundancy (--calib-data with --macs-budget or
    --max-agreement-drop, no --target; None otherwise); checked before any model is built."""
    from ghostcli.errors import UsageError
    from ghostcli.units import parse_factor, parse_percent, parse_quantity

    if max_agreement_drop is not None:
        if calib_data is None:
            raise UsageError("--max-agreement-drop measures the calibrated model's agreement with the original: it "
                             "needs --calib-data")
        if target is not None:
            raise UsageError("--max-agreement-drop selects convs by measured redundancy, not with --target (there: "
                             "--latency-budget or --macs-budget)")
        if macs_budget is not None:
            raise UsageError("give --macs-budget or --max-agreement-drop, not both")
    if target is not None or calib_data is None or (macs_budget is None and max_agreement_drop is None):
        return None
    if mode is not None and mode != "conv":
        raise UsageError(f"--calib-data with {'--macs-budget' if macs_budget else '--max-agreement-drop'} chooses "
                         f"single convs: not with --mode {mode}")
    from ghostcli.calibrate.select import SelectOptions

    if max_agreement_drop is not None:
        opts = SelectOptions(max_agreement_drop=100.0 * parse_percent(max_agreement_drop))
    elif macs_budget is not None and macs_budget.strip().lower().endswith(("x", "%")):
        fraction = parse_factor(macs_budget)
        if fraction >= 1:
            raise UsageError(f"--macs-budget as a fraction of the original's MACs must be below 1x, got {macs_budget}")
        opts = SelectOptions(macs_fraction=fraction)
    else:
        opts = SelectOptions(macs_budget=int(parse_quantity(macs_budget or "")))
    opts.check()
    return opts


def _target_options(target: str | None, threads: int | None, latency_budget: str | None,
                    macs_budget: str | None, mode: str | None, calibrating: bool = False,
                    dw_kernel: int | None = None) -> Any:
    """The TargetOptions the flags ask for (None without --target); checked before any model is built. Without
    ``--dw-kernel`` the target also measures the cheap kernels of ``TARGET_EXTRA_DW_KERNELS``."""
    from ghostcli.errors import UsageError
    from ghostcli.units import parse_factor, parse_quantity

    if mode is not None and mode not in ("conv", "stage", "auto"):
        raise UsageError(f"--mode must be conv, stage or auto, got {mode!r}")
    if target is None:
        if mode == "auto":
            raise UsageError("--mode auto chooses by measured time: it needs --target")
        given = [f for f, v in (("--threads", threads), ("--latency-budget", latency_budget),
                               ("--macs-budget", macs_budget)) if v is not None]
        if given == ["--macs-budget"] and not calibrating:
            raise UsageError("--macs-budget needs --target (convs chosen by measured time) or --calib-data (by "
                             "measured redundancy)")
        if given:
            raise UsageError(f"{', '.join(given)} only apply with --target")
        return None
    from ghostcli.ghostify_options import TARGET_EXTRA_DW_KERNELS
    from ghostcli.target import TargetOptions

    return TargetOptions(target, threads=threads, mode=mode or "auto",
                         dw_kernels=TARGET_EXTRA_DW_KERNELS if dw_kernel is None else (),
                         latency_budget=parse_factor(latency_budget) if latency_budget is not None else None,
                         macs_budget=int(parse_quantity(macs_budget)) if macs_budget is not None else None)


def _print_target(tr: Any) -> None:
    from ghostcli import render
    from ghostcli.units import format_macs

    base = tr.measured[0].median_ms
    rows = [(m.name if m.name != "target" else f"target ({tr.target})", f"{m.median_ms:.2f} ms", f"{m.p90_ms:.2f} ms",
             f"{m.median_ms / base:.3f}", format_macs(m.macs)) for m in tr.measured]
    render.stdout.print(render.table(f"measured on {tr.target}: median and p90 of {tr.runs} interleaved rounds",
                                     ["model", "median", "p90", "x original", "MACs"], rows, numeric=(1, 2, 3, 4)))
    kept = sum(1 for d in tr.decisions if d["ratio"] == 1)
    render.stdout.print(
        f"{len(tr.decisions) - kept} of {len(tr.decisions)} candidate convs converted (cheap kernel d={tr.dw_kernel}), "
        f"{kept} kept as measured; "
        f"predicted {tr.predicted_ms / tr.original_layers_ms:.3f}x from the layer times, measured "
        f"{tr.ratio_vs_original:.3f}x of the original and {tr.ratio_vs_paper:.3f}x of the paper ghostify "
        f"(per-round ratios, noise +-{tr.noise:.3f}); decided in {tr.seconds:.0f} s.", highlight=False)
    render.stdout.print(f"conditions: {tr.conditions}", highlight=False)
    for note in tr.notes:
        render.warn(note)


def _calibrate_options(calib_data: str | None, calib_images: int | None, distill_epochs: int | None) -> Any:
    """The CalibrateOptions the flags ask for (None without --calib-data); the data source is checked before any
    model is built."""
    from ghostcli.errors import UsageError

    if calib_data is None:
        given = [f for f, v in (("--calib-images", calib_images), ("--distill-epochs", distill_epochs)) if v is not None]
        if given:
            raise UsageError(f"{', '.join(given)} only apply with --calib-data")
        return None
    from ghostcli.calibrate import CalibrateOptions
    from ghostcli.data import check_source

    opts = CalibrateOptions(calib_data=calib_data, calib_images=256 if calib_images is None else calib_images,
                            distill_epochs=distill_epochs or 0)
    opts.check()
    check_source(calib_data)
    return opts


def _calibration_summary(cal: Any) -> dict[str, Any]:
    """What the artifact's recipe records of the calibration (``extra.calibration``)."""
    return {"data": cal.calib_data, "images": cal.calib_images, "block_steps": cal.block_steps,
            "network_epochs": cal.network_epochs, "distill_epochs": cal.distill_epochs, "held_out": cal.held_out,
            "agreement_before": cal.agreement_before, "agreement": cal.agreement_final}


def _selection_summary(sel: Any) -> dict[str, Any]:
    """What the artifact's recipe records of the layer selection (``extra.selection``)."""
    return {"budget": sel.budget, "converted": sel.chosen, "candidates": len(sel.layers),
            "macs_before": sel.macs_before, "macs_after": sel.macs_after, "agreement": sel.agreement,
            "points": [{"layers": p.layers, "macs": p.macs, "agreement": p.agreement} for p in sel.points]}


def _print_selection(sel: Any) -> None:
    from rich.markup import escape

    from ghostcli import render
    from ghostcli.units import format_macs

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}%"

    rows = [(str(r.rank), escape(r.name), "-" if r.fit_error is None else f"{r.fit_error:.3f}",
             r.pairing + (f" ({escape(r.fixed_reason)})" if r.fixed_reason else ""), format_macs(r.macs_saved),
             "ghost" if r.chosen else "kept") for r in sel.layers]
    render.stdout.print(render.table(
        f"layer selection on {sel.rank_images} calibration images: fit error = mean relative residual of the cheap "
        "channels' closed-form fit (0: exactly reconstructible), most redundant first",
        ["rank", "layer", "fit error", "channels", "MACs saved", "action"], rows, numeric=(0, 2, 4)))
    points = [(str(p.layers), format_macs(p.macs), f"{p.macs_ratio:.3f}", pct(p.agreement_before), pct(p.agreement),
               {None: "-", True: "yes", False: "no"}[p.passed], f"{p.seconds:.1f} s")
              for p in sorted(sel.points, key=lambda p: p.layers)]
    render.stdout.print(render.table(
        f"agreement vs MACs: top-1 agreement with the original on {sel.held_out}, the first N ranked convs "
        "converted, before and after calibration", ["convs", "MACs", "x original", "uncalibrated", "calibrated",
                                                    "within budget", "time"], points, numeric=(0, 1, 2, 3, 4, 6)))
    render.stdout.print(
        f"budget {sel.budget}: {sel.chosen} of {len(sel.layers)} convs converted, {format_macs(sel.macs_before)} -> "
        f"{format_macs(sel.macs_after)} ({sel.macs_after / sel.macs_before:.3f}x), agreement {pct(sel.agreement)}; "
        f"ranking {sel.seconds_rank:.1f} s, {len(sel.points)} calibration(s), {sel.seconds_total:.1f} s in all.",
        highlight=False)


def _print_calibration(cal: Any) -> None:
    from rich.markup import escape

    from ghostcli import render

    def f(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    networked = cal.network_epochs > 0
    distilled = cal.distill_epochs > 0
    rows = []
    for r in cal.rows:
        pairing = r.pairing or "stage"
        if r.pairing == "fixed":
            pairing = f"fixed ({escape(r.fixed_reason)})"
        fit = "-" if r.fit_cost is None else (f"{r.fit_cost:.3f}" if r.pairing == "fixed"
                                              else f"{r.fit_cost:.3f} (fixed {r.fit_cost_fixed:.3f})")
        row = [escape(r.name), pairing, fit, f(r.error_before), f(r.error_init), f(r.error_block), f(r.error_held_out)]
        row += [f(r.error_network)] if networked else []
        rows.append(row + ([f(r.error_distill)] if distilled else []))
    columns = ["layer", "channels", "cheap fit", "before", "init", "block-wise", "held-out"] + (
        ["network-wise"] if networked else []) + (["distilled"] if distilled else [])
    stages = [f"after block-wise reconstruction ({cal.block_steps} steps per layer)"]
    if networked:
        stages.append(f"after network-wise reconstruction ({cal.network_epochs} epochs over the calibration images)")
    if distilled:
        stages.append(f"after {cal.distill_epochs} distillation epoch(s)")
    render.stdout.print(render.table(
        f"calibration on {cal.calib_images} images of {cal.calib_data}: relative error ||ghost - original|| / "
        "||original|| of each layer's output, the ghostified model running on its own. Calibration images: before, "
        f"after the closed-form init, after block-wise reconstruction; {cal.held_out}: " + ", ".join(stages),
        columns, rows, numeric=tuple(range(3, len(columns)))))

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}%"

    agreement = f"{pct(cal.agreement_before)} -> {pct(cal.agreement_block)} (block-wise)"
    if networked:
        agreement += f" -> {pct(cal.agreement_network)} (network-wise)"
    if distilled:
        agreement += f" -> {pct(cal.agreement_distilled)} (distilled on {cal.distill_images} images per epoch)"
    render.stdout.print(
        f"top-1 agreement with the original on {cal.held_out}: {agreement}; cheap fit = mean relative residual of "
        "the cheap channels' least squares (chosen channels, readers' weights permuted; the layer's own pairing where "
        "its output order is fixed).", highlight=False)
    render.stdout.print(
        f"time: {cal.seconds_total:.1f} s (data {cal.seconds_data:.1f} s, init + block-wise {cal.seconds_calibrate:.1f} s, "
        f"network-wise {cal.seconds_network:.1f} s, distillation {cal.seconds_distill:.1f} s, held-out passes "
        f"{cal.seconds_measure:.1f} s); peak memory: "
        f"{cal.peak_rss_mb:.0f} MB resident, largest activation cache {cal.peak_cache_mb:.1f} MB.", highlight=False)


def _print_report(name: str, report: Any, saved: Path | None, calibrated: bool = False) -> None:
    from rich.markup import escape

    from ghostcli import render
    from ghostcli.option_names import spell_options
    from ghostcli.units import format_count, format_macs, format_ratio

    rows = [  # reasons name options in backquotes (`min_channels`): shown as this command's flags, never as markup
        (escape(r.name), _shape(r), r.action, escape(spell_options(r.reason)), _arrow(r.params_before, r.params_after, format_count),
         _arrow(r.macs_before, r.macs_after, format_macs))
        for r in report.rows
    ]
    stages = getattr(report, "stages", [])
    title = f"ghostify {name}: {report.replaced} of {len(report.rows)} convs replaced" + (
        f", {len(stages)} stage(s) rebuilt as G-Ghost stages" if stages else "")
    render.stdout.print(render.table(title, ["layer", "shape (k in->out /stride)", "action", "reason", "params", "MACs"],
                                     rows, numeric=(4, 5)))
    if stages:
        srows = [(escape(st.name), f"{st.block} x {st.blocks}", f"{st.planes} -> {st.raw_planes} + {st.cheap_planes}",
                  f"{'/'.join(map(str, st.widths))} -> {'/'.join(map(str, st.middle_widths))}",
                  _arrow(st.params_before, st.params_after, format_count), _arrow(st.macs_before, st.macs_after, format_macs))
                 for st in stages]
        render.stdout.print(render.table("G-Ghost stages (first and last blocks unchanged; merge and cheap layers are "
                                         "new: fine-tune before use, e.g. ghostcli train)",
                                         ["stage", "blocks", "channels (raw + cheap)", "middle block widths", "params",
                                          "MACs"], srows, numeric=(4, 5)))
    size = format_input_size(report.input_size)
    totals = [
        ("params", format_count(report.params_before), format_count(report.params_after),
         format_ratio(report.params_ratio)),
        (f"MACs @ {size}", format_macs(report.macs_before), format_macs(report.macs_after),
         format_ratio(report.macs_ratio)),
    ]
    render.stdout.print(render.table("totals", ["", "before", "after", "ratio"], totals, numeric=(1, 2, 3)))
    opts = report.options
    render.stdout.print(
        f"ratio s={opts['ratio']}, cheap kernel d={opts['dw_kernel']}; MACs = conv + linear multiply-accumulates "
        f"({report.macs_counter}, BatchNorm excluded); flops = 2 x MACs.", highlight=False)
    if report.inherited and report.replaced and calibrated:
        render.stdout.print(f"inherited {len(report.inherited)} tensors, then calibrated: the table below says how "
                            "each layer was fitted.", highlight=False)
    elif report.inherited and report.replaced:
        render.stdout.print(f"inherited {len(report.inherited)} tensors (primary conv filters of the channels they "
                            "still produce, BatchNorm parameters); the cheap depthwise convs are new; every other "
                            "layer keeps its values.", highlight=False)
    elif report.inherited:
        render.stdout.print(f"inherited {len(report.inherited)} tensors (the middle blocks' kept channels); the first "
                            "and last blocks are unchanged; merge and cheap layers are new.", highlight=False)
    if saved is not None:
        render.stdout.print(f"saved {saved}  (profile it: ghostcli profile {saved})", highlight=False)


def register(app: typer.Typer) -> None:
    """Register ``ghostcli ghostify``."""
    app.command(name="ghostify", help=HELP)(ghostify_command)
