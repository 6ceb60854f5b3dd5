"""FAISS inner-product index over item vectors: exact for small catalogues, approximate above.

`kind="auto"` picks exact search below `ann_threshold` items and HNSW above it (IVF is the
other choice for very large catalogues: less memory, needs training). On a machine with a CUDA
build of FAISS and a GPU, exact and IVF indexes move to the GPU (`use_gpu`); HNSW has no GPU
version and stays on the CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import faiss
import numpy as np

IndexKind = Literal["auto", "exact", "hnsw", "ivf"]
INDEX_FILE = "item_index.faiss"  # a registry version's saved index; its settings are the manifest's "index"


def single_threaded() -> None:
    """One OpenMP thread per process: serving runs many small searches concurrently, and FAISS's
    default (all cores per search) makes them fight over the cores."""
    faiss.omp_set_num_threads(1)


def gpu_count() -> int:
    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


def build_index(
    vectors: np.ndarray,
    ann_threshold: int = 100_000,
    hnsw_m: int = 32,
    ef_search: int = 256,
    kind: IndexKind = "auto",
    ivf_lists: int | None = None,
    ivf_probe: int = 16,
    use_gpu: bool = False,
) -> faiss.Index:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    if kind == "auto":
        kind = "exact" if n < ann_threshold else "hnsw"
    if kind == "exact":
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = ef_search
    else:
        lists = ivf_lists or max(1, int(4 * np.sqrt(n)))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors[np.random.default_rng(0).permutation(n)[: max(lists * 40, 10_000)]])
        index.nprobe = ivf_probe
    if use_gpu and kind != "hnsw" and gpu_count() > 0:
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    index.add(vectors)
    return index


def save_index(index: faiss.Index, path: Path) -> None:
    """Write a (CPU copy of an) index: serving loads it instead of building it again."""
    if gpu_count() > 0 and hasattr(faiss, "index_gpu_to_cpu") and "Gpu" in type(index).__name__:
        index = faiss.index_gpu_to_cpu(index)
    faiss.write_index(index, str(path))


def load_index(path: Path, use_gpu: bool = False) -> faiss.Index:
    index = faiss.read_index(str(path))
    if use_gpu and gpu_count() > 0 and not isinstance(index, faiss.IndexHNSW):
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    return index


def index_settings(kind: IndexKind, ann_threshold: int) -> dict:
    """What decides which index gets built: a saved index is reused when these match."""
    return {"index": kind, "ann_threshold": ann_threshold}
