"""Learning-rate schedules: their values, against PyTorch's schedulers, and as data."""

import copy
import json
import math
import pickle

import pytest

from corgi.optimizer import Adam, GradientDescent
from corgi.schedule import Constant, Cosine, Schedule, StepDecay, Warmup

pytestmark = pytest.mark.timeout(60)

SCHEDULES = [
    Constant(0.3),
    StepDecay(0.5, step_size=3, gamma=0.2),
    Cosine(0.8, total=7),
    Cosine(0.8, total=5, minimum=0.05),
    Warmup(Cosine(0.4, total=6), steps=3),
    Warmup(StepDecay(1.0, step_size=2, gamma=0.5), steps=4, start=0.0),
    Warmup(Warmup(Constant(1.0), steps=2, start=0.5), steps=1, start=0.25),
]


def test_values_by_their_formulas():
    assert [StepDecay(0.5, step_size=3, gamma=0.2)(t) for t in range(7)] == pytest.approx(
        [0.5, 0.5, 0.5, 0.1, 0.1, 0.1, 0.02])
    cosine = Cosine(0.8, total=5, minimum=0.05)
    for t in range(9):
        expected = 0.05 + 0.75 * (1 + math.cos(math.pi * min(t, 5) / 5)) / 2
        assert cosine(t) == pytest.approx(expected, rel=1e-15)
    assert cosine(0) == 0.8 and cosine(5) == cosine(100) == 0.05
    warm = Warmup(Cosine(0.4, total=6), steps=3)  # 0.4 * (0.1 + 0.9 t / 3), then the cosine from 0
    assert [warm(t) for t in range(3)] == pytest.approx([0.04, 0.16, 0.28])
    assert [warm(t) for t in range(3, 12)] == pytest.approx([Cosine(0.4, total=6)(t) for t in range(9)])
    assert Warmup(StepDecay(1.0, step_size=2, gamma=0.5), steps=4, start=0.0)(0) == 0.0


def test_values_match_pytorch_schedulers():
    torch = pytest.importorskip("torch", reason="compares with PyTorch's learning-rate schedulers")

    def torch_rates(make, base, count):
        parameter = torch.nn.Parameter(torch.zeros(1))
        optimizer = torch.optim.SGD([parameter], lr=base)
        scheduler = make(optimizer)
        rates = []
        for _ in range(count):
            rates.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        return rates

    lr = torch.optim.lr_scheduler
    cases = [
        (StepDecay(0.5, step_size=3, gamma=0.2), lambda o: lr.StepLR(o, step_size=3, gamma=0.2), 0.5),
        (Cosine(0.8, total=7, minimum=0.1), lambda o: lr.CosineAnnealingLR(o, T_max=7, eta_min=0.1), 0.8),
        (Warmup(Constant(0.6), steps=4, start=0.25), lambda o: lr.LinearLR(o, start_factor=0.25, total_iters=4), 0.6),
        (Warmup(Cosine(0.6, total=5), steps=3, start=0.1),
         lambda o: lr.SequentialLR(o, [lr.LinearLR(o, start_factor=0.1, total_iters=3),
                                       lr.CosineAnnealingLR(o, T_max=5)], milestones=[3]), 0.6),
    ]
    for ours, make, base in cases:
        theirs = torch_rates(make, base, 8)
        assert [ours(t) for t in range(8)] == pytest.approx(theirs, rel=1e-9, abs=1e-12), ours


@pytest.mark.parametrize("schedule", SCHEDULES, ids=repr)
def test_a_schedule_travels_as_data_pickles_and_copies(schedule):
    data = json.loads(json.dumps(schedule.to_dict()))  # plain data, JSON and back
    for copied in (Schedule.from_dict(data), pickle.loads(pickle.dumps(schedule)), copy.deepcopy(schedule)):
        assert copied == schedule and repr(copied) == repr(schedule)
        assert [copied(t) for t in range(12)] == [schedule(t) for t in range(12)]
    assert schedule != Constant(12345.0)


def test_apply_sets_the_learning_rate_of_any_optimizer():
    schedule = StepDecay(0.1, step_size=1, gamma=0.5)
    for optimizer in (GradientDescent(1.0), Adam(1.0)):
        assert schedule.apply(optimizer, 2) == 0.025 and optimizer.learning_rate == 0.025
    with pytest.raises(TypeError, match="StepDecay.apply: the optimizer has no learning_rate"):
        schedule.apply(object(), 0)


@pytest.mark.parametrize(
    "make, kind, message",
    [
        (lambda: Constant(-0.1), ValueError, "Constant: rate must be a finite number >= 0, got -0.1"),
        (lambda: Constant(float("nan")), ValueError, "Constant: rate must be a finite number >= 0, got nan"),
        (lambda: Constant("0.1"), TypeError, "Constant: rate must be a number, got '0.1'"),
        (lambda: StepDecay(0.1, step_size=0), ValueError, "StepDecay: step_size must be a whole number >= 1, got 0"),
        (lambda: StepDecay(0.1, step_size=2.5), TypeError, "StepDecay: step_size must be a whole number"),
        (lambda: Cosine(0.1, total=0), ValueError, "Cosine: total must be a whole number >= 1"),
        (lambda: Warmup(0.1, steps=2), TypeError, "Warmup: then must be a Schedule, got float"),
        (lambda: Warmup(Constant(0.1), steps=2, start=1.5), ValueError, "Warmup: start must be in \\[0, 1\\]"),
        (lambda: Constant(0.1)(-1), ValueError, "Constant: t must be a whole number >= 0, got -1"),
        (lambda: Constant(0.1)(1.0), TypeError, "Constant: t must be a whole number, got 1.0"),
        (lambda: Schedule.from_dict({"type": "Cosine", "rate": 0.1}), ValueError,
         "Schedule.from_dict: Cosine does not take \\['rate'\\]"),
        (lambda: Schedule.from_dict([1]), TypeError, "Schedule.from_dict: expects a mapping, got list"),
        (lambda: Schedule.from_dict({"type": "Cosine", "rate": -1, "total": 3}), ValueError, "Cosine: rate"),
    ],
)
def test_bad_settings_are_clear_errors(make, kind, message):
    with pytest.raises(kind, match=message):
        make()
