"""The rollback drill on a real bundle: deploy a copy of a version with its item vectors shuffled across
items (retrieval hands the ranker the wrong items) under traffic, and count the answers until the
monitors roll it back by themselves.

    .venv/bin/python benchmarks/rollback_drill.py --registry experiments/registry   # after `make demo`

The registry is copied to a scratch folder (the original is not touched); the in-process flow
(`RecommendFlow` with `LocalStages`, the default serve config's monitors) serves the bundle's own
shoppers: first `--answers` answers from the good version, then a swap to the broken copy and as
many again. The table gives the good version's score PSI and largest feature PSI as the monitor
measured them, and after how many answers of the broken version the flow served the good one
again, and why.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from hyperrec.bundle import manifest as files
from hyperrec.eval.report import print_table
from hyperrec.models.item_index import build_index, save_index
from hyperrec.registry import Registry
from hyperrec.serve.config import ServeConfig
from hyperrec.serve.flow import LocalStages, RecommendFlow
from hyperrec.serve.online_store import MemoryStore
from hyperrec.serve.schemas import RecommendRequest


def shuffled_copy(registry: Registry, version: str) -> str:
    broken, staging = registry.stage()
    shutil.copytree(registry.path(version), staging, dirs_exist_ok=True)
    vectors = np.load(staging / files.ITEM_VECTORS)
    shuffled = np.ascontiguousarray(vectors[np.random.default_rng(0).permutation(len(vectors))])
    np.save(staging / files.ITEM_VECTORS, shuffled)
    manifest = registry.manifest(version)
    save_index(build_index(shuffled, manifest.index.ann_threshold, kind=manifest.index.index), staging / files.ITEM_INDEX)
    registry.commit(broken, staging, manifest)
    return broken


async def drill(flow: RecommendFlow, broken: str, answers: int) -> list[dict]:
    await flow.start()
    good = flow.current
    users = sorted(flow.registry.bundle(good).user_baskets())
    rng = np.random.default_rng(0)

    async def serve() -> list[str]:
        return [(await flow.recommend(RecommendRequest(user_id=str(u), k=10))).model_version for u in rng.choice(users, answers)]

    rows = []
    for version in (good, broken):
        if version == broken:
            await flow.swap(broken)
        served = await serve()
        back = served.index(good) if version == broken and good in served else None
        row = {"version": f"{version} ({'good' if version == good else 'item vectors shuffled'})", "answers": len(served)}
        if back is None:  # still served: its window is there to judge
            verdict = flow.monitor.check(version, flow.registry.bundle(version).drift_reference())
            columns = verdict.drift.columns if verdict.drift is not None else {}
            row["score PSI"] = columns["score"].psi if columns else None
            row["largest feature PSI"] = max((c.psi for n, c in columns.items() if n != "score"), default=None)
        row["rolled back after (answers)"] = back
        row["why"] = "; ".join(flow.rolled_back.reasons) if back is not None and flow.rolled_back is not None else ""
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--registry", type=Path, default=Path("experiments/registry"))
    parser.add_argument("--answers", type=int, default=600, help="answers from each version")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "registry"
        shutil.copytree(args.registry, root)
        registry = Registry(root)
        broken = shuffled_copy(registry, registry.resolve("current"))
        config = ServeConfig(registry=root, event_log=None, audit={"enabled": False})
        flow = RecommendFlow(config, MemoryStore(), LocalStages(registry, config))
        rows = asyncio.run(drill(flow, broken, args.answers))
        flow.stages.close()
        table = pd.DataFrame(rows).astype({"rolled back after (answers)": "Int64"}).set_index("version").round(3)
        print_table(table, "rollback drill: a shuffled-vectors version under traffic")


if __name__ == "__main__":
    main()
