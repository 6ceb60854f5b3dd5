"""TorchRec model parallelism for a model's `EmbeddingBagCollection`s (`train.sharded_embeddings`).

`shard` rebuilds every collection on the `meta` device, lets TorchRec's planner place its tables
across the process group's ranks (table-wise or row-wise; the planner's GPU shardings on GPUs),
and wraps the objective in `DistributedModelParallel`: the tables are sharded with a fused
row-wise Adagrad that updates, inside the backward pass, only the rows a step looked up; the
dense rest of the model stays under DDP with the loop's own optimizer. Row-wise Adagrad because
fbgemm's CPU kernels offer only SGD and Adagrad variants (no Adam).

The rest of training sees full, unsharded weights: `full_state` gathers a state dict (or an
optimizer's) with every rank's shards in place, and `load_full_state` puts a full one back into
the shards, so checkpoints, the best model and the run's `model.pt` are the same tensors as
unsharded training writes. Both are collectives: every rank calls them, in the same order.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed._shard.sharded_tensor import ShardedTensor
from torchrec.distributed.embedding_types import EmbeddingComputeKernel
from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
from torchrec.distributed.model_parallel import DistributedModelParallel
from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints
from torchrec.distributed.planner.types import KernelConfig, TopologyFactory, TrainerConfig
from torchrec.distributed.types import ShardingType
from torchrec.modules.embedding_modules import EmbeddingBagCollection
from torchrec.optim import RowWiseAdagrad
from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward

from hyperrec.config import ConfigError, ExperimentConfig

# Data-parallel tables would be full replicas updated densely: exactly what sharding is here to avoid.
SHARDING_TYPES = [ShardingType.TABLE_WISE.value, ShardingType.ROW_WISE.value]
SHARDABLE_KINDS = ("two_tower",)  # the models whose ID tables are TorchRec collections


def check_config(config: ExperimentConfig) -> None:
    """Fail before any worker starts when `train.sharded_embeddings` asks for what the model lacks."""
    if config.train.sharded_embeddings and config.model.kind not in SHARDABLE_KINDS:
        raise ConfigError(
            f"train.sharded_embeddings: model kind '{config.model.kind}' keeps its tables in plain torch "
            f"(only {', '.join(SHARDABLE_KINDS)} has TorchRec tables to shard); set it to false"
        )


def shard(objective: nn.Module, lr: float, device: torch.device) -> DistributedModelParallel:
    """`objective` with its embedding collections sharded over the default process group.

    The collections' own weights are dropped (each is rebuilt on `meta` from its table configs);
    load weights afterwards with `load_full_state`."""
    if not dist.is_initialized():
        raise RuntimeError("train.sharded_embeddings needs a process group: train with `hyperrec train` (Ray Train workers)")
    names = [name for name, module in objective.named_modules() if isinstance(module, EmbeddingBagCollection)]
    if not names:
        raise ValueError("train.sharded_embeddings: this model has no TorchRec EmbeddingBagCollection to shard; set it to false")
    constraints = {}
    fused = [EmbeddingComputeKernel.FUSED.value]
    for name in names:
        tables = objective.get_submodule(name).embedding_bag_configs()
        collection = EmbeddingBagCollection(tables=tables, device=torch.device("meta"))
        apply_optimizer_in_backward(RowWiseAdagrad, collection.parameters(), {"lr": lr})
        objective.set_submodule(name, collection)
        for table in tables:
            constraints[table.name] = ParameterConstraints(sharding_types=SHARDING_TYPES, compute_kernels=fused)
    topology = TopologyFactory.create_topology(
        TrainerConfig(world_size=dist.get_world_size()), kernel_config=KernelConfig(compute_device=device.type)
    )
    sharders = [EmbeddingBagCollectionSharder()]
    plan = EmbeddingShardingPlanner(topology=topology, constraints=constraints).collective_plan(objective, sharders, dist.GroupMember.WORLD)
    return DistributedModelParallel(objective, device=device, plan=plan, sharders=sharders)


def fused_optimizer(objective: nn.Module) -> Any | None:
    """The sharded tables' in-backward optimizer, or None when nothing is sharded."""
    return objective.fused_optimizer if isinstance(objective, DistributedModelParallel) else None


def is_fused(parameter: nn.Parameter) -> bool:
    """Whether an optimizer in the backward pass updates this parameter (so no other optimizer may)."""
    return hasattr(parameter, "_in_backward_optimizers")


def full_state(tree: Any, device: torch.device) -> Any:
    """`tree` (a state dict: nested dicts and lists), in place, with every `ShardedTensor` as one full
    tensor on the CPU, on every rank; entries only other ranks hold (an optimizer's state of the
    tables placed there) are added. A collective whenever a process group is up: every rank calls it."""
    if not dist.is_initialized():
        return tree
    local: dict[tuple, ShardedTensor] = {}
    _collect(tree, (), local)
    shapes: list[dict[tuple, tuple[torch.Size, torch.dtype]]] = [{}] * dist.get_world_size()
    dist.all_gather_object(shapes, {path: (t.size(), t.dtype) for path, t in local.items()})
    for path, (size, dtype) in sorted({k: v for ranks in shapes for k, v in ranks.items()}.items()):
        full = torch.zeros(size, dtype=dtype, device=device)
        for shard_ in local[path].local_shards() if path in local else []:
            full[_region(shard_)] = shard_.tensor
        dist.all_reduce(full)  # shards are disjoint and zeros elsewhere: the sum puts every one in place
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = full.cpu()
    return tree


def load_full_state(target: nn.Module | torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load a full state dict (as `full_state` returns) into a module or optimizer, sharded or not:
    each rank copies its own shards' regions out of the full tensors."""
    own = target.state_dict()
    if isinstance(target, nn.Module):  # the given keys: a mismatch fails as in load_state_dict
        target.load_state_dict({key: _into_shards(own[key], value) if key in own else value for key, value in state.items()})
    else:  # the optimizer's own structure and non-tensor entries: a rank's holds only the tables placed there
        target.load_state_dict(_into_shards(own, state))


def _collect(tree: Any, path: tuple, found: dict[tuple, ShardedTensor]) -> None:
    """The `ShardedTensor`s of a state dict by their path of keys."""
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else ()
    for key, value in items:
        if isinstance(value, ShardedTensor):
            found[(*path, key)] = value
        else:
            _collect(value, (*path, key), found)


def _into_shards(own: Any, full: Any) -> Any:
    if isinstance(own, ShardedTensor):
        for shard_ in own.local_shards():
            shard_.tensor.copy_(full[_region(shard_)])
        return own
    if isinstance(own, dict):
        return type(own)((key, _into_shards(value, full[key])) for key, value in own.items())
    if isinstance(own, list):
        return [_into_shards(value, other) for value, other in zip(own, full)]
    return full if isinstance(own, torch.Tensor) else own


def _region(shard_: Any) -> tuple[slice, ...]:
    offsets, sizes = shard_.metadata.shard_offsets, shard_.metadata.shard_sizes
    return tuple(slice(offset, offset + size) for offset, size in zip(offsets, sizes))
