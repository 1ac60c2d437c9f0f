"""Data-parallel training: two CPU processes (gloo) against one process on the same batches.

The equivalence test runs the one training loop `fit` in two spawned ranks and in this process.
Its objective is a CT-style loss whose noise and σ are functions of each sample, so a rank's
shard draws exactly the noise the whole batch would: what is compared is sharding, DDP's
gradient averaging, clipping, the optimiser, the EMAs and rank-0-only checkpoints. The CLI
test runs `torchrun -m halocm train` itself on the tiny project.
"""

from __future__ import annotations

import copy
import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml
from conftest import tiny_config
from torch import nn

from halocm.checkpoint import load_checkpoint
from halocm.config import load_config
from halocm.models import DataShapes, build_network, network_spec, update_ema
from halocm.training import Batches, TrainSettings, fit

GLOBAL_BATCH, STEPS, WORLD = 8, 3, 2


@dataclass
class SampleNoiseCT:
    """d(f(x0 + t_hi z), f⁻(x0 + t_lo z)) with t and z fixed by the sample, not by an RNG."""

    student: nn.Module
    networks: dict[str, nn.Module] = field(default_factory=dict)
    seen: list[list[float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.networks["target"] = copy.deepcopy(self.student).requires_grad_(False)

    def __call__(self, x0, cond, params, step: int) -> torch.Tensor:
        self.seen.append(x0[:, 0, 0, 0].tolist())  # which samples this rank trained on
        t_lo = torch.exp(torch.tanh(x0.mean(dim=(1, 2, 3))))
        t_hi = 1.5 * t_lo
        z = torch.sin(97.0 * x0 + step)
        out = self.student(x0 + t_hi[:, None, None, None] * z, t_hi, cond, params)
        with torch.no_grad():
            ref = self.networks["target"](x0 + t_lo[:, None, None, None] * z, t_lo, cond, params)
        return ((out - ref) ** 2).mean(dim=(1, 2, 3))

    def after_step(self, step: int) -> None:
        update_ema(self.networks["target"], self.student, 0.9)


def _run_fit(out: Path, tag: str) -> dict:
    """Build the tiny network and data from fixed seeds and train STEPS steps."""
    cfg = tiny_config({"model": {"dropout": 0.0}})
    gen = torch.Generator().manual_seed(1)
    data = (
        torch.randn(24, 3, 16, 16, generator=gen),
        torch.randn(24, 1, 16, 16, generator=gen),
        torch.rand(24, 2, generator=gen),
    )
    torch.manual_seed(0)
    d = cfg.diffusion
    net = build_network(
        network_spec(
            "consistency",
            cfg.model.model_dump(),
            DataShapes.from_arrays(*data),
            sigma_min=d.sigma_min,
            sigma_data=d.sigma_data,
        )
    )
    initial = copy.deepcopy(net.state_dict())
    objective = SampleNoiseCT(net)
    settings = TrainSettings(
        steps=STEPS,
        lr=0.1,
        optimizer="radam",
        weight_decay=0.0,
        grad_clip=1.0,
        inference_ema=0.5,
        checkpoint_every=2,
        val_every=100,
        seed=0,
    )
    ema = fit(
        objective=objective,
        net=net,
        batches=Batches(*data, GLOBAL_BATCH, seed=0),
        settings=settings,
        checkpoint_path=out / f"{tag}.pt",
        checkpoint_extra={},
        desc=tag,
    )
    return {
        "initial": initial,
        "model": net.state_dict(),
        "ema": ema.state_dict(),
        "target": objective.networks["target"].state_dict(),
        "seen": objective.seen,
    }


def _rank(rank: int, init_file: str, out: str) -> None:
    """One spawned rank: join a two-process gloo group on loopback and train."""
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        torch.save(_run_fit(Path(out), f"rank{rank}"), Path(out) / f"result{rank}.pt")
    finally:
        dist.destroy_process_group()


def _assert_close(a: dict, b: dict, atol: float = 1e-6) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=atol, rtol=1e-5, msg=key)


def test_two_ranks_match_one_process_on_the_same_global_batch(tmp_path):
    mp.start_processes(
        _rank, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, start_method="spawn"
    )
    ranks = [torch.load(tmp_path / f"result{r}.pt", weights_only=True) for r in range(WORLD)]
    ref = _run_fit(tmp_path, "single")

    # Each rank trained on its own half of every global batch; together, the whole batch.
    for step in range(STEPS):
        halves = [r["seen"][step] for r in ranks]
        assert [len(h) for h in halves] == [GLOBAL_BATCH // WORLD] * WORLD
        assert halves[0] + halves[1] == ref["seen"][step]
    # The weights moved by far more than the tolerance, and equal the one-process run.
    moved = max((ref["model"][k] - ref["initial"][k]).abs().max().item() for k in ref["model"])
    assert moved > 1e-3
    for part in ("model", "ema", "target"):
        _assert_close(ranks[0][part], ref[part])
        _assert_close(ranks[1][part], ranks[0][part], atol=0.0)
    # Rank 0 alone wrote its checkpoint, in the one-process format (no DDP `module.` prefix).
    assert (tmp_path / "rank0.pt").is_file() and not (tmp_path / "rank1.pt").exists()
    ckpt, single = load_checkpoint(tmp_path / "rank0.pt"), load_checkpoint(tmp_path / "single.pt")
    assert ckpt.keys() == single.keys() and ckpt["step"] == STEPS
    _assert_close(ckpt["model"], single["model"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_train_writes_one_checkpoint_and_one_mlflow_run(project, tmp_path):
    import mlflow

    params = yaml.safe_load((project / "params.yaml").read_text())
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    params["tracking"].update(enabled=True, tracking_uri=uri, artifact_root=str(tmp_path / "art"))
    params["train"] = {**params["train"], "steps": 4, "val_every": 4, "checkpoint_every": 2}
    (project / "params.yaml").write_text(yaml.safe_dump(params))

    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(WORLD),
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        "-m",
        "halocm",
        "train",
        "--params",
        str(project / "params.yaml"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    proc = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    ckpt = load_checkpoint(project / "models" / "consistency.pt")
    assert ckpt["step"] == 4 and not any(k.startswith("module.") for k in ckpt["model"])
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("halocm").experiment_id])
    assert [r.info.run_name for r in runs] == ["train"]  # rank 1 opened no run
    assert "val_score" in runs[0].data.metrics

    # The same format as a one-process run of the same stage.
    from halocm.stages.train import train

    cfg = load_config(
        project / "params.yaml",
        [f"paths.models_dir={tmp_path / 'single'}", "tracking.enabled=false"],
    )
    (tmp_path / "single").mkdir()
    for upstream in ("mean.pt", "denoiser.pt"):
        (tmp_path / "single" / upstream).symlink_to(project / "models" / upstream)
    single = load_checkpoint(train(cfg))
    assert ckpt.keys() == single.keys()
    assert {k: v.shape for k, v in ckpt["model"].items()} == {
        k: v.shape for k, v in single["model"].items()
    }


def test_a_global_batch_that_does_not_split_evenly_is_refused():
    from halocm.distributed import Group

    with pytest.raises(ValueError, match="multiple"):
        Group(rank=0, size=3).shard((torch.zeros(8, 1),))
    assert [t.shape[0] for t in Group(rank=1, size=2).shard((torch.zeros(8, 1),))] == [4]
