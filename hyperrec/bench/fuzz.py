"""OpenAPI fuzzing of a running endpoint: schemathesis over its whole document, every check.

schemathesis runs from a venv of its own (`.venv-schemathesis`, `make setup`, pinned in
requirements/schemathesis.txt) with the repository's schemathesis.toml, as

    st --config-file schemathesis.toml run URL/openapi.json --checks all --max-examples N

and writes an NDJSON report; `run_schemathesis` reads it back per operation: test cases, the
status codes the server answered and the checks that failed. Used by
tests/serve/test_openapi_fuzz.py (a short budget) and benchmarks/fuzz.py (a longer one).
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ST = REPO / ".venv-schemathesis" / "bin" / "st"
CONFIG = REPO / "schemathesis.toml"


@dataclass
class OperationReport:
    operation: str
    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failed_checks: Counter[str] = field(default_factory=Counter)


@dataclass
class FuzzReport:
    returncode: int
    operations: dict[str, OperationReport]
    output: str

    @property
    def cases(self) -> int:
        return sum(op.cases for op in self.operations.values())

    @property
    def failures(self) -> int:
        """Failed checks over all cases (0 when every answer matched the document)."""
        return sum(sum(op.failed_checks.values()) for op in self.operations.values())

    @property
    def server_errors(self) -> int:
        return sum(n for op in self.operations.values() for status, n in op.statuses.items() if status >= 500)

    def summary(self) -> str:
        """schemathesis's own closing lines (failures, seed), for an assertion message."""
        return self.output[self.output.find("=== FAILURES") if "=== FAILURES" in self.output else -3000 :]


def run_schemathesis(
    url: str, max_examples: int, workdir: Path, headers: dict[str, str] | None = None, timeout_s: float = 300.0, seed: int | None = None
) -> FuzzReport:
    """Fuzz `url`'s OpenAPI document; raise FileNotFoundError if the schemathesis venv is missing."""
    if not ST.exists():
        raise FileNotFoundError(f"{ST} is missing: `make setup` (or `make schemathesis-setup`) installs schemathesis into its own venv")
    report = workdir / "schemathesis.ndjson"
    command = [str(ST), "--config-file", str(CONFIG), "--no-color", "run", f"{url}/openapi.json", "--checks", "all"]
    command += ["--max-examples", str(max_examples)]
    command += ["--report", "ndjson", "--report-ndjson-path", str(report)]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    if seed is not None:
        command += ["--seed", str(seed)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, cwd=workdir)
    return FuzzReport(done.returncode, read_report(report), done.stdout + done.stderr)


def read_report(path: Path) -> dict[str, OperationReport]:
    """Per operation ("POST /recommend"): the cases schemathesis sent, the answers' statuses, the failed checks."""
    operations: dict[str, OperationReport] = {}
    for line in path.read_text().splitlines():
        event = json.loads(line)
        finished = event.get("ScenarioFinished")
        if finished is None:
            continue
        recorder = finished["recorder"]
        op = operations.setdefault(recorder["label"], OperationReport(recorder["label"]))
        op.cases += len(recorder.get("cases", {}))
        for interaction in recorder.get("interactions", {}).values():
            if interaction.get("response") is not None:
                op.statuses[int(interaction["response"]["status_code"])] += 1
        for checks in recorder.get("checks", {}).values():
            op.failed_checks.update(check["name"] for check in checks if check["status"] == "failure")
    return operations
