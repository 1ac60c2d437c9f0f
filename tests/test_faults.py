"""Faults, as a hostile-but-realistic user meets them (issue 14): one table, one row per case.

Each row: the command, the input maker that sets the fault up in a private copy of a tiny
trained project, the fragment its one error line must contain, the exit code (2 bad input,
1 a fault of the machine or a service) and the files that must come out unchanged. Every
row also checks that nothing but that one line is printed as an error and that no traceback
escapes. Full disks are real (a small tmpfs) and read-only folders are real (a read-only
bind mount as root, permissions otherwise); both are skipped, with the reason, where the
machine does not allow them.

After the table: resume applying safe changes, stale temporaries, the lock against a second
writer, HALOCM_DEBUG, and `halocm ui`'s child stopping with it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from halocm.cli import app
from halocm.config import load_config
from halocm.lock import LOCK_NAME
from halocm.processes import hostname
from halocm.temporaries import remove_stale_trial_dirs

PASSWORD = "s3cr3t-pw"  # must never be printed


# ------------------------------------------------------------------ the project and helpers


def _copy_project(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    for key, value in params["paths"].items():
        params["paths"][key] = value.replace(str(src), str(dest))
    params["data"]["path"] = params["data"]["path"].replace(str(src), str(dest))
    (dest / "params.yaml").write_text(yaml.safe_dump(params))
    return dest


@pytest.fixture(scope="module")
def trained(prepared, tmp_path_factory) -> Path:
    """The prepared project with a 4-step consistency model, a condition file and a box."""
    from halocm.stages.train import train

    root = _copy_project(prepared, tmp_path_factory.mktemp("faults") / "trained")
    train(load_config(root / "params.yaml", ["train.steps=4"]))
    np.savez(root / "c.npz", condition=np.full((2, 1, 16, 16), 1e9), params=np.full((2, 2), 0.5))
    # A 64² box at the model's pixel (6.25 Mpc/h / 16) and one halo at its centre.
    np.save(root / "dmo.npy", np.full((64, 64), 1e10))
    (root / "halos.csv").write_text("x,y,m200,Omega_m,sigma_8\n12.5,12.5,1e14,0.5,0.5\n")
    return root


@pytest.fixture
def project(trained, tmp_path) -> Path:
    return _copy_project(trained, tmp_path / "p")


@pytest.fixture
def cleanup():
    with contextlib.ExitStack() as stack:
        yield stack


def _run(args: list, env: dict | None = None) -> tuple[int, str]:
    result = CliRunner(env=env).invoke(app, [str(a) for a in args])
    return result.exit_code, result.stderr


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _params(p: Path) -> list:
    return ["--params", p / "params.yaml"]


def _sample(p: Path, *, model="models/consistency.pt", condition="c.npz", out="o.npz"):
    return ["sample", "--model", p / model, "--condition", p / condition, "--out", p / out]


def _paint(p: Path, *, dmo="dmo.npy", halos="halos.csv", out="box.npz"):
    return [
        "paint",
        "--model",
        p / "models/consistency.pt",
        "--dmo",
        p / dmo,
        "--halos",
        p / halos,
        "--box-size",
        25.0,
        "--out",
        p / out,
        *_params(p),
    ]


def _good_output(path: Path) -> None:
    """An earlier, good output that a failure must leave as it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, samples=np.ones((1, 1, 3, 16, 16), np.float32))


# --------------------------------------------------------------- faults of the machine


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


def _can_mount() -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    probe = Path(tempfile.mkdtemp(prefix="halocm-mount-probe-"))
    try:
        _mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe))
        subprocess.run(["umount", str(probe)], check=True)
        return True
    except (OSError, subprocess.CalledProcessError):
        return False
    finally:
        probe.rmdir()


CAN_MOUNT = _can_mount()


def _unmount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def full_disk(directory: Path, cleanup: contextlib.ExitStack, free: int = 2048) -> None:
    """Put `directory` (with its files) on its own tmpfs, then fill it up to `free` bytes."""
    if not CAN_MOUNT:
        pytest.skip("a real full disk needs a tmpfs mount (root with CAP_SYS_ADMIN)")
    directory.mkdir(parents=True, exist_ok=True)
    saved = directory.with_name(directory.name + ".saved")
    directory.rename(saved)
    directory.mkdir()
    size = sum(f.stat().st_size for f in saved.rglob("*") if f.is_file()) + (1 << 20)
    _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory))
    cleanup.callback(_unmount, directory)
    shutil.copytree(saved, directory, dirs_exist_ok=True)
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as fh, contextlib.suppress(OSError):
        while True:
            fh.write(b"\0" * 4096)
    with open(filler, "r+b") as fh:
        fh.truncate(max(0, filler.stat().st_size - free))


def read_only(directory: Path, cleanup: contextlib.ExitStack) -> None:
    """Make `directory` read-only for this process: a read-only bind mount as root (root
    ignores permissions), the permission bits otherwise."""
    directory.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        directory.chmod(0o555)
        cleanup.callback(directory.chmod, 0o755)
        return
    if not CAN_MOUNT:
        pytest.skip("root ignores permissions; a read-only bind mount needs CAP_SYS_ADMIN")
    _mount("--bind", str(directory), str(directory))
    cleanup.callback(_unmount, directory)
    _mount("-o", "remount,bind,ro", str(directory))


# --------------------------------------------------------------------- the input makers


def _checkpoint(p: Path, change: Callable[[dict], object], name: str = "bad.pt") -> None:
    ckpt = torch.load(p / "models/consistency.pt", weights_only=True)
    torch.save(change(ckpt), p / name)


def _set(ckpt: dict, **items) -> dict:
    return {**ckpt, **items}


def _without(ckpt: dict, key: str) -> dict:
    return {k: v for k, v in ckpt.items() if k != key}


def _wider_network(ckpt: dict) -> dict:
    spec = json.loads(json.dumps(ckpt["network"]))
    spec["unet"]["base_channels"] *= 2
    return _set(ckpt, network=spec)


def _nan_weights(ckpt: dict) -> dict:
    ema = {k: v.clone() for k, v in ckpt["ema"].items()}
    first = next(k for k, v in ema.items() if v.is_floating_point())
    ema[first].view(-1)[0] = float("nan")
    return _set(ckpt, ema=ema)


def _overflowing(ckpt: dict) -> dict:
    """Finite weights whose maps overflow: the output layer scaled by 1e30."""
    scale = {k: v * 1e30 for k, v in ckpt["ema"].items() if k.startswith("net.conv_out.")}
    assert scale, "the UNet's output layer is not net.conv_out"
    return _set(ckpt, ema={**ckpt["ema"], **scale})


def _raw_npz(p: Path, *, side: int = 16, zero_stars: bool = False) -> None:
    """Replace the project's external data with maps of `side` pixels."""
    rng = np.random.default_rng(0)
    cond = np.exp(rng.normal(20.0, 1.0, (40, 1, side, side)))
    target = np.concatenate([0.84 * cond, 0.15 * cond, 0.01 * cond], axis=1)
    if zero_stars:
        target[:, 2] = 0.0
    np.savez(p / "tiny.npz", condition=cond, target=target, group=np.arange(40) // 2)


def _hold_lock(p: Path, cleanup: contextlib.ExitStack) -> None:
    """Another process holding the models directory's lock, as a running `halocm train`."""
    code = (
        "import sys, time; from halocm.lock import output_lock\n"
        "with output_lock([sys.argv[1]], 'halocm train'):\n"
        "    print('held', flush=True); time.sleep(120)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(p / "models")], stdout=subprocess.PIPE, text=True
    )
    cleanup.callback(holder.wait)
    cleanup.callback(holder.kill)
    assert holder.stdout.readline().strip() == "held"


def _in(path: str, maker: Callable[[Path, contextlib.ExitStack], None]):
    return lambda p, stack: maker(p / path, stack)


@dataclass(frozen=True)
class Case:
    id: str
    args: Callable[[Path], list]
    expect: str  # a fragment of the error line
    code: int
    make: Callable[[Path, contextlib.ExitStack], None] = lambda p, stack: None
    unchanged: tuple[str, ...] = ()


def _write(name: str, data: bytes = b""):
    return lambda p, stack: (p / name).write_bytes(data)


def _both(*makers):
    def make(p, stack):
        for maker in makers:
            maker(p, stack)

    return make


def _good(name: str):
    return lambda p, stack: _good_output(p / name)


def _npy_as_npz(p, stack):
    np.save(p / "c.npy", np.ones((2, 1, 16, 16)))
    (p / "c.npy").rename(p / "c.npz")


def _condition(array: np.ndarray):
    return lambda p, stack: np.savez(p / "c.npz", condition=array, params=np.ones((len(array), 2)))


MODELS = ("models/consistency.pt", "models/consistency.config.json")
SPLITS = ("data/processed/train.npz", "data/processed/norm_stats.json")
PAINTED = ("out/box.npz", "out/box_halos.csv")


def _painted_before(p, stack):
    """An earlier painted box and its table, which a failed paint must not touch."""
    (p / "out").mkdir()
    np.savez(p / "out/box.npz", maps=np.ones((3, 4, 4)))
    (p / "out/box_halos.csv").write_text("x,y,m200\n1,1,1e14\n")


CASES = [
    # 1. Operating-system errors: one line, exit 1 for the machine, 2 for a wrong path.
    Case(
        "out-dir-read-only",
        lambda p: _sample(p, out="ro/o.npz"),
        "Read-only file system|Permission denied",
        1,
        _both(_good("ro/o.npz"), _in("ro", read_only)),
        ("ro/o.npz",),
    ),
    Case(
        "prepare-into-read-only-folder",
        lambda p: ["prepare", *_params(p)],
        "Read-only file system|Permission denied",
        1,
        _in("data/processed", read_only),
        SPLITS,
    ),
    Case(
        "out-is-a-directory",
        lambda p: _sample(p, out="d"),
        "d: Is a directory",
        2,
        lambda p, s: (p / "d").mkdir(),
    ),
    Case(
        "out-parent-is-a-file",
        lambda p: _sample(p, out="f/o.npz"),
        "Not a directory|File exists",
        2,
        _write("f", b"x"),
    ),
    Case("params-is-a-directory", lambda p: ["train", "--params", p], "Is a directory", 2),
    Case(
        "sample-disk-full",
        lambda p: _sample(p, out="full/o.npz"),
        "No space left on device",
        1,
        _both(_good("full/o.npz"), _in("full", full_disk)),
        ("full/o.npz",),
    ),
    Case(
        "train-disk-full",
        lambda p: ["train", *_params(p)],
        "No space left on device",
        1,
        _in("models", full_disk),
        MODELS,
    ),
    Case(
        "prepare-disk-full",
        lambda p: ["prepare", *_params(p)],
        "No space left on device",
        1,
        _in("data/processed", full_disk),
        SPLITS,
    ),
    Case(
        "paint-disk-full",
        lambda p: _paint(p, out="out/box.npz"),
        "No space left on device",
        1,
        _both(_painted_before, _in("out", full_disk)),
        PAINTED,
    ),
    Case("npy-renamed-npz", _sample, "a single array, not an archive", 2, _npy_as_npz),
    Case("empty-condition-file", _sample, "c.npz: not a readable .npz", 2, _write("c.npz")),
    Case("empty-dmo-file", _paint, "dmo.npy: not a readable .npy map", 2, _write("dmo.npy")),
    Case(
        "storage-driver-missing",
        lambda p: ["tune", *_params(p), "--storage", f"postgresql://u:{PASSWORD}@127.0.0.1:9/x"],
        "driver is not installed",
        1,
    ),
    Case(
        "storage-unreachable",
        lambda p: [
            "tune",
            *_params(p),
            "--storage",
            f"postgresql+psycopg2://u:{PASSWORD}@127.0.0.1:9/x",
        ],
        r"storage postgresql\+psycopg2://u:\*\*\*@127.0.0.1:9/x: cannot use it",
        1,
    ),
    # 2. Structurally wrong checkpoints: which file, which key, expected vs found.
    Case(
        "ckpt-empty",
        lambda p: _sample(p, model="bad.pt"),
        "bad.pt: key 'kind' missing",
        2,
        lambda p, s: _checkpoint(p, lambda c: {}),
    ),
    Case(
        "ckpt-a-list",
        lambda p: _sample(p, model="bad.pt"),
        "bad.pt: expected a mapping of keys, found a list",
        2,
        lambda p, s: _checkpoint(p, lambda c: [1, 2]),
    ),
    Case(
        "ckpt-no-ema",
        lambda p: _sample(p, model="bad.pt"),
        "key 'ema' missing",
        2,
        lambda p, s: _checkpoint(p, lambda c: _without(c, "ema")),
    ),
    Case(
        "ckpt-kind-nonsense",
        lambda p: _sample(p, model="bad.pt"),
        "key 'kind': 'nonsense' differs from 'network.kind'",
        2,
        lambda p, s: _checkpoint(p, lambda c: _set(c, kind="nonsense")),
    ),
    Case(
        "ckpt-spec-does-not-fit-weights",
        lambda p: _sample(p, model="bad.pt"),
        r"key 'ema': tensor '[\w.]+': expected shape \(\d+",
        2,
        lambda p, s: _checkpoint(p, _wider_network),
    ),
    Case(
        "ckpt-truncated",
        lambda p: _sample(p, model="bad.pt"),
        "bad.pt: not a halocm checkpoint",
        2,
        lambda p, s: (p / "bad.pt").write_bytes((p / "models/consistency.pt").read_bytes()[:5000]),
    ),
    Case(
        "warm-start-from-another-network",
        lambda p: ["train", *_params(p), "--set", "model.base_channels=16"],
        r"pretrained with another network: base_channels 8 \(denoiser\) vs 16",
        2,
        unchanged=MODELS,
    ),
    Case(
        "resume-another-network",
        lambda p: [
            "train",
            "--resume",
            *_params(p),
            "--set",
            "model.base_channels=16",
            "--set",
            "train.warm_start=false",
        ],
        "cannot resume .*model.base_channels 8 → 16",
        2,
        unchanged=MODELS,
    ),
    # 3. Garbage refused at the boundary: no non-finite output, no silent success.
    Case(
        "nan-weights",
        lambda p: _sample(p, model="bad.pt"),
        r"key 'ema': tensor '[\w.]+' holds NaN/inf weights",
        2,
        _both(_good("o.npz"), lambda p, s: _checkpoint(p, _nan_weights)),
        ("o.npz",),
    ),
    Case(
        "non-finite-maps",
        lambda p: _sample(p, model="bad.pt"),
        r"bad.pt: sampled maps hold NaN/inf .*; nothing written",
        2,
        _both(_good("o.npz"), lambda p, s: _checkpoint(p, _overflowing)),
        ("o.npz",),
    ),
    Case(
        "all-zero-target",
        lambda p: ["prepare", *_params(p)],
        r"key 'target' channel 2 \(stars\): zero in every map",
        2,
        lambda p, s: _raw_npz(p, zero_stars=True),
        SPLITS,
    ),
    Case(
        "maps-33",
        lambda p: ["prepare", *_params(p)],
        "maps of 33x33 pixels; the UNet .* divisible by 2",
        2,
        lambda p, s: _raw_npz(p, side=33),
        SPLITS,
    ),
    Case(
        "maps-30-deeper-unet",
        lambda p: ["prepare", *_params(p), "--set", "model.channel_mult=[1,2,2]"],
        "maps of 30x30 pixels; the UNet .* divisible by 4",
        2,
        lambda p, s: _raw_npz(p, side=30),
        SPLITS,
    ),
    Case(
        "no-condition-maps",
        _sample,
        r"no maps \(N = 0\)",
        2,
        _both(_good("o.npz"), _condition(np.ones((0, 1, 16, 16)))),
        ("o.npz",),
    ),
    Case(
        "complex-condition",
        _sample,
        "expected real numbers, got dtype complex128",
        2,
        _condition(np.ones((2, 1, 16, 16)) * (1 + 1j)),
    ),
    Case(
        "empty-sampling-steps",
        lambda p: ["evaluate", *_params(p), "--set", "evaluate.sampling_steps=[]"],
        "evaluate.sampling_steps=\\[\\]",
        2,
    ),
    Case(
        "lr-inf",
        lambda p: ["train", *_params(p), "--set", "train.lr=.inf"],
        "train.lr=inf: Input should be a finite number",
        2,
    ),
    Case(
        "warm-start-without-denoiser",
        lambda p: ["train", *_params(p)],
        "denoiser.pt not found; run `halocm pretrain` first",
        2,
        lambda p, s: (p / "models/denoiser.pt").unlink(),
        MODELS,
    ),
    Case(
        "empty-catalogue",
        _paint,
        r"halos.csv: no halos",
        2,
        _write("halos.csv", b"x,y,m200,Omega_m,sigma_8\n"),
    ),
    # 5. Resume: what it cannot follow is refused, listing what differs.
    Case(
        "resume-changed-method-knob",
        lambda p: ["train", "--resume", *_params(p), "--set", "ct.target_ema=0.5"],
        r"ct.target_ema [\d.]+ → 0.5 \(only train.lr, train.steps",
        2,
        unchanged=MODELS,
    ),
    Case(
        "resume-beyond-steps",
        lambda p: ["train", "--resume", *_params(p), "--set", "train.steps=2"],
        "it is at step 4, beyond train.steps=2",
        2,
        unchanged=MODELS,
    ),
    # 6. A second writer on a run's output directory.
    Case(
        "second-writer",
        lambda p: ["train", *_params(p)],
        r"models: in use by `halocm train` \(pid \d+ on",
        1,
        _hold_lock,
        MODELS,
    ),
    # 7. A bad search range stops before any trial.
    Case(
        "tune-range-reversed",
        lambda p: [
            "tune",
            *_params(p),
            "--storage",
            p / "j.journal",
            "--set",
            "tune.lr={low: 0.1, high: 0.001, log: true}",
        ],
        "tune.lr: low must be < high",
        2,
    ),
    Case(
        "tune-lr-as-a-list",
        lambda p: ["tune", *_params(p), "--set", "tune.lr=[0.1,0.001]"],
        r"tune.lr=\[0.1, 0.001\]: Input should be a valid dictionary",
        2,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_fault_is_one_line_and_changes_nothing(case, project, cleanup):
    case.make(project, cleanup)
    before = {name: _digest(project / name) for name in case.unchanged}
    code, err = _run(case.args(project))
    errors = [line for line in err.splitlines() if "error:" in line]
    assert code == case.code, err
    assert "Traceback" not in err and len(errors) == 1, err
    assert errors[0] == err.strip().splitlines()[-1]  # the last word, after any progress
    assert errors[0].startswith(f"halocm {case.args(project)[0]}: error: ")
    assert re.search(case.expect, errors[0]), errors[0]
    assert PASSWORD not in err
    assert {name: _digest(project / name) for name in case.unchanged} == before
    assert not list(project.rglob(".*.tmp")), "a temporary was left behind"


# ------------------------------------------------------------------ beyond the table


def test_halocm_debug_adds_the_traceback(project):
    args = _sample(project, model="none.pt")
    code, err = _run(args)
    assert code == 2 and "Traceback" not in err
    code, err = _run(args, env={"HALOCM_DEBUG": "1"})
    assert code == 2 and "Traceback" in err
    assert err.strip().splitlines()[-1].startswith("halocm sample: error: ")


def test_resume_applies_a_lower_learning_rate_and_more_steps_and_says_so(project):
    args = ["train", "--resume", *_params(project)]
    code, err = _run([*args, "--set", "train.lr=0.00001", "--set", "train.steps=8"])
    assert code == 0, err
    assert re.search(r"at step 4: train.steps 4 → 8; train.lr 0.0002 → 1e-05", err), err
    ckpt = torch.load(project / "models/consistency.pt", weights_only=True)
    assert ckpt["step"] == 8 and ckpt["config"]["train"]["lr"] == 1e-05
    assert all(g["lr"] == 1e-05 for g in ckpt["optimizer"]["param_groups"])
    published = json.loads((project / "models/consistency.config.json").read_text())
    assert published == ckpt["config"]  # the config beside the .pt is the .pt's


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_temporaries_of_dead_writers_are_removed_and_live_ones_kept(project, tmp_path):
    checkpoints = project / "models/checkpoints"
    dead = checkpoints / f".consistency-last.pt.halocm-{hostname()}-{_dead_pid()}-ab12cd.tmp"
    live = checkpoints / f".consistency-last.pt.halocm-{hostname()}-{os.getpid()}-ef34gh.tmp"
    other_host = checkpoints / ".consistency-last.pt.halocm-elsewhere-1-ij56kl.tmp"
    foreign = checkpoints / ".someone-elses.tmp"  # not halocm's: never touched
    for path in (dead, live, other_host, foreign):
        path.write_bytes(b"partial")
    code, err = _run(["train", *_params(project), "--set", "train.steps=1"])
    assert code == 0, err
    assert not dead.exists() and live.exists() and other_host.exists() and foreign.exists()

    trials = tmp_path / "tmp"
    (trials / f"halocm-trial-{hostname()}-{_dead_pid()}-x1y2z3").mkdir(parents=True)
    (trials / f"halocm-trial-{hostname()}-{os.getpid()}-a1b2c3").mkdir()
    assert [p.name.split("-")[-1] for p in remove_stale_trial_dirs(trials)] == ["x1y2z3"]
    assert [p.name.split("-")[-1] for p in trials.iterdir()] == ["a1b2c3"]


def test_a_second_writer_is_refused_while_the_first_finishes_consistently(project):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    train = [sys.executable, "-m", "halocm", "train", *map(str, _params(project))]
    first = subprocess.Popen(
        [*train, "--set", "train.steps=40"], env=env, stderr=subprocess.PIPE, text=True
    )
    lock = project / "models" / LOCK_NAME
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and str(first.pid) not in _read(lock):
        time.sleep(0.1)
    assert str(first.pid) in _read(lock), "the first writer never took the lock"
    second = subprocess.run(
        [*train, "--set", "train.steps=2", "--set", "ct.target_ema=0.5"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert first.poll() is None, "the first run must still be running: make it longer"
    assert second.returncode == 1
    assert (
        second.stderr.strip()
        .splitlines()[-1]
        .startswith(
            f"halocm train: error: {project / 'models'}: in use by `halocm train` (pid {first.pid}"
        )
    )
    assert first.wait(timeout=600) == 0, first.stderr.read()
    ckpt = torch.load(project / "models/consistency.pt", weights_only=True)
    config = json.loads((project / "models/consistency.config.json").read_text())
    assert ckpt["step"] == 40 and config == ckpt["config"] and config["train"]["steps"] == 40
    assert config["ct"]["target_ema"] != 0.5  # nothing of the refused run


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def test_halocm_ui_stops_its_child_on_sigterm(tmp_path):
    """`halocm ui` runs `mlflow ui` through run_child: SIGTERM to halocm stops the child."""
    pidfile = tmp_path / "child.pid"
    child = f"import os, time; open({str(pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from halocm.children import run_child; "
            f"sys.exit(run_child([sys.executable, '-c', {child!r}]))",
        ]
    )
    deadline = time.monotonic() + 60
    while not _read(pidfile) and time.monotonic() < deadline:
        time.sleep(0.1)
    pid = int(_read(pidfile))
    parent.send_signal(signal.SIGTERM)
    assert parent.wait(timeout=30) == 128 + signal.SIGTERM
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
