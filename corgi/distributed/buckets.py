"""Gradient buckets: each rank's gradients summed across ranks, a few flat buffers at a time.

Parameters are grouped into buckets, in reverse order (the last layer's
gradients are final first in a backward pass), one dtype per bucket, each
bucket holding at most ``bucket_bytes`` unless a single parameter is bigger.
Every rank computes the same plan from the same parameter signature, so
buckets are numbered alike everywhere (the plan's order, with the bucket
that carries the step's status moved last), and they are always started in
that order: MPI requires every rank to start its collective operations in the
same order.

A bucket is summed with one non-blocking ``Iallreduce`` (or an ``Ireduce`` to
rank 0 and an ``Ibcast``, when ``reduction="reduce-broadcast"``). What it
sends: a reusable flat buffer, made once, into which its parameters'
gradients are copied; a bucket of one parameter sends that gradient as it is
(no copy), when it is laid out row-major. What it receives: a flat buffer
whose pieces become the parameters' averaged gradients, taken from the
bucket's ``ReceivePool``: gradients are values and values never change, so
a buffer takes new sums only once no gradient cut from it is held any more
(``corgi.distributed.pool``); receiving into one fixed buffer would cost a
copy of every gradient on top.

A bucket is sent the moment its last gradient is reported
(``gradient_ready``), which ``DataParallel`` does from the engine's ready
hooks, during the backward pass, on whichever thread finished the
gradient: sending overlaps the rest of the pass. So the reducer is
thread-safe, and every MPI call it makes is made under its lock, one at a
time (``MPI_THREAD_SERIALIZED`` is enough). Where MPI allows calls from
one thread only (``MPI_THREAD_FUNNELED`` or ``SINGLE``), a bucket completed
on another thread waits for ``finish()`` on the reducer's own thread.

The last bucket also carries the step's status after its gradients (see
``corgi.distributed.status``): per parameter, how many ranks had a gradient;
one number per rank (``extra``, the loss); and which ranks failed. So a step
makes no collective operation of its own for them. The status is known only
when the pass is over, so the last bucket is the one the pass finishes last
among those copied anyway (``carrier``), and ``finish`` sends it. A rank
whose step fails part-way (a backward function raised after some buckets
went out) calls ``abandon``: it sends the rest of its buckets anyway, the
last marked failed, so that no rank waits forever for a message that never
comes and every request completes; then every rank's ``wait`` raises
``StepFailed``, and no rank uses the sums.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .comm import Request, Transport
from .pool import Receipt, ReceivePool
from .status import Status, status_size

REDUCTIONS = ("allreduce", "reduce-broadcast")
# A bucket of one parameter sends its gradient without a copy; made the carrier of the status it
# must be copied. Up to this size the copy costs less than a small allreduce of its own (about
# 10 us of latency and Python here).
CARRIER_BYTES = 64 * 1024


class StepFailed(RuntimeError):
    """Another rank's step failed, so this step exchanged nothing usable and changed nothing.

    ``failures`` is how many ranks failed; ``rank`` is the failed rank when
    only one did (else None). Each failed rank raises its own exception.

    >>> error = StepFailed("DataParallel.synchronize", failures=1, rank=2)
    >>> error.rank, str(error)
    (2, "DataParallel.synchronize: rank 2's step failed, so no rank changed its parameters or gradients")
    """

    def __init__(self, where: str, failures: int, rank: int | None) -> None:
        who = f"rank {rank}'s step" if rank is not None else f"the step of {failures} ranks"
        super().__init__(f"{where}: {who} failed, so no rank changed its parameters or gradients")
        self.failures = failures
        self.rank = rank


@dataclass(frozen=True)
class Slot:
    """Where one parameter's gradient lives: its bucket, and its place in the bucket's flat buffer."""

    position: int
    bucket: int
    offset: int
    shape: tuple[int, ...]
    size: int


def plan(shapes: Sequence[tuple[int, ...]], dtypes: Sequence[np.dtype], bucket_bytes: int) -> list[list[int]]:
    """The parameters' positions in each bucket, buckets in sending order.

    Positions are taken last first; a bucket holds one dtype and at most
    ``bucket_bytes``, unless one parameter alone is bigger (it then has a
    bucket of its own).

    >>> f4, f8 = np.dtype("float32"), np.dtype("float64")
    >>> plan([(784, 256), (256,), (256, 10), (10,)], [f4] * 4, bucket_bytes=65536)
    [[3, 2, 1], [0]]
    >>> plan([(4,), (4,), (4,)], [f4, f8, f4], bucket_bytes=1024)
    [[2, 0], [1]]
    """
    buckets: list[list[int]] = []
    open_bucket: dict[np.dtype, tuple[int, int]] = {}  # dtype -> (bucket index, bytes so far)
    for position in reversed(range(len(shapes))):
        dtype = np.dtype(dtypes[position])
        size = int(np.prod(shapes[position], dtype=np.int64)) * dtype.itemsize
        current = open_bucket.get(dtype)
        if current is None or (current[1] + size > bucket_bytes and current[1] > 0):
            buckets.append([position])
            open_bucket[dtype] = (len(buckets) - 1, size)
        else:
            buckets[current[0]].append(position)
            open_bucket[dtype] = (current[0], current[1] + size)
    return buckets


class Bucket:
    """One flat buffer's worth of gradients: its slots, its send buffer, its receive buffers, this step's state.

    ``tail`` more values follow the gradients in both buffers (the step's
    status, in the last bucket only). A bucket of one parameter and no tail
    sends that gradient itself when it is row-major, and makes a send
    buffer only if it ever needs one (no gradient on this rank, or a
    column-major one); any other bucket copies its gradients into its send
    buffer, made once.
    """

    def __init__(self, index: int, slots: list[Slot], dtype: np.dtype, tail: int = 0) -> None:
        self.index = index
        self.slots = slots
        self.dtype = dtype
        self.size = sum(slot.size for slot in slots)  # gradient values, without the tail
        self.alone = len(slots) == 1 and tail == 0
        self._send: np.ndarray | None = None
        self._regions: list[np.ndarray] = []
        if not self.alone:
            self._make_send(tail)
        self._tail = tail
        # each slot's piece of a receive buffer, and its shape (None: a 1-D slice has it already)
        self.pool = ReceivePool(self.size + tail, dtype, [
            (slot.position, slot.offset, slot.offset + slot.size, None if len(slot.shape) == 1 else slot.shape)
            for slot in slots])
        self.pending = len(slots)
        self.source: np.ndarray | None = self._send
        self.receive: Receipt | None = None

    def _make_send(self, tail: int) -> np.ndarray:
        send = self._send = np.zeros(self.size + tail, dtype=self.dtype)  # made once, reused every step
        # each slot's place in the send buffer, shaped like its parameter
        self._regions = [send[slot.offset : slot.offset + slot.size].reshape(slot.shape) for slot in self.slots]
        return send

    @property
    def send(self) -> np.ndarray:
        """The reusable send buffer (a lone parameter's bucket makes it the first time it needs it)."""
        return self._send if self._send is not None else self._make_send(self._tail)

    def put(self, member: int, gradient: np.ndarray | None, where: str) -> None:
        """Take this step's gradient of the bucket's ``member``-th slot (None: none on this rank)."""
        if gradient is None:
            self.source = self.send
            self._regions[member].fill(0)
            return
        slot = self.slots[member]
        if gradient.shape != slot.shape or gradient.dtype != self.dtype:
            raise ValueError(
                f"{where}: the gradient of parameter {slot.position} has dimensions {gradient.shape} "
                f"and dtype {gradient.dtype}, the parameter {slot.shape} and {self.dtype}"
            )
        if self.alone and gradient.flags.c_contiguous:
            # The gradient itself is the send buffer; MPI only reads it. (mpi4py takes
            # any contiguous array as a flat buffer, a column-major one too, in memory
            # order, scrambled: hence the explicit row-major check.)
            self.source = gradient
            return
        self.source = self.send
        np.copyto(self._regions[member], gradient)

    def deliver(self, summed: list[np.ndarray | None]) -> None:
        """Put each slot's piece of this step's receive buffer, read-only and shaped like its parameter, into ``summed``."""
        receive = self.receive
        assert receive is not None
        for position, piece in zip(receive.positions, receive.pieces):
            summed[position] = piece


def carrier(layout: Sequence[Sequence[int]], sizes: Sequence[int], limit: int = CARRIER_BYTES) -> int | None:
    """Which bucket of ``layout`` carries the step's status (it is sent last), or None for a bucket of its own.

    The status is known only when the pass is over, so its bucket waits for
    the pass's end: the latest bucket (the one the pass finishes last) that is
    copied anyway (several parameters) or whose copy is cheap (``limit``
    bytes or less). ``sizes`` are each bucket's bytes.

    >>> carrier([[3, 2, 1], [0]], [11304, 802816])     # the MLP: the weight is sent as it is, the rest carries
    0
    >>> carrier([[1], [0]], [1 << 20, 1 << 20]) is None
    True
    """
    chosen = None
    for index, (positions, size) in enumerate(zip(layout, sizes)):
        if len(positions) > 1 or size <= limit:
            chosen = index
    return chosen


class Reducer:
    """Sums the ranks' gradients bucket by bucket: ``gradient_ready`` for each parameter, ``finish``, then ``wait``.

    >>> from corgi.distributed import LocalComm
    >>> f8 = np.dtype("float64")
    >>> reducer = Reducer(LocalComm(), [(2, 2), (2,), (1,)], [f8, f8, f8], bucket_bytes=1024)
    >>> [[slot.position for slot in bucket.slots] for bucket in reducer.buckets]
    [[2, 1, 0]]
    >>> reducer.gradient_ready(0, np.ones((2, 2)))
    >>> reducer.gradient_ready(1, None)          # no gradient on this rank: it sends zeros
    >>> reducer.finish(extra=0.5)                # parameter 2 was never reported: none either
    >>> reducer.wait()                           # ... and no rank had one: it gets none
    ([array([[1., 1.],
           [1., 1.]]), None, None], 0.5)

    The buckets go out in ``plan``'s order, except the one that carries the
    step's status (``carrier``), which goes last, when ``finish`` knows the
    status: per parameter, how many ranks had a gradient for it (a parameter
    no rank used gets no gradient, ``None``, as in a single process, rather
    than zeros that a momentum or Adam step would still act on); one number
    per rank, ``extra``, summed (DataParallel sends its share of the loss
    there), which ``wait`` returns beside the gradients; and which ranks
    failed. See ``corgi.distributed.status`` for why it stays exact.
    """

    def __init__(
        self,
        link: Transport,
        shapes: Sequence[tuple[int, ...]],
        dtypes: Sequence[np.dtype],
        bucket_bytes: int,
        reduction: str = "allreduce",
        where: str = "Reducer",
        any_thread: bool = True,
    ) -> None:
        if reduction not in REDUCTIONS:
            raise ValueError(f"{where}: reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.link = link
        self.reduction = reduction
        self.where = where
        # MPI calls from any thread (serialised by the lock), or only from the thread that made the reducer
        self.any_thread = any_thread
        self.owner = threading.get_ident()
        count = len(shapes)
        sizes = [int(np.prod(shape, dtype=np.int64)) for shape in shapes]
        layout = plan(shapes, dtypes, bucket_bytes)
        chosen = carrier(layout, [sum(sizes[p] for p in positions) * np.dtype(dtypes[positions[0]]).itemsize
                                  for positions in layout])
        # the carrier goes last; with no bucket fit to carry it, the status has a bucket of its own
        order = [positions for index, positions in enumerate(layout) if index != chosen]
        order.append(layout[chosen] if chosen is not None else [])
        self.buckets: list[Bucket] = []
        # parameter position -> (bucket, its member index in the bucket)
        self.places: list[tuple[Bucket, int]] = [None] * count  # type: ignore[list-item]
        tail = status_size(count, link.size)
        for index, positions in enumerate(order):
            slots, offset = [], 0
            for position in positions:
                slots.append(Slot(position, index, offset, tuple(shapes[position]), sizes[position]))
                offset += sizes[position]
            last = index == len(order) - 1
            dtype = np.dtype(dtypes[positions[0]]) if positions else np.dtype("float64")
            bucket = Bucket(index, slots, dtype, tail if last else 0)
            self.buckets.append(bucket)
            for member, position in enumerate(positions):
                self.places[position] = (bucket, member)
        self.carrier = self.buckets[-1]
        # the parameters whose gradients ride in the last bucket, which goes out only once the pass is over
        self.late = frozenset(slot.position for slot in self.carrier.slots)
        self.status = Status(self.carrier.send[self.carrier.size :], count, link.rank, link.size, where)
        self.missing = False  # some use flag is 0 (set back to 1 by _reset)
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        # Every buffer of an operation in flight stays referenced (by its bucket) until wait()
        # has seen it complete: mpi4py does not keep the buffers of a non-blocking operation
        # alive, and a receive buffer freed early is written after it was freed (tried: a
        # temporary receive array crashes the rank).
        for bucket in self.buckets:
            bucket.pending = len(bucket.slots)
            if bucket.alone:
                bucket.source = None  # let go of last step's gradient
            bucket.receive = None
        count = len(self.places)
        self.reported = [False] * count
        self.count = 0  # how many of them are True
        if self.missing:
            self.status.flags.fill(1.0)
            self.missing = False
        self.ready = [False] * len(self.buckets)
        self.started = 0  # buckets 0 .. started-1 are on their way
        self.finished = False  # the carrier, the last bucket, has started
        self.requests: list[Request] = []

    @property
    def busy(self) -> bool:
        """Whether this step's exchange has begun and ``wait`` has not collected it yet.

        >>> from corgi.distributed import LocalComm
        >>> reducer = Reducer(LocalComm(), [(1,)], [np.dtype("float64")], 1024)
        >>> reducer.busy, reducer.gradient_ready(0, np.ones(1)), reducer.busy
        (False, None, True)
        """
        return self.count > 0 or self.finished

    def gradient_ready(self, position: int, gradient: np.ndarray | None) -> None:
        """Parameter ``position``'s gradient for this step is final (None: it has none here); from any thread.

        When that completes its bucket, the bucket is sent, once every
        bucket before it has been: every rank starts them in index order,
        whatever order they complete in. The last bucket waits for ``finish``.

        >>> from corgi.distributed import LocalComm
        >>> reducer = Reducer(LocalComm(), [(1,)], [np.dtype("float64")], 1024)
        >>> reducer.gradient_ready(0, np.ones(1))
        >>> reducer.gradient_ready(0, np.ones(1))
        Traceback (most recent call last):
        ...
        ValueError: Reducer: parameter 0's gradient was already reported this step
        """
        with self._lock:
            if self.finished:
                raise ValueError(f"{self.where}: a gradient was reported after the step's exchange finished")
            bucket = self._take(position, gradient)
            if bucket.pending == 0:
                self.ready[bucket.index] = True
                if self.any_thread or threading.get_ident() == self.owner:
                    self._start_ready(len(self.buckets) - 1)

    def gradients_ready(self, gradients: Sequence[np.ndarray | None]) -> None:
        """Every parameter's gradient for this step at once, in parameter order: every bucket but the last is sent.

        The same as ``gradient_ready`` for each, in one call (the path taken
        when every gradient is final at once, after ``backward()``).

        >>> from corgi.distributed import LocalComm
        >>> reducer = Reducer(LocalComm(), [(1,), (2,)], [np.dtype("float64")] * 2, 1024)
        >>> reducer.gradients_ready([np.ones(1), np.full(2, 3.0)])
        >>> reducer.finish()
        >>> reducer.wait()
        ([array([1.]), array([3., 3.])], 0.0)
        """
        places = self.places
        if len(gradients) != len(places):
            raise ValueError(f"{self.where}: {len(places)} parameters but {len(gradients)} gradients")
        with self._lock:
            if self.count or self.finished:
                raise ValueError(f"{self.where}: gradients were already reported this step")
            where = self.where
            for (bucket, member), gradient in zip(places, gradients):
                bucket.put(member, gradient, where)
                if gradient is None:
                    self.status.flags[bucket.slots[member].position] = 0.0
                    self.missing = True
            for bucket in self.buckets:
                bucket.pending = 0
            self.reported = [True] * len(places)
            self.count = len(places)
            self.ready = [True] * len(self.buckets)
            if self.any_thread or threading.get_ident() == self.owner:
                self._start_ready(len(self.buckets) - 1)

    def gradients_ready_at(self, positions: Sequence[int], gradients: Sequence[np.ndarray | None]) -> None:
        """``gradient_ready(position, gradient)`` for each pair, under one lock (the last bucket's, after the pass).

        >>> from corgi.distributed import LocalComm
        >>> reducer = Reducer(LocalComm(), [(1,), (2,)], [np.dtype("float64")] * 2, 1024)
        >>> sorted(reducer.late)
        [0, 1]
        >>> reducer.gradients_ready_at([1, 0], [np.full(2, 3.0), None])
        >>> reducer.finish()
        >>> reducer.wait()
        ([None, array([3., 3.])], 0.0)
        """
        if len(positions) != len(gradients):
            raise ValueError(f"{self.where}: {len(positions)} positions but {len(gradients)} gradients")
        with self._lock:
            if self.finished:
                raise ValueError(f"{self.where}: a gradient was reported after the step's exchange finished")
            complete = False
            for position, gradient in zip(positions, gradients):
                bucket = self._take(position, gradient)
                if bucket.pending == 0:
                    self.ready[bucket.index] = complete = True
            if complete and (self.any_thread or threading.get_ident() == self.owner):
                self._start_ready(len(self.buckets) - 1)

    def _take(self, position: int, gradient: np.ndarray | None) -> Bucket:
        if self.reported[position]:
            raise ValueError(f"{self.where}: parameter {position}'s gradient was already reported this step")
        bucket, member = self.places[position]
        bucket.put(member, gradient, self.where)
        self.reported[position] = True
        self.count += 1
        if gradient is None:
            self.status.flags[position] = 0.0
            self.missing = True
        bucket.pending -= 1
        return bucket

    def _start_ready(self, end: int) -> None:
        # every rank starts its buckets in index order, whatever order they became ready in;
        # only finish() and abandon() go up to the last one, the carrier of the status
        link, buckets, ready, requests = self.link, self.buckets, self.ready, self.requests
        while self.started < end and ready[self.started]:
            bucket = buckets[self.started]
            assert bucket.source is not None
            receipt = bucket.receive = bucket.pool.take()
            if self.reduction == "allreduce":
                requests.append(link.Iallreduce(bucket.source, receipt.buffer))
            else:
                requests.append(link.Ireduce(bucket.source, receipt.buffer if link.rank == 0 else None, root=0))
            self.started += 1

    def finish(self, extra: float = 0.0) -> None:
        """The pass is over: parameters not reported have no gradient here; send what is left, the status last.

        Call it on the reducer's own thread, once every gradient this rank
        will report is reported. ``extra`` is this rank's number to sum.

        >>> from corgi.distributed import LocalComm
        >>> reducer = Reducer(LocalComm(), [(1,)], [np.dtype("float64")], 1024)
        >>> reducer.finish(2.0)
        >>> reducer.wait()
        ([None], 2.0)
        """
        with self._lock:
            self._finish(extra, failed=False)

    def _finish(self, extra: float, failed: bool) -> None:
        if self.finished:
            raise ValueError(f"{self.where}: the step's exchange was already finished")
        if self.count < len(self.places):
            for position, seen in enumerate(self.reported):
                if not seen:
                    bucket = self._take(position, None)
                    if bucket.pending == 0:
                        self.ready[bucket.index] = True
        self.status.mark(extra, failed)
        self.ready[-1] = True
        self._start_ready(len(self.buckets))
        self.finished = True

    def abandon(self) -> None:
        """This rank's step failed: send the rest of the buckets anyway, marked failed, and wait for all.

        Every other rank then gets ``StepFailed`` from ``wait``; this one
        goes on with its own error. Nothing of the step is kept.

        >>> from corgi.distributed import LocalComm
        >>> reducer = Reducer(LocalComm(), [(1,), (1,)], [np.dtype("float64")] * 2, bucket_bytes=1)
        >>> reducer.gradient_ready(1, np.ones(1))    # bucket 0 went out, then the pass failed
        >>> reducer.abandon()
        >>> reducer.busy
        False
        """
        with self._lock:
            try:
                if not self.finished:
                    self._finish(0.0, failed=True)
                self._collect()
            finally:
                self._reset()

    def wait(self) -> tuple[list[np.ndarray | None], float]:
        """Wait for every bucket: each parameter's gradient summed over the ranks (in parameter order), and ``extra``'s sum.

        ``finish`` must have been called. The arrays are new and read-only;
        a parameter that had no gradient on any rank gets None. If any rank
        abandoned the step, raises ``StepFailed`` (naming ``where``) and
        nothing of the step is kept.
        """
        with self._lock:
            try:
                if not self.finished:
                    missing = [position for position, seen in enumerate(self.reported) if not seen]
                    raise ValueError(
                        f"{self.where}: the step's exchange is not finished (no gradient reported for parameters {missing})"
                    )
                self._collect()
                carrier = self.carrier
                assert carrier.receive is not None
                failed, extra = self.status.read(carrier.receive.buffer[carrier.size :])
                if failed:
                    raise StepFailed(self.where, len(failed), failed[0] if len(failed) == 1 else None)
                summed: list[np.ndarray | None] = [None] * len(self.places)
                for bucket in self.buckets:
                    bucket.deliver(summed)
                if self.missing:  # this rank lacked a gradient: did any rank have it?
                    for position in self.status.unused(carrier.receive.buffer[carrier.size :]):
                        summed[position] = None
            finally:
                if self.finished:
                    self._reset()
        return summed, extra

    def _collect(self) -> None:
        """Wait for every request of the step (for reduce-broadcast, send each sum back out first)."""
        requests = self.requests
        if self.reduction == "reduce-broadcast":
            requests = self._broadcast(requests)
        self.link.waitall(requests)

    def _broadcast(self, reductions: list[Request]) -> list[Request]:
        """Rank 0 sends each reduced bucket back out, as soon as its reduction is done."""
        broadcasts = []
        for request, bucket in zip(reductions, self.buckets):
            if self.link.rank == 0:
                request.Wait()
            assert bucket.receive is not None
            broadcasts.append(self.link.Ibcast(bucket.receive.buffer, root=0))
        return reductions + broadcasts
