"""`hyperrec train` as a user runs it, output to a log (not a terminal): what it prints is the progress,
the table and the run, not the libraries' logs. It joins the test session's Ray cluster (`RAY_ADDRESS`,
as on a cluster started with `ray start`), so the job's workers get the command's settings from its
runtime environment, not from the environment the cluster was started with."""

import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import tiny_training_config

NOISE = ("Successfully loaded", "Loading faiss", "core_worker.cc", "Token authentication", "Warning", "Requesting resources", "pid=")


def test_train_in_a_log_prints_progress_lines_and_results_without_library_noise(ray_cluster, tmp_path):
    import ray

    config = tiny_training_config(tmp_path, progress=True, epochs=1)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "HYPERREC_", "PYTHONWARNINGS", "TORCH_LOGS"))}
    env["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
    done = subprocess.run(
        [str(Path(sys.executable).with_name("hyperrec")), "train", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    lines = [line for line in output.splitlines() if line.strip()]
    assert not [line for line in lines if any(noise in line for noise in NOISE)], output
    assert any(line.startswith("epoch 1/1: ") for line in lines), output
    assert "\r" not in output  # no bar redrawn into a log
    assert any(line.startswith("run tiny_sasrec-") for line in lines), output
    assert len(lines) < 40, output


def test_forwarded_ray_lines_lose_the_core_log_and_serves_shutdown_race_and_keep_the_rest(monkeypatch):
    import ray._private.worker as worker

    from hyperrec.logs import _drop_core_lines

    printed: list[list[str]] = []
    monkeypatch.setattr(worker, "print_worker_logs", lambda data, print_file, ignore_prefix=False: printed.append(data["lines"]))
    _drop_core_lines()
    race = (
        "Task ServeController.graceful_shutdown failed. There are infinite retries remaining, so the task will be retried. "
        "Error: The actor is dead because it was killed by `ray.kill`."
    )
    core = "[2026-12-02 11:29:06,174 E 4169 4170] core_worker.cc:512: something internal"
    worker.print_worker_logs({"pid": "raylet", "lines": [race, core, "epoch 1/2: loss 3.1"]}, None)
    worker.print_worker_logs({"pid": "raylet", "lines": [race]}, None)
    assert printed == [["epoch 1/2: loss 3.1"]]


def test_a_warning_after_ray_starts_is_printed_once_in_the_commands_format(ray_cluster):
    """Ray's LoggingConfig adds a handler to the driver's root logger; init_ray keeps the command's one alone."""
    import ray

    script = (
        "import logging\n"
        "from hyperrec.logs import configure, init_ray\n"
        "configure()\n"  # as every command does, before Ray is imported
        "import ray\n"
        "init_ray()\n"
        "logging.getLogger('hyperrec.serve.privacy').warning('the key is not set')\n"
        "ray.shutdown()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "HYPERREC_"))}
    env["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-3000:]
    said = [line for line in (done.stdout + done.stderr).splitlines() if "the key is not set" in line]
    assert said == ["WARNING hyperrec.serve.privacy: the key is not set"], done.stderr[-3000:]


def test_training_starts_a_cluster_of_its_own_with_its_gcs_port_named_in_the_environment(monkeypatch):
    """ensure_ray names the new cluster's GCS in RAY_ADDRESS for the processes it starts; the driver itself must still
    ask for a new local cluster (an address read after the pinning made it wait for a cluster that never came)."""
    import ray

    from hyperrec.train import launcher

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # the test session's cluster is up; ask as a fresh driver would
    started: list[tuple[dict, str | None]] = []
    monkeypatch.setattr(launcher, "init_ray", lambda **options: started.append((options, os.environ.get("RAY_ADDRESS"))))
    launcher.ensure_ray(num_cpus=1)
    [(options, pinned)] = started
    assert options["address"] == "local" and options["num_cpus"] == 1
    assert pinned is not None and pinned.startswith("127.0.0.1:")  # what Ray Train's controller reads
    assert "RAY_ADDRESS" not in os.environ  # and gone again for the driver's later calls
