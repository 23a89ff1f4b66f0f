"""Rendering for ``ghostcli train``: rich progress bars on stderr and the final summary on stdout."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from ghostcli import render
from ghostcli.train import EpochRecord, TrainReporter, TrainResult


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}%"


def _num(v: float | None, digits: int = 4) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


class ProgressReporter(TrainReporter):
    """One progress bar per epoch with loss, accuracy, images/s and learning rate; a log line per epoch."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.progress = render.progress(transient=False)
        self.task: Any = None

    def __enter__(self) -> ProgressReporter:
        if self.enabled:
            self.progress.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if self.enabled:
            self.progress.stop()

    def epoch_start(self, epoch: int, epochs: int, steps: int, done: int) -> None:
        if self.enabled:
            self.task = self.progress.add_task(f"epoch {epoch}/{epochs}", total=steps, completed=done, info="")

    def step(self, epoch: int, step: int, steps: int, loss: float, top1: float, images_per_s: float,
             lr: float) -> None:
        if self.enabled and self.task is not None:
            info = f"loss {loss:.4f}  acc {top1:.1f}%  {images_per_s:,.0f} img/s  lr {lr:.3g}"
            self.progress.update(self.task, completed=step, info=info)

    def epoch_end(self, record: EpochRecord) -> None:
        if not self.enabled:
            return
        val = (f", val loss {record.val_loss:.4f} top-1 {record.val_top1:.2f}% top-5 {record.val_top5:.2f}%"
               if record.val_top1 is not None else "")
        self.progress.console.print(
            f"epoch {record.epoch}: train loss {record.train_loss:.4f} acc {record.train_top1:.2f}%{val}, "
            f"{record.train_images_per_s:,.0f} img/s, {record.seconds:.1f} s", highlight=False, soft_wrap=True)

    def note(self, message: str) -> None:
        if self.enabled:
            render.warn(message)


def show_result(r: TrainResult) -> None:
    """The summary and the per-epoch history as tables on stdout."""
    where = f"{r.device} x {r.world_size} processes" if r.world_size > 1 else r.device
    rows = [
        ("model", r.model_name),
        ("data", f"{r.data} ({r.train_images} train / {r.val_images} val images, {r.num_classes} classes)"),
        ("teacher", r.teacher or "-"),
        ("device", where),
        ("batch", f"{r.global_batch_size} global ({r.per_rank_batch_size} per process), {r.steps_per_epoch} steps/epoch"),
        ("epochs", str(r.epochs) + (f" (resumed from {r.resumed_from})" if r.resumed_from else "")),
        ("val top-1", _pct(r.final_val_top1)),
        ("val top-5", _pct(r.final_val_top5)),
        ("val loss", _num(r.final_val_loss)),
        ("best val top-1", f"{_pct(r.best_val_top1)} (epoch {r.best_epoch})" if r.best_epoch else "-"),
        ("throughput", f"{r.train_images_per_s:,.0f} images/s (training)"),
        ("time", f"{r.seconds:.1f} s"),
        ("saved", r.output or "-"),
        ("checkpoint", r.checkpoint or "-"),
    ]
    render.stdout.print(render.table("Training", ["", ""], rows))
    hist = [(h.epoch, f"{h.lr:.4g}", _num(h.train_loss), _pct(h.train_top1), _num(h.val_loss), _pct(h.val_top1),
             _pct(h.val_top5), f"{h.train_images_per_s:,.0f}") for h in r.history]
    if hist:
        render.stdout.print(render.table(None, ["epoch", "lr", "train loss", "train top-1", "val loss", "val top-1",
                                                "val top-5", "img/s"], hist, numeric=range(8)))
