"""Regenerate the README's screenshots (docs/img/*.png) from a real, tiny pipeline.

In a temporary checkout of this working tree with tiny sizes, it runs `halocm pipeline`
twice (the second as a DVC experiment with another `ct.target_ema`) and the Prefect flow
once against a `prefect server` on loopback, then photographs, in headless Chromium: the
MLflow runs table and its charts, a pipeline run's page, the two pipeline runs compared, the
registry, `dvc plots diff` of the two runs, and the Prefect flow run.

    python scripts/screenshots.py [--out docs/img] [--keep]

Needs Chromium (`apt-get install -y chromium`) and vl-convert-python (the dev extra), whose
Vega bundle replaces the CDN scripts of DVC's HTML so the plots render offline.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SHOTS = (
    "mlflow-runs",
    "mlflow-charts",
    "mlflow-run",
    "mlflow-compare",
    "mlflow-registry",
    "dvc-plots",
    "prefect-flow-run",
)

# The product's params.yaml with tiny sizes: minutes on a laptop CPU, real outputs.
TINY = {
    "device": "cpu",
    "simulator": {"n_maps": 96, "resolution": 16, "n_truth_realizations": 1, "n_figure_maps": 2},
    "model": {"base_channels": 8, "channel_mult": [1, 2], "attention_resolutions": [8],
              "embedding_dim": 32},
    "mean": {"steps": 20, "batch_size": 8, "checkpoint_every": 10, "val_every": 10,
             "val_batches": 1},
    "pretrain": {"steps": 60, "batch_size": 8, "checkpoint_every": 30, "val_every": 30,
                 "val_batches": 1},
    "train": {"steps": 40, "batch_size": 8, "checkpoint_every": 20, "val_every": 20,
              "val_batches": 1},
    "ct": {"grid_levels": 10},
    "sample": {"batch_size": 16},
    "evaluate": {"n_maps": 8, "n_realizations": 4, "teacher_levels": 3},
    # A gate the tiny model can pass, so the registry shows a champion.
    "tracking": {"gate_max_pk_err": 5.0, "gate_max_rk_err": 5.0, "gate_max_mass_bias": 5.0},
}  # fmt: skip


def merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) else value
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Project:
    """A checkout with tiny params, and the environment its commands run in."""

    def __init__(self, root: Path):
        self.root = root / "halocm"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "HALOCM_"))},
            "DO_NOT_TRACK": "true",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DVC_NO_ANALYTICS": "1",
            "OMP_NUM_THREADS": "1",
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "PREFECT_HOME": str(root / "prefect"),
            "GIT_AUTHOR_NAME": "halocm",
            "GIT_AUTHOR_EMAIL": "halocm@localhost",
            "GIT_COMMITTER_NAME": "halocm",
            "GIT_COMMITTER_EMAIL": "halocm@localhost",
        }

    def checkout(self) -> None:
        """The files a clone of the working tree holds, with tiny params, committed."""
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\0")
        for name in filter(None, listed):
            if (ROOT / name).is_file():
                (self.root / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, self.root / name)
        params = yaml.safe_load((self.root / "params.yaml").read_text())
        (self.root / "params.yaml").write_text(yaml.safe_dump(merge(params, TINY), sort_keys=False))
        self.sh("git init -q && git add -A && git commit -qm checkout")

    def sh(self, command: str, env: dict | None = None) -> str:
        print(f"$ {command}", flush=True)
        proc = subprocess.run(
            ["bash", "-c", command],
            cwd=self.root,
            env={**self.env, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        if proc.returncode:
            raise SystemExit(f"{command} failed:\n{proc.stdout[-4000:]}")
        return proc.stdout

    def serve(self, command: list[str], health: str, log: Path, env: dict | None = None):
        """Start a server in its own session; return it once `health` answers."""
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                command,
                cwd=self.root,
                env={**self.env, **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(health, timeout=5):
                    return proc
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    stop(proc)
                    tail = log.read_text()[-3000:]
                    raise SystemExit(f"{command[0]} did not start:\n{tail}") from None
                time.sleep(1)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


def screenshot(
    browser: str, url: str, out: Path, size: str = "1920,1000", budget_ms: int = 20000
) -> None:
    """A page as a PNG: headless Chromium, time for the single-page app to load its data."""
    print(f"screenshot {out.name} ← {url}", flush=True)
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--window-size={size}",
            f"--virtual-time-budget={budget_ms}",
            f"--screenshot={out}",
            url,
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )


def offline_html_template(path: Path) -> Path:
    """DVC's page with the Vega bundle of vl-convert inline instead of the CDN's scripts."""
    import vl_convert

    path.write_text(
        "<!DOCTYPE html>\n<html>\n<head>\n<meta charset='utf-8'>\n<title>DVC Plot</title>\n"
        f"<script>{vl_convert.javascript_bundle()}</script>\n"
        "<style>body { font-family: sans-serif; }</style>\n</head>\n<body>\n{plot_divs}\n"
        "</body>\n</html>\n"
    )
    return path


def api(url: str, body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def main(out: Path, keep: bool) -> None:
    browser = chromium()
    if browser is None:
        raise SystemExit("no chromium on PATH: apt-get install -y chromium")
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="halocm-screenshots-"))
    servers = []
    try:
        project = Project(work)
        project.checkout()
        project.sh("halocm pipeline")
        project.sh("git add -A && git commit -qm 'first pipeline'")
        project.sh("halocm pipeline --set ct.target_ema=0.99")
        experiment = project.sh("dvc exp ls --name-only").split()[0]
        template = offline_html_template(work / "dvc_template.html")
        project.sh(f"dvc plots diff HEAD {experiment} --html-template {template} -o dvc_plots")

        # Prefect: a server on loopback with its UI, one flow run of the pipeline against it.
        prefect_url = f"http://127.0.0.1:{free_port()}"
        prefect_api = f"{prefect_url}/api"
        prefect_env = {"PREFECT_API_URL": prefect_api}
        servers.append(
            project.serve(
                [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port",
                 prefect_url.rsplit(":", 1)[1]],
                f"{prefect_api}/health",
                work / "prefect.log",
                prefect_env,
            )
        )  # fmt: skip
        project.sh("python flows/pipeline.py", prefect_env)
        flow_runs = api(f"{prefect_api}/flow_runs/filter", {"sort": "START_TIME_DESC", "limit": 1})

        # MLflow: its UI on the project's store.
        port = free_port()
        mlflow_url = f"http://127.0.0.1:{port}"
        store = f"sqlite:///{project.root / 'mlflow.db'}"
        servers.append(
            project.serve(
                [str(BIN / "mlflow"), "ui", "--backend-store-uri", store, "--host", "127.0.0.1",
                 "--port", str(port)],
                f"{mlflow_url}/health",
                work / "mlflow.log",
            )
        )  # fmt: skip
        import mlflow

        client = mlflow.MlflowClient(tracking_uri=store)
        exp_id = client.get_experiment_by_name("halocm").experiment_id
        parents = client.search_runs(
            [exp_id], "tags.launcher = 'halocm pipeline'", order_by=["attributes.start_time"]
        )
        compare = json.dumps([r.info.run_id for r in parents[:2]])

        runs_page = f"{mlflow_url}/#/experiments/{exp_id}/runs"
        screenshot(browser, runs_page, out / "mlflow-runs.png")
        charts = f"{runs_page}?compareRunsMode=CHART"  # charts load lazily: more time
        screenshot(browser, charts, out / "mlflow-charts.png", budget_ms=60000)
        newest = parents[-1].info.run_id  # the experiment: its run page, headline first
        screenshot(
            browser,
            f"{mlflow_url}/#/experiments/{exp_id}/runs/{newest}",
            out / "mlflow-run.png",
            size="1920,1300",
            budget_ms=40000,
        )
        screenshot(
            browser,
            f"{mlflow_url}/#/compare-runs?runs={compare}&experiments={json.dumps([exp_id])}",
            out / "mlflow-compare.png",
            size="1920,1500",
        )
        screenshot(
            browser, f"{mlflow_url}/#/models/halocm-consistency", out / "mlflow-registry.png"
        )
        screenshot(
            browser,
            (project.root / "dvc_plots" / "index.html").as_uri(),
            out / "dvc-plots.png",
            size="1300,1150",
        )
        screenshot(
            browser,
            f"{prefect_url}/runs/flow-run/{flow_runs[0]['id']}",
            out / "prefect-flow-run.png",
            size="1500,950",
        )
    finally:
        for server in servers:
            stop(server)
        if keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print("wrote " + ", ".join(str(out / f"{name}.png") for name in SHOTS))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img", help="folder")
    parser.add_argument("--keep", action="store_true", help="keep the temporary project")
    args = parser.parse_args()
    main(args.out, args.keep)
