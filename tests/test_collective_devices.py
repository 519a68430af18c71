"""Every tensor the training step hands to a collective is on the device the backend works on.

NCCL (what accelerate picks on GPUs) accepts tensors on the current CUDA device only; gloo, which the other tests
use, accepts CPU tensors and would hide a tensor left behind on the wrong device. Here a wrapper around the real gloo
group checks every collective's tensors against the device the code was told to use (on a GPU machine with two
GPUs the same test runs under NCCL with that GPU as the required device) and records what ran.
"""

import contextlib
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from synthembed.testing.tiny import tiny_decoder
from synthembed.train.distributed import backend_device, gather_rows, mean_across
from synthembed.train.step import make_batch, step, tokenizer_for
from tests.test_train_gradients import PAIRS, embedder_for

COLLECTIVES = ("all_gather", "all_reduce", "scatter", "gather", "reduce_scatter", "all_to_all", "broadcast",
               "all_gather_into_tensor", "reduce_scatter_tensor", "all_to_all_single", "reduce")


class WrongDevice(AssertionError):
    pass


@contextlib.contextmanager
def device_checked(required: torch.device, calls: list[str]):
    """torch.distributed's collectives, each first checking that its tensors are on `required`."""
    originals = {name: getattr(dist, name) for name in COLLECTIVES}

    def checked(name, real):
        def collective(*args, **kwargs):
            for value in [*args, *kwargs.values()]:
                for t in value if isinstance(value, (list, tuple)) else [value]:
                    if isinstance(t, torch.Tensor) and t.device != required:
                        raise WrongDevice(f"dist.{name} got a tensor on {t.device}, the backend needs {required}")
            calls.append(name)
            return real(*args, **kwargs)

        return collective

    for name, real in originals.items():
        setattr(dist, name, checked(name, real))
    try:
        yield
    finally:
        for name, real in originals.items():
            setattr(dist, name, real)


def _worker(rank: int, world: int, port: int, path: str, backend: str, out: str) -> None:
    torch.set_num_threads(1)
    if backend == "nccl":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        device = backend_device()
        embedder = embedder_for(path)
        embedder.model.to(device)
        batch = make_batch(PAIRS[rank * 4 : (rank + 1) * 4], embedder.query_template, hard_negatives=rank + 1)
        calls: list[str] = []
        with device_checked(device, calls):
            for chunk in (None, 2):  # plain and gradient cache, uneven document counts across the two ranks
                loss = step(embedder.forward, tokenizer_for(embedder, 32, 32), batch, 0.05, chunk)
                mean_across(loss, device)
            mean_across(1.0)  # the backend's device when the caller names none
            rows, sizes = gather_rows(torch.ones(rank + 1, 3, device=device, requires_grad=True))
            rows.sum().backward()
            try:  # the check is live: a tensor on another device is refused before it reaches the backend
                dist.all_reduce(torch.zeros(1, device="meta"))
                refused = False
            except WrongDevice:
                refused = True
        torch.save({"calls": calls, "refused": refused, "sizes": sizes, "device": str(device)}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _backends():
    yield "gloo"
    if torch.cuda.device_count() >= 2:
        yield "nccl"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("backend", list(_backends()))
def test_every_collective_gets_tensors_on_the_backends_device(backend, tmp_path, one_thread):
    path = tiny_decoder(tmp_path / "dec")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(2, port, str(path), backend, str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        assert result["device"] == ("cpu" if backend == "gloo" else f"cuda:{rank}")
        # the gradient-carrying gather (all_gather forward; on gloo its backward is a scatter-based all-to-all),
        # the row counts (all_gather) and the logged loss (all_reduce) all went through the check
        assert {"all_gather", "all_reduce"} <= set(result["calls"])
        assert backend == "nccl" or "scatter" in result["calls"]
        assert result["refused"] and result["sizes"] == [1, 2]
