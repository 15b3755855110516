"""Data-parallel training with ``torch.distributed``: process-group setup, gradient averaging, local spawning.

A run is data-parallel when it is launched by ``torchrun`` (``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/
``MASTER_ADDR``/``MASTER_PORT`` in the environment) or when :func:`spawn` starts the ranks itself
(``thg-nerf train --nproc N``), which sets the same variables on a free loopback port. The backend is NCCL on
CUDA devices (rank ``r`` uses ``cuda:LOCAL_RANK``) and gloo on the CPU.

Every rank draws the same global batch from identically seeded generators and keeps its own share of the
rays (:meth:`World.shard`); each rank's loss is normalised by the global ray count, so summing the gradients
over the ranks (:meth:`World.all_reduce_grads`) gives exactly the gradient of the single-process loss.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from multiprocessing.connection import wait

import torch

from thg_nerf.errors import ThgError
from thg_nerf.log import get_logger, is_quiet, setup_logging

log = get_logger(__name__)

ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
#: How long a collective may wait for the other ranks (rank 0 alone trains the audio -> motion model first).
TIMEOUT = timedelta(hours=2)


class RankFailedError(ThgError):
    """A spawned rank failed; carries that rank's exit code and one-line message."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class World:
    """This process's place in the data-parallel group (``size == 1``: plain single-process training)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Whether this rank writes the run directory, logs and validates."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def shard(self, n: int) -> slice:
        """This rank's share of ``n`` items of a global batch: every ``size``-th item from ``rank``."""
        return slice(self.rank, n, self.size)

    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()

    @contextmanager
    def main_first(self) -> Iterator[None]:
        """Run the block on rank 0 first, then on the others (e.g. to fill a shared cache once)."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()

    def all_reduce_grads(self, params: Sequence[torch.nn.Parameter], extra: torch.Tensor) -> torch.Tensor:
        """Sum the gradients of ``params`` and the float vector ``extra`` over all ranks, in one all-reduce.

        A parameter without a gradient on every rank keeps ``grad = None`` (so Adam skips it, as in a single
        process); one with a gradient on some rank gets the sum. Returns the summed ``extra``.
        """
        if not self.distributed:
            return extra
        dev = extra.device
        has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=dev)
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float()
                          for p in params] + [has, extra.float()])
        torch.distributed.all_reduce(flat)
        sizes = [p.numel() for p in params]
        *grads, has, total = flat.split([*sizes, len(params), extra.numel()])
        for p, g, h in zip(params, grads, has.tolist()):
            p.grad = g.view_as(p).to(p.dtype) if h > 0 else None
        return total

    def broadcast_(self, tensors: Sequence[torch.Tensor]) -> None:
        """Overwrite ``tensors`` in place with rank 0's values."""
        if self.distributed:
            for t in tensors:
                if t.dtype == torch.bool:  # gloo has no bool collectives
                    u8 = t.to(torch.uint8)
                    torch.distributed.broadcast(u8, 0)
                    t.copy_(u8.bool())
                else:
                    torch.distributed.broadcast(t, 0)

    def agree(self, code: int) -> int:
        """The largest ``code`` over all ranks (e.g. a stop request any rank saw)."""
        if not self.distributed:
            return code
        t = torch.tensor([code], dtype=torch.int64, device=_collective_device())
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return int(t.item())


def _collective_device() -> torch.device:
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def launched_world() -> World | None:
    """The World described by torchrun-style environment variables, or None when they are not all set."""
    if not all(os.environ.get(k) for k in ENV_KEYS):
        return None
    try:
        rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local = int(os.environ["LOCAL_RANK"])
    except ValueError:
        raise ThgError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (torchrun sets them)") from None
    if not (0 <= rank < size and local >= 0):
        raise ThgError(f"inconsistent torchrun environment: RANK={rank}, WORLD_SIZE={size}, LOCAL_RANK={local}")
    return World(rank, size, local)


def check_nproc(nproc: int, dev: torch.device) -> None:
    """One-line ThgError unless ``nproc`` processes can train on ``dev``."""
    if nproc < 1:
        raise ThgError(f"--nproc must be at least 1 (got {nproc})")
    if nproc > 1 and dev.type not in ("cpu", "cuda"):
        raise ThgError(f"--nproc trains on CUDA GPUs or on the CPU, not on '{dev.type}'")
    if dev.type == "cuda" and nproc > torch.cuda.device_count():
        raise ThgError(f"--nproc {nproc} needs {nproc} CUDA devices, this machine has {torch.cuda.device_count()}")


def rank_device(dev: torch.device, world: World) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` for CUDA training, else ``dev``."""
    if dev.type != "cuda" or not world.distributed:
        return dev
    if world.local_rank >= torch.cuda.device_count():
        raise ThgError(f"LOCAL_RANK {world.local_rank} has no CUDA device ({torch.cuda.device_count()} visible)")
    return torch.device("cuda", world.local_rank)


@contextmanager
def process_group(world: World, dev: torch.device) -> Iterator[None]:
    """Join the group of ``world`` (NCCL on CUDA, gloo otherwise) for the duration; other ranks log quietly."""
    if not world.distributed:
        yield
        return
    if not world.is_main:
        setup_logging(quiet=True)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    kwargs = {"device_id": dev} if dev.type == "cuda" else {}
    torch.distributed.init_process_group(backend, rank=world.rank, world_size=world.size, timeout=TIMEOUT,
                                         **kwargs)
    try:
        yield
    finally:
        torch.distributed.destroy_process_group()


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rank_main(fn: Callable, args: tuple, kwargs: dict, rank: int, size: int, port: int, quiet: bool, level: int,
               errors: mp.SimpleQueue) -> None:
    """Body of a spawned rank: torchrun-style environment, logging as the parent's, errors as one line."""
    if hasattr(os, "setpgrp"):
        os.setpgrp()  # the parent forwards Ctrl-C, so that every rank gets it exactly once
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(size), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    if "OMP_NUM_THREADS" not in os.environ:  # share the cores, as torchrun does
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // size))
    setup_logging(quiet=quiet)
    get_logger().setLevel(level)
    try:
        fn(*args, **kwargs)
    except ThgError as e:
        errors.put((rank, str(e), e.exit_code))
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:
        log.debug("unexpected error", exc_info=True)
        errors.put((rank, f"internal error: {type(e).__name__}: {e} (rerun with -v for the traceback)", 1))
        sys.exit(1)


def spawn(fn: Callable, nproc: int, args: tuple = (), kwargs: dict | None = None) -> None:
    """Run ``fn(*args, **kwargs)`` in ``nproc`` new processes forming one group on a free loopback port.

    Waits for all of them. When a rank fails, the others are stopped and a one-line :class:`RankFailedError`
    names it. Ctrl-C is forwarded to the ranks (which checkpoint and stop); a second one stops them at once.
    Then ``KeyboardInterrupt`` is raised here.
    """
    ctx = mp.get_context("spawn")
    errors = ctx.SimpleQueue()
    port = free_port()
    level = get_logger().getEffectiveLevel()
    procs = [ctx.Process(target=_rank_main, args=(fn, args, kwargs or {}, r, nproc, port, is_quiet(), level, errors),
                         name=f"thg-nerf-rank{r}") for r in range(nproc)]
    interrupts = 0
    try:
        for p in procs:
            p.start()
        while _running(procs) and not _failed(procs):
            try:  # with a timeout: a sentinel can stay open after its rank ended (seen once in CI)
                wait([p.sentinel for p in _running(procs)], timeout=1.0)
            except KeyboardInterrupt:
                interrupts += 1
                for p in _running(procs):
                    os.kill(p.pid, signal.SIGINT)
    finally:
        for p in _running(procs):
            p.terminate()
        for p in procs:
            if p.pid is not None:
                p.join()
    failed = _failed(procs)
    if interrupts or any(p.exitcode == 130 for p in procs):
        raise KeyboardInterrupt
    if not failed and errors.empty():
        return
    if not errors.empty():  # the first report is the cause; later ones are usually other ranks losing it
        rank, msg, code = errors.get()
        raise RankFailedError(f"rank {rank}: {msg}" if rank else msg, code)
    rank = procs.index(failed[0])
    raise RankFailedError(f"rank {rank} of {nproc} died (exit code {failed[0].exitcode})", 1)


def _running(procs: list) -> list:
    return [p for p in procs if p.pid is not None and not _ended(p)]


def _ended(p) -> bool:
    """Whether rank process ``p`` has ended, also when its exit status was collected elsewhere (then a
    failure shows only through the error queue)."""
    if p.exitcode is not None:
        return True
    try:
        os.kill(p.pid, 0)
    except ProcessLookupError:
        return True
    return False


def _failed(procs: list) -> list:
    """Ranks that ended in error (130, an interrupted rank, is not one: its peers stop at the same step)."""
    return [p for p in procs if p.exitcode not in (None, 0, 130)]
