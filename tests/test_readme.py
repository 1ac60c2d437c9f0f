"""The README's commands, as a new user runs them: every line of its ```bash blocks either runs
here, in order, in a fresh checkout with tiny sizes and `.venv/bin` on PATH, or is listed in
SKIP with the reason. A README command in neither list fails the test, so the README and this
table change together."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import TELEMETRY_OFF, TINY_PARAMS, TINY_TUNE, merge

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

PREFECT_SERVER = (
    "a Prefect server and worker: tests/test_prefect_flows.py runs this route on loopback"
)
STAGE = "the `cmd` of its DVC stage: `halocm pipeline` below runs it (checked in its output)"
SKIP = {
    "make run": "the full-size pipeline (~15 min); `halocm pipeline` runs it here at tiny size",
    "make test": "the test suite itself",
    "source .venv/bin/activate": "shell state; the commands here run with .venv/bin on PATH",
    "halocm generate": STAGE,
    "halocm prepare": STAGE,
    "halocm regress": STAGE,
    "halocm pretrain": STAGE,
    "halocm train": STAGE,
    "halocm evaluate": STAGE,
    "halocm register": STAGE,
    "optuna-dashboard optuna.journal": "a server on port 8080: test_optuna_dashboard_serves_"
    "the_study starts it on a free port",
    "prefect server start --host 127.0.0.1 --background": PREFECT_SERVER,
    "export PREFECT_API_URL=http://127.0.0.1:4200/api": PREFECT_SERVER,
    "prefect work-pool create halocm --type process": PREFECT_SERVER,
    "prefect deploy --all": PREFECT_SERVER,
    "prefect worker start --pool halocm": PREFECT_SERVER,
    "prefect deployment run halocm-pipeline/nightly": PREFECT_SERVER,
    "docker build -t halocm:0.1.0 .": "needs Docker; tests/test_docker.py checks the image",
    "docker compose up -d --build": "needs Docker; tests/test_docker.py checks compose.yaml",
    "docker compose run --rm pipeline": "needs Docker; tests/test_docker.py",
    "torchrun --nproc_per_node=2 -m halocm train": "tests/test_ddp.py runs torchrun at tiny size",
    "halocm tune --storage postgresql+psycopg2://USER:PASS@HOST/optuna --n-trials 20": (
        "needs a PostgreSQL server: tests/test_postgres.py starts one"
    ),
}
RUN = [
    "halocm pipeline",
    "halocm sample --model models/consistency.pt --condition data/raw/synthetic.npz --steps 1 "
    "--realizations 4 --out samples.npz",
    "halocm tune --n-trials 8",
    "halocm pipeline --set-file params.tuned.yaml",
    "dvc exp run -S ct.target_ema=0.97 -S train.lr=0.0003",
    "dvc exp show",
    "dvc plots diff $(dvc exp ls --name-only)",
    "halocm box --out box --pixels 256 --halos 100",
    "halocm paint --model models/consistency.pt --dmo box/dmo.npy --halos box/halos.csv "
    "--box-size 50 --out box/painted.npz",
    "python flows/pipeline.py --set-file params.tuned.yaml",
]


def readme_commands(text: str) -> list[str]:
    """Each line of the ```bash blocks (list-indented ones too), comments dropped."""
    commands = []
    for block in re.findall(r"^ *```bash\n(.*?)^ *```", text, flags=re.S | re.M):
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def test_every_readme_command_is_run_here_or_skipped_with_a_reason():
    commands = readme_commands((ROOT / "README.md").read_text())
    unknown = [c for c in commands if c not in SKIP and c not in RUN]
    assert not unknown, f"README commands neither run nor skipped here: {unknown}"
    assert [c for c in commands if c in RUN] == RUN  # run in the README's order
    assert all(SKIP[c] for c in commands if c in SKIP)


def _checkout(dest: Path) -> None:
    """The files a clone of this working tree holds: Git's tracked and unignored ones."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


@pytest.mark.slow
def test_the_readme_commands_run_in_a_fresh_checkout(tmp_path):
    project = tmp_path / "halocm"
    _checkout(project)
    # The product's params with tiny sizes; cutouts of 32 pixels keep the README's box
    # arithmetic (256 pixels of 6.25/32 Mpc/h = 50 Mpc/h).
    params = merge(
        merge(TINY_PARAMS, TINY_TUNE),
        {"simulator": {"resolution": 32}, "tracking": {"enabled": True}},
    )
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "HALOCM_"))},
        **TELEMETRY_OFF,
        "OMP_NUM_THREADS": "1",
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "GIT_AUTHOR_NAME": "halocm-test",
        "GIT_AUTHOR_EMAIL": "test@localhost",
        "GIT_COMMITTER_NAME": "halocm-test",
        "GIT_COMMITTER_EMAIL": "test@localhost",
    }
    for setup in ("git init -q", "git add -A", "git commit -qm checkout"):
        subprocess.run(setup.split(), cwd=project, env=env, check=True, capture_output=True)

    outputs = {}
    for command in RUN:
        proc = subprocess.run(
            ["bash", "-c", command],
            cwd=project,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=900,
        )
        assert proc.returncode == 0, f"{command}\n{proc.stdout[-4000:]}"
        outputs[command] = proc.stdout

    first = outputs["halocm pipeline"]
    for stage in ("generate", "prepare", "regress", "pretrain", "train", "evaluate", "register"):
        assert f"halocm {stage}" in first  # DVC prints each stage's cmd as it runs it
    assert (project / "samples.npz").is_file()
    tuned = yaml.safe_load((project / "params.tuned.yaml").read_text())
    assert tuned and all("." in key for key in tuned)
    assert "experiment" in outputs["halocm pipeline --set-file params.tuned.yaml"]
    assert yaml.safe_load((project / "params.yaml").read_text())["ct"]["target_ema"] == 0.97
    assert (project / "dvc_plots/index.html").is_file()
    assert {"dmo.npy", "halos.csv", "truth.npz", "painted.npz"} <= {
        p.name for p in (project / "box").iterdir()
    }
    assert "stage register" in outputs["python flows/pipeline.py --set-file params.tuned.yaml"]
    # Nothing the commands wrote is left for Git to pick up: every output is ignored.
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    untracked = {line[3:] for line in status.splitlines() if line.startswith("??")}
    # What DVC keeps for Git is versioned, not ignored: dvc.lock, the .gitignore files that
    # ignore its cached outputs, and its uncached outputs (metrics, reports).
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"].values()
    for_git = {"dvc.lock"} | {p for p in untracked if Path(p).name == ".gitignore"}
    for_git |= {
        path
        for stage in stages
        for kind in ("outs", "metrics", "plots")
        for out in stage.get(kind, [])
        if isinstance(out, dict)
        for path, attrs in out.items()
        if attrs.get("cache") is False
    }
    assert not untracked - for_git, f"written but not git-ignored: {untracked - for_git}"


def test_optuna_dashboard_serves_the_study(tmp_path):
    """`optuna-dashboard optuna.journal` (the dev extra installs it) on a study's journal."""
    import socket
    import time
    import urllib.request

    import optuna
    from optuna.storages.journal import JournalFileBackend

    journal = tmp_path / "optuna.journal"
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(journal)))
    study = optuna.create_study(study_name="halocm", storage=storage)
    study.optimize(lambda t: t.suggest_float("target_ema", 0.9, 0.999), n_trials=2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [BIN / "optuna-dashboard", str(journal), "--port", str(port), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        url = f"http://127.0.0.1:{port}/api/studies"
        while True:
            try:
                with urllib.request.urlopen(url) as r:
                    studies = json.loads(r.read())["study_summaries"]
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "no dashboard"
                time.sleep(0.5)
        assert [s["study_name"] for s in studies] == ["halocm"]
        with urllib.request.urlopen(f"{url}/{studies[0]['study_id']}") as r:
            assert len(json.loads(r.read())["trials"]) == 2
    finally:
        proc.terminate()
        proc.wait(timeout=20)
