"""Data-parallel training on MPI (mpi4py; the `mpich` wheel gives `mpiexec`).

    mpiexec -n 2 netc train moons.net        # or: netc train moons.net --ranks 2

Every rank runs the same program on the same data. The file's `batch` is the GLOBAL batch: every
rank draws the same seeded permutation and takes its contiguous share of each global batch
(shares differ by at most one sample); its compiled `grad_step` (see compiler.traingraph's split
step) writes the gradient of its share into one contiguous buffer, which is weighted by the
share's count over the global batch's and summed across ranks by ONE `Allreduce` per step; then
every rank applies the same `apply_step` to the same params. Loss terms are reduced as sums with
their counts once per epoch, the outputs gathered in the epoch's order, so metrics, early
stopping and schedules see the values of the whole data set and every rank takes the same
decisions. Params and optimizer state are broadcast from rank 0 when a fit starts (so after a
resume too); rank 0 alone prints, writes the run directory and checkpoints. Batchnorm's batch
statistics are per rank (like PyTorch's DistributedDataParallel); its running statistics (the
model's buffers) are broadcast from rank 0 at each epoch's end, so checkpoints and every rank
hold rank 0's. See docs/distributed.md.

Under a launch of one process (or none) nothing here imports mpi4py, and training keeps the
fused train step.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import List, Optional

import numpy as np

from netc.compiler.threads import available_cores, configure
from netc.dsl import UserError

from . import diverge

# the size of the job as each MPI's launcher tells its processes (mpich/hydra: PMI_SIZE)
SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS", "PMIX_SIZE", "MV2_COMM_WORLD_SIZE")
LOCAL_SIZE_VARS = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "MV2_COMM_WORLD_LOCAL_SIZE")


class MPIError(UserError):
    """A data-parallel run that cannot start: mpi4py or mpiexec missing, more ranks than
    samples in a batch. Exit status 2 at the command line."""

    def render(self) -> str:
        return f"error: {self}"


def launched_size() -> int:
    """How many processes the MPI launcher started (1 when not launched by one)."""
    for var in SIZE_VARS:
        v = os.environ.get(var, "").strip()
        if v.isdigit() and int(v) > 0:
            return int(v)
    return 1


_world: list = []           # [communicator or None], once decided
_setup_done: list = []


def world():
    """COMM_WORLD when this process is one of several MPI ranks, else None (mpi4py is not
    imported then). Raises MPIError when launched with several ranks without mpi4py."""
    if _world:
        return _world[0]
    comm = None
    if launched_size() > 1:
        try:
            from mpi4py import MPI     # optional dependency: only under mpiexec
        except ImportError:
            raise MPIError("this process was started by mpiexec with several ranks, but mpi4py is not "
                           "installed: pip install 'netc[mpi]'") from None
        if MPI.COMM_WORLD.Get_size() > 1:
            comm = MPI.COMM_WORLD
    _world.append(comm)
    return comm


def active() -> bool:
    """Whether this process trains data-parallel (one of several MPI ranks)."""
    return world() is not None


def rank() -> int:
    comm = world()
    return 0 if comm is None else comm.Get_rank()


def is_root() -> bool:
    return rank() == 0


def local_ranks(comm) -> int:
    """How many ranks of the job share this machine."""
    for var in LOCAL_SIZE_VARS:
        v = os.environ.get(var, "").strip()
        if v.isdigit() and int(v) > 0:
            return int(v)
    from mpi4py import MPI             # optional dependency: only under mpiexec
    return comm.Split_type(MPI.COMM_TYPE_SHARED).Get_size()


def threads_per_rank(comm) -> int:
    """Each rank's share of this machine's cores (at least 1), so that N ranks on one machine
    do not oversubscribe it."""
    return max(1, available_cores() // max(1, local_ranks(comm)))


def setup(threads: Optional[int] = None):
    """Under mpiexec with several ranks: size this rank's BLAS (and Numba) pools to its share of
    the cores unless `threads` (--threads) or NETC_THREADS says otherwise, and return the
    communicator; else None."""
    comm = world()
    if comm is not None and not _setup_done:
        _setup_done.append(True)
        _record_pid(comm)
        if not threads and not os.environ.get("NETC_THREADS", "").strip():
            configure(threads_per_rank(comm))
    return comm


def launch(ranks: int, argv: List[str]) -> int:
    """`netc train ... --ranks N`: run the same command under `mpiexec -n N` and return its exit
    status. `argv`: the command line after `netc`, without --ranks."""
    if ranks < 1:
        raise MPIError("--ranks must be at least 1")
    try:
        import mpi4py  # noqa: F401     optional dependency: only to train data-parallel
    except ImportError:
        raise MPIError("--ranks needs mpi4py: pip install 'netc[mpi]'") from None
    mpiexec = shutil.which("mpiexec") or os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if not os.path.exists(mpiexec):
        raise MPIError("--ranks needs mpiexec (pip install 'netc[mpi]' installs MPICH's), on PATH")
    cmd = [mpiexec, "-n", str(ranks), sys.executable, "-m", "netc.cli"] + list(argv)
    with tempfile.TemporaryDirectory(prefix="netc-ranks-") as pids:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=dict(os.environ, NETC_RANK_PIDS=pids))
        tail = b""
        try:
            for chunk in iter(lambda: os.read(p.stdout.fileno(), 1 << 16), b""):
                sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
                tail = (tail + chunk)[-8192:]
            rc = p.wait()
        except KeyboardInterrupt:
            p.wait()
            return 130
        if rc != 0:
            why = died(tail.decode("utf-8", "replace"), pids)
            if why:
                print(f"netc: {why}; the job was ended (mpiexec exit status {rc})", file=sys.stderr)
        return rc


def died(text: str, pids: str) -> Optional[str]:
    """Which rank ended the job, from mpiexec's (MPICH hydra's) report of a bad termination
    and the pid files the ranks wrote (`NETC_RANK_PIDS`)."""
    m = re.search(r"PID (\d+) RUNNING AT (\S+)", text)
    if not m:
        return None
    pid, host = m.group(1), m.group(2)
    how = re.search(r"EXIT CODE: (\d+)", text)
    sig = re.search(r"EXIT STRING: ([^\n]*)", text)
    try:
        with open(os.path.join(pids, pid)) as f:
            who = f"rank {int(f.read())}"
    except (OSError, ValueError):
        who = "a rank"
    what = sig.group(1).strip() if sig else (f"exit code {how.group(1)}" if how else "it died")
    return f"{who} (pid {pid} on {host}) died: {what}"


def _record_pid(comm) -> None:
    """Under `--ranks`: this rank's pid in the launcher's folder, to name a rank that dies."""
    pids = os.environ.get("NETC_RANK_PIDS")
    if pids and os.path.isdir(pids):
        try:
            with open(os.path.join(pids, str(os.getpid())), "w") as f:
                f.write(str(comm.Get_rank()))
        except OSError:
            pass


def without_ranks(argv: List[str]) -> List[str]:
    """argv less its `--ranks N` / `--ranks=N`."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--ranks":
            skip = True
        elif not a.startswith("--ranks="):
            out.append(a)
    return out


def shares(b: int, size: int) -> np.ndarray:
    """The contiguous shares of a batch of b samples over `size` ranks: offsets [size + 1]
    (the first b % size ranks take one sample more)."""
    counts = np.full(size, b // size, np.int64)
    counts[: b % size] += 1
    return np.concatenate([[0], np.cumsum(counts)])


def runner(model, train, bs: int):
    """The loop's seam: the data-parallel epochs under mpiexec with several ranks, else None
    (the loop's own fused epochs)."""
    comm = setup()
    if comm is None:
        return None
    return DataParallel(model, train, bs, comm)


class DataParallel:
    """The epochs of one fit on every rank (the interface of runtime.loop's _Epochs: `run`):
    each step runs grad_step on this rank's share of the global batch, Allreduces the
    weighted gradient buffer and applies the same update on every rank."""

    def __init__(self, model, train, bs: int, comm):
        from mpi4py import MPI         # optional dependency: only under mpiexec
        self.MPI, self.comm = MPI, comm
        self.size, self.rank = comm.Get_size(), comm.Get_rank()
        self.root = self.rank == 0
        art = model.artifact
        if "grad_step" not in getattr(art, "entries", {}):
            raise MPIError(f"model '{model.name}' was compiled without the split train step: build it under "
                           f"mpiexec (netc.compile/netc train do), or lower(..., split=True)")
        if bs < self.size:
            raise MPIError(f"{self.size} ranks but a global batch of {bs}: every rank needs at least one "
                           f"sample of each batch (use at most {bs} ranks, or a larger batch)")
        self.model, self.train, self.bs = model, train, bs
        self.params, self.states = model.param_arrays(), model.state_arrays()
        self.grads = np.zeros(art.grad_size, model.dtype)
        self.buffers = [model.params[p.name] for p in model.ir.params if not p.trainable]
        self.snap_p = [np.empty_like(a) for a in self.params]
        self.snap_s = [np.empty_like(a) for a in self.states]
        # rank 0's params and state everywhere: at the start of a fit, and so after a resume
        for a in self.params + self.states:
            comm.Bcast(a, root=0)
        model.step = comm.bcast(model.step, root=0)
        self.pids = comm.allgather(os.getpid())

    def describe(self) -> str:
        return (f"data parallel: {self.size} ranks (MPI; pids {', '.join(map(str, self.pids))}), global batch "
                f"{self.bs}, gradient buffer {self.grads.size} numbers ({self.grads.nbytes / 1e6:.2f} MB) "
                f"reduced once per step")

    def compile(self, lr: float, shuffle: bool) -> float:
        """The loop's compile hook: grad_step and apply_step compile at their first call (0.0)."""
        return 0.0

    def run(self, order, lr: float, epoch: int, bar=None):
        """(mean loss terms, outputs of the whole epoch in its order) of one epoch, the same on
        every rank; `bar` (rank 0's progress bar) moves after each step."""
        m, MPI, comm = self.model, self.MPI, self.comm
        art, bs, n = m.artifact, self.bs, len(self.train.X)
        for a, b in zip(self.snap_p + self.snap_s, self.params + self.states):
            np.copyto(a, b)
        order = np.arange(n) if order is None else order
        nb = -(-n // bs)
        # this rank's rows of the epoch: its contiguous share of each global batch, in order
        parts, counts = [], []
        for j in range(nb):
            b0, b1 = j * bs, min(n, (j + 1) * bs)
            off = shares(b1 - b0, self.size)
            lo, hi = b0 + off[self.rank], b0 + off[self.rank + 1]
            parts.append(order[lo:hi])
            counts.append((hi - lo, b1 - b0))
        mine = np.concatenate(parts)
        X, Y = self.train.X[mine], self.train.y[mine]
        terms = np.zeros((nb, len(m.loss_names)))
        out_shape = art.entries["grad_step"].outputs.get("output")
        outs = None
        if out_shape is not None:
            outs = np.empty((len(mine),) + tuple(art.entries["grad_step"].shape(out_shape)[1:]), m.dtype)
        dt, step0, i = m.dtype.type, m.step, 0
        g = self.grads
        for j, (k, b) in enumerate(counts):
            step = dt(step0 + j + 1)
            if k:
                art.grad_step(X[i:i + k], Y[i:i + k], step, self.params, g, terms[j],
                              None if outs is None else outs[i:i + k])
                g *= dt(k / b)           # the share's gradient sum over the global batch's count
                terms[j] *= k            # loss terms as sums
            else:                        # a last batch smaller than the ranks
                g.fill(0)
            comm.Allreduce(MPI.IN_PLACE, g, op=MPI.SUM)
            art.apply_step(dt(lr), step, self.params, self.states, g)
            i += k
            if bar is not None:
                bar.update(1)
        comm.Allreduce(MPI.IN_PLACE, terms, op=MPI.SUM)          # each batch's sums, globally
        art.sync()                         # (a GPU's) params and state into the host arrays
        if self.buffers:                   # batchnorm's running statistics: rank 0's
            for a in self.buffers:
                comm.Bcast(a, root=0)
            art.release(sync=False)        # a GPU uploads them again at the next step
            art.hold()
        out = self._gather(outs, parts, n) if outs is not None else None
        bad = ~np.isfinite(terms.sum(axis=1))
        if bad.any():
            b = int(np.argmax(bad))
            m.step = step0 + b + 1
            self.diverged(order, b, step0, lr, epoch)
        m.step = step0 + nb
        sums = np.zeros(len(m.loss_names))
        for row in terms:                  # in batch order, as the single-process loop sums
            sums += row
        if not all(np.isfinite(p).all() for p in self.params):
            self.diverged(order, nb - 1, step0, lr, epoch, update=True)
        return sums / n, out

    def _gather(self, outs: np.ndarray, parts, n: int) -> np.ndarray:
        """Every rank's outputs, put in the epoch's order (rows of the permuted data)."""
        comm = self.comm
        rows = np.array(comm.allgather(len(outs)), np.int64)
        width = int(np.prod(outs.shape[1:], dtype=np.int64))
        got = np.empty((n,) + outs.shape[1:], outs.dtype)
        comm.Allgatherv(np.ascontiguousarray(outs), [got, rows * width])
        # where each rank's rows go: rank r's share of batch j starts at j*bs + its offset
        where = []
        bs = self.bs
        nb = -(-n // bs)
        for r in range(self.size):
            for j in range(nb):
                b0, b1 = j * bs, min(n, (j + 1) * bs)
                off = shares(b1 - b0, self.size)
                where.append(np.arange(b0 + off[r], b0 + off[r + 1]))
        out = np.empty_like(got)
        out[np.concatenate(where)] = got
        return out

    def diverged(self, order, batch_index: int, step0: int, lr: float, epoch: int, update: bool = False):
        """As the single-process loop: diagnose the failing global batch (replayed by this rank
        alone with the fused step), put back the params of the epoch's start, raise (every
        rank does: they saw the same sums)."""
        diverge.stop(self, order, batch_index, step0, lr, epoch, update)
