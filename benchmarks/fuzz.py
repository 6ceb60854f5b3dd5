"""Fuzz the real endpoint's OpenAPI document with schemathesis (every check), longer than the test, and print a table.

    .venv/bin/python benchmarks/fuzz.py --registry experiments/registry --max-examples 200

Starts `hyperrec serve`'s app (its own local Ray) on the registry's current version with an admin token
(so the admin calls are fuzzed past authentication too; schemathesis also tries them without it and
with a wrong one) and fault injection off, runs schemathesis from .venv-schemathesis (`make setup`),
then prints per operation the cases sent, the status codes answered and the failed checks.
Exit code 1 if any check failed.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from hyperrec.bench.fuzz import run_schemathesis
from hyperrec.serve.config import ServeConfig
from hyperrec.serve.ray_env import prepare_environment


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", type=Path, default=Path("experiments/registry"))
    parser.add_argument("--version", default="current")
    parser.add_argument("--port", type=int, default=8900)
    parser.add_argument("--max-examples", type=int, default=200, help="schemathesis cases per operation and phase")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    console = Console(width=160)
    workdir = Path(tempfile.mkdtemp(prefix="hyperrec-fuzz-"))
    token_env = "HYPERREC_FUZZ_ADMIN_TOKEN"
    os.environ[token_env] = token = secrets.token_hex(32)
    config = ServeConfig(
        registry=args.registry,
        version=args.version,
        port=args.port,
        event_log=workdir / "log",
        admin={"token_env": token_env, "catalog_token_env": token_env + "_CATALOG"},
    )
    prepare_environment(config)  # before Ray Serve is imported
    import ray

    from hyperrec.serve.runner import start, stop

    url = start(config)
    try:
        console.print(f"fuzzing {url} ({args.registry}, {args.version}), {args.max_examples} examples per operation ...")
        report = run_schemathesis(url, args.max_examples, workdir, {"Authorization": f"Bearer {token}"}, timeout_s=3600, seed=args.seed)
    finally:
        stop()
        ray.shutdown()
    table = Table(title=f"schemathesis --checks all, --max-examples {args.max_examples}")
    for column in ("operation", "cases", "2xx", "4xx", "5xx", "answers by status", "failed checks"):
        table.add_column(column, justify="left" if column in ("operation", "answers by status", "failed checks") else "right")
    for op in report.operations.values():
        by_class = {c: sum(n for s, n in op.statuses.items() if s // 100 == c) for c in (2, 4, 5)}
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(op.statuses.items()))
        failed = ", ".join(f"{name}: {n}" for name, n in op.failed_checks.items()) or "-"
        table.add_row(op.operation, str(op.cases), str(by_class[2]), str(by_class[4]), str(by_class[5]), statuses, failed)
    table.add_row("all", str(report.cases), "", "", str(report.server_errors), "", str(report.failures))
    console.print(table)
    if report.returncode != 0:
        console.print(report.summary())
    return 0 if report.returncode == 0 and report.failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
