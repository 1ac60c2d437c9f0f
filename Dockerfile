# halocm on the CPU: the package with DVC, Prefect, MLflow and Optuna, run as a non-root user.
#   docker build -t halocm:0.1.0 .
#   docker run --rm halocm:0.1.0                      # halocm --help
#   docker run --rm -v "$PWD:/workspace" -u "$(id -u):$(id -g)" halocm:0.1.0 pipeline
# The team set-up (PostgreSQL, MLflow, Prefect) is compose.yaml; see docs/deployment.md.
# Every install step here also runs in CI: .ci/run installs the same Debian packages and the
# Makefile the same pyproject (tests/test_docker.py checks that they stay in step).

# The CI machine's Python and Debian release (3.11.7, bookworm).
FROM python:3.11.7-slim-bookworm

# PyTorch's CPU wheels: pyproject's torch==2.13.0 then resolves to 2.13.0+cpu, not the
# several-GB CUDA build from PyPI. Pass --build-arg PIP_EXTRA_INDEX_URL= to use a mirror.
ARG PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DO_NOT_TRACK=true \
    MLFLOW_DISABLE_TELEMETRY=true \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    DVC_NO_ANALYTICS=1

# git: DVC needs the project's repository; runs are tagged with its commit.
# Debian's security updates replace old package versions, so apt versions are not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/halocm
COPY pyproject.toml README.md ./
COPY src ./src
# Versions come from pyproject.toml; `server` adds the PostgreSQL driver for Optuna/MLflow
# and what MLflow's basic-auth app needs (compose.yaml).
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[server]"

# A fixed uid (override with `user:` in compose to match a bind-mounted checkout); the
# artifact folder exists so that a named volume mounted there belongs to this user.
RUN useradd --create-home --uid 10001 halocm \
    && install -d -o halocm -g halocm /workspace /home/halocm/mlartifacts
USER 10001:10001
WORKDIR /workspace

ENTRYPOINT ["halocm"]
CMD ["--help"]
