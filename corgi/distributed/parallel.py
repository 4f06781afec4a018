"""DataParallel: one model trained by many processes, each on its share of every batch.

Each rank holds the same parameters. A step: every rank runs the forward and
backward pass on its share of the global batch; the ranks sum their
gradients, each weighted by its share of the global batch; every rank then
makes the same update with the same averaged gradient, so the parameters stay
bitwise identical. The weighting is done by the backward pass itself: rank r
starts it from ``n_r / N`` instead of 1 (``n_r`` its examples, ``N`` the
global batch), so its gradients arrive already scaled and the sum over ranks
is the gradient of the mean loss over the global batch, as one process would
compute it, whatever the split.

The exchange overlaps the backward pass: each gradient of a bucket but the
last is reported to the ``Reducer`` the moment the engine has it final (a
ready hook, through ``corgi.array.watch_gradients``), and a bucket goes out
as soon as its last gradient is in, while the pass computes the rest. The
last bucket waits for the step's status anyway: its gradients are read when
the pass is over.

A step is all or nothing across ranks: if one rank's forward or backward
pass raises, that rank still takes part in the rest of the step's exchange,
marked failed, then raises its own error; every other rank's
``synchronize`` raises ``StepFailed``; no rank changes its parameters or
gradients, and no request is left in flight.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Union

import numpy as np

from ..array import Array, first_with_gradient, get_gradients, set_gradients, watch_gradients
from ..checks import whole_number
from ..model import Model
from ..optimizer import Optimizer
from .buckets import REDUCTIONS, Reducer, StepFailed
from .comm import Comm, Request, Transport, install_abort_hook, transport
from .signature import Signature, first_difference
from .state import broadcast_optimizer, broadcast_parameters, digest, load_everywhere, save_on_root

# Two buckets for the 784-256-10 MLP (its 11 kB of small gradients, then the 803 kB weight
# matrix on its own, sent without a copy); see docs/distributed.md for the measurements.
DEFAULT_BUCKET_BYTES = 256 * 1024

Path = Union[str, "os.PathLike[str]"]


def examples(values: Any) -> int:
    """How many examples a batch holds: its first dimension, or 1 for a single 1-D example.

    >>> examples(np.zeros((32, 64))), examples(np.zeros(64)), examples(np.zeros((0, 64)))
    (32, 1, 0)
    """
    shape = values.dimensions if isinstance(values, Array) else np.shape(values)
    if len(shape) >= 2:
        return int(shape[0])
    return 0 if shape == (0,) else 1


class DataParallel:
    """Train a Model (or a list of parameters) on every rank of an MPI communicator at once.

    ``target`` is a ``Model`` or a sequence of Arrays (then pass the
    ``optimizer`` that updates them). ``comm`` is an mpi4py communicator
    (default ``MPI.COMM_WORLD``) or ``LocalComm()`` for one process without
    MPI. Wrapping is collective: every rank must wrap a model with the same
    parameter names, dimensions and dtypes (else every rank raises a
    ValueError naming the first difference), and every rank then holds rank
    0's parameters (new Arrays; nothing is changed in place).

    ``bucket_bytes`` bounds the flat buffers gradients are summed in;
    ``reduction`` is ``"allreduce"`` (one ``Iallreduce`` per bucket) or
    ``"reduce-broadcast"`` (``Ireduce`` to rank 0 then ``Ibcast``: identical
    bits on every rank by construction, whatever the MPI library; slower).
    With ``abort_on_error`` an uncaught exception on any rank ends every rank
    (``install_abort_hook``).

    >>> from corgi import Array, activation, cost, initializer
    >>> from corgi.distributed import LocalComm
    >>> from corgi.layer import Dense
    >>> from corgi.optimizer import GradientDescent
    >>> model = Model([Dense(2, 1, initializer.make_he(rng=0))], GradientDescent(0.1), cost.make_mse())
    >>> parallel = DataParallel(model, comm=LocalComm())
    >>> x, y = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[1.0], [0.0]])
    >>> losses = [parallel.step(x, y) for _ in range(30)]
    >>> losses[-1] < losses[0], parallel.rank, parallel.size
    (True, 0, 1)
    """

    def __init__(
        self,
        target: Model | Sequence[Array],
        comm: Comm = None,
        *,
        optimizer: Optimizer | None = None,
        bucket_bytes: int = DEFAULT_BUCKET_BYTES,
        reduction: str = "allreduce",
        abort_on_error: bool = True,
    ) -> None:
        where = "DataParallel"
        self.model: Model | None = None
        self.optimizer = optimizer
        if isinstance(target, Model):
            if optimizer is not None:
                raise TypeError(f"{where}: a Model brings its own optimizer; pass optimizer only with a list of parameters")
            self.model = target
            named = target.named_parameters()
        else:
            if isinstance(target, (str, bytes)) or not hasattr(target, "__iter__"):
                raise TypeError(f"{where}: expects a Model or a sequence of Arrays, got {type(target).__name__}")
            named = [(f"parameter {position}", parameter) for position, parameter in enumerate(target)]
            for name, parameter in named:
                if not isinstance(parameter, Array):
                    raise TypeError(f"{where}: {name} must be an Array, got {type(parameter).__name__}")
        bucket_bytes = whole_number(bucket_bytes, "bucket_bytes", where, minimum=1)
        if reduction not in REDUCTIONS:
            raise ValueError(f"{where}: reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self._link: Transport = transport(comm)
        if abort_on_error:
            install_abort_hook(self._link)
        parameters = [parameter for _, parameter in named]
        stepper = self.model.optimizer if self.model is not None else optimizer
        kind = None if stepper is None else type(stepper).__name__
        signature = Signature.of(named, bucket_bytes=bucket_bytes, reduction=reduction, optimizer=kind)
        problem = first_difference(self._link.allgather(signature))
        if problem:
            raise ValueError(f"{where}: the ranks disagree: {problem}")
        self._reducer = Reducer(
            self._link, signature.shapes, [np.dtype(d) for d in signature.dtypes], bucket_bytes, reduction, where,
            any_thread=self._link.any_thread,
        )
        self._parameters = parameters
        # The count exchange: two one-value buffers made once (each step's request is waited for
        # before the next starts), and the request under way (see _start_count).
        self._count_mine, self._count_total = np.zeros(1), np.zeros(1)
        self._count_request: Request | None = None
        self._counting: int | None = None  # this rank's examples while the step's count is under way
        self._total = 0  # the global batch of the step under way
        self._reported: list[Array] = []  # the parameters whose gradients are being exchanged
        # Report each gradient from the engine's ready hook, during the pass (False: after it, all
        # at once, as one process does: nothing to overlap there; the benchmark compares the two).
        self._overlap = self._link.size > 1
        self._install(broadcast_parameters(self._link, parameters))
        broadcast_optimizer(self._link, stepper, self.parameters(), where)

    def __repr__(self) -> str:
        what = repr(self.model) if self.model is not None else f"{len(self._parameters)} parameters"
        return f"DataParallel({what}, rank {self.rank} of {self.size})"

    @property
    def rank(self) -> int:
        """This process's rank, 0 to ``size - 1``.

        >>> from corgi.distributed import LocalComm
        >>> DataParallel([Array([1.0]).tracked()], LocalComm()).rank
        0
        """
        return self._link.rank

    @property
    def size(self) -> int:
        """How many ranks train together.

        >>> from corgi.distributed import LocalComm
        >>> DataParallel([Array([1.0]).tracked()], LocalComm()).size
        1
        """
        return self._link.size

    # -- parameters -------------------------------------------------------

    def parameters(self) -> list[Array]:
        """The current parameters (the model's, or the list's), in order.

        >>> from corgi.distributed import LocalComm
        >>> DataParallel([Array([1.0, 2.0]).tracked()], LocalComm()).parameters()
        [Array([1., 2.], dimensions=(2,), tracked)]
        """
        if self.model is not None:
            return self.model.parameters()
        return list(self._parameters)

    def set_parameters(self, parameters: Sequence[Array]) -> None:
        """Replace the parameters with others of the same dimensions and dtypes (on every rank alike).

        >>> from corgi.distributed import LocalComm
        >>> parallel = DataParallel([Array([1.0]).tracked()], LocalComm())
        >>> parallel.set_parameters([Array([2.0]).tracked()])
        >>> parallel.parameters()
        [Array([2.], dimensions=(1,), tracked)]
        >>> parallel.set_parameters([Array([1.0, 2.0])])
        Traceback (most recent call last):
        ...
        ValueError: DataParallel.set_parameters: parameter 0 has dimensions (2,) and dtype float64, the wrapped one (1,) and float64
        """
        parameters = list(parameters)
        current = self.parameters()
        if len(parameters) != len(current):
            raise ValueError(f"DataParallel.set_parameters: expects {len(current)} arrays, got {len(parameters)}")
        for position, (new, old) in enumerate(zip(parameters, current)):
            if not isinstance(new, Array):
                raise TypeError(f"DataParallel.set_parameters: parameter {position} must be an Array, got {type(new).__name__}")
            if new.dimensions != old.dimensions or new.dtype != old.dtype:
                raise ValueError(
                    f"DataParallel.set_parameters: parameter {position} has dimensions {new.dimensions} and dtype "
                    f"{new.dtype}, the wrapped one {old.dimensions} and {old.dtype}"
                )
        self._install(parameters)

    def _install(self, parameters: list[Array]) -> None:
        if self.model is not None:
            self.model.set_parameters(parameters)
        else:
            self._parameters = parameters

    def digest(self) -> str:
        """A hash of this rank's parameters (dimensions, dtypes and every bit of the values).

        >>> from corgi.distributed import LocalComm
        >>> a = DataParallel([Array([1.0, 2.0]).tracked()], LocalComm())
        >>> b = DataParallel([Array([1.0, 2.0]).tracked()], LocalComm())
        >>> a.digest() == b.digest(), len(a.digest())
        (True, 32)
        """
        return digest(self.parameters())

    def in_sync(self) -> bool:
        """Whether every rank holds exactly the same parameters as rank 0 (collective: call it on every rank).

        >>> from corgi.distributed import LocalComm
        >>> DataParallel([Array([1.0]).tracked()], LocalComm()).in_sync()
        True
        """
        digests = self._link.allgather(self.digest())
        return all(digest == digests[0] for digest in digests)

    # -- a training step --------------------------------------------------
    #
    # A step's collective operations, in the same order on every rank: the count of examples
    # (started with the step, waited for just before backward, so no rank waits for another's
    # forward pass), then the gradient buckets (started during the backward pass, in index order;
    # the last, sent when the pass is over, carries the use flags, the loss and the failure marks).
    # The ranks meet once, at the end.
    # Once the count is started, an error on this rank goes through _abandon: the rank finishes
    # the step's exchange marked failed, so that every rank's requests complete and all fail.

    def forward(self, input: Any) -> Array:
        """Start a step: the wrapped model's ``forward`` on this rank's share of the batch (not empty).

        Collective: every rank starts the step, so call it once per step
        (to evaluate, use the model itself). One forward and one backward
        per step: gradients are not accumulated over several.

        >>> from corgi import cost, initializer
        >>> from corgi.distributed import LocalComm
        >>> from corgi.layer import Dense
        >>> from corgi.optimizer import GradientDescent
        >>> model = Model([Dense(2, 1, initializer.make_he(rng=0))], GradientDescent(0.1), cost.make_mse())
        >>> parallel = DataParallel(model, LocalComm())
        >>> parallel.forward(np.ones((3, 2))).dimensions
        (3, 1)
        >>> parallel.forward(np.ones((3, 2)))
        Traceback (most recent call last):
        ...
        ValueError: DataParallel.forward: a step is already under way; finish it with backward() and update() \
(one forward and backward per step: see "Gradient accumulation" in docs/distributed.md)
        """
        model = self._model("forward")
        count = examples(input)
        if count == 0:
            raise ValueError("DataParallel.forward: the input holds no example; call skip() for this step instead")
        self._start_count(count, "DataParallel.forward")
        try:
            return model.forward(input)
        except BaseException:
            self._abandon()
            raise

    def backward(self, target: Any) -> float:
        """The model's cost against ``target``, its backward pass, and this rank's gradients sent out.

        Collective. Returns this rank's loss (the mean over its examples);
        ``synchronize()`` returns the mean over the global batch and puts
        the averaged gradients in place (``update()`` calls it).

        >>> from corgi import cost, initializer
        >>> from corgi.distributed import LocalComm
        >>> from corgi.layer import Dense
        >>> from corgi.optimizer import GradientDescent
        >>> model = Model([Dense(1, 1, initializer.make_he(rng=0))], GradientDescent(0.1), cost.make_mse())
        >>> parallel = DataParallel(model, LocalComm())
        >>> parallel.set_parameters([Array([[2.0]]).tracked(), Array([0.0]).tracked()])
        >>> _ = parallel.forward(np.array([[1.0]]))
        >>> parallel.backward(np.array([[5.0]]))          # (2 * 1 - 5)^2
        9.0
        >>> parallel.synchronize()
        9.0
        >>> parallel.parameters()[0].gradient()            # 2 (w x - t) x
        Array([[-6.]], dimensions=(1, 1))
        """
        model = self._model("backward")
        if self._counting is None or model.output is None:
            raise ValueError("DataParallel.backward: no step under way; call forward(input) first")
        try:
            if model.cost is None:
                raise ValueError("DataParallel.backward: the model has no cost; use backward_loss(loss, count)")
            loss = model.cost(model.output, target)
        except BaseException:
            self._abandon()
            raise
        return self.backward_loss(loss, examples(model.output))

    def backward_loss(self, loss: Array, count: int) -> float:
        """Backward from ``loss``, the mean of a loss over this rank's ``count`` examples; collective.

        For a list of parameters, or a loss the model's cost does not make.
        Returns ``loss`` as a float; ``synchronize()`` returns the mean over
        the global batch. The parameters must have no gradient yet (an
        update clears them): each step's gradient comes from this one pass.

        >>> from corgi.distributed import LocalComm
        >>> from corgi.optimizer import GradientDescent
        >>> w = Array([3.0]).tracked()
        >>> parallel = DataParallel([w], LocalComm(), optimizer=GradientDescent(0.5))
        >>> w = parallel.parameters()[0]
        >>> parallel.backward_loss((w * w).sum(), count=1)   # d(w^2)/dw = 6
        9.0
        >>> parallel.update()                               # 3 - 0.5 * 6
        >>> parallel.parameters()
        [Array([0.], dimensions=(1,), tracked)]
        """
        where = "DataParallel.backward_loss"
        if self._counting is None:
            # no step under way: refuse bad arguments before anything is sent
            self._check_loss(loss, count, where)
            self._start_count(count, where)
        try:
            count = self._check_loss(loss, count, where)
            if self._counting is not None and self._counting != count:
                raise ValueError(f"{where}: count is {count}, but forward() saw {self._counting} examples")
            total = self._finish_count(where)
        except BaseException:
            self._abandon()
            raise
        try:
            parameters = self.parameters()
            position = first_with_gradient(parameters, where)
            if position is not None:
                raise ValueError(
                    f"{where}: parameter {position} already has a gradient before the step's backward pass "
                    "(a backward() outside DataParallel?); clear it first: gradients are not accumulated over "
                    "several passes"
                )
            value = loss.sum_all()
            self._reported = [parameter for parameter in parameters if parameter.is_tracked]
            reducer = self._reducer
            seed = count / total  # rank r's gradients arrive scaled by n_r / N: their sum is the global mean's
            if self._overlap:
                # hear during the pass only the gradients whose buckets can go out before it ends: the
                # last bucket's wait for the status, so its own are read when the pass is over
                watched, positions = self._watch_plan(parameters)
                if watched:
                    ready = reducer.gradient_ready
                    with watch_gradients(watched, lambda index, total: ready(positions[index], total), where):
                        loss.backward(seed)
                else:
                    loss.backward(seed)
                late = [position for position in reducer.late if parameters[position].is_tracked]
                reducer.gradients_ready_at(late, get_gradients([parameters[position] for position in late], where))
            else:
                loss.backward(seed)
                reducer.gradients_ready(get_gradients(parameters, where))
            reducer.finish(count * value)
        except BaseException:
            self._abandon()
            raise
        return value

    def _check_loss(self, loss: Any, count: Any, where: str) -> int:
        if not isinstance(loss, Array):
            raise TypeError(f"{where}: loss must be an Array, got {type(loss).__name__}")
        if len(loss) != 1:
            raise ValueError(f"{where}: loss must hold one value, got dimensions {loss.dimensions}")
        return whole_number(count, "count", where, minimum=1)

    def _watch_plan(self, parameters: list[Array]) -> tuple[list[Array], list[int]]:
        """The tracked parameters to hear during the pass (those outside the last bucket), and their positions."""
        late = self._reducer.late
        positions = [position for position, parameter in enumerate(parameters)
                     if parameter.is_tracked and position not in late]
        return [parameters[position] for position in positions], positions

    def skip(self) -> None:
        """Take part in this step with no examples (collective), instead of ``forward`` and ``backward``.

        A rank whose share of the last, short batch is empty calls this; its
        gradients count as zeros, with weight zero. ``step`` does it by
        itself for an empty input.

        >>> from corgi.distributed import LocalComm
        >>> DataParallel([Array([1.0]).tracked()], LocalComm()).skip()
        Traceback (most recent call last):
        ...
        ValueError: DataParallel.skip: no rank had an example in this step
        """
        self._start_count(0, "DataParallel.skip")
        try:
            self._finish_count("DataParallel.skip")
            self._reported = [parameter for parameter in self.parameters() if parameter.is_tracked]
            self._reducer.gradients_ready([None] * len(self._reducer.places))
            self._reducer.finish(0.0)
        except BaseException:
            self._abandon()
            raise

    def synchronize(self) -> float:
        """Wait for the exchange, make every gradient the global average; returns the global mean loss.

        A parameter no rank had a gradient for keeps none. If another rank's
        step failed, raises ``StepFailed`` and clears the gradients this
        rank's pass made: no rank changes anything in a failed step.

        >>> from corgi.distributed import LocalComm
        >>> parallel = DataParallel([Array([3.0]).tracked(), Array([1.0]).tracked()], LocalComm())
        >>> w, unused = parallel.parameters()
        >>> parallel.backward_loss((w * w).sum(), count=1)
        9.0
        >>> parallel.synchronize()
        9.0
        >>> w.gradient(), unused.gradient()
        (Array([6.], dimensions=(1,)), None)
        """
        if not self._reducer.busy:
            raise ValueError("DataParallel.synchronize: nothing to synchronize; call backward() or skip() first")
        # the Arrays whose gradients were sent get the averages (the same ones, unless replaced meanwhile)
        reported, self._reported = self._reported, []
        try:
            averaged, loss_sum = self._reducer.wait()
        except StepFailed:
            set_gradients(reported, [None] * len(reported), where="DataParallel.synchronize")
            raise
        if len(reported) < len(averaged):  # untracked parameters have no gradient to set
            tracked = [position for position, parameter in enumerate(self.parameters()) if parameter.is_tracked]
            averaged = [averaged[position] for position in tracked]
        set_gradients(reported, averaged, where="DataParallel.synchronize")
        return loss_sum / self._total

    def update(self) -> None:
        """Synchronize if a step is pending, then let the optimizer make the new parameters.

        Every rank makes the same update from the same gradients.

        >>> from corgi import cost, initializer
        >>> from corgi.distributed import LocalComm
        >>> from corgi.layer import Dense
        >>> from corgi.optimizer import GradientDescent
        >>> model = Model([Dense(1, 1, initializer.make_he(rng=0))], GradientDescent(0.5), cost.make_mse())
        >>> parallel = DataParallel(model, LocalComm())
        >>> parallel.set_parameters([Array([[2.0]]).tracked(), Array([0.0]).tracked()])
        >>> _ = parallel.forward(np.array([[1.0]]))
        >>> parallel.backward(np.array([[3.0]]))           # dw = db = 2 (2 - 3) = -2
        1.0
        >>> parallel.update()
        >>> model.parameters()
        [Array([[3.]], dimensions=(1, 1), tracked), Array([1.], dimensions=(1,), tracked)]
        """
        if self._counting is not None:
            raise ValueError("DataParallel.update: forward() started a step that backward() has not finished")
        if self._reducer.busy:
            self.synchronize()
        if self.model is not None:
            self.model.update()
        elif self.optimizer is not None:
            self._parameters = list(self.optimizer.update(self._parameters))
        else:
            raise TypeError("DataParallel.update: no optimizer; pass optimizer= with a list of parameters")

    def step(self, input: Any, target: Any) -> float:
        """One training step on this rank's share of a batch: forward, backward, exchange, update.

        An input with no examples (this rank's share of a short last batch)
        takes part with weight zero. Returns the mean loss over the global
        batch (the same on every rank).

        >>> from corgi import cost, initializer
        >>> from corgi.distributed import LocalComm
        >>> from corgi.layer import Dense
        >>> from corgi.optimizer import GradientDescent
        >>> model = Model([Dense(1, 1, initializer.make_he(rng=0))], GradientDescent(0.5), cost.make_mse())
        >>> parallel = DataParallel(model, LocalComm())
        >>> parallel.set_parameters([Array([[2.0]]).tracked(), Array([0.0]).tracked()])
        >>> parallel.step(np.array([[1.0]]), np.array([[3.0]]))
        1.0
        >>> parallel.step(np.zeros((0, 1)), np.zeros((0, 1)))     # one rank, and it has nothing
        Traceback (most recent call last):
        ...
        ValueError: DataParallel.skip: no rank had an example in this step
        """
        self._model("step")
        if examples(input) == 0:
            self.skip()
        else:
            self.forward(input)
            self.backward(target)
        loss = self.synchronize()
        self.update()
        return loss

    def _model(self, where: str) -> Model:
        if self.model is None:
            raise TypeError(f"DataParallel.{where}: needs a wrapped Model; with a list of parameters use backward_loss")
        return self.model

    def _start_count(self, count: int, where: str) -> None:
        if self._counting is not None or self._reducer.busy:
            raise ValueError(
                f"{where}: a step is already under way; finish it with backward() and update() "
                '(one forward and backward per step: see "Gradient accumulation" in docs/distributed.md)'
            )
        self._count_mine[0] = count
        self._count_request = self._link.Iallreduce(self._count_mine, self._count_total)
        self._counting = count

    def _finish_count(self, where: str) -> int:
        """The global batch size: the sum of the counts this step started with."""
        assert self._counting is not None and self._count_request is not None
        request, self._count_request, self._counting = self._count_request, None, None
        request.Wait()
        total = int(self._count_total[0])
        if total == 0:
            raise ValueError(f"{where}: no rank had an example in this step")
        self._total = total
        return total

    def _abandon(self) -> None:
        """This rank's step failed: finish its exchange marked failed (every rank's requests complete)."""
        if self._count_request is not None:
            request, self._count_request, self._counting = self._count_request, None, None
            request.Wait()
        reported, self._reported = self._reported, []
        self._reducer.abandon()
        if reported:  # the pass may have committed before the failure: the step changes nothing
            set_gradients(reported, [None] * len(reported), where="DataParallel")

    def _report(self) -> None:
        """Every gradient at once, after ``backward()`` returned (the benchmark's exchange alone)."""
        self._reported = self.parameters()
        self._reducer.gradients_ready(get_gradients(self._reported, "DataParallel"))
        self._reducer.finish(0.0)

    # -- checkpoints ------------------------------------------------------

    def save(self, path: Path, extra: Mapping[str, Any] | None = None) -> None:
        """Rank 0 writes the model and ``extra`` (``Model.save``, atomic); every rank returns once the file is complete.

        Collective. If rank 0 cannot write, every rank raises (rank 0 its own
        error, the others a RuntimeError quoting it).

        >>> import tempfile, pathlib
        >>> from corgi import cost, initializer
        >>> from corgi.distributed import LocalComm
        >>> from corgi.layer import Dense
        >>> from corgi.optimizer import GradientDescent
        >>> def make(seed):
        ...     return Model([Dense(2, 2, initializer.make_he(rng=seed))], GradientDescent(0.1), cost.make_mse())
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = pathlib.Path(folder) / "model.npz"
        ...     DataParallel(make(0), LocalComm()).save(path)
        ...     copy = DataParallel(make(1), LocalComm())
        ...     copy.load(path)
        >>> copy.digest() == DataParallel(make(0), LocalComm()).digest()
        True
        """
        save_on_root(self._link, self._model("save"), path, "DataParallel.save", extra)

    def load(self, path: Path) -> None:
        """Every rank reads the model from ``path`` (``Model.load``); all or nothing, collective.

        If any rank cannot read it, or reads other values than rank 0 (a
        file that differs between nodes), every rank keeps its parameters and
        raises.

        >>> import tempfile, pathlib
        >>> from corgi import cost, initializer
        >>> from corgi.distributed import LocalComm
        >>> from corgi.layer import Dense
        >>> from corgi.optimizer import GradientDescent
        >>> def make(inputs):
        ...     return Model([Dense(inputs, 1, initializer.make_he(rng=0))], GradientDescent(0.1), cost.make_mse())
        >>> folder = tempfile.TemporaryDirectory()
        >>> path = pathlib.Path(folder.name) / "model.npz"
        >>> DataParallel(make(2), LocalComm()).save(path)
        >>> other = DataParallel(make(3), LocalComm())
        >>> before = other.digest()
        >>> other.load(path)
        Traceback (most recent call last):
        ...
        ValueError: Model.load: ...model.npz has 0.weights of dimensions (2, 1), the model has (3, 1)
        >>> other.digest() == before
        True
        >>> folder.cleanup()
        """
        load_everywhere(self._link, self._model("load"), path, "DataParallel.load")
