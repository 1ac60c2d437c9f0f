"""The training loop: every mode runs, resume is bit-exact, NaN stops cleanly, checkpoints load."""

from __future__ import annotations

import pytest
import torch

from halocm.checkpoint import load_checkpoint
from halocm.config import load_config
from halocm.training import Batches, TrainingDiverged, TrainSettings, fit, train


class Killed(Exception):
    pass


def _weights(path):
    return load_checkpoint(path)["model"]


@pytest.mark.parametrize("mode", ["ct", "ict", "cd", "ect"])
def test_every_mode_trains_and_writes_a_loadable_checkpoint(project, mode):
    cfg = load_config(project / "params.yaml", [f"train.mode={mode}", "train.steps=4"])
    seen = []
    path = train(cfg, log_metrics=lambda m, step: seen.append((step, m)))
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert ckpt["kind"] == "consistency" and ckpt["mode"] == mode and ckpt["step"] == 4
    assert [s for s, _ in seen] == [1, 2, 3, 4]
    assert all(torch.isfinite(torch.tensor(m["loss"])) for _, m in seen)
    assert "val_pk_err" in seen[-1][1]
    if mode in ("ct", "cd"):
        assert "target" in ckpt["networks"]


def test_resume_after_a_kill_matches_an_uninterrupted_run(project, tmp_path):
    params = project / "params.yaml"
    cfg = load_config(params)  # 12 steps, checkpoint every 4
    reference = _weights(train(cfg))

    def kill_at_step_6(step):
        if step == 6:
            raise Killed

    with pytest.raises(Killed):
        train(cfg, on_step=kill_at_step_6)
    resumed = _weights(train(cfg, resume=True))
    assert reference.keys() == resumed.keys()
    for key in reference:
        assert torch.equal(reference[key], resumed[key]), key


def test_warm_start_copies_the_denoiser_backbone(project):
    cfg = load_config(project / "params.yaml", ["train.steps=1", "train.lr=1e-12"])
    teacher = load_checkpoint(cfg.paths.models_dir / "denoiser.pt")["ema"]
    student = load_checkpoint(train(cfg))["model"]
    key = next(k for k in teacher if k.endswith("weight"))
    assert torch.allclose(student[key], teacher[key], atol=1e-6)


class _NaNAfter:
    """An objective whose loss turns NaN at a given step."""

    def __init__(self, net, bad_step):
        self.net, self.bad_step, self.networks = net, bad_step, {}

    def loss(self, x0, cond, params, step):
        out = (self.net(x0) - x0).pow(2).flatten(1).mean(1)
        return out * float("nan") if step >= self.bad_step else out

    def after_step(self, step):
        pass


def test_nan_guard_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Conv2d(1, 1, 3, padding=1)
    data = torch.randn(16, 1, 8, 8)
    batches = Batches(data, data, torch.zeros(16, 0), batch_size=4, seed=0)
    settings = TrainSettings(
        steps=10,
        batch_size=4,
        lr=1e-3,
        optimizer="adamw",
        weight_decay=0.0,
        grad_clip=1.0,
        ema_decay=0.9,
        checkpoint_every=2,
        val_every=100,
        seed=0,
    )
    ckpt = tmp_path / "last.pt"
    with pytest.raises(TrainingDiverged, match=r"loss is nan at step 5.*step 4"):
        fit(
            objective=_NaNAfter(net, 5),
            net=net,
            batches=batches,
            settings=settings,
            checkpoint_path=ckpt,
            checkpoint_extra={},
        )
    state = load_checkpoint(ckpt)
    assert state["step"] == 4
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_batches_depend_only_on_seed_and_step():
    x = torch.arange(20.0).reshape(20, 1, 1, 1)
    a = Batches(x, x, torch.zeros(20, 0), batch_size=6, seed=3)
    b = Batches(x, x, torch.zeros(20, 0), batch_size=6, seed=3)
    assert torch.equal(a.at_step(7)[0], b.at_step(7)[0])
    epoch = torch.cat([a.at_step(s)[0].flatten() for s in range(3)])
    assert len(set(epoch.tolist())) == 18  # no repeats within an epoch
