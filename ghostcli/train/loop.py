"""``train_model``: fine-tune or distil a model on image data, in one process or under torchrun (DDP).

Error messages and notes name a setting as its ``TrainConfig`` field in backquotes (`batch_size`);
the CLI shows its option there instead (``--batch-size``).
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ghostcli.errors import DataError, GhostcliError, OutputExistsError, UsageError
from ghostcli.fsutil import check_output
from ghostcli.layers.seed import init_seed
from ghostcli.loaded import LoadedModel
from ghostcli.progress import Progress, no_progress
from ghostcli.runtime.device import resolve_device
from ghostcli.train import checkpoint as ckpt_mod
from ghostcli.train import distributed as dist_mod
from ghostcli.train.data import HOLD_OUT_FRACTION, eval_loader, load_datasets, steps_per_epoch, train_loader
from ghostcli.train.distill import distillation_loss
from ghostcli.train.evaluate import autocast, check_outputs, run_eval
from ghostcli.train.metrics import Meter, or_none
from ghostcli.train.schedule import DEFAULT_LR, DEFAULT_WEIGHT_DECAY, build_optimizer, build_scheduler, check_choice

ModelLoader = Callable[[], LoadedModel]


class TrainingInterrupted(GhostcliError):
    """Ctrl-C (or SIGTERM under torchrun): a checkpoint was saved, the run stopped (exit 130)."""

    exit_code = 130


@dataclass
class TrainConfig:
    """How :func:`train_model` trains. ``batch_size`` is the global batch (split across ranks).

    The models themselves are not settings: ``train_model`` takes them as loaders.
    """

    data: str = "digits"
    output: str | None = None
    val_data: str | None = None
    kd_alpha: float = 0.5
    kd_temperature: float = 4.0
    epochs: int = 10
    batch_size: int = 64
    lr: float | None = None  # default: 0.1 (sgd) or 1e-3 (adamw)
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float | None = None  # default: 5e-4 (sgd) or 0.05 (adamw)
    schedule: str = "cosine"
    warmup_epochs: float | None = None  # default: default_warmup_epochs(epochs)
    label_smoothing: float = 0.0
    amp: bool = False
    channels_last: bool = False
    device: str = "auto"
    workers: int = 0
    resume: str | None = None
    checkpoint: str | None = None  # default: OUTPUT with the suffix .ckpt
    seed: int = 0
    input_size: tuple[int, int, int] | None = None  # default: the model's
    augment: bool = True
    deterministic: bool = True
    force: bool = False


@dataclass
class EpochRecord:
    """One epoch. Accuracies in percent; train metrics are over the augmented batches, in train mode.

    Top-1/top-5 and the validation loss are against labels (None for unlabelled images); the agreements are the
    share of images whose top-1 class is the teacher's (None without a teacher).
    """

    epoch: int
    lr: float
    train_loss: float
    train_top1: float | None
    train_images_per_s: float
    seconds: float
    val_loss: float | None = None
    val_top1: float | None = None
    val_top5: float | None = None
    train_agreement: float | None = None
    val_agreement: float | None = None


@dataclass
class TrainResult:
    """What ``ghostcli train --json`` prints (the trained module is in ``model``, not in the JSON)."""

    model_name: str
    output: str | None
    checkpoint: str | None
    data: str
    val_data: str | None
    teacher: str | None
    device: str
    world_size: int
    global_batch_size: int
    per_rank_batch_size: int
    epochs: int
    steps_per_epoch: int
    train_images: int
    val_images: int
    num_classes: int
    input_size: list[int]
    final_val_top1: float | None
    final_val_top5: float | None
    final_val_loss: float | None
    best_val_top1: float | None
    best_epoch: int | None  # of best_val_top1; with unlabelled validation images, of best_val_agreement
    final_val_agreement: float | None  # top-1 agreement with the teacher on the validation images (percent)
    best_val_agreement: float | None
    labelled: bool  # the training images have labels (False: unlabelled images, pure distillation)
    train_images_per_s: float
    seconds: float
    resumed_from: str | None
    history: list[EpochRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    model: nn.Module | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The fields without the module (not ``asdict``: it would deep-copy the module first)."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "model"}
        d["history"] = [asdict(r) for r in self.history]
        d["notes"] = list(self.notes)
        return d


class _StopFlag:
    """First Ctrl-C/SIGTERM asks for a clean stop after the current step; a second Ctrl-C aborts."""

    def __init__(self) -> None:
        self.requested = False
        self.aborted = False

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            self.aborted = True
            raise KeyboardInterrupt
        self.requested = True

    @contextlib.contextmanager
    def installed(self, also_sigterm: bool) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        signals = [signal.SIGINT] + ([signal.SIGTERM] if also_sigterm else [])
        old = {s: signal.signal(s, self._handler) for s in signals}
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)


def _validate(cfg: TrainConfig) -> None:
    if cfg.epochs < 1:
        raise UsageError("`epochs` must be at least 1")
    if cfg.batch_size < 1:
        raise UsageError("`batch_size` must be at least 1")
    check_choice("optimizer", cfg.optimizer)
    check_choice("schedule", cfg.schedule)
    if cfg.lr is not None and not (cfg.lr > 0 and math.isfinite(cfg.lr)):
        raise UsageError(f"`lr` must be a positive number, got {cfg.lr}")
    if cfg.weight_decay is not None and cfg.weight_decay < 0:
        raise UsageError("`weight_decay` must be >= 0")
    if not 0.0 <= cfg.kd_alpha <= 1.0:
        raise UsageError(f"`kd_alpha` must be between 0 and 1, got {cfg.kd_alpha}")
    if not cfg.kd_temperature > 0:
        raise UsageError(f"`kd_temperature` must be positive, got {cfg.kd_temperature}")
    if not 0.0 <= cfg.label_smoothing < 1.0:
        raise UsageError(f"`label_smoothing` must be in [0, 1), got {cfg.label_smoothing}")
    if cfg.warmup_epochs is not None and not 0 <= cfg.warmup_epochs <= cfg.epochs:
        raise UsageError("`warmup_epochs` must be between 0 and `epochs`")
    if cfg.workers < 0:
        raise UsageError("`workers` must be >= 0")
    if cfg.output is not None and Path(cfg.output).suffix != ".safetensors":
        raise UsageError(f"the trained model is saved as .safetensors, got {Path(cfg.output).name!r}")


def default_warmup_epochs(epochs: int) -> float:
    """Linear warm-up used when none is given: one epoch, or a tenth of a shorter run.

    It lifts deep nets at lr 0.1 on average but does not make them reliable (docs/training.md,
    "Why the defaults warm up": lower the lr for ResNet-56-sized nets).
    """
    return min(1.0, epochs / 10)


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)


@contextlib.contextmanager
def _determinism(enabled: bool, device: torch.device) -> Iterator[None]:
    prev_alg = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()  # restored below (CUDA only)
    prev_bench = torch.backends.cudnn.benchmark
    if enabled:
        if device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            # CPU kernels used here are deterministic already; the switch itself costs seconds of imports
            torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        if enabled and device.type == "cuda":
            torch.use_deterministic_algorithms(prev_alg, warn_only=prev_warn)
        torch.backends.cudnn.benchmark = prev_bench


def _num_outputs(model: nn.Module, input_size: tuple[int, int, int], name: str = "the model") -> int:
    from ghostcli.runtime.probe import run_once

    out = run_once(model, torch.zeros(1, *input_size), name)  # ForwardError names the failing layer
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise UsageError("train needs a classifier that returns (batch, classes) logits")
    return int(out.shape[1])


def _paths(cfg: TrainConfig, env: dist_mod.DistEnv) -> tuple[Path | None, Path | None]:
    out = Path(cfg.output) if cfg.output else None
    if out is not None and env.is_main:
        check_output(out, cfg.force)
    if cfg.checkpoint:
        ck: Path | None = Path(cfg.checkpoint)
    elif cfg.resume:
        ck = Path(cfg.resume)
    elif out is not None:
        ck = out.with_suffix(".ckpt")
    else:
        ck = None
    if ck is not None and env.is_main:
        resuming_here = cfg.resume is not None and Path(cfg.resume).resolve() == ck.resolve()
        if ck.exists() and not resuming_here and not cfg.force:
            raise OutputExistsError(f"checkpoint {ck} already exists (continue it with `resume` {ck}, "
                                    "or use `force` to start over)")
        check_output(ck, force=True)  # writable before the first epoch, not after it
    return out, ck


def train_model(cfg: TrainConfig, student: ModelLoader, *, teacher: ModelLoader | None = None,
                progress: Progress = no_progress, on_epoch: Callable[[EpochRecord], None] | None = None,
                on_note: Callable[[str], None] | None = None) -> TrainResult:
    """Train the model ``student()`` returns on ``cfg.data`` (distilling from ``teacher()``) and save it.

    ``student`` and ``teacher`` are called once, after the random generators are seeded from
    ``cfg.seed`` (so a randomly initialized model is the same in every run), e.g.
    ``lambda: resolve_model("resnet20")``.

    Rank 0 reports: ``progress`` after every optimizer step (description "epoch 2/10", steps done of
    the epoch's steps, resumed ones included, and "loss ... acc ... img/s ... lr ..."), ``on_epoch``
    with each finished epoch's record, ``on_note`` with each note as it arises (warnings; all of them
    are also in ``TrainResult.notes``). Under ``torchrun`` every rank calls this; rank 0 writes files.
    Raises :class:`TrainingInterrupted` after saving a checkpoint on Ctrl-C.
    """
    _validate(cfg)
    env = dist_mod.detect()
    device = resolve_device(cfg.device, env.local_rank if env.enabled else None)
    owned = env.enabled and not torch.distributed.is_initialized()
    dist_mod.init(env, device.type)
    if not env.is_main:
        progress, on_epoch, on_note = no_progress, None, None
    try:
        with _determinism(cfg.deterministic, device):
            return _train(cfg, env, device, (student, teacher), progress, on_epoch or _ignore, on_note or _ignore)
    finally:
        if owned:
            dist_mod.shutdown(env)


def _ignore(event: object) -> None:
    """The default ``on_epoch`` / ``on_note``."""


def _train(cfg: TrainConfig, env: dist_mod.DistEnv, device: torch.device,
           loaders: tuple[ModelLoader, ModelLoader | None], progress: Progress,
           on_epoch: Callable[[EpochRecord], None], on_note: Callable[[str], None]) -> TrainResult:
    from ghostcli.artifacts import Recipe, save_artifact

    t_start = time.perf_counter()
    notes: list[str] = []

    def note(msg: str) -> None:
        notes.append(msg)
        on_note(msg)

    if cfg.batch_size % env.world_size:
        raise UsageError(f"`batch_size` {cfg.batch_size} (the global batch) must be divisible by the "
                         f"{env.world_size} processes")
    per_rank = cfg.batch_size // env.world_size
    out_path, ck_path = _paths(cfg, env)
    resume = ckpt_mod.load_checkpoint(cfg.resume) if cfg.resume else None

    _seed_all(cfg.seed + env.rank)
    with init_seed(cfg.seed):  # a model built without weights starts from `seed`'s draw, on every rank alike
        loaded = loaders[0]()
    if out_path is not None and loaded.recipe.source.startswith("pickle:"):
        raise UsageError(f"{loaded.name} has no recipe (a pickled model) so the trained model could not be "
                         "reloaded; save it as a ghostcli artifact first")
    student = loaded.model
    input_size = tuple(int(v) for v in (cfg.input_size or loaded.input_size))
    if len(input_size) != 3:
        raise UsageError(f"input size must be C x H x W, got {input_size}")
    has_teacher = loaders[1] is not None
    sets = load_datasets(cfg.data, cfg.val_data, input_size, augment=cfg.augment, seed=cfg.seed,
                         teacher=has_teacher, labels=not (has_teacher and cfg.kd_alpha >= 1))
    n_out = _num_outputs(student, input_size, loaded.name)
    if sets.labelled:
        check_outputs(n_out, sets.classes, f"model {loaded.name}")
        if n_out > len(sets.classes):
            note(f"the model has {n_out} outputs for {len(sets.classes)} classes; the extra outputs are trained "
                 "towards zero probability")
    if sets.val is None:
        note("no validation data (give `val_data`, or DIR/train + DIR/val): reporting training metrics only")
    elif sets.held_out:
        note(f"{cfg.data} has no labels: {sets.held_out} of its {sets.held_out + len(sets.train)} images (a fixed "
             f"{HOLD_OUT_FRACTION:.0%}) held out of training to measure top-1 agreement with the teacher (or give "
             "`val_data`)")
    elif not sets.val_labelled:
        note(f"validation data {sets.val_source} has no labels: reporting top-1 agreement with the teacher")

    teacher: nn.Module | None = None
    teacher_label: str | None = None
    if loaders[1] is not None:
        t_loaded = loaders[1]()
        teacher_label = str(t_loaded.path) if t_loaded.path else t_loaded.name
        t_out = _num_outputs(t_loaded.model, input_size, f"teacher {t_loaded.name}")
        if t_out != n_out:
            raise UsageError(f"teacher {t_loaded.name} has {t_out} classes but the student {loaded.name} has {n_out}")
        teacher = t_loaded.model.to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        if cfg.channels_last:
            teacher = teacher.to(memory_format=torch.channels_last)

    steps = steps_per_epoch(sets.train, cfg.batch_size, env.world_size)
    if steps == 0:
        raise DataError(f"{cfg.data} has {len(sets.train)} training images, fewer than one batch of "
                        f"{cfg.batch_size}: lower `batch_size`")

    student = student.to(device)
    if cfg.channels_last:
        student = student.to(memory_format=torch.channels_last)
    lr = cfg.lr if cfg.lr is not None else DEFAULT_LR[cfg.optimizer]
    wd = cfg.weight_decay if cfg.weight_decay is not None else DEFAULT_WEIGHT_DECAY[cfg.optimizer]
    optimizer = build_optimizer(student, cfg.optimizer, lr, wd, cfg.momentum)
    scheduler = build_scheduler(optimizer, schedule=cfg.schedule, epochs=cfg.epochs, steps_per_epoch=steps,
                                warmup_epochs=cfg.warmup_epochs if cfg.warmup_epochs is not None
                                else default_warmup_epochs(cfg.epochs))
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and device.type == "cuda")

    start_epoch, start_step = 0, 0
    history: list[EpochRecord] = []
    partial = Meter()
    if resume is not None:
        ckpt_mod.check_architecture(resume, student, str(cfg.resume))
        student.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        scaler.load_state_dict(resume["scaler"])
        start_epoch, start_step = int(resume["epoch"]), int(resume["step"])
        history = [EpochRecord(**r) for r in resume.get("history", [])]
        partial = Meter.from_list(list(resume.get("partial", [0, 0, 0, 0])))
        saved_cfg = resume.get("config", {})
        now = {k: _plain(getattr(cfg, k)) for k in ("data", "batch_size", "optimizer", "schedule", "seed", "input_size")}
        now["teacher"] = teacher_label
        changed = [k for k, v in now.items() if k in saved_cfg and v != saved_cfg[k]]
        if changed:
            note(f"resuming with different {', '.join(changed)} than the checkpoint was made with")
        if int(resume.get("steps_per_epoch", steps)) != steps:
            raise UsageError(f"checkpoint {cfg.resume} has {resume['steps_per_epoch']} steps per epoch, this run "
                             f"{steps}: resume with the same data and `batch_size`")
        if start_epoch >= cfg.epochs:
            note(f"checkpoint {cfg.resume} already finished {start_epoch} epochs (asked for {cfg.epochs})")
        if env.rank == 0:
            ckpt_mod.restore_rng(resume["rng"])

    swapped = dist_mod.sync_batchnorm(student) if env.enabled else []
    net: nn.Module = student
    if env.enabled:
        net = nn.parallel.DistributedDataParallel(
            student, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False)

    def state(epoch: int, step: int, meter: Meter) -> dict[str, Any]:
        return {
            "model": student.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(), "epoch": epoch, "step": step, "steps_per_epoch": steps,
            "partial": meter.as_list(), "history": [asdict(r) for r in history], "rng": ckpt_mod.capture_rng(),
            "signature": ckpt_mod.architecture_signature(student), "model_source": loaded.recipe.source,
            "config": {**{k: _plain(v) for k, v in asdict(cfg).items()}, "teacher": teacher_label}, "world_size": env.world_size,
        }

    def save(epoch: int, step: int, meter: Meter) -> None:
        if ck_path is not None and env.is_main:
            ckpt_mod.save_checkpoint(ck_path, state(epoch, step, meter))

    pin = device.type == "cuda"
    val_loader = (eval_loader(sets.val, batch_size=max(per_rank, 1), rank=env.rank, world=env.world_size,
                              workers=cfg.workers, pin_memory=pin) if sets.val is not None else None)
    stop = _StopFlag()
    train_imgs, train_secs = 0, 0.0
    with stop.installed(also_sigterm=env.enabled):
        for epoch in range(start_epoch, cfg.epochs):
            skip = start_step if epoch == start_epoch else 0
            meter = partial if epoch == start_epoch else Meter()
            loader = train_loader(sets.train, per_rank_batch=per_rank, rank=env.rank, world=env.world_size,
                                  seed=cfg.seed, epoch=epoch, skip=skip, workers=cfg.workers, pin_memory=pin)
            task = f"epoch {epoch + 1}/{cfg.epochs}"
            progress(task, skip, steps)
            net.train()
            t_epoch = time.perf_counter()
            n_epoch = 0
            step = skip
            try:
                for x, y in loader:
                    x = x.to(device, non_blocking=True)
                    y = y.to(device, non_blocking=True) if sets.labelled else None
                    if cfg.channels_last:
                        x = x.contiguous(memory_format=torch.channels_last)
                    t_logits = None
                    with autocast(device, cfg.amp):
                        logits = net(x)
                        if teacher is not None:
                            with torch.no_grad():
                                t_logits = teacher(x)
                            loss = distillation_loss(logits, t_logits, y, alpha=cfg.kd_alpha,
                                                     temperature=cfg.kd_temperature,
                                                     label_smoothing=cfg.label_smoothing)
                        else:
                            assert y is not None  # load_datasets refuses unlabelled data without a teacher
                            loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
                    loss_value = float(loss.detach())  # one device sync per step, reused below
                    if not math.isfinite(loss_value):
                        raise GhostcliError(f"the loss became {loss_value} at epoch {epoch + 1}, step {step + 1}: "
                                            "lower `lr` (or drop `amp`)")
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                    scheduler.step()
                    step += 1
                    meter.update(loss_value, logits.detach().float(), y,
                                 None if t_logits is None else t_logits.detach().float())
                    n_epoch += int(x.shape[0])
                    el = time.perf_counter() - t_epoch
                    ips = n_epoch * env.world_size / el if el > 0 else 0.0
                    acc = f"acc {meter.acc1:.1f}%  " if sets.labelled else ""
                    agree = f"agree {meter.agreement:.1f}%  " if teacher is not None else ""
                    progress(task, step, steps, f"loss {meter.loss:.4f}  {acc}{agree}{ips:,.0f} img/s  "
                                                f"lr {float(scheduler.get_last_lr()[0]):.3g}")
                    if dist_mod.any_rank(stop.requested, env, device) and step < steps:
                        _interrupt(save, epoch, step, meter, env, device, ck_path, cfg, steps, collective=True)
            except KeyboardInterrupt:
                if stop.aborted:  # a second Ctrl-C: the step may be half done, keep the last epoch checkpoint
                    raise TrainingInterrupted("training aborted (second Ctrl-C); the last end-of-epoch "
                                              f"checkpoint is kept{f' in {ck_path}' if ck_path else ''}") from None
                _interrupt(save, epoch, step, meter, env, device, ck_path, cfg, steps)
            secs = time.perf_counter() - t_epoch
            train_imgs += n_epoch * env.world_size
            train_secs += secs
            total = Meter.from_list(dist_mod.all_reduce_sum(meter.as_list(), env, device))
            record = EpochRecord(epoch=epoch + 1, lr=float(scheduler.get_last_lr()[0]), train_loss=total.loss,
                                 train_top1=or_none(total.acc1), seconds=secs,
                                 train_images_per_s=n_epoch * env.world_size / secs if secs > 0 else 0.0,
                                 train_agreement=or_none(total.agreement))
            if val_loader is not None:
                vm = run_eval(student, val_loader, device, env=env, amp=cfg.amp, channels_last=cfg.channels_last,
                              teacher=teacher, labelled=sets.val_labelled)
                if sets.val_labelled:
                    record.val_loss, record.val_top1, record.val_top5 = vm.loss, vm.acc1, vm.acc5
                record.val_agreement = or_none(vm.agreement)
            history.append(record)
            save(epoch + 1, 0, Meter())
            on_epoch(record)
            if dist_mod.any_rank(stop.requested, env, device) and epoch + 1 < cfg.epochs:
                _interrupt(save, epoch + 1, 0, Meter(), env, device, ck_path, cfg, steps, saved=True)

    dist_mod.restore_batchnorm(swapped)
    student.eval()
    final = student.to("cpu").to(memory_format=torch.contiguous_format)
    val_size = len(sets.val) if sets.val is not None else 0  # type: ignore[arg-type]
    last = history[-1] if history else None
    best = max((r for r in history if r.val_top1 is not None), key=lambda r: r.val_top1 or 0.0, default=None)
    best_agree = max((r for r in history if r.val_agreement is not None), key=lambda r: r.val_agreement or 0.0,
                     default=None)
    best_epoch = best.epoch if best else (best_agree.epoch if best_agree else None)
    if out_path is not None and env.is_main:
        recipe = Recipe.from_dict(loaded.recipe.to_dict())
        recipe.input_size = list(input_size)
        recipe.extra = dict(recipe.extra)
        recipe.extra["training"] = {
            "data": cfg.data, "epochs": cfg.epochs, "seed": cfg.seed, "teacher": teacher_label,
            "kd_alpha": cfg.kd_alpha if teacher is not None else None, "global_batch_size": cfg.batch_size,
            "world_size": env.world_size, "val_top1": last.val_top1 if last else None,
            "val_agreement": last.val_agreement if last else None, "labelled": sets.labelled,
            "classes": sets.classes if sets.labelled and len(sets.classes) <= 1000 else None,
        }
        save_artifact(final, out_path, recipe, force=True)
    dist_mod.barrier(env)
    return TrainResult(
        model_name=loaded.name, output=str(out_path) if out_path else None,
        checkpoint=str(ck_path) if ck_path else None, data=cfg.data, val_data=sets.val_source,
        teacher=teacher_label, device=str(device), world_size=env.world_size, global_batch_size=cfg.batch_size,
        per_rank_batch_size=per_rank, epochs=cfg.epochs, steps_per_epoch=steps, train_images=len(sets.train),
        val_images=val_size, num_classes=len(sets.classes), input_size=list(input_size),
        final_val_top1=last.val_top1 if last else None, final_val_top5=last.val_top5 if last else None,
        final_val_loss=last.val_loss if last else None,
        best_val_top1=best.val_top1 if best else None, best_epoch=best_epoch,
        final_val_agreement=last.val_agreement if last else None,
        best_val_agreement=best_agree.val_agreement if best_agree else None, labelled=sets.labelled,
        train_images_per_s=train_imgs / train_secs if train_secs > 0 else 0.0,
        seconds=time.perf_counter() - t_start, resumed_from=cfg.resume, history=history, notes=notes,
        model=final,
    )


def _interrupt(save: Callable[[int, int, Meter], None], epoch: int, step: int, meter: Meter, env: dist_mod.DistEnv,
               device: torch.device, ck_path: Path | None, cfg: TrainConfig, steps: int, saved: bool = False,
               collective: bool = False) -> None:
    """Save where training stands and stop with a one-line message (``collective``: all ranks are here)."""
    if not saved:
        if collective and env.enabled:
            meter = Meter.from_list(dist_mod.all_reduce_sum(meter.as_list(), env, device))
        save(epoch, step, meter)
    where = f"epoch {epoch + 1}/{cfg.epochs}, step {step}/{steps}" if step else f"after epoch {epoch}/{cfg.epochs}"
    if ck_path is None:
        raise TrainingInterrupted(f"training interrupted at {where}; no checkpoint path, nothing saved")
    raise TrainingInterrupted(f"training interrupted at {where}; checkpoint saved to {ck_path} "
                              f"(continue with `resume` {ck_path})")


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v
