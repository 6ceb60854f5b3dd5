"""One prepared script for a lent GPU: hyperrec's CUDA paths, timed, in one table.

    .venv/bin/python benchmarks/gpu_check.py --steps 3 --items 2000 20000 --queries 64   # CPU smoke run

On a lent GPU machine (the `device` tool; its CUDA image has torch, onnx, onnxruntime, pandas and
rich but not pydantic), fetch pydantic's wheels here first (`.whl/` is git-ignored: pass it in the
run's `carry`), then run one command there:

    pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
        -d .whl pydantic==2.14.4 pydantic-core==2.50.5 annotated-types typing-inspection
    python3 -m pip install --no-deps .whl/*.whl && PYTHONPATH=. python3 benchmarks/gpu_check.py --out "$OUT"

It needs only torch, numpy, pandas, pydantic, PyYAML, onnx and onnxruntime; TorchRec, FAISS and Ray
are not needed, so the two-tower (TorchRec tables) is left to `benchmarks/train_throughput.py` on a
full install.
Rows:
- SASRec training steps under bf16 autocast (the loop's `train.bf16`): full softmax up to 100k
  items, sampled softmax with logQ correction above; sequences/s and peak device memory.
- Exact top-k retrieval on the device: inner products of a batch of user vectors with every item
  vector, then `torch.topk` (what a flat GPU index does); FAISS's GPU index too when importable.
- ONNX Runtime: the SASRec encoder exported (dynamo), run with CUDAExecutionProvider when the
  installed build has it, else the CPU provider; its parity with torch and its latency.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hyperrec.eval.report import to_markdown
from hyperrec.export.onnx import check_parity, export_onnx
from hyperrec.models.sasrec import SASRec, SASRecConfig

MAX_LEN, DIM, BATCH = 50, 64, 256


class LastHidden(torch.nn.Module):
    """The encoder serving exports: the last position's hidden state."""

    def __init__(self, model: SASRec):
        super().__init__()
        self.model = model

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        return self.model(items)[:, -1]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_memory_mib(device: torch.device) -> float:
    """Peak allocated CUDA memory since the last reset; on CPU the process's peak RSS so far."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def zipf_sequences(n_items: int, rows: int, length: int, rng: np.random.Generator) -> torch.Tensor:
    weights = 1.0 / np.arange(1, n_items + 1) ** 0.8
    return torch.from_numpy(rng.choice(n_items, size=(rows, length), p=weights / weights.sum()) + 1)


def train_steps(n_items: int, steps: int, device: torch.device, bf16: bool) -> dict[str, object]:
    """SASRec steps on random Zipf sequences: sequences/s (after one warm-up step) and peak memory."""
    torch.manual_seed(0)
    loss = "full_softmax" if n_items <= 100_000 else "sampled_softmax"
    model = SASRec(SASRecConfig(max_len=MAX_LEN, dim=DIM, loss=loss, n_negatives=4096), n_items).to(device)
    optimizer = torch.optim.AdamW(model.param_groups(1e-3, 0.0))
    sequences = zipf_sequences(n_items, BATCH * 4, MAX_LEN + 1, np.random.default_rng(0)).to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for step in range(steps + 1):
        if step == 1:
            sync(device)
            started = time.perf_counter()
        batch = sequences[(step % 4) * BATCH : (step % 4 + 1) * BATCH]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            value = model.loss(batch[:, :-1], batch[:, 1:])
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
    sync(device)
    seconds = time.perf_counter() - started
    return {
        "check": f"SASRec train step ({loss}{', bf16' if bf16 else ''})",
        "items": n_items,
        "result": f"{steps * BATCH / seconds:,.0f} sequences/s",
        "ms": 1000 * seconds / steps,
        "peak_mib": peak_memory_mib(device),
        "final_loss": float(value),
    }


def top_k(n_items: int, queries: int, device: torch.device, repeats: int = 20) -> list[dict[str, object]]:
    """Exact inner-product top-100 of `queries` user vectors against `n_items` item vectors."""
    generator = torch.Generator(device="cpu").manual_seed(0)
    items = torch.randn(n_items, DIM, generator=generator).to(device)
    users = torch.randn(queries, DIM, generator=generator).to(device)
    for _ in range(3):
        torch.topk(users @ items.T, 100)
    sync(device)
    started = time.perf_counter()
    for _ in range(repeats):
        found = torch.topk(users @ items.T, 100).indices
    sync(device)
    ms = 1000 * (time.perf_counter() - started) / repeats
    rows = [
        {
            "check": "torch top-100 (exact IP)",
            "items": n_items,
            "result": f"{queries} queries",
            "ms": ms,
            "peak_mib": peak_memory_mib(device),
        }
    ]
    try:
        import faiss
    except ImportError:
        return rows
    if device.type == "cuda" and faiss.get_num_gpus() > 0:
        index = faiss.GpuIndexFlatIP(faiss.StandardGpuResources(), DIM)
        index.add(items.cpu().numpy())
        started = time.perf_counter()
        for _ in range(repeats):
            _, faiss_found = index.search(users.cpu().numpy(), 100)
        ms = 1000 * (time.perf_counter() - started) / repeats
        agree = np.mean([len(set(a) & set(b)) / 100 for a, b in zip(faiss_found, found.cpu().numpy())])
        rows.append(
            {
                "check": "FAISS GpuIndexFlatIP top-100 (host in/out)",
                "items": n_items,
                "result": f"{queries} queries, {agree:.3f} overlap with torch",
                "ms": ms,
            }
        )
    return rows


def onnx_runtime(n_items: int, device: torch.device) -> dict[str, object]:
    """Export the SASRec encoder, run it in ONNX Runtime on the best provider, check parity."""
    import onnxruntime as ort

    model = SASRec(SASRecConfig(max_len=MAX_LEN, dim=DIM), n_items).eval()
    encoder = LastHidden(model)
    cases = [{"items": zipf_sequences(n_items, rows, MAX_LEN, np.random.default_rng(rows)).numpy()} for rows in (1, 32)]
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device.type == "cuda" else ["CPUExecutionProvider"]
    providers = [p for p in providers if p in ort.get_available_providers()]
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(
            encoder,
            {"items": torch.from_numpy(cases[0]["items"])},
            Path(tmp) / "encoder.onnx",
            "hidden",
            {"items": {0: "batch", 1: "length"}},
        )
        session = ort.InferenceSession(str(path), providers=providers)
        parity = check_parity(encoder, session, cases, tolerance=1e-3)
        for _ in range(5):
            session.run(None, cases[1])
        started = time.perf_counter()
        for _ in range(50):
            session.run(None, cases[1])
        ms = 1000 * (time.perf_counter() - started) / 50
    return {
        "check": f"ONNX Runtime encoder on {session.get_providers()[0]}",
        "items": n_items,
        "result": f"batch 32, parity max abs {parity.max_abs_error:.1e} ({'passed' if parity.passed else 'FAILED'})",
        "ms": ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, nargs="+", default=[10_000, 1_000_000], help="catalogue sizes for training and top-k")
    parser.add_argument("--steps", type=lambda v: max(1, int(v)), default=300, help="timed training steps per size (at least 1)")
    parser.add_argument("--queries", type=int, default=256, help="user vectors per top-k batch")
    parser.add_argument("--out", type=Path, default=Path("experiments/results/bench"), help="where gpu_check.csv goes")
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU (no CUDA device: a smoke run of the same code)"
    print(f"device: {name}; torch {torch.__version__}", flush=True)
    rows = []
    for n_items in args.items:
        rows.append(train_steps(n_items, args.steps, device, bf16=device.type == "cuda"))
        rows += top_k(n_items, args.queries, device)
        print(pd.DataFrame(rows).tail(3).to_string(index=False), flush=True)
    rows.append(onnx_runtime(args.items[0], device))
    table = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "gpu_check.csv", index=False)
    print(f"\n{name}\n" + to_markdown(table.set_index("check")))
    print(f"wrote {args.out / 'gpu_check.csv'}")


if __name__ == "__main__":
    main()
