"""Run under mpiexec by tests/mpi/test_mpi.py (not a test module): fit each case named on the
command line data-parallel and save, from rank 0, the final params and the early-stopping
epochs to OUT/<case>.npz; every rank checks that all ranks hold the same params.

    mpiexec -n 2 python tests/mpi/dp_cases.py OUT case...
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mpi_cases import CASES, fit_case  # noqa: E402

from netc.runtime import distributed  # noqa: E402


def main(out, names):
    comm = distributed.world()
    assert comm is not None and comm.Get_size() > 1, "run me under mpiexec -n N (N > 1)"
    for name in names:
        model, history = fit_case(name)
        flat = np.concatenate([np.ravel(a).astype(np.float64) for a in model.params.values()])
        everyone = comm.allgather(flat)
        assert all(np.array_equal(everyone[0], f) for f in everyone), f"{name}: the ranks disagree"
        if comm.Get_rank() == 0:
            np.savez(os.path.join(out, name + ".npz"), stopped=history.stopped_epoch or 0,
                     best=history.best_epoch or 0, epochs=len(history.epochs),
                     loss=np.array(history["train.loss"]), **{"p:" + k: v for k, v in model.params.items()})


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
