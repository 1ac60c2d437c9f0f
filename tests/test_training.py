"""The training loop: every mode runs, resume is bit-exact, NaN stops cleanly, checkpoints load;
a new method is one registered class plus one section."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch
from conftest import tiny_config
from pydantic import Field, create_model
from torch import nn

from halocm.checkpoint import load_checkpoint
from halocm.config import (
    Config,
    ConfigError,
    MethodSection,
    config_from_dict,
    load_config,
    methods,
)
from halocm.diffusion import losses
from halocm.models import build_network
from halocm.objectives import OBJECTIVES, build_objective, register
from halocm.stages.train import train
from halocm.training import Batches, TrainingDiverged, TrainSettings, ema_warmup, fit


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
    # The network spec rebuilds the network without any config.
    net = build_network(ckpt["network"])
    net.load_state_dict(ckpt["ema"])
    assert ckpt["network"]["precond"] == {"sigma_min": 0.002, "sigma_data": 1.0}


def test_cd_without_a_denoiser_says_so(project):
    (project / "models" / "denoiser.pt").unlink()
    cfg = load_config(project / "params.yaml", ["train.mode=cd", "train.steps=1"])
    with pytest.raises(ValueError, match=r"train\.mode=cd needs a pretrained denoiser"):
        train(cfg)


def test_an_unknown_mode_is_one_clear_line_not_a_fall_through():
    with pytest.raises(ValueError, match=r"train.mode='nope': no such objective; registered: ct"):
        build_objective(
            "nope",
            {},
            student=nn.Identity(),
            teacher=None,
            sigma_min=0.002,
            sigma_max=80.0,
            rho=7.0,
            total_steps=1,
        )


def test_the_target_ema_is_the_sections_own(project):
    cfg = load_config(project / "params.yaml", ["ct.target_ema=0.5"])
    student = nn.Linear(1, 1)
    objective = build_objective(
        "ct",
        cfg.method.fields(),
        student=student,
        teacher=None,
        sigma_min=0.002,
        sigma_max=80.0,
        rho=7.0,
        total_steps=12,
    )
    target = objective.networks["target"]
    before = target.weight.detach().clone()
    with torch.no_grad():
        student.weight.add_(1.0)
    objective.after_step(0)
    assert torch.allclose(target.weight, before + 0.5)  # mu = 0.5: halfway to the student


@pytest.mark.parametrize("overrides", [[], ["train.augment=true"]], ids=["plain", "augmented"])
def test_resume_after_a_kill_matches_an_uninterrupted_run(project, tmp_path, overrides):
    params = project / "params.yaml"
    cfg = load_config(params, overrides)  # 12 steps, checkpoint every 4
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

    def __call__(self, x0, cond, params, step):
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
        lr=1e-3,
        optimizer="adamw",
        weight_decay=0.0,
        grad_clip=1.0,
        inference_ema=0.9,
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


def test_the_ema_warmup_averages_a_set_share_of_the_run_until_the_decay_caps_it():
    # (1 + k)/(a + k) = 1 − (a − 1)/(a + k): an EMA of about the last (a + k)/(a − 1) steps.
    assert ema_warmup(0.999, 1000, 10.0) == pytest.approx(1001 / 1010)  # the last ~112
    assert ema_warmup(0.999, 1000, 3.0) == pytest.approx(1001 / 1003)  # a = 3: the last ~500
    assert ema_warmup(0.999, 10**6, 3.0) == 0.999
    assert ema_warmup(0.9, 0, 3.0) == pytest.approx(1 / 3)
    with pytest.raises(ConfigError, match=r"pretrain\.inference_ema_warmup"):
        tiny_config({"pretrain": {"inference_ema_warmup": 1}})


def test_batches_depend_only_on_seed_and_step():
    x = torch.arange(20.0).reshape(20, 1, 1, 1)
    a = Batches(x, x, torch.zeros(20, 0), batch_size=6, seed=3)
    b = Batches(x, x, torch.zeros(20, 0), batch_size=6, seed=3)
    assert torch.equal(a.at_step(7)[0], b.at_step(7)[0])
    epoch = torch.cat([a.at_step(s)[0].flatten() for s in range(3)])
    assert len(set(epoch.tolist())) == 18  # no repeats within an epoch


# --- a new method: one registered class and one section, nothing else -----------------------


class Toy(MethodSection):
    """A toy method's section: its knobs, checked like every section's."""

    scale: float = Field(gt=0)


@dataclass
class ToyObjective:
    """d(f_θ(x0 + σ z, σ), x0) at one fixed σ: a toy consistency objective."""

    student: nn.Module
    scale: float
    loss: str
    sigma_max: float
    networks: dict[str, nn.Module] = field(default_factory=dict)

    def __call__(self, x0, cond, params, step):
        sigma = torch.full((x0.shape[0],), self.scale * self.sigma_max, device=x0.device)
        noisy = x0 + sigma[:, None, None, None] * torch.randn_like(x0)
        return losses.get_distance(self.loss)(self.student(noisy, sigma, cond, params), x0)

    def after_step(self, step):
        pass


@pytest.fixture
def toy_method():
    """The toy registered as mode `toy` and a Config class with a `toy` section."""
    register("toy")(ToyObjective)
    ToyConfig = create_model("ToyConfig", __base__=Config, toy=(Toy, ...))
    yield ToyConfig
    del OBJECTIVES["toy"]


def test_a_toy_objective_from_its_registry_entry_and_section(toy_method):
    section = Toy.model_validate(
        {
            "scale": 0.01,
            "loss": "pseudo_huber",
            "search": {"scale": {"low": 0.001, "high": 0.1, "log": True}},
        }
    )
    student = nn.Identity()
    objective = build_objective(
        "toy",
        section.fields(),
        student=student,
        teacher=None,
        sigma_min=0.002,
        sigma_max=80.0,
        rho=7.0,
        total_steps=1,
    )
    assert isinstance(objective, ToyObjective)
    assert (objective.scale, objective.loss, objective.sigma_max) == (0.01, "pseudo_huber", 80.0)
    with pytest.raises(ValueError, match="'q' is not one of its knobs: loss, scale"):
        Toy.model_validate({"scale": 1.0, "loss": "l2", "search": {"q": [1, 2]}})


def test_a_toy_method_trains_through_the_unchanged_train_stage(project, toy_method):
    """The train stage, the loop, validation and checkpoints need no change for a new method:
    it is found by `train.mode` among the config's method sections and in the registry."""
    raw = load_config(project / "params.yaml").to_dict()
    raw["train"].update(mode="toy", steps=2)
    raw["toy"] = {"scale": 0.01, "loss": "l2", "search": {"loss": ["l2", "pseudo_huber"]}}
    cfg = toy_method.model_validate(raw)
    assert "toy" not in methods()  # the product's Config is untouched
    with pytest.raises(Exception, match="unknown key 'toy'"):
        config_from_dict(raw)
    seen = []
    path = train(cfg, log_metrics=lambda m, step: seen.append(m))
    ckpt = load_checkpoint(path)
    assert ckpt["mode"] == "toy" and ckpt["step"] == 2 and ckpt["config"]["toy"]["scale"] == 0.01
    assert "val_pk_err" in seen[-1]
