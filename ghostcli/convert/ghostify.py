"""ghostify: rebuild a CNN with Ghost modules, layer by layer, and report what changed."""

from __future__ import annotations

import copy
import dataclasses
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from torch import nn

from ghostcli.analysis.params import module_params
from ghostcli.convert.activation import absorb_relus
from ghostcli.convert.report import ConvRow, GhostifyReport, Measurement, StageRow, run_and_count
from ghostcli.convert.rules import ConvertContext, Converter, ConverterTable, KeepLayer, LayerKey, converter_table
from ghostcli.convert.select import enclosing_ghost, selection_reason, unmatched_patterns
from ghostcli.convert.stage import build_g_ghost_stage, stage_candidates
from ghostcli.errors import ConversionError, UsageError
from ghostcli.fx import conv_bn_pairs, is_conv, module_parents, replace_module
from ghostcli.ghostify_options import GhostifyOptions
from ghostcli.layers import GGhostStage, GhostModule
from ghostcli.layers.seed import seeded_init
from ghostcli.loaded import foreign_ghost_class

GHOSTIFY_ATTR = "ghostify_options"  # set on a ghostified model: the options that made it


def _pair(v: object) -> list[int]:
    if isinstance(v, (tuple, list)):
        return [int(x) for x in v]
    return [int(v)] * 2 if isinstance(v, int) else []


@seeded_init()
def ghostify(
    model: nn.Module,
    options: GhostifyOptions | None = None,
    *,
    converters: ConverterTable | Mapping[LayerKey, Converter] | None = None,
    ratio: int | None = None,
    dw_kernel: int | None = None,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    min_channels: int | None = None,
    keep_stem: bool | None = None,
    min_fan_in: int | None = None,
    layer_ratios: Mapping[str, int] | Iterable[tuple[str, int]] | None = None,
    stages: Iterable[str] | None = None,
    cheap_ratio: float | None = None,
    module: str | None = None,
    input_size: Sequence[int] = (3, 224, 224),
    allow_empty: bool = False,
    inherit_weights: bool = True,
    count_macs: bool = True,
) -> tuple[nn.Module, GhostifyReport]:
    """Return a copy of ``model`` whose dense convs are Ghost modules, and a report of every conv.

    ``options`` (:class:`GhostifyOptions`, default ``GhostifyOptions()``) holds the structural
    options; the keyword arguments of the same names override its fields. Every dense
    ``nn.Conv2d`` that passes the selection (``include``/``exclude`` globs on module names, the
    stem rule, ``min_channels``, ``min_fan_in``) becomes a ``GhostModule(ratio, dw_kernel)`` with
    the same geometry; a BatchNorm that only this conv feeds is absorbed into the module's own
    BNs and replaced by ``nn.Identity``. With ``inherit_weights`` the primary conv starts from the
    original filters of its channels and the BNs from the original statistics. ``layer_ratios``
    gives the convs it names their own ratio instead of ``ratio``. ``module="v2"`` makes GhostNetV2's
    :class:`~ghostcli.layers.GhostModuleV2` instead (DFC attention, its gate initialised open: see
    :func:`~ghostcli.convert.conv2d.convert_conv2d`).

    Before the convs, every stage ``stages`` names (module names: see
    :func:`~ghostcli.convert.stage.stage_candidates`) is rebuilt as a G-Ghost stage with
    ``cheap_ratio`` (:func:`~ghostcli.convert.stage.to_g_ghost_stage`: first and last blocks
    unchanged, middle blocks narrowed, new ``merge``/``cheap`` layers that need fine-tuning). Its
    convs stay dense; the report shows it as one row of ``report.stages`` instead of conv rows.

    ``converters`` changes the conversion table for this call only: a :class:`ConverterTable`
    replaces the default one, a mapping ``{layer type: converter}`` adds to a copy of it.
    ``input_size`` (C, H, W) is used only to count MACs and check output shapes;
    ``count_macs=False`` skips fvcore (no MACs), e.g. for rebuilds.
    New weights that inherit nothing are drawn from a fixed seed: the same call gives the same model.
    Raises ConversionError when nothing is eligible, unless ``allow_empty``.
    """
    if options is not None and not isinstance(options, GhostifyOptions):
        raise TypeError(f"options must be GhostifyOptions, got {type(options).__name__}")
    given: dict[str, Any] = {"ratio": ratio, "dw_kernel": dw_kernel, "include": include, "exclude": exclude,
             "min_channels": min_channels, "keep_stem": keep_stem, "min_fan_in": min_fan_in,
             "layer_ratios": layer_ratios, "stages": stages, "cheap_ratio": cheap_ratio, "module": module}
    opts = dataclasses.replace(options or GhostifyOptions(), **{k: v for k, v in given.items() if v is not None})
    if not isinstance(model, nn.Module):
        raise UsageError(f"ghostify needs a torch nn.Module, got {type(model).__name__}")
    if getattr(model, GHOSTIFY_ATTR, None) is not None:
        raise ConversionError("the model is already ghostified; ghostify the original model instead")
    try:
        size = tuple(int(v) for v in input_size)
    except (TypeError, ValueError):
        raise UsageError(f"input_size must be (C, H, W), got {input_size!r}") from None
    if len(size) != 3 or min(size) < 1:
        raise UsageError(f"input_size must be (C, H, W) with positive sizes, got {input_size!r}")
    table = converter_table(converters)
    _check_stages(model, opts)

    model = copy.deepcopy(model)
    extra_types = tuple(t for t in table.types() if not issubclass(t, nn.modules.conv._ConvNd))
    before = run_and_count(model, size, use_fvcore=count_macs)
    params_before = module_params(model)
    original_convs = [n for n, m in model.named_modules() if n and is_conv(m, extra_types)]
    built, stage_inherited = _rebuild_stages(model, opts, inherit_weights, before)
    info = conv_bn_pairs(model, extra_types)
    warnings = [info.note] if info.note else []
    if before.error:
        warnings.append(f"{before.error}; MACs are not counted")
    elif before.macs_error:
        warnings.append(f"{before.macs_error}; MACs are not counted")

    named = dict(model.named_modules())
    parents = module_parents(model)
    # Ghost modules, ghostcli's ("") and other code bases' (timm's ...): the convs inside them stay
    labels = {n: "" if isinstance(m, GhostModule) else foreign_ghost_class(m) for n, m in named.items() if n}
    ghosts = {n: label for n, label in labels.items() if label is not None}
    new_stages = tuple(row.name + "." for row, _, _ in built)
    stage_prefixes = tuple(n + "." for n, m in named.items() if isinstance(m, GGhostStage))
    conv_names = [n for n, m in named.items() if n and is_conv(m, extra_types)]

    rows: list[ConvRow] = []
    replaced: list[tuple[ConvRow, nn.Module, nn.Module]] = []
    inherited: list[dict[str, str]] = []
    gone: tuple[str, ...] = ()  # prefixes of replaced layers: their children no longer exist
    for name in conv_names:
        if name.startswith(gone) or name.startswith(new_stages):  # a rebuilt stage is a row of its own
            continue
        layer = named[name]
        ghost = enclosing_ghost(name, ghosts)
        reason = selection_reason(name, include=opts.include, exclude=opts.exclude, is_stem=name in info.stems,
                                  keep_stem=opts.keep_stem, in_ghost=ghost is not None, ghost_class=ghost)
        if reason is None and name.startswith(stage_prefixes):  # a G-Ghost stage the model already had
            reason = "in a G-Ghost stage"
        converter = None
        if reason is None:
            converter, reason = table.find(layer)
            reason = reason or None
        bn_name = info.bn_after.get(name)
        bn = named.get(bn_name) if bn_name else None
        ctx = ConvertContext(name=name, ratio=opts.ratio_of(name), dw_kernel=opts.dw_kernel, module=opts.module,
                             min_channels=opts.min_channels, min_fan_in=opts.min_fan_in, inherit_weights=inherit_weights,
                             bn=bn if isinstance(bn, nn.modules.batchnorm._BatchNorm) else None, bn_name=bn_name)
        new: nn.Module | None = None
        if converter is not None:
            try:
                new = converter(layer, ctx)
            except KeepLayer as keep:
                reason = str(keep)
        macs = before.of(layer)
        row = ConvRow(
            name=name, type=type(layer).__name__, kernel=_pair(getattr(layer, "kernel_size", ())),
            in_channels=int(getattr(layer, "in_channels", 0)), out_channels=int(getattr(layer, "out_channels", 0)),
            stride=_pair(getattr(layer, "stride", ())), groups=int(getattr(layer, "groups", 1)),
            action="kept" if new is None else "ghost", reason=reason or "",
            bn=None, params_before=module_params(layer), params_after=module_params(layer),
            macs_before=macs, macs_after=macs,
        )
        rows.append(row)
        if new is None:
            continue
        new.train(layer.training)
        gone += (name + ".",)
        replace_module(model, layer, new, parents=parents)
        if ctx.absorbed_bn and ctx.bn is not None:
            row.bn = bn_name
            row.params_before += module_params(ctx.bn)
            replace_module(model, ctx.bn, nn.Identity(), parents=parents)
            row.reason = f"took over {bn_name}"
        else:
            row.reason = "no BatchNorm follows: biased convs"
        row.params_after = module_params(new)
        inherited += [{"tensor": f"{name}.{t}", "source": s} for t, s in ctx.inherited]
        replaced.append((row, layer, new))

    activated = set(absorb_relus(model, info.relu_after,
                                 {row.name: row.bn for row, _, _ in replaced if row.bn is not None}))
    for row, _, _ in replaced:
        if row.name in activated:
            row.reason += ", ReLU moved inside"

    all_convs = original_convs + [n for n in conv_names if n.startswith(new_stages)]
    for pattern in unmatched_patterns(all_convs, opts.include):
        warnings.append(f"`include` {pattern} matches no conv layer")
    for pattern in unmatched_patterns(all_convs, opts.exclude):
        warnings.append(f"`exclude` {pattern} matches no conv layer")
    warnings += _layer_ratio_warnings(opts, set(all_convs), rows, new_stages)
    if not replaced and not built and not allow_empty:
        reasons = Counter(r.reason for r in rows)
        summary = "; ".join(f"{n} x {r}" for r, n in reasons.most_common(3)) or "the model has no conv layer"
        raise ConversionError(f"nothing to ghostify: no conv layer is eligible ({summary})")

    macs_before: int | None = None
    macs_after: int | None = None
    counter = "none"
    if before.error is None:  # when the original did not run, the ghostified one is not run either
        after = run_and_count(model, size, use_fvcore=count_macs and before.fvcore is not None,
                        what="the ghostified model")
        if after.error is not None:
            raise ConversionError(after.error)
        if after.outputs != before.outputs:
            raise ConversionError(f"ghostify changed the output shape {before.outputs} -> {after.outputs}")
        for row, _, new in replaced:
            row.macs_after = after.of(new)
        for stage_row, _, new_stage in built:
            stage_row.macs_after = after.of(new_stage)
        if before.fvcore is not None and after.fvcore is not None:
            macs_before, macs_after, counter = before.fvcore, after.fvcore, "fvcore"
        elif after.macs_error:
            warnings.append(f"{after.macs_error} (the ghostified model); MACs are not counted")
    setattr(model, GHOSTIFY_ATTR, opts.to_dict())
    report = GhostifyReport(
        options=opts.to_dict(), input_size=list(size), graph=info.method, rows=rows,
        replaced=len(replaced), kept=len(rows) - len(replaced), params_before=params_before,
        params_after=module_params(model), macs_before=macs_before, macs_after=macs_after, macs_counter=counter,
        inherited=[*stage_inherited, *inherited] if inherit_weights else [], warnings=warnings,
        forward_error=before.error, stages=[row for row, _, _ in built],
    )
    return model, report


def _check_stages(model: nn.Module, opts: GhostifyOptions) -> None:
    """Raise, naming the eligible stages, unless every name in ``opts.stages`` is a stage that can be rebuilt."""
    if not opts.stages:
        return
    twice = sorted({n for n in opts.stages if opts.stages.count(n) > 1})
    if twice:
        raise UsageError(f"`stages` names {', '.join(twice)} twice")
    candidates = stage_candidates(model)
    eligible = ", ".join(n for n, r in candidates.items() if r is None) or "none"
    named = dict(model.named_modules())
    for name in opts.stages:
        if name not in named:
            raise ConversionError(f"`stages` {name} is not a module of the model (eligible stages: {eligible})")
        if name not in candidates:
            raise ConversionError(f"`stages` {name} is not a stage of residual blocks ghostify knows (torchvision "
                                  f"ResNet/ResNeXt/Wide-ResNet/RegNet or timm ResNet blocks; eligible stages: "
                                  f"{eligible})")
        if candidates[name] is not None:
            raise ConversionError(f"`stages` {name} cannot be a G-Ghost stage: {candidates[name]} "
                                  f"(eligible stages: {eligible})")


def _rebuild_stages(model: nn.Module, opts: GhostifyOptions, inherit_weights: bool, before: Measurement,
                    ) -> tuple[list[tuple[StageRow, nn.Module, GGhostStage]], list[dict[str, str]]]:
    """Rebuild each stage ``opts.stages`` names as a G-Ghost stage of ``model`` (in place), in that order.

    Returns (row, original stage, new stage) per stage, and the tensors the new stages inherited.
    The original stages stay referenced by the rows' tuples, so ``before``'s per-module MACs (keyed by
    module id) stay valid until the stage rows have their ``macs_after``.
    """
    if not opts.stages:
        return [], []
    named = dict(model.named_modules())
    parents = module_parents(model)
    built: list[tuple[StageRow, nn.Module, GGhostStage]] = []
    inherited: list[dict[str, str]] = []
    for name in opts.stages:
        old = named[name]
        result = build_g_ghost_stage(old, opts.cheap_ratio, inherit_weights=inherit_weights, name=name)
        replace_module(model, old, result.stage, parents=parents)
        children = list(old.children())
        row = StageRow(
            name=name, block=type(children[0]).__name__, blocks=len(children), planes=result.planes,
            raw_planes=result.raw_planes, cheap_planes=result.cheap_planes, widths=result.widths,
            middle_widths=result.middle_widths, params_before=module_params(old),
            params_after=module_params(result.stage), macs_before=before.of(old), macs_after=None)
        built.append((row, old, result.stage))
        inherited += [{"tensor": t, "source": s} for t, s in result.inherited]
    return built, inherited


def _layer_ratio_warnings(opts: GhostifyOptions, convs: set[str], rows: list[ConvRow],
                          stages: tuple[str, ...]) -> list[str]:
    """``layer_ratios`` entries that give no conv its ratio: unknown names, convs in a G-Ghost stage, kept convs."""
    kept = {r.name: r.reason for r in rows if r.action == "kept"}
    out = []
    for name, _ in opts.layer_ratios:
        stage = next((s[:-1] for s in stages if name.startswith(s)), None)
        if stage is not None:
            out.append(f"`layer_ratios` {name} is inside the G-Ghost stage {stage} (its convs stay dense)")
        elif name not in convs:
            out.append(f"`layer_ratios` {name} matches no conv layer")
        elif name in kept:
            out.append(f"`layer_ratios` {name}: the layer is kept ({kept[name]})")
    return out
