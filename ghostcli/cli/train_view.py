"""Rendering for ``ghostcli train``: a log line per epoch on stderr and the final summary on stdout."""

from __future__ import annotations

from ghostcli import render
from ghostcli.train import EpochRecord, TrainResult


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}%"


def _num(v: float | None, digits: int = 4) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def show_epoch(record: EpochRecord) -> None:
    """The log line of a finished epoch on stderr (printed above the progress bars)."""
    val = (f", val loss {record.val_loss:.4f} top-1 {record.val_top1:.2f}% top-5 {record.val_top5:.2f}%"
           if record.val_top1 is not None else "")
    render.stderr.print(
        f"epoch {record.epoch}: train loss {record.train_loss:.4f} acc {record.train_top1:.2f}%{val}, "
        f"{record.train_images_per_s:,.0f} img/s, {record.seconds:.1f} s", highlight=False, soft_wrap=True)


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
