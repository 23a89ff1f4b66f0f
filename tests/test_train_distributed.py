"""torchrun with 2 CPU processes (gloo, DDP, DistributedSampler) gives the single-process result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ghostcli.resolve import resolve_model
from ghostcli.train import TrainConfig, train_model
from ghostcli.train.distributed import DistEnv, detect
from train_fixtures import free_port, make_image_folder, one_thread  # noqa: F401 (pytest fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_detect_reads_the_torchrun_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert detect() == DistEnv(rank=3, world_size=4, local_rank=1)
    monkeypatch.setenv("RANK", "4")
    from ghostcli.errors import UsageError

    with pytest.raises(UsageError, match="inconsistent"):
        detect()


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path: Path) -> None:
    data = make_image_folder(tmp_path / "data", per_class=20, size=8)
    common = ["--data", str(data), "--val-data", str(data), "--input-size", "3x8x8", "--epochs", "2",
              "--batch-size", "8", "--lr", "0.01", "--device", "cpu", "--seed", "3", "--warmup-epochs", "0"]
    out = tmp_path / "ddp.safetensors"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GHOSTCLI_DEBUG": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), "-m", "ghostcli", "train", "resnet20", *common, "--json", "-o", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    d = json.loads(r.stdout)  # only rank 0 printed
    assert d["world_size"] == 2 and d["global_batch_size"] == 8 and d["per_rank_batch_size"] == 4
    assert d["steps_per_epoch"] == 5 and d["val_images"] == 40
    assert r.stderr.count("epoch 2:") == 1  # rank 0 logs, rank 1 is silent

    # one thread, like each rank: training amplifies rounding differences (BatchNorm over tiny 2x2 maps), and a
    # different thread count alone moves this run by ~1e-1 after 10 steps, so the arithmetic is kept alike. The
    # schedule is pinned (no warm-up): how far the all-reduce's summation order is amplified depends on the lr
    # sequence (with a one-step warm-up the runs differed by 5e-3 relative, with none or two steps by < 1e-4)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = train_model(TrainConfig(model="resnet20", data=str(data), val_data=str(data), input_size=(3, 8, 8),
                                         epochs=2, batch_size=8, lr=0.01, device="cpu", seed=3, warmup_epochs=0))
    finally:
        torch.set_num_threads(threads)
    assert single.steps_per_epoch == 5
    ddp_state = resolve_model(str(out)).model.state_dict()
    one_state = single.model.state_dict()
    # float noise only (sum order of all-reduces): measured ~3e-6 relative; per-rank BatchNorm would give ~1e-1
    rel = {k: float((ddp_state[k].float() - v.float()).abs().max() / (v.float().abs().max() + 1e-12))
           for k, v in one_state.items()}
    worst = max(rel, key=rel.__getitem__)
    assert rel[worst] < 1e-4, (worst, rel[worst])
    for a, b in zip(d["history"], single.history):
        assert a["train_loss"] == pytest.approx(b.train_loss, rel=1e-4)
        assert a["val_loss"] == pytest.approx(b.val_loss, rel=1e-3)
        assert a["val_top1"] == b.val_top1
