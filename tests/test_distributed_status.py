"""The step's status rides in the last gradient bucket (issue 13, round three), exactly.

The use flags, every rank's loss share and failure mark are summed by the
same reduction as the gradients, in their dtype. These tests sum the tails
of several ranks in float32 and float64 in arbitrary orders and groupings (as
an MPI reduction may) and check that every value comes back bit for bit; and
that a step makes one collective operation per bucket plus the count, no more.
"""

from __future__ import annotations

import struct
import sys
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corgi.distributed import DataParallel, LocalComm
from corgi.distributed.buckets import CARRIER_BYTES, Reducer, carrier
from corgi.distributed.status import RECORD, Status, status_size


def _bits(value: float) -> bytes:
    return struct.pack("<d", value)


@st.composite
def _ranks(draw):
    ranks = draw(st.integers(1, 6))
    parameters = draw(st.integers(0, 5))
    extras = draw(st.lists(st.floats(width=64), min_size=ranks, max_size=ranks))
    failed = draw(st.lists(st.booleans(), min_size=ranks, max_size=ranks))
    uses = draw(st.lists(st.lists(st.booleans(), min_size=parameters, max_size=parameters),
                         min_size=ranks, max_size=ranks))
    order = draw(st.permutations(range(ranks)))
    return ranks, parameters, extras, failed, uses, order


def _summed(tails: list[np.ndarray], order: list[int], pairwise: bool) -> np.ndarray:
    """The elementwise sum of the ranks' tails, in the tails' dtype, in the given order or as a tree."""
    parts = [tails[rank].copy() for rank in order]
    if pairwise:
        while len(parts) > 1:
            parts = [parts[i] + parts[i + 1] if i + 1 < len(parts) else parts[i] for i in range(0, len(parts), 2)]
        return parts[0]
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


@settings(max_examples=300, deadline=None)
@given(_ranks(), st.sampled_from([np.float32, np.float64]), st.booleans())
def test_the_status_comes_back_bit_for_bit_whatever_order_the_ranks_are_summed_in(case, dtype, pairwise):
    ranks, parameters, extras, failed, uses, order = case
    tails = []
    for rank in range(ranks):
        tail = np.zeros(status_size(parameters, ranks), dtype=dtype)
        status = Status(tail, parameters, rank, ranks, "test")
        for position, used in enumerate(uses[rank]):
            if not used:
                status.flags[position] = 0.0
        status.mark(extras[rank], failed[rank])
        tails.append(tail)
    summed = _summed(tails, order, pairwise)
    reader = Status(np.zeros(status_size(parameters, ranks), dtype=dtype), parameters, 0, ranks, "test")
    assert [_bits(value) for value in reader.extras(summed)] == [_bits(value) for value in extras]
    found, total = reader.read(summed)
    assert found == [rank for rank in range(ranks) if failed[rank]]
    if all(np.isfinite(extras)) and sum(abs(Fraction(extra)) for extra in extras) < Fraction(sys.float_info.max):
        # no partial sum can overflow: the total is the exact sum, correctly rounded (a plain sum
        # in some order may not be: 1.0 + 1e308 - 1e308 is 0.0)
        assert _bits(total) == _bits(float(sum(Fraction(extra) for extra in extras)))
    assert reader.unused(summed) == [p for p in range(parameters) if not any(uses[r][p] for r in range(ranks))]
    # the use counts themselves are exact integers
    counts = summed[:parameters].tolist()
    assert counts == [float(sum(uses[r][p] for r in range(ranks))) for p in range(parameters)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_loss_sum_is_exact_where_a_plain_sum_cancels(dtype):
    # (found by the test above with a plain sum as its oracle: 1.0 + max - max is 0.0 that way)
    huge = sys.float_info.max
    extras = [1.0, huge, -huge]
    tails = []
    for rank, extra in enumerate(extras):
        tail = np.zeros(status_size(0, 3), dtype=dtype)
        Status(tail, 0, rank, 3, "test").mark(extra, failed=False)
        tails.append(tail)
    reader = Status(np.zeros(status_size(0, 3), dtype=dtype), 0, 0, 3, "test")
    assert reader.read(_summed(tails, [2, 0, 1], pairwise=False)) == ([], 1.0)


def test_the_status_counts_ranks_exactly_only_as_far_as_the_dtype_holds_integers():
    # 2**24 + 1 is the first integer float32 cannot hold: 2**24 ranks summing a flag of 1 each stay exact
    assert np.float32(2**24) + np.float32(1) == np.float32(2**24)
    Status(np.zeros(status_size(1, 1), dtype=np.float32), 1, 0, 2**24, "here")
    with pytest.raises(ValueError, match="here: float32 gradients count at most 16777216 ranks exactly, got 16777217"):
        Status(np.zeros(status_size(1, 1), dtype=np.float32), 1, 0, 2**24 + 1, "here")
    Status(np.zeros(status_size(1, 1)), 1, 0, 2**24 + 1, "here")  # float64: up to 2**53


def test_the_carrier_is_the_last_bucket_copied_anyway_or_cheap_to_copy():
    f4 = np.dtype("float32")
    # benchmark (f)'s MLP: the 784x256 weight is sent as it is, the three small gradients carry the status
    reducer = Reducer(LocalComm(), [(784, 256), (256,), (256, 10), (10,)], [f4] * 4, 256 * 1024)
    assert [[slot.position for slot in bucket.slots] for bucket in reducer.buckets] == [[0], [3, 2, 1]]
    assert reducer.buckets[0].alone and not reducer.buckets[1].alone
    assert reducer.buckets[1].send.size == 10 + 2560 + 256 + status_size(4, 1)
    # a lone parameter carries it when its copy is cheap: the latest such bucket
    assert carrier([[2], [1], [0]], [CARRIER_BYTES, CARRIER_BYTES + 1, 8]) == 2
    assert carrier([[2], [1], [0]], [CARRIER_BYTES, CARRIER_BYTES + 1, CARRIER_BYTES + 1]) == 0


def test_parameters_too_big_to_copy_send_the_status_in_a_bucket_of_its_own():
    f4 = np.dtype("float32")
    started = []

    class Recording(LocalComm):
        def Iallreduce(self, send, receive):
            started.append((send.size, send.dtype.name))
            return super().Iallreduce(send, receive)

    big = CARRIER_BYTES // 4 + 1
    reducer = Reducer(Recording(), [(big,), (big,)], [f4, f4], bucket_bytes=1)
    assert [[slot.position for slot in bucket.slots] for bucket in reducer.buckets] == [[1], [0], []]
    reducer.gradient_ready(1, np.full(big, 2.0, dtype=f4))
    reducer.gradient_ready(0, None)
    assert started == [(big, "float32"), (big, "float32")]  # both sent as they are, during the pass
    reducer.finish(extra=0.25)
    assert started[-1] == (status_size(2, 1), "float64")
    gradients, extra = reducer.wait()
    assert gradients[0] is None and gradients[1].tolist() == [2.0] * big and extra == 0.25


def test_a_step_makes_one_collective_operation_per_bucket_and_one_for_the_count():
    from corgi import activation, cost, initializer
    from corgi.layer import Dense
    from corgi.model import Model
    from corgi.optimizer import GradientDescent

    started = []

    class Recording(LocalComm):
        def Iallreduce(self, send, receive):
            started.append(send.size)
            return super().Iallreduce(send, receive)

        def Ireduce(self, send, receive, root=0):
            raise AssertionError("allreduce only")

    he = initializer.make_he(rng=0)
    # the first weight (409,600 bytes) is bigger than a bucket: it goes alone and uncopied
    model = Model([Dense(200, 256, he, activation.make_relu()), Dense(256, 10, he)], GradientDescent(0.1),
                  cost.make_softmax_cross_entropy())
    parallel = DataParallel(model, Recording())
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((6, 200)), np.eye(10)[rng.integers(0, 10, 6)]
    for _ in range(3):
        started.clear()
        parallel.step(x, y)
        # the count, the weight, then the small gradients with the status (4 use flags, 1 rank's record)
        assert started == [1, 200 * 256, 10 + 2560 + 256 + 4 + RECORD]
