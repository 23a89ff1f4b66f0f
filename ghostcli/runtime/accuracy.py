"""The one top-1 loop: class predictions of a model that runs on numpy batches.

An *infer* function maps a float32 batch (``N x C x H x W``) to the model's first output
(``N x ...``): :func:`ghostcli.runtime.openvino.infer_fn` for OpenVINO,
:func:`ghostcli.runtime.onnx.session_infer` for ONNX Runtime, or any callable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

from ghostcli.progress import Progress, no_progress

Infer = Callable[[np.ndarray], np.ndarray]


def run_batch(infer: Infer, x: np.ndarray, fixed_batch: int | None = None) -> np.ndarray:
    """``infer`` on the ``N`` images of ``x``; with ``fixed_batch``, in chunks of that size, the last padded.

    A model exported with a fixed batch takes exactly that many images: the batch is cut into
    chunks and a short last chunk is padded with copies of its last image, whose outputs are dropped.
    """
    if not fixed_batch:
        return np.asarray(infer(np.ascontiguousarray(x)))
    outs = []
    for i in range(0, len(x), fixed_batch):
        chunk = x[i:i + fixed_batch]
        n = len(chunk)
        if n < fixed_batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], fixed_batch - n, axis=0)])
        outs.append(np.asarray(infer(np.ascontiguousarray(chunk)))[:n])
    return np.concatenate(outs)


def top1(infer: Infer, batches: Sequence[np.ndarray], *, progress: Progress = no_progress,
         description: str = "evaluating") -> np.ndarray:
    """The predicted class (argmax of the flattened output) of every image in ``batches``, in order."""
    preds = []
    progress(description, 0, len(batches))
    for i, x in enumerate(batches):
        out = run_batch(infer, x)
        preds.append(np.argmax(out.reshape(out.shape[0], -1), axis=1))
        progress(description, i + 1, len(batches))
    return np.concatenate(preds).astype(np.int64) if preds else np.empty(0, dtype=np.int64)


def top1_accuracy(infer: Infer, items: Iterable[tuple[np.ndarray, int]]) -> float:
    """Fraction of ``(batch of one image, label)`` items whose top-1 class is the label (0 for none)."""
    pairs = list(items)
    if not pairs:
        return 0.0
    preds = top1(infer, [x for x, _ in pairs])
    return float(np.mean(preds == np.asarray([int(y) for _, y in pairs])))
