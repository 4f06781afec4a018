"""Data-parallel training over MPI (mpi4py): every rank trains the same model on its share of each batch.

``DataParallel`` wraps a Model (or a list of parameters): it checks that
every rank wraps the same parameters, broadcasts rank 0's, averages the
gradients across ranks in buckets with non-blocking allreduces, and keeps
every rank's parameters bitwise identical. ``ShardedSampler`` gives each rank
its disjoint share of the same shuffled global batches. ``world()`` tells a
program whether an MPI launcher started it as one of several ranks. Run a
script with ``mpiexec -n 4 python script.py``; see docs/distributed.md.

mpi4py is imported only when a communicator is needed (``pip install
'corgi-autodiff[mpi]'``): ``import corgi`` and ``import corgi.distributed`` never load
it, and ``LocalComm()`` runs everything in one process without MPI.

>>> import numpy as np
>>> from corgi import cost, initializer
>>> from corgi.layer import Dense
>>> from corgi.model import Model
>>> from corgi.optimizer import GradientDescent
>>> model = Model([Dense(2, 1, initializer.make_he(rng=0))], GradientDescent(0.2), cost.make_mse())
>>> parallel = DataParallel(model, comm=LocalComm())        # comm=None: MPI.COMM_WORLD
>>> x = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]); y = x.sum(axis=1, keepdims=True)
>>> sampler = ShardedSampler(len(x), batch_size=2, rank=parallel.rank, size=parallel.size)
>>> for epoch in range(100):
...     for part in sampler.batches(epoch):
...         loss = parallel.step(x[part], y[part])
>>> loss < 1e-4                                    # it learned y = x1 + x2
True
"""

from .buckets import StepFailed
from .comm import LocalComm, install_abort_hook
from .launch import launched, world
from .parallel import DEFAULT_BUCKET_BYTES, DataParallel
from .sampler import ShardedSampler

__all__ = ["DEFAULT_BUCKET_BYTES", "DataParallel", "LocalComm", "ShardedSampler", "StepFailed", "install_abort_hook",
           "launched", "world"]
