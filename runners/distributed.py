"""Data-parallel training in several processes: torch.distributed and DistributedDataParallel.

`tfn train SPEC --nproc N` starts N copies of the same `tfn train` command on
this machine through torch's elastic launcher (what `torchrun` runs), over
loopback. Each copy finds RANK, WORLD_SIZE and LOCAL_RANK in its environment,
as under an external `torchrun`, joins the process group (gloo on CPU, NCCL on
CUDA, one GPU per process: cuda:LOCAL_RANK) and trains one replica:

- the spec's `data.batch_size` is the global batch: each process takes every
  N-th sample of it from its rank on (runners/data.py), so an N-process run
  takes the same steps over the same batches as a single-process run;
- DistributedDataParallel averages the gradients; with `train.sync_batchnorm`
  batch normalization normalizes with the statistics of the global batch
  (and the N-process run then equals the single-process one);
- rank 0 writes the run directory (spec, graph, checkpoints, metrics,
  TensorBoard); each checkpoint's resume state also holds every rank's RNG
  state, so a resumed run continues each rank where it stopped;
- validation and test run on every rank over the whole split (the weights
  are the same, so are the results); rank 0 reports them;
- a last batch of an epoch that does not split evenly gives some ranks one
  sample more: DDP's mean of the ranks' means then weights its samples
  slightly unlike one process would (a multiple of N avoids it);
- a signal to any rank stops all of them at the same step, with a checkpoint;
  a rank that fails ends the job: the launcher stops the others and `tfn`
  exits with the failed rank's status.
"""

from __future__ import annotations

import atexit
import inspect
import json
import os
import random
import signal
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from tfn.specs.errors import UserError

#: what torchrun sets in each worker's environment
ENVIRONMENT = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


class LaunchFailed(Exception):
    """A process of an `--nproc` job failed; `exit_status` is its own (2: its input was wrong, 1: the run failed)."""

    def __init__(self, message: str, exit_status: int):
        super().__init__(message)
        self.exit_status = exit_status


def launched() -> bool:
    """True in a process started by torchrun or `--nproc` (it is one rank of a job)."""
    return all(name in os.environ for name in ENVIRONMENT)


def launch(nproc: int, command: list[str]) -> None:
    """Run `command` (an executable and its arguments) as `nproc` ranks on this machine; return when all succeed.

    The ranks meet over 127.0.0.1 on a free port. Unless OMP_NUM_THREADS is
    set, each process gets an equal share of the CPU cores (torchrun gives
    each one thread). LaunchFailed when a rank fails; the others are stopped.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=f"tfn-{uuid.uuid4().hex[:12]}",
        rdzv_backend="c10d",
        rdzv_endpoint="127.0.0.1:0",  # port 0: the rendezvous store takes a free one
        local_addr="127.0.0.1",
        max_restarts=0,
        monitor_interval=0.1,
    )
    try:
        elastic_launch(config, command[0])(*command[1:])
    except SignalException as exc:  # the launcher passed the signal on; each rank wrote its checkpoint and stopped
        raise LaunchFailed("", 128 + int(exc.sigval)) from None  # rank 0 has said where it stopped
    except ChildFailedError as exc:
        # the first rank that reported an error of its own; a rank stopped by a signal only if none did
        failures = exc.failures
        reported = {r: f for r, f in failures.items() if f.exitcode > 0}
        rank = min(reported or failures, key=lambda r: failures[r].timestamp)
        failure = failures[rank]
        if failure.exitcode < 0:
            how = f"was killed by {signal.Signals(-failure.exitcode).name}"
        else:
            how = f"failed with exit status {failure.exitcode}"
        raise LaunchFailed(
            f"rank {rank} of {nproc} {how} (its error is above); the other ranks were stopped", failure.exitcode if failure.exitcode > 0 else 1
        ) from None


@dataclass
class Replicas:
    """This process's place among the replicas of a run: one process (rank 0 of 1) or one rank of a job.

    Every method is a no-op on a single process, so single-process training
    pays nothing for the distributed hooks.
    """

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    #: a gloo group for small CPU-side agreements (stop signals, the run directory, RNG states), also under NCCL
    _control: object = field(default=None, repr=False)

    @classmethod
    def join(cls, device: torch.device) -> Replicas:
        """The replicas of this process: from torchrun's environment when launched, else a single process.

        Joins the process group once per process (gloo on CPU, NCCL on CUDA;
        each process on cuda:LOCAL_RANK).
        """
        if not launched() or int(os.environ["WORLD_SIZE"]) == 1:
            _autotune(device)
            return cls(device)
        import torch.distributed as dist

        rank, world, local = (int(os.environ[name]) for name in ENVIRONMENT)
        if device.type == "cuda":
            if local >= torch.cuda.device_count():
                raise UserError(
                    f"--device {device}: error: local rank {local} needs cuda:{local}, but this machine has {torch.cuda.device_count()} CUDA device(s); "
                    "start at most one process per GPU"
                )
            device = torch.device("cuda", local)
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo", device_id=device if device.type == "cuda" else None)
            atexit.register(_close_process_group)  # after a failure: Replicas.leave() closes it after a good run
        control = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else dist.group.WORLD
        _autotune(device)
        return cls(device, rank, world, local, control)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_writer(self) -> bool:
        """Rank 0 writes the run directory; the other ranks write nothing."""
        return self.rank == 0

    @property
    def shard(self) -> tuple[int, int]:
        return self.rank, self.world_size

    # --- start -------------------------------------------------------------------

    def run_dir(self, make: Callable[[], Path]) -> Path:
        """Rank 0 makes the run directory (`make()`); every rank gets its path."""
        if not self.distributed:
            return make()
        path, failure = b"", None
        if self.is_writer:
            try:
                path = str(make()).encode()
            except BaseException as exc:  # the others must not wait for a path that will not come
                failure = exc
        path = self._broadcast_bytes(path)
        if failure is not None:
            raise failure
        if not path:
            raise _RankFailed("rank 0 could not prepare the run directory (its error is above)")
        return Path(path.decode())

    def reseed(self, seed: int) -> None:
        """Give ranks other than 0 their own random streams (dropout masks differ between replicas).

        Called after the weights are initialised, which stay the same on every rank.
        """
        if self.rank == 0:
            return
        derived = int(np.random.SeedSequence([seed, self.rank]).generate_state(1)[0])
        torch.manual_seed(derived)
        np.random.seed(derived)
        random.seed(derived)

    def wrap(self, model, fetches: tuple[str, ...], *, sync_batchnorm: bool):
        """The callable that runs the model in training: `model` itself, or a DistributedDataParallel around it.

        With `sync_batchnorm`, the ops that have a synchronized training kernel
        (batch normalization) use it; then the moving statistics are equal
        on every rank and DDP need not broadcast them each step.
        """
        if not self.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        from tfn import layers

        graph = model.graph
        if sync_batchnorm:
            for node in graph.nodes:
                op = layers.get(node.op)
                if hasattr(op, "build_synchronized"):
                    kernel = op.build_synchronized(node.params, [graph.type_of(r) for r in node.inputs], all_reduce_sum)
                    model.replace_kernel(node.name, kernel)
        used = {var for step in model.plan(fetches) for _, var in step.variables}
        unused = set(model.trainable_variables()) - used
        # torch 2.13 renamed broadcast_buffers; 2.11 knows only the old name
        renamed = "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
        return DistributedDataParallel(
            model,
            device_ids=[self.device.index] if self.device.type == "cuda" else None,
            find_unused_parameters=bool(unused),  # costs a graph walk per step: only when some variable has no gradient
            **{"forward_sync_buffers" if renamed else "broadcast_buffers": not sync_batchnorm},
        )

    # --- during training -----------------------------------------------------------

    def mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """The mean of `tensor` over the replicas (the logged loss is the global batch's)."""
        if not self.distributed:
            return tensor
        import torch.distributed as dist

        total = tensor.detach().float().clone()
        dist.all_reduce(total)
        return total / self.world_size

    def minimum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The smallest value of `tensor` over the replicas."""
        if not self.distributed:
            return tensor
        import torch.distributed as dist

        smallest = tensor.detach().clone()
        dist.all_reduce(smallest, op=dist.ReduceOp.MIN)
        return smallest

    def agree(self, reason: str | None) -> str | None:
        """The stop signal any rank received (e.g. "SIGTERM"), or None: every rank stops at the same step."""
        if not self.distributed:
            return reason
        import torch.distributed as dist

        flag = torch.tensor([int(getattr(signal, reason)) if reason else 0])
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self._control)
        return signal.Signals(int(flag)).name if int(flag) else None

    def broadcast_text(self, text: str) -> str:
        """Rank 0's `text`, on every rank."""
        if not self.distributed:
            return text
        return self._broadcast_bytes(text.encode()).decode()

    def gather_rng(self, tensors: dict[str, torch.Tensor], header: dict) -> tuple[dict[str, torch.Tensor], dict]:
        """Every rank's RNG state in one: rank 0's as given, rank r's tensors under `rank<r>/` and its header under "ranks"."""
        if not self.distributed:
            return tensors, header
        from safetensors.torch import load, save

        mine = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, {"rng": json.dumps(header)})
        tensors, header = dict(tensors), dict(header, ranks={})
        for rank, blob in enumerate(self._all_gather_bytes(mine)):
            if rank == 0:
                continue
            tensors.update({f"rank{rank}/{k}": v for k, v in load(blob).items()})
            header["ranks"][str(rank)] = _safetensors_metadata(blob)["rng"]
        return tensors, header

    def own_rng(self, tensors: dict[str, torch.Tensor], header: dict) -> tuple[dict[str, torch.Tensor], dict]:
        """This rank's part of a state saved by :meth:`gather_rng`."""
        if self.rank == 0:
            return tensors, header
        saved = header.get("ranks", {}).get(str(self.rank))
        if saved is None:
            print(
                f"warning: rank {self.rank}: the checkpoint was written by fewer processes and holds no RNG state for this rank; "
                "it continues with rank 0's (the resumed run is not identical to an uninterrupted one)",
                file=sys.stderr,
                flush=True,
            )
            return tensors, header
        prefix = f"rank{self.rank}/"
        return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}, json.loads(saved)

    def leave(self) -> None:
        """After a run that ended well on every rank: wait for the others, then close the process group.

        Closing it before the interpreter shuts down matters: gloo's threads
        torn down during finalization abort the process (SIGABRT).
        """
        if not self.distributed:
            return
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier(group=self._control)
            dist.destroy_process_group()

    # --- collectives on bytes (no pickle) ------------------------------------------

    def _broadcast_bytes(self, data: bytes) -> bytes:
        import torch.distributed as dist

        size = torch.tensor([len(data)], dtype=torch.int64)
        dist.broadcast(size, 0, group=self._control)
        buffer = torch.frombuffer(bytearray(data), dtype=torch.uint8) if self.is_writer and data else torch.empty(int(size), dtype=torch.uint8)
        if int(size):
            dist.broadcast(buffer, 0, group=self._control)
        return buffer.numpy().tobytes()

    def _all_gather_bytes(self, data: bytes) -> list[bytes]:
        import torch.distributed as dist

        sizes = [torch.zeros(1, dtype=torch.int64) for _ in range(self.world_size)]
        dist.all_gather(sizes, torch.tensor([len(data)], dtype=torch.int64), group=self._control)
        longest = max(int(s) for s in sizes)
        padded = torch.zeros(longest, dtype=torch.uint8)
        padded[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        gathered = [torch.empty(longest, dtype=torch.uint8) for _ in range(self.world_size)]
        dist.all_gather(gathered, padded, group=self._control)
        return [g[: int(s)].numpy().tobytes() for g, s in zip(gathered, sizes)]


def _close_process_group() -> None:
    import gc

    import torch.distributed as dist

    if dist.is_initialized():
        gc.collect()  # the DDP reducer and tensors of unfinished work go first
        dist.destroy_process_group()


class _AllReduceSum(torch.autograd.Function):
    """The sum over the replicas, differentiable: the gradient of each input is the sum of the replicas' gradients."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        total = grad.clone()
        dist.all_reduce(total)
        return total


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` summed over the replicas (autograd-aware): what synchronized batch normalization reduces with."""
    return _AllReduceSum.apply(tensor)


def rank() -> int:
    """This process's rank in a job (0 when it is not one)."""
    return int(os.environ.get("RANK", 0))


class _RankFailed(UserError):
    """A rank stops because another one failed first and reported why."""


def _safetensors_metadata(blob: bytes) -> dict:
    header_size = int.from_bytes(blob[:8], "little")
    return json.loads(blob[8 : 8 + header_size]).get("__metadata__", {})


def _autotune(device: torch.device) -> None:
    # the shapes of a training step repeat: let cuDNN pick the fastest convolution algorithms once
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


class _Muted:
    """Accepts any method call and does nothing: the TensorBoard writer of ranks other than 0."""

    def __getattr__(self, name: str):
        return _nothing


def _nothing(*args, **kwargs) -> None:
    return None


def muted() -> _Muted:
    return _Muted()
