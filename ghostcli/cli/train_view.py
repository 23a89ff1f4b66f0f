"""Rendering for ``ghostcli train``: a log line per epoch on stderr and the final summary on stdout."""

from __future__ import annotations

from collections.abc import Callable

from ghostcli import render
from ghostcli.train import EpochRecord, TrainResult


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}%"


def _num(v: float | None, digits: int = 4) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def show_epoch(record: EpochRecord) -> None:
    """The log line of a finished epoch on stderr (printed above the progress bars)."""
    train = f"train loss {record.train_loss:.4f}"
    if record.train_top1 is not None:
        train += f" acc {record.train_top1:.2f}%"
    if record.train_agreement is not None:
        train += f" agreement {record.train_agreement:.2f}%"
    val = (f", val loss {record.val_loss:.4f} top-1 {record.val_top1:.2f}% top-5 {record.val_top5:.2f}%"
           if record.val_top1 is not None and record.val_loss is not None and record.val_top5 is not None else "")
    if record.val_agreement is not None:
        val += f"{', val' if not val else ''} agreement {record.val_agreement:.2f}%"
    render.stderr.print(f"epoch {record.epoch}: {train}{val}, {record.train_images_per_s:,.0f} img/s, "
                        f"{record.seconds:.1f} s", highlight=False, soft_wrap=True)


def show_result(r: TrainResult) -> None:
    """The summary and the per-epoch history as tables on stdout.

    Top-1 columns appear for labelled data, agreement columns (top-1 agreement with the teacher) with a teacher.
    """
    where = f"{r.device} x {r.world_size} processes" if r.world_size > 1 else r.device
    kind = f"{r.num_classes} classes" if r.labelled else "unlabelled"
    rows = [
        ("model", r.model_name),
        ("data", f"{r.data} ({r.train_images} train / {r.val_images} val images, {kind})"),
        ("validation", r.val_data or "-"),
        ("teacher", r.teacher or "-"),
        ("device", where),
        ("batch", f"{r.global_batch_size} global ({r.per_rank_batch_size} per process), {r.steps_per_epoch} steps/epoch"),
        ("epochs", str(r.epochs) + (f" (resumed from {r.resumed_from})" if r.resumed_from else "")),
    ]
    labelled_val = r.final_val_top1 is not None
    if labelled_val or r.final_val_agreement is None:
        rows += [("val top-1", _pct(r.final_val_top1)), ("val top-5", _pct(r.final_val_top5)),
                 ("val loss", _num(r.final_val_loss)),
                 ("best val top-1", f"{_pct(r.best_val_top1)} (epoch {r.best_epoch})" if r.best_val_top1 is not None
                  else "-")]
    if r.final_val_agreement is not None:
        rows.append(("val agreement", f"{_pct(r.final_val_agreement)} (top-1 class = the teacher's)"))
        if not labelled_val:
            rows.append(("best val agreement", f"{_pct(r.best_val_agreement)} (epoch {r.best_epoch})"))
    rows += [
        ("throughput", f"{r.train_images_per_s:,.0f} images/s (training)"),
        ("time", f"{r.seconds:.1f} s"),
        ("saved", r.output or "-"),
        ("checkpoint", r.checkpoint or "-"),
    ]
    render.stdout.print(render.table("Training", ["", ""], rows))
    cols: list[tuple[str, Callable[[EpochRecord], str]]] = [
        ("epoch", lambda h: str(h.epoch)), ("lr", lambda h: f"{h.lr:.4g}"), ("train loss", lambda h: _num(h.train_loss))]
    if r.labelled:
        cols.append(("train top-1", lambda h: _pct(h.train_top1)))
    if r.teacher:
        cols.append(("train agreement", lambda h: _pct(h.train_agreement)))
    if labelled_val or r.final_val_agreement is None:
        cols += [("val loss", lambda h: _num(h.val_loss)), ("val top-1", lambda h: _pct(h.val_top1)),
                 ("val top-5", lambda h: _pct(h.val_top5))]
    if r.final_val_agreement is not None:
        cols.append(("val agreement", lambda h: _pct(h.val_agreement)))
    cols.append(("img/s", lambda h: f"{h.train_images_per_s:,.0f}"))
    hist = [tuple(f(h) for _, f in cols) for h in r.history]
    if hist:
        render.stdout.print(render.table(None, [c for c, _ in cols], hist, numeric=range(len(cols))))
