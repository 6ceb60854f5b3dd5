"""`TritonSidecar`: starts the real Triton server bundled in nvidia-pytriton on a model repository
(hyperrec/serve/triton_sidecar.py, in its own venv `.venv-triton`, made by `make triton-setup`),
waits until every model is ready, and stops it with all its processes.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from tritonclient import http

from hyperrec.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_VENV = ROOT / ".venv-triton"
SIDECAR = Path(__file__).with_name("triton_sidecar.py")
READY_LINE = "triton ready"  # printed by the sidecar once every model is bound


class TritonSidecar:
    """The bundled Triton server on `repository`, in a subprocess of its own process group.

    `start()` returns once the server and every model folder's model are ready (or raises with
    the server's log); `stop()` (also on leaving a `with` block) ends the server and every
    process it started. Ports default to free ones; `url` is the HTTP address for TritonModel."""

    def __init__(
        self,
        repository: Path,
        venv: Path = DEFAULT_VENV,
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        threads: int = 1,
        startup_timeout_s: float = 120.0,
    ):
        self.repository = Path(repository).resolve()
        self.python = Path(venv) / "bin" / "python"
        self.ports = {"http": http_port or free_port(), "grpc": grpc_port or free_port(), "metrics": metrics_port or free_port()}
        self.threads = threads
        self.startup_timeout_s = startup_timeout_s
        self.models: list[str] = []
        self.process: subprocess.Popen | None = None
        self.scratch: Path | None = None  # the log and pytriton's workspace (a copy of the server): removed by stop()
        self.startup_s: float | None = None

    @property
    def log_path(self) -> Path | None:
        return self.scratch / "sidecar.log" if self.scratch else None

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.ports['http']}"

    def start(self) -> Self:
        if not self.python.exists():
            raise FileNotFoundError(
                f"no Triton sidecar environment at {self.python.parent.parent}: run `make triton-setup` "
                "(a venv of its own from requirements/triton.txt; nvidia-pytriton needs numpy<2)"
            )
        self.models = sorted(p.parent.name for p in self.repository.glob("*/config.pbtxt"))
        if not self.models:
            raise FileNotFoundError(
                f"no model folders (<name>/config.pbtxt) in {self.repository}: write one with hyperrec.export.triton_repo"
            )
        self.scratch = Path(tempfile.mkdtemp(prefix="hyperrec-triton-"))
        command = [str(self.python), str(SIDECAR), "--repository", str(self.repository), "--threads", str(self.threads)]
        command += [arg for kind, port in self.ports.items() for arg in (f"--{kind}-port", str(port))]
        command += ["--workspace", str(self.scratch / "workspace")]
        began = time.perf_counter()
        with open(self.log_path, "wb") as log:
            # A session of its own: stop() can end the server's whole process tree by group id.
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.perf_counter() - began
        return self

    def _wait_ready(self) -> None:
        """Until the sidecar says every model is bound (Triton reports a model ready before pytriton
        has finished binding it) and the server agrees."""
        client = http.InferenceServerClient(self.url, connection_timeout=2.0, network_timeout=2.0)
        deadline = time.monotonic() + self.startup_timeout_s
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"the Triton sidecar exited with code {self.process.returncode} while starting:\n{self.log_tail()}")
                bound = READY_LINE in self.log_path.read_text(errors="replace")
                if bound and client.is_server_ready() and all(client.is_model_ready(m) for m in self.models):
                    return
                time.sleep(0.1)
        finally:
            client.close()
        raise TimeoutError(f"the Triton sidecar was not ready after {self.startup_timeout_s:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:]) if self.log_path else ""

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM (the sidecar unloads its models and stops the server), SIGKILL to the whole
        process group if that takes longer than `timeout_s`; then no process of the group is left,
        nor its files."""
        if self.process is None:
            return
        pid = self.process.pid
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(pid, signal.SIGKILL)  # whatever of the server's tree is still there
        except ProcessLookupError:
            pass
        self.process.wait()
        self.process = None
        self._remove_files(pid)

    def _remove_files(self, pid: int) -> None:
        """The scratch folder, and what the server leaves when it exits before unloading its models
        (killed, or its exit timeout used up waiting for open client connections): pytriton's
        shared memory, named by the sidecar's pid, and Triton's copies of the models in
        /tmp/folder* (a hard-coded place; ours name our workspace in their config)."""
        for region in Path("/dev/shm").glob(f"pytrtion{pid}-*"):  # pytriton's prefix (sic)
            region.unlink(missing_ok=True)
        workspace = f'"{self.scratch / "workspace"}"'
        for config in Path("/tmp").glob("folder*/config.pbtxt"):
            try:
                ours = workspace in config.read_text(errors="replace")
            except OSError:
                continue
            if ours:
                shutil.rmtree(config.parent, ignore_errors=True)
        shutil.rmtree(self.scratch, ignore_errors=True)
        self.scratch = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.stop()
