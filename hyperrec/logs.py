"""What the commands print: tables, progress and errors, not the libraries' logs (`--verbose` keeps them).

Left alone, one `hyperrec demo` prints pages a user has to scroll through: fbgemm's "Successfully
loaded" lines and FAISS's loader lines (INFO on the root logger of every Ray worker), Ray Train's
controller and worker INFO lines, the C++ core's `core_worker.cc ... E` lines, the warning that Ray
enabled token authentication, and FutureWarning / UserWarning lines from the ONNX exporter. Every
process hyperrec starts inherits this process's environment, so settings made here before Ray
starts reach the Ray workers too; `ray_logging()` gives `ray.init` the workers' log level.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

from hyperrec.progress import mark_driver_output

QUIET_ENV = {
    "RAY_AUTH_MODE": "token",  # what Ray picks for a new local cluster anyway; said explicitly, Ray does not warn about it
    "RAY_BACKEND_LOG_LEVEL": "fatal",  # the C++ core's own log lines
    "PYTHONWARNINGS": "ignore::FutureWarning,ignore::DeprecationWarning,ignore::UserWarning",  # for the Ray workers
    "TORCH_LOGS": "-onnx",  # the exporter's "torchvision is not installed" lines (torch sets its loggers' levels itself)
}
QUIET_LOGGERS = ("ray", "ray.train", "ray.tune", "ray.serve", "ray.data", "faiss.loader", "torch.onnx", "onnxscript", "wandb", "httpx")

_verbose = False


def configure(verbose: bool = False) -> None:
    """Once, at the start of a command, before Ray or the ML libraries are imported."""
    global _verbose
    _verbose = verbose
    mark_driver_output()
    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        return
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    for category in (FutureWarning, DeprecationWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category)
    logging.getLogger().setLevel(logging.WARNING)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def ray_logging() -> dict[str, Any]:
    """`ray.init` keyword arguments: the workers' Python log level (WARNING unless verbose), and no
    per-line "(RayTrainWorker pid=...)" prefix on what they print (their progress lines)."""
    import ray

    return {"configure_logging": False, "logging_config": ray.LoggingConfig(encoding="TEXT", log_level="INFO" if _verbose else "WARNING")}
