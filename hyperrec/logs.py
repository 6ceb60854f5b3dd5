"""What the commands print: tables, progress and errors, not the libraries' logs (`--verbose` keeps them).

Left alone, one `hyperrec demo` prints pages a user has to scroll through: fbgemm's "Successfully
loaded" lines and FAISS's loader lines (INFO on the root logger of every Ray worker), Ray Train's
controller and worker INFO lines, the warning that Ray enabled token authentication, and
FutureWarning / UserWarning lines from the ONNX exporter. Every process hyperrec starts inherits
this process's environment, so settings made here before Ray starts reach the Ray workers too;
`init_ray()` starts Ray with the cluster and the workers' log level, `train_logging()` gives Ray Train's.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings
from typing import Any

from hyperrec.progress import PROGRESS_ENV, mark_driver_output

QUIET_FLAG = "HYPERREC_QUIET"
QUIET_ENV = {
    "PYTHONWARNINGS": "ignore::FutureWarning,ignore::DeprecationWarning,ignore::UserWarning",  # for the Ray workers
    "TORCH_LOGS": "-onnx",  # the exporter's "torchvision is not installed" lines (torch sets its loggers' levels itself)
    QUIET_FLAG: "1",  # read by hyperrec/__init__.py in every process that imports hyperrec (Ray workers too)
}
QUIET_LOGGERS = ("ray", "ray.train", "ray.tune", "ray.serve", "ray.data", "faiss.loader", "torch.onnx", "onnxscript", "wandb", "httpx")

_verbose = False


def quiet_libraries() -> None:
    """Library warnings and INFO logs off in this process. Ray workers run it when they import hyperrec,
    before the libraries' own imports log (fbgemm and FAISS log INFO lines when they are imported)."""
    for category in (FutureWarning, DeprecationWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category)
    logging.getLogger().setLevel(logging.WARNING)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def configure(verbose: bool = False) -> None:
    """Once, at the start of a command, before Ray or the ML libraries are imported."""
    global _verbose
    _verbose = verbose
    mark_driver_output()
    if verbose:
        os.environ.pop(QUIET_FLAG, None)
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        return
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    if "ray" not in sys.modules:  # Ray reads its auth mode once; a process that imported it already keeps its own
        os.environ.setdefault("RAY_AUTH_MODE", "token")  # what Ray picks for a new local cluster anyway; said, it does not warn
    # this command's one handler of the root logger; with none, the first root-level call of a library (Ray's accelerator
    # probes call logging.debug) installs logging.basicConfig's "WARNING:name:message" one
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    quiet_libraries()


def ray_address() -> str | None:
    """The cluster `ray.init` joins: the one RAY_ADDRESS names, else a new local one (with no address Ray looks for a
    running cluster and fails when it finds several, e.g. a test session's)."""
    return None if os.environ.get("RAY_ADDRESS") else "local"


def init_ray(**options: Any) -> None:
    """`ray.init` with `_ray_init_options()` and `options` on top, leaving this process's root logger as it was: Ray's
    LoggingConfig adds a handler of its own to the driver's root logger (job, worker and node ids on every line) beside
    the command's, and every warning of hyperrec's was printed twice."""
    import ray

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        ray.init(**(_ray_init_options() | options))
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def _ray_init_options() -> dict[str, Any]:
    """`ray.init` keyword arguments: the cluster (`ray_address()`), the workers' Python log level (WARNING unless
    verbose, and then no "(RayTrainWorker pid=...)" prefix on what they print: their progress lines), and this
    command's environment for the job's workers also on a cluster that was already running (`RAY_ADDRESS=auto`)."""
    import ray

    forwarded = {key: os.environ[key] for key in (*QUIET_ENV, PROGRESS_ENV) if key in os.environ}
    if not _verbose:
        _drop_core_lines()
    return {
        "address": ray_address(),
        "configure_logging": False,
        "logging_config": ray.LoggingConfig(encoding="TEXT", log_level="INFO" if _verbose else "WARNING"),
        "runtime_env": {"env_vars": forwarded},
    }


_CORE_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d [\d:,]+ [DIWE] \d+ \d+\] \S+\.cc:\d+: ")
# serve.shutdown() asks Serve's controller to shut down, then kills it, and the raylet reports the asked task as failed
# and "retried" (Ray 2.60): printed at the end of `hyperrec demo`, though nothing failed.
_SHUTDOWN_RACE = re.compile(r"^Task ServeController\.graceful_shutdown failed\..*killed by `ray\.kill`")


def _drop_core_lines() -> None:
    """Ray's C++ core writes its own log lines ("[date E pid tid] core_worker.cc:...") to each worker's
    stderr, and Ray forwards that to this process; they stay in /tmp/ray/session_*/logs but are not
    printed, nor is Serve's shutdown race (above). Ray has no switch for it (setting RAY_BACKEND_LOG_LEVEL
    makes every process log that it was set), so the forwarding function (ray._private.worker.print_worker_logs, Ray 2.60) is wrapped."""
    import ray._private.worker as worker

    forward = worker.print_worker_logs
    if getattr(forward, "drops_core_lines", False):
        return

    def print_worker_logs(data: dict, print_file: Any, ignore_prefix: bool = False) -> None:
        lines = [line for line in data.get("lines", []) if not (_CORE_LINE.match(line) or _SHUTDOWN_RACE.match(line))]
        if lines:
            forward({**data, "lines": lines}, print_file, ignore_prefix)

    print_worker_logs.drops_core_lines = True  # type: ignore[attr-defined]
    worker.print_worker_logs = print_worker_logs


def train_logging():
    """Ray Train's own `RunConfig(logging_config=...)`: its controller's INFO lines only when verbose."""
    import ray.train

    return ray.train.LoggingConfig(log_level="INFO" if _verbose else "WARNING")
