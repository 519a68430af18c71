"""Under the engines the trainer runs on (FSDP2, FSDP1, DDP), two CPU processes with the gradient cache and the
engine's own gradient reduction and no-sync give the gradients of one process with the whole batch, and the
reduction of the deferred chunks really is deferred to the last one."""

import contextlib
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from synthembed.train.step import make_batch, step, tokenizer_for
from tests.test_train_gradients import PAIRS, assert_same, embedder_for, grads_of

ENGINES = ("fsdp2", "fsdp1", "ddp")
CHUNK = 2


class Reductions:
    """Counts the engine's gradient reductions: FSDP's reduce-scatters (both versions call
    dist.reduce_scatter_single) and DDP's bucket all-reduces (through a communication hook)."""

    def __init__(self):
        self.count = 0
        reduce_scatter = dist.reduce_scatter_single

        def counted(*args, **kwargs):
            self.count += 1
            return reduce_scatter(*args, **kwargs)

        dist.reduce_scatter_single = counted

    def ddp_hook(self, state, bucket):
        from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

        self.count += 1
        return allreduce_hook(None, bucket)


def _layers(model: torch.nn.Module) -> set[type]:
    return {type(m) for m in model.modules() if type(m).__name__.endswith("DecoderLayer")}


def _wrap(engine: str, model: torch.nn.Module, reductions: Reductions):
    """The wrapped model and its no-sync context factory, as accelerate prepares and uses them."""
    if engine == "fsdp2":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh("cpu", (dist.get_world_size(),))
        for layer in [m for m in model.modules() if type(m) in _layers(model)]:
            fully_shard(layer, mesh=mesh)
        model = fully_shard(model, mesh=mesh)

        @contextlib.contextmanager
        def no_sync():  # accelerate's no_sync for FSDP2
            model.set_requires_gradient_sync(False)
            try:
                yield
            finally:
                model.set_requires_gradient_sync(True)

        return model, no_sync
    if engine == "fsdp1":
        from torch.distributed.fsdp import FullyShardedDataParallel, ShardingStrategy
        from torch.distributed.fsdp.wrap import ModuleWrapPolicy

        model = FullyShardedDataParallel(model, device_id=torch.device("cpu"), use_orig_params=True,
                                         sharding_strategy=ShardingStrategy.FULL_SHARD,
                                         auto_wrap_policy=ModuleWrapPolicy(_layers(model)))
        return model, model.no_sync
    model = torch.nn.parallel.DistributedDataParallel(model)
    model.register_comm_hook(None, reductions.ddp_hook)
    return model, model.no_sync


def _full_grads(engine: str, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every trainable parameter's whole (averaged) gradient, under its unwrapped name."""
    if engine == "fsdp1":
        from torch.distributed.fsdp import FullyShardedDataParallel

        context = FullyShardedDataParallel.summon_full_params(model, with_grads=True)
    else:
        context = contextlib.nullcontext()
    with context:
        grads = {}
        for name, p in model.named_parameters():
            if p.requires_grad:
                g = p.grad.full_tensor() if engine == "fsdp2" else p.grad
                grads[name.replace("_fsdp_wrapped_module.", "").removeprefix("module.")] = g.detach().clone()
    return grads


def _worker(rank: int, world: int, port: int, path: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        reductions = Reductions()
        results = {}
        for engine in ENGINES:
            embedder = embedder_for(path, checkpointing=True)
            model, engine_no_sync = _wrap(engine, embedder.model, reductions)
            embedder.model = model
            deferred = []  # reductions during each chunk backward run under no_sync

            @contextlib.contextmanager
            def no_sync(engine_no_sync=engine_no_sync):
                before = reductions.count
                with engine_no_sync():
                    yield
                deferred.append(reductions.count - before)

            batch = make_batch(PAIRS[rank * 4 : (rank + 1) * 4], embedder.query_template, hard_negatives=2)
            model.zero_grad(set_to_none=True)
            before = reductions.count
            loss = step(embedder.forward, tokenizer_for(embedder, 48, 48), batch, 0.05, CHUNK, no_sync=no_sync)
            total = torch.tensor([loss])
            dist.all_reduce(total)
            results[engine] = {"loss": float(total) / world, "grads": _full_grads(engine, model),
                               "deferred": deferred, "reductions": reductions.count - before,
                               "chunks": -(-len(batch.queries) // CHUNK) + -(-len(batch.docs) // CHUNK)}
        torch.save(results, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def whole(decoder, one_thread):
    """The plain loss and gradients of one process with the whole batch."""
    embedder = embedder_for(decoder, checkpointing=True)
    return grads_of(embedder, make_batch(PAIRS, embedder.query_template, hard_negatives=2))


@pytest.fixture(scope="module")
def sharded(decoder, tmp_path_factory, one_thread):
    """Per rank, per engine: what two processes computed (one spawn for every engine: spawning costs most)."""
    out = tmp_path_factory.mktemp("sharded")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(2, port, str(decoder), str(out)), nprocs=2, join=True)
    return [torch.load(out / f"rank{rank}.pt") for rank in (0, 1)]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("engine", ENGINES)
def test_engine_with_gradient_cache_equals_one_process_with_the_whole_batch(engine, sharded, whole):
    loss, grads = whole
    for results in sharded:
        result = results[engine]
        assert result["loss"] == pytest.approx(loss, rel=1e-5)
        assert_same(result["grads"], grads)
        # Every chunk but the last ran under no_sync and reduced nothing; the last reduced everything.
        assert result["deferred"] == [0] * (result["chunks"] - 1)
        assert result["reductions"] > 0
