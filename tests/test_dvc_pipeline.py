"""The stage graph and DVC: dvc.yaml is the one generated from halocm.pipeline.STAGES, its code
deps cover what each stage runs; then DVC for real: the project's dvc.yaml in a temporary Git
repository with a tiny params.yaml, reproduced with the `dvc` and `halocm` commands (telemetry
off, MLflow on a local SQLite file).

The DVC tests share one repository and run in file order; each leaves it reproduced (up to
date), so any one of them also runs alone after the module fixture's first `dvc repro`."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import yaml
from conftest import TELEMETRY_OFF, TINY_PARAMS

from halocm.config import load_config
from halocm.pipeline import SRC, STAGES, dvc_yaml, import_closure

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ORDER = ["generate", "prepare", "regress", "pretrain", "train", "evaluate", "register"]


# --- the stage graph and dvc.yaml ----------------------------------------------------------


def test_the_committed_dvc_yaml_is_the_generated_one():
    committed = (ROOT / "dvc.yaml").read_text()
    assert committed == dvc_yaml(load_config(ROOT / "params.yaml")), (
        "dvc.yaml differs from the stage graph: run `halocm dvc-yaml`"
    )
    assert list(yaml.safe_load(committed)["stages"]) == list(STAGES) == ORDER


def _code_deps(stage: str) -> set[str]:
    deps = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]["deps"]
    return {d for d in deps if d.startswith("src/")}


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("stage", ORDER)
def test_each_stages_import_closure_is_in_its_dvc_deps(stage):
    deps = _code_deps(stage)
    module = STAGES[stage].module
    assert {_rel(p) for p in import_closure(module)} <= deps
    # What importing the stage module really loads (module-level imports) is a lower bound
    # of the static closure, which adds the imports inside functions.
    code = (
        f"import sys, {module}; "
        "print('\\n'.join(m.__file__ for m in list(sys.modules.values()) "
        "if m.__name__.startswith('halocm') and getattr(m, '__file__', None)))"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    loaded = {_rel(Path(f).resolve()) for f in out.stdout.split()}
    assert loaded - deps == set()
    # The CLI and the graph only dispatch; the stage's own deps are about what it runs.
    assert "src/halocm/cli.py" not in deps and "src/halocm/pipeline.py" not in deps


def test_the_code_deps_follow_function_level_imports():
    train = {_rel(p) for p in import_closure("halocm.stages.train")}
    # training.consistency_validation imports the quality score inside a function.
    assert "src/halocm/evaluation/quality.py" in train
    assert {"src/halocm/models.py", "src/halocm/sampling.py"} <= train  # missed before
    generate = {_rel(p) for p in import_closure("halocm.stages.generate")}
    assert "src/halocm/training.py" not in generate and "src/halocm/api.py" not in generate
    assert "src/halocm/data/synthetic.py" in generate
    # Not the lazy `halocm.load_model` hook of halocm/__init__.py.
    assert "src/halocm/__init__.py" in generate and "src/halocm/api.py" not in generate
    assert SRC == ROOT / "src" / "halocm"


def test_import_closure_on_a_small_package(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "def __getattr__(name):\n    from pkg import heavy\n",
        "heavy.py": "",
        "stage.py": "import os\nfrom pkg.sub import a\nfrom . import b\n",
        "b.py": "def f():\n    from .sub.c import x\n",
        "unused.py": "",
        "sub/__init__.py": "",
        "sub/a.py": "import pkg.sub.d as d\n",
        "sub/c.py": "x = 1\n",
        "sub/d.py": "from ..b import f\n",
    }
    for name, text in files.items():
        (pkg / name).write_text(text)
    found = {p.relative_to(pkg).as_posix() for p in import_closure("pkg.stage", src=pkg)}
    assert found == {
        "__init__.py",  # a parent package: its file, not its lazy hook's import of `heavy`
        "stage.py",
        "b.py",  # from . import b
        "sub/__init__.py",
        "sub/a.py",  # from pkg.sub import a: a module, not a name of pkg.sub
        "sub/c.py",  # imported inside a function, relatively
        "sub/d.py",  # import pkg.sub.d as d
    }


ENV = {
    **TELEMETRY_OFF,
    "OMP_NUM_THREADS": "1",
    "GIT_AUTHOR_NAME": "halocm-test",
    "GIT_AUTHOR_EMAIL": "test@localhost",
    "GIT_COMMITTER_NAME": "halocm-test",
    "GIT_COMMITTER_EMAIL": "test@localhost",
}


def _run(repo: Path, *cmd: str, timeout: float = 300) -> str:
    """Run a command in the repository; stdout and stderr (DVC logs to both) into one stream,
    in the order a terminal shows them."""
    env = {**os.environ, **ENV, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("HALOCM_MLFLOW_PARENT_RUN_ID", None)
    proc = subprocess.run(
        list(cmd),
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )
    output = proc.stdout
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{output[-4000:]}"
    return output


def _ran(output: str) -> list[str]:
    return re.findall(r"Running stage '(\w+)'", output)


def _state(repo: Path) -> dict[str, int]:
    """mtime of dvc.lock and of every file under the stages' output folders."""
    files = [repo / "dvc.lock"]
    for folder in ("data", "models", "metrics", "reports"):
        files += [p for p in (repo / folder).rglob("*") if p.is_file()]
    return {str(p.relative_to(repo)): p.stat().st_mtime_ns for p in files}


def _set_param(repo: Path, section: str, key: str, value) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params[section][key] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _mlflow_runs(repo: Path) -> list:
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{repo.parent / 'mlflow.db'}")
    exp = client.get_experiment_by_name("halocm")
    return client.search_runs([exp.experiment_id]) if exp else []


@pytest.fixture(scope="module")
def first_repro(tmp_path_factory):
    """(repository, output, seconds) of the first `dvc repro` in a Git + DVC repository with
    the project's dvc.yaml, its code (the stage deps) and a tiny params.yaml. The results are
    then committed, as DVC suggests."""
    tmp = tmp_path_factory.mktemp("dvc")
    repo = tmp / "repo"
    repo.mkdir()
    for name in ("dvc.yaml", ".dvcignore", ".gitignore"):
        shutil.copy(ROOT / name, repo / name)
    shutil.copytree(ROOT / ".dvc", repo / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache"))
    shutil.copytree(
        ROOT / "src", repo / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    # The real params.yaml (every section the stages list) with the tiny test sizes; MLflow
    # in a migrated SQLite copy next to the repository, so it is no part of the workspace.
    store = tmp / "mlflow.db"
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{store}").search_experiments()
    params = json.loads(json.dumps(TINY_PARAMS))  # a copy
    params["tracking"].update(
        enabled=True, tracking_uri=f"sqlite:///{store}", artifact_root=str(tmp / "mlartifacts")
    )
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run(repo, "git", "init", "-q")
    _run(repo, "git", "add", "-A")
    _run(repo, "git", "commit", "-qm", "pipeline")

    start = time.perf_counter()
    output = _run(repo, "dvc", "repro", timeout=600)
    elapsed = time.perf_counter() - start
    _run(repo, "git", "add", "-A")
    _run(repo, "git", "commit", "-qm", "first repro")
    yield repo, output, elapsed
    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module")
def repo(first_repro) -> Path:
    return first_repro[0]


def test_first_repro_runs_every_stage_and_writes_the_outputs(repo, first_repro):
    _, output, elapsed = first_repro
    assert _ran(output) == ORDER
    for path in [
        "data/raw/synthetic.npz",
        "data/processed/train.npz",
        "data/processed/norm_stats.json",
        "models/denoiser.pt",
        "models/consistency.pt",
        "metrics/benchmark.json",
        "metrics/headline.json",
        "metrics/registry.json",
        "metrics/pk_ratio.csv",
        "reports/benchmark.md",
        "reports/pk_ratio.png",
        "reports/rank_hist.png",
        "reports/generated_cutouts.png",
    ]:
        assert (repo / path).is_file(), path
    # DVC stages what it changed itself (core.autostage) instead of printing a git hint.
    assert "To track the changes with git" not in output
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert list(lock["stages"]) == ORDER
    assert lock["stages"]["train"]["params"]["params.yaml"]["ct"]["target_ema"] == 0.9
    assert "sample.batch_size" not in str(lock["stages"]["train"]["params"])
    # Cached outputs are in DVC's cache and ignored by Git; the uncached ones are Git's.
    assert "/consistency.pt" in (repo / "models/.gitignore").read_text()
    registry = json.loads((repo / "metrics/registry.json").read_text())
    assert registry["model"] == "halocm-consistency" and registry["version"] == 1
    print(f"first dvc repro: {elapsed:.1f} s")


def test_second_repro_runs_nothing(repo):
    before = _state(repo)
    output = _run(repo, "dvc", "repro")
    assert _ran(output) == []
    assert "Data and pipelines are up to date" in output
    assert all(f"Stage '{name}' didn't change, skipping" in output for name in ORDER)
    assert _state(repo) == before


def test_changing_the_target_ema_reruns_only_train_evaluate_register(repo):
    old = yaml.safe_load((repo / "params.yaml").read_text())["ct"]["target_ema"]
    _set_param(repo, "ct", "target_ema", 0.995 if old != 0.995 else 0.996)
    before = _state(repo)
    output = _run(repo, "dvc", "repro")
    assert _ran(output) == ["train", "evaluate", "register"]
    after = _state(repo)
    for path in ("data/raw/synthetic.npz", "data/processed/train.npz", "models/denoiser.pt"):
        assert after[path] == before[path], path
    for path in ("models/consistency.pt", "metrics/benchmark.json", "metrics/registry.json"):
        assert after[path] != before[path], path
    assert _ran(_run(repo, "dvc", "repro")) == []


def test_changing_the_sampling_batch_size_reruns_evaluate_not_train(repo):
    old = yaml.safe_load((repo / "params.yaml").read_text())["sample"]["batch_size"]
    _set_param(repo, "sample", "batch_size", old + 1)
    before = _state(repo)
    output = _run(repo, "dvc", "repro")
    # register follows evaluate's new benchmark.json (its timings always change).
    assert _ran(output) == ["evaluate", "register"]
    assert _state(repo)["models/consistency.pt"] == before["models/consistency.pt"]


def test_editing_a_module_a_stage_runs_marks_that_stage_changed(repo):
    def changed() -> set[str]:
        status = json.loads(_run(repo, "dvc", "status", "--json"))
        return {name.split(":")[-1] for name in status}

    module = repo / "src/halocm/evaluation/quality.py"  # validation's score: train runs it
    text = module.read_text()
    module.write_text(text + "\n# edited\n")
    try:
        trained = {"regress", "pretrain", "train"}
        assert trained <= changed() <= trained | {"evaluate", "register"}
        assert "generate" not in changed() and "prepare" not in changed()
    finally:
        module.write_text(text)
    assert changed() == set()


def _children(runs: list, parent) -> set[str]:
    """The stages of the runs whose parent is `parent`."""
    return {
        r.data.tags["stage"]
        for r in runs
        if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    }


def _pipeline_runs(repo: Path, launcher: str) -> list:
    runs = _mlflow_runs(repo)
    return [r for r in runs if r.data.tags.get("launcher") == launcher]


def test_halocm_pipeline_reports_up_to_date_then_reruns_under_one_mlflow_run(repo):
    output = _run(repo, "halocm", "pipeline")
    assert "pipeline up to date: nothing to rerun" in output
    assert _ran(output) == []
    assert "models/consistency.pt" in output and "reports/benchmark.md" in output
    assert re.search(r"registry\s+halocm-consistency version \d+ @(champion|challenger)", output)
    assert re.search(r"consistency 1\s+\d\.\d{3}\s+\d\.\d{3}", output) and "(means over" in output
    assert not _pipeline_runs(repo, "halocm pipeline")

    # A changed evaluate key: `halocm pipeline` = `dvc repro` under one MLflow parent run.
    _set_param(repo, "evaluate", "teacher_realizations", 1)
    output = _run(repo, "halocm", "pipeline")
    assert _ran(output) == ["evaluate", "register"]
    runs = _mlflow_runs(repo)
    parents = _pipeline_runs(repo, "halocm pipeline")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    children = _children(runs, parent)
    assert children == {"evaluate", "register"}
    assert "dvc_lock_md5" in parent.data.tags and "git_commit" in parent.data.tags
    assert parent.data.tags["git_dirty"] == "true"  # params.yaml differs from the commit
    assert "evaluate.teacher_realizations: 2 → 1" in parent.data.tags["params_diff"]
    # What the runs table shows for it: the headline, the params that differ, the datasets.
    assert 0 < len(parent.data.metrics) <= 20
    assert parent.data.params["evaluate.teacher_realizations"] == "1"
    assert {d.dataset.name for d in parent.inputs.dataset_inputs} == {
        "halocm-train", "halocm-val", "halocm-test"
    }  # fmt: skip
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    md5 = {o["path"]: o["md5"] for o in lock["stages"]["prepare"]["outs"]}
    digests = {d.dataset.name: d.dataset.digest for d in parent.inputs.dataset_inputs}
    assert digests["halocm-test"] == md5["data/processed/test.npz"]  # DVC's hash
    assert parent.data.tags["registered"].startswith("halocm-consistency v")
    # Plain `dvc repro` runs (the earlier tests) have a parent too: one per DVC command.
    orphans = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert all(r.data.tags["stage"] == "pipeline" for r in orphans)
    assert _pipeline_runs(repo, "dvc repro")


def test_exp_run_with_a_param_and_exp_show_lists_it_with_metrics(repo):
    output = _run(repo, "dvc", "exp", "run", "-S", "ct.target_ema=0.98", timeout=600)
    assert _ran(output) == ["train", "evaluate", "register"]
    name = re.search(r"Ran experiment\(s\): (\S+)", output).group(1)
    shown = json.loads(_run(repo, "dvc", "exp", "show", "--json"))
    exps = [
        rev
        for baseline in shown
        for exp in baseline.get("experiments") or []
        for rev in exp["revs"]
        if rev["name"] == name
    ]
    assert len(exps) == 1, [e.get("name") for b in shown for e in b.get("experiments") or []]
    data = exps[0]["data"]
    assert data["params"]["params.yaml"]["data"]["ct"]["target_ema"] == 0.98
    headline = data["metrics"]["metrics/headline.json"]["data"]
    assert set(headline["consistency_1"]) >= {"pk_err", "rk_err", "ms_per_map"}
    assert data["metrics"]["metrics/benchmark.json"]["data"]["n_parameters"] > 0
    # The experiment's results are applied to the workspace, which is reproduced.
    assert _ran(_run(repo, "dvc", "repro")) == []
    # In MLflow its stages nest under one run for the experiment, which holds the headline.
    runs = _mlflow_runs(repo)
    parent = next(r for r in runs if r.info.run_name == f"dvc exp {name}")
    assert parent.data.tags["launcher"] == "dvc exp run" and parent.info.status == "FINISHED"
    stages = _children(runs, parent)
    assert stages == {"train", "evaluate", "register"}
    assert 0 < len(parent.data.metrics) <= 20 and parent.data.params["ct.target_ema"] == "0.98"
    # `dvc plots diff` against the committed results draws both revisions.
    diff = json.loads(_run(repo, "dvc", "plots", "diff", "HEAD", name, "--json"))["data"]
    values = diff["pk_ratio"][0]["content"]["data"]["values"]
    assert {v["rev"] for v in values} == {"HEAD", name}


def test_metrics_and_plots_show_read_the_evaluate_outputs(repo):
    metrics = json.loads(_run(repo, "dvc", "metrics", "show", "--json"))
    files = metrics[""]["data"]
    bench = json.loads((repo / "metrics/benchmark.json").read_text())
    assert files["metrics/benchmark.json"]["data"]["n_parameters"] == bench["n_parameters"]
    headline = json.loads((repo / "metrics/headline.json").read_text())
    assert files["metrics/headline.json"]["data"] == headline
    plots = json.loads(_run(repo, "dvc", "plots", "show", "--json"))["data"]
    assert set(plots) == {"pk_ratio", "r_k", "pk_err_vs_nfe", "rk_err_vs_nfe"}
    for plot in plots.values():
        content = plot[0]["content"]
        # The template's panels and series: one column per channel, a colour per sampler.
        assert content["facet"]["column"]["field"] == "channel"
        assert content["spec"]["encoding"]["color"]["field"] == "sampler"
        assert content["spec"]["encoding"]["x"]["scale"]["type"] == "log"
        values = content["data"]["values"]
        assert len({v["sampler"] for v in values}) >= 2 and len({v["channel"] for v in values}) >= 3


def test_pipeline_with_tuned_values_runs_an_experiment_linked_to_the_study(repo):
    """`halocm tune` writes dotted overrides with its study in the header; `halocm pipeline
    --set-file` runs them as a DVC experiment under an MLflow run that links to the study."""
    tuned = repo / "params.tuned.yaml"
    tuned.write_text(
        "# Written by `halocm tune`: study halocm, best trial 4 (val_score 0.61).\n"
        "ct.target_ema: 0.97\n"
    )
    cmd = ("halocm", "pipeline", "--set-file", "params.tuned.yaml")
    output = _run(repo, *cmd, timeout=600)
    assert _ran(output) == ["train", "evaluate", "register"]
    assert yaml.safe_load((repo / "params.yaml").read_text())["ct"]["target_ema"] == 0.97
    name = re.search(r"experiment (\S+): its values are now in params.yaml", output).group(1)
    parent = _pipeline_runs(repo, "halocm pipeline")[0]  # the newest first
    tags = parent.data.tags
    assert (tags["optuna.study"], tags["optuna.trial"], tags["dvc_exp_name"]) == (
        "halocm",
        "4",
        name,
    )
    assert tags["tuned_from"] == "params.tuned.yaml"
    assert parent.data.params["ct.target_ema"] == "0.97"
    shown = json.loads(_run(repo, "dvc", "exp", "show", "--json"))
    names = [rev["name"] for b in shown for e in b.get("experiments") or [] for rev in e["revs"]]
    assert name in names
    # A quiet console: the summary ends it, with no third-party warning or DVC hint near it.
    console = output.rstrip().splitlines()
    assert console[-1].startswith("(means over")
    assert not [line for line in console[-40:] if "Warning" in line or "git add" in line]
    assert _ran(_run(repo, "dvc", "repro")) == []
