"""``ghostcli train``: fine-tune or distil a (ghostified) model to recover accuracy; single process or torchrun."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from ghostcli.cli.common import AllowPickleOpt, ForceOpt, InputSizeOpt, JsonOpt, ModelArg, TrustFactoryOpt, WeightsOpt

if TYPE_CHECKING:
    from ghostcli.loaded import LoadedModel

HELP = """Train MODEL on image data, optionally distilling from a teacher, and save it as an artifact.

Typical use: recover the accuracy a network lost when ghostify replaced its convolutions, with the original network as the teacher. --data is a folder in torchvision ImageFolder layout (DIR/<class>/<image>; DIR/train + DIR/val are split automatically), the built-in 'digits' set (scikit-learn's 8x8 handwritten digits, upsampled, fixed 80/20 split), 'fashion-mnist' or idx:PATH (MNIST-format files, their t10k files as the val split).

No labels: with --teacher and --kd-alpha 1 (soft targets only) --data may be a folder of unlabelled images (no class subfolders). A fixed 10% of it is held out and the report gives top-1 agreement with the teacher there instead of accuracy (or on --val-data; a labelled --val-data also gives top-1). A checkpoint (model, optimizer, scheduler, scaler, epoch, RNG) is written atomically after every epoch and on Ctrl-C; --resume continues exactly where it stopped.

Several processes: torchrun --nproc_per_node N -m ghostcli train ... runs DistributedDataParallel (gloo on CPU, nccl on CUDA). --batch-size is the global batch, split across the processes; BatchNorm statistics are synchronized, so the result matches one process up to floating-point noise. Rank 0 logs and saves.

Accuracies are top-1/top-5 in percent on the validation data; agreement is the share of images whose top-1 class is the teacher's.

Examples:

  ghostcli train resnet20 --data digits --input-size 3x16x16 --epochs 5 -o resnet20_digits.safetensors

  ghostcli ghostify resnet20 --weights resnet20_digits.safetensors --input-size 3x16x16 -o ghost_resnet20.safetensors

  ghostcli train ghost_resnet20.safetensors --data digits --input-size 3x16x16 --teacher resnet20_digits.safetensors -o ghost_kd.safetensors

  ghostcli train ghost_resnet20.safetensors --data images/top --input-size 3x16x16 --teacher resnet20_digits.safetensors --kd-alpha 1 --batch-size 4 -o ghost_unlabelled.safetensors

  ghostcli train ghost_r50.safetensors --data ~/imagenette --teacher resnet50 --teacher-weights r50.pth --amp --device cuda -o out.safetensors

  torchrun --nproc_per_node 2 -m ghostcli train resnet20 --data digits --batch-size 64 -o ddp.safetensors

  ghostcli train resnet20 --data digits -o r20.safetensors --resume r20.ckpt  # after Ctrl-C
"""


def train_command(
    model: ModelArg,
    data: Annotated[str, typer.Option("--data", metavar="DATA", help="Training data: an ImageFolder directory, 'digits', 'fashion-mnist', idx:PATH, or a folder of unlabelled images (with --teacher and --kd-alpha 1).")],
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", metavar="FILE", help="Save the trained model as a .safetensors artifact "
                                        "(required).")
    ] = None,
    val_data: Annotated[
        Optional[str], typer.Option("--val-data", metavar="DATA", help="Validation data (default: the data set's own split, DIR/val, "
            "10% held out of unlabelled images, or none).")
    ] = None,
    weights: WeightsOpt = None,
    teacher: Annotated[
        Optional[str], typer.Option("--teacher", metavar="MODEL", help="Teacher MODEL for knowledge distillation (e.g. the original "
            "network).")
    ] = None,
    teacher_weights: Annotated[
        Optional[Path], typer.Option("--teacher-weights", metavar="FILE", help="Weights for the teacher (.safetensors or .pt/.pth state "
            "dict).")
    ] = None,
    kd_alpha: Annotated[
        float, typer.Option("--kd-alpha", metavar="X", help="Weight of the distillation (KL) term; 1 - alpha weighs the label loss (1: soft targets only, labels unused).")
    ] = 0.5,
    kd_temperature: Annotated[
        float, typer.Option("--kd-temperature", metavar="T", help="Softmax temperature T of distillation (the KL term is scaled "
            "by T^2).")
    ] = 4.0,
    epochs: Annotated[int, typer.Option("--epochs", metavar="N", help="Number of epochs.")] = 10,
    batch_size: Annotated[
        int, typer.Option("--batch-size", metavar="N", help="Global batch size (split across torchrun processes).")
    ] = 64,
    lr: Annotated[
        Optional[float], typer.Option("--lr", metavar="X", help="Peak learning rate (default 0.1 for sgd, 0.001 for adamw).")
    ] = None,
    optimizer: Annotated[str, typer.Option("--optimizer", metavar="NAME", help="sgd (Nesterov momentum 0.9) or adamw.")] = "sgd",
    weight_decay: Annotated[
        Optional[float], typer.Option("--weight-decay", metavar="X", help="Weight decay, not applied to biases/norms (default 5e-4 sgd, "
            "0.05 adamw).")
    ] = None,
    schedule: Annotated[
        str, typer.Option("--schedule", metavar="NAME", help="Learning-rate schedule per step: cosine, step (x0.1 at 50% "
            "and 75%) or constant.")
    ] = "cosine",
    warmup_epochs: Annotated[Optional[float], typer.Option("--warmup-epochs", metavar="X", help="Linear warm-up length in epochs (default: 1, or a tenth of --epochs when that is shorter; 0 turns it off).", show_default=False)] = None,
    label_smoothing: Annotated[
        float, typer.Option("--label-smoothing", metavar="X", help="Label smoothing of the cross-entropy.")
    ] = 0.0,
    amp: Annotated[
        bool, typer.Option("--amp", help="Mixed precision (float16 + loss scaling on CUDA, bfloat16 on CPU).")
    ] = False,
    channels_last: Annotated[
        bool, typer.Option("--channels-last", help="Use the channels-last memory format.")
    ] = False,
    device: Annotated[
        str, typer.Option("--device", metavar="DEVICE", help="cpu, cuda, cuda:N or auto (under torchrun each rank takes "
            "cuda:LOCAL_RANK).")
    ] = "auto",
    workers: Annotated[int, typer.Option("--workers", metavar="N", help="Data-loading worker processes (0: none).")] = 0,
    resume: Annotated[Optional[Path], typer.Option("--resume", metavar="FILE", help="Continue from this checkpoint.")] = None,
    checkpoint: Annotated[
        Optional[Path], typer.Option("--checkpoint", metavar="FILE", help="Checkpoint path (default: the --output path with suffix .ckpt).")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", metavar="N", help="Random seed (initialization, shuffling, augmentation).")] = 0,
    input_size: InputSizeOpt = None,
    augment: Annotated[
        bool, typer.Option("--augment/--no-augment", help="Training augmentation (random resized crop + flip for "
            "folders, random shifts for digits).")
    ] = True,
    force: ForceOpt = False,
    allow_pickle: AllowPickleOpt = False,
    trust_factory: TrustFactoryOpt = False,
    as_json: JsonOpt = False,
) -> None:
    from ghostcli.errors import UsageError

    if output is None:
        raise UsageError("give -o/--output OUT.safetensors for the trained model")
    from ghostcli.units import parse_input_size

    size = parse_input_size(input_size) if input_size else None
    from ghostcli import render
    from ghostcli.train import TrainConfig, train_model

    if teacher_weights and not teacher:
        raise UsageError("--teacher-weights needs --teacher")
    from ghostcli.train.data import check_data_path

    for source in (data, val_data):  # a missing folder or uninstalled source is named before any model is built
        if source is not None:
            check_data_path(source)
    cfg = TrainConfig(
        data=data, output=str(output), val_data=val_data, kd_alpha=kd_alpha,
        kd_temperature=kd_temperature, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer.lower(),
        weight_decay=weight_decay, schedule=schedule.lower(), warmup_epochs=warmup_epochs,
        label_smoothing=label_smoothing, amp=amp, channels_last=channels_last, device=device, workers=workers,
        resume=str(resume) if resume else None, checkpoint=str(checkpoint) if checkpoint else None, seed=seed,
        input_size=size, augment=augment, force=force,
    )
    from ghostcli.resolve import resolve_model

    def loader(spec: str, weights_path: Path | None) -> Callable[[], LoadedModel]:
        return lambda: resolve_model(spec, weights=str(weights_path) if weights_path else None,
                                     allow_pickle=allow_pickle, trust_factory=trust_factory)

    is_main = os.environ.get("RANK", "0") in ("", "0")  # the library reports on rank 0 only; the CLI prints there
    from ghostcli.cli.train_view import show_epoch, show_result

    with render.progress_bar(transient=False, enabled=is_main) as progress:
        result = train_model(cfg, loader(model, weights), teacher=loader(teacher, teacher_weights) if teacher else None,
                             progress=progress, on_epoch=show_epoch, on_note=render.warn)
    if not is_main:
        return
    if as_json:
        render.print_json("train", result.to_dict())
    else:
        show_result(result)


def register(app: typer.Typer) -> None:
    """Add ``train`` to the app."""
    app.command(name="train", help=HELP)(train_command)
