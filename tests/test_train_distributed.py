"""torchrun with 2 CPU processes (gloo, DDP, DistributedSampler) gives the single-process result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from ghostcli.resolve import resolve_model
from ghostcli.train import TrainConfig, train_model
from ghostcli.train.distributed import DistEnv, detect, restore_batchnorm, sync_batchnorm

from train_fixtures import free_port, make_image_folder

pytestmark = pytest.mark.usefixtures("one_thread")

BN_DTYPES = (torch.float32, torch.float64)


def test_detect_reads_the_torchrun_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert detect() == DistEnv(rank=3, world_size=4, local_rank=1)
    monkeypatch.setenv("RANK", "4")
    from ghostcli.errors import UsageError

    with pytest.raises(UsageError, match="inconsistent"):
        detect()


def _bn_case(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """A global batch of 8 (channel means far from 0, to exercise the two-pass variance) and an output gradient."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, 5, 5, generator=g, dtype=torch.float64) * 2 + torch.tensor([3.0, -1.0, 0.5]).view(1, 3, 1, 1)
    return x.to(dtype), torch.randn(8, 3, 5, 5, generator=g, dtype=torch.float64).to(dtype)


def _bn_layer(dtype: torch.dtype) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(3).to(dtype)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.5, 0.5, -1.0]))
        bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    return bn


def _global_bn_worker(rank: int, port: int, out: str) -> None:
    """One of 2 gloo ranks: forward/backward of a swapped BatchNorm on every 2nd image of the global batch."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        got = {}
        for dtype in BN_DTYPES:
            x, gy = _bn_case(dtype)
            bn = _bn_layer(dtype)
            swapped = sync_batchnorm(bn)
            assert type(bn).__name__ == "GlobalBatchNorm2d"
            xr = x[rank::2].clone().requires_grad_(True)
            y = bn(xr)
            y.backward(gy[rank::2])
            restore_batchnorm(swapped)
            assert type(bn) is nn.BatchNorm2d
            params = torch.cat([bn.weight.grad, bn.bias.grad])
            dist.all_reduce(params)  # the loss is summed over the ranks
            got[str(dtype)] = {"y": y.detach(), "dx": xr.grad, "dweight": params[:3], "dbias": params[3:],
                               "running_mean": bn.running_mean, "running_var": bn.running_var,
                               "num_batches_tracked": bn.num_batches_tracked}
        torch.save(got, f"{out}/rank{rank}.pt")
        dist.barrier()  # neither rank tears gloo down while the other still has collectives in flight
    finally:
        dist.destroy_process_group()


def test_global_batchnorm_equals_batchnorm_on_the_concatenated_batch(tmp_path: Path) -> None:
    mp.spawn(_global_bn_worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for dtype, tol in zip(BN_DTYPES, (1e-5, 1e-12)):
        x, gy = _bn_case(dtype)
        bn = _bn_layer(dtype)
        xg = x.clone().requires_grad_(True)
        y = bn(xg)
        y.backward(gy)
        want = {"y": y.detach(), "dx": xg.grad, "dweight": bn.weight.grad, "dbias": bn.bias.grad,
                "running_mean": bn.running_mean, "running_var": bn.running_var}
        for key, ref in want.items():
            for r, got in enumerate(ranks):
                value = got[str(dtype)][key]
                assert value.dtype == dtype, (key, value.dtype)
                part = ref[r::2] if key in ("y", "dx") else ref
                rel = float((value - part).abs().max() / part.abs().max())
                assert rel < tol, (str(dtype), key, r, rel)
        assert all(int(got[str(dtype)]["num_batches_tracked"]) == 1 for got in ranks)


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path: Path) -> None:
    # Both runs train in float64 (torch's default dtype: the images, the model and the global BatchNorm follow it).
    # In float32 this comparison tests the CPU's rounding, not the DDP logic: a ReLU input within rounding (~1e-6)
    # of zero gets opposite signs in the two runs, and 10 SGD steps amplify that one flipped mask to ~1e-1 (with
    # oneDNN's AVX-512 kernels: bn1.bias 0.186 after a flip at step 3; see docs/training.md). In float64 a flip is
    # practically impossible: measured 9e-15, while per-rank BatchNorm gives 1.6 and a float32-only global
    # BatchNorm 1.3e-6, hence the bound 1e-9.
    data = make_image_folder(tmp_path / "data", per_class=20, size=8)
    common = ["--data", str(data), "--val-data", str(data), "--input-size", "3x8x8", "--epochs", "2",
              "--batch-size", "8", "--lr", "0.01", "--device", "cpu", "--seed", "3", "--warmup-epochs", "0"]
    out = tmp_path / "ddp.safetensors"
    main64 = tmp_path / "ghostcli_float64.py"
    main64.write_text("import torch\n\ntorch.set_default_dtype(torch.float64)\n"
                      "from ghostcli.cli.app import main\n\nmain()\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GHOSTCLI_DEBUG": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), str(main64), "train", "resnet20", *common, "--json", "-o", str(out)]
    r = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    d = json.loads(r.stdout)  # only rank 0 printed
    assert d["world_size"] == 2 and d["global_batch_size"] == 8 and d["per_rank_batch_size"] == 4
    assert d["steps_per_epoch"] == 5 and d["val_images"] == 40
    assert r.stderr.count("epoch 2:") == 1  # rank 0 logs, rank 1 is silent

    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        single = train_model(TrainConfig(data=str(data), val_data=str(data), input_size=(3, 8, 8),
                                         epochs=2, batch_size=8, lr=0.01, device="cpu", seed=3, warmup_epochs=0),
                             lambda: resolve_model("resnet20"))
        ddp_state = resolve_model(str(out)).model.state_dict()
    finally:
        torch.set_default_dtype(default)
    assert single.steps_per_epoch == 5
    one_state = single.model.state_dict()
    assert ddp_state["fc.weight"].dtype == one_state["fc.weight"].dtype == torch.float64
    rel = {k: float((ddp_state[k].double() - v.double()).abs().max() / (v.double().abs().max() + 1e-12))
           for k, v in one_state.items()}
    worst = max(rel, key=rel.__getitem__)
    assert rel[worst] < 1e-9, (worst, rel[worst])
    for a, b in zip(d["history"], single.history):
        assert a["train_loss"] == pytest.approx(b.train_loss, rel=1e-4)
        assert a["val_loss"] == pytest.approx(b.val_loss, rel=1e-3)
        assert a["val_top1"] == b.val_top1
