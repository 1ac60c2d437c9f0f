"""Serve the deployments: the nightly pipeline (cron) and an on-demand tune.

Needs a Prefect API with a scheduler:
    prefect server start --host 127.0.0.1 --background
    export PREFECT_API_URL=http://127.0.0.1:4200/api
    python flows/serve.py [--cron "0 2 * * *"]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prefect import serve
from prefect.schedules import Cron

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipeline import pipeline
from tune import tune_flow

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cron", default="0 2 * * *", help="pipeline schedule, cron in UTC (default: %(default)s)"
    )
    parser.add_argument(
        "--params", default="params.yaml", help="params file (default: %(default)s)"
    )
    a = parser.parse_args()
    serve(
        pipeline.to_deployment(
            name="nightly", schedule=Cron(a.cron, timezone="UTC"), parameters={"params": a.params}
        ),
        tune_flow.to_deployment(name="on-demand", parameters={"params": a.params}),
    )
