"""Training checkpoints: model, optimizer, scheduler, scaler, progress and RNG state.

Saved with ``torch.save`` into a temporary file that is renamed into place
(never half-written) and read back with ``torch.load(weights_only=True)``:
RNG states are stored as tensors and everything else as plain Python types.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ghostcli.errors import ArtifactError, one_line
from ghostcli.fsutil import atomic_path

CHECKPOINT_FORMAT = "ghostcli-checkpoint/1"


def capture_rng() -> dict[str, Any]:
    """Every RNG a training step may draw from, as tensors and plain types."""
    np_state = np.random.get_state(legacy=False)  # MT19937: {"state": {"key", "pos"}, "has_gauss", "gauss"}
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np.asarray(np_state["state"]["key"], dtype=np.int64)),
                  "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                  "cached_gaussian": float(np_state["gauss"])},
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Put back what :func:`capture_rng` took."""
    torch.set_rng_state(state["torch"])
    npst = state["numpy"]
    np.random.set_state(("MT19937", npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"],
                         npst["cached_gaussian"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


def architecture_signature(model: nn.Module) -> list[list[Any]]:
    """``[[name, shape...], ...]`` for every tensor of the state dict: what must match to resume."""
    return [[k, *map(int, v.shape)] for k, v in model.state_dict().items()]


def check_architecture(ckpt: dict[str, Any], model: nn.Module, path: str | Path) -> None:
    """Refuse a checkpoint whose tensors do not match ``model``'s."""
    saved = [list(x) for x in ckpt.get("signature", [])]
    current = architecture_signature(model)
    if saved == current:
        return
    saved_map = {s[0]: s[1:] for s in saved}
    cur_map = {s[0]: s[1:] for s in current}
    where = next((k for k in cur_map if saved_map.get(k) != cur_map[k]), None) or next(iter(saved_map), "?")
    if where in saved_map and where in cur_map:
        detail = f"{where} is {tuple(saved_map[where])} there and {tuple(cur_map[where])} here"
    else:
        detail = f"first differing tensor: {where}"
    made_for = ckpt.get("model_source") or "another model"
    raise ArtifactError(f"checkpoint {path} was made for a different architecture ({made_for}): {detail}")


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (temp file + rename)."""
    dest = Path(path)
    payload = {"format": CHECKPOINT_FORMAT, **state}
    with atomic_path(dest) as tmp:
        torch.save(payload, str(tmp))
    return dest


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint safely (no unpickling of arbitrary objects)."""
    p = Path(path)
    if not p.is_file():
        raise ArtifactError(f"no such checkpoint: {p}")
    try:
        ckpt = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ArtifactError(f"{p} is not a readable ghostcli checkpoint (truncated or corrupt?): "
                            f"{one_line(exc, 160)}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ArtifactError(f"{p} is not a ghostcli training checkpoint")
    return ckpt
