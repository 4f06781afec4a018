"""Checkpoints: atomic under failures and interrupts, paths that round-trip, optimizer state, clear errors."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from corgi import Array, checkpoint
from corgi.activation import make_relu, make_tanh
from corgi.cost import make_mse, make_softmax_cross_entropy
from corgi.datasets import one_hot
from corgi.initializer import make_he
from corgi.layer import Dense, Dropout, Layer
from corgi.model import Model
from corgi.optimizer import Adam, GradientDescent, Momentum

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parent.parent


def network(seed=0, optimizer=None, rate=0.0):
    he = make_he(rng=seed)
    layers = [Dense(4, 6, he, make_tanh())]
    if rate:
        layers.append(Dropout(rate, rng=seed + 100))
    layers.append(Dense(6, 3, he))
    return Model(layers, optimizer if optimizer is not None else Momentum(0.05), make_softmax_cross_entropy())


def batch(seed):
    rng = np.random.default_rng(seed)
    return Array(rng.normal(size=(8, 4))), Array(one_hot(rng.integers(0, 3, size=8), 3))


def train(model, steps, start=0):
    for step in range(start, start + steps):
        x, t = batch(step)
        model.forward(x)
        model.backward(t)
        model.update()


def values(model):
    return [p.numpy().copy() for p in model.parameters()]


def same_values(a, b):
    return len(a) == len(b) and all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(a, b))


# -- resuming exactly --------------------------------------------------------------------


@pytest.mark.parametrize("make", [lambda: Momentum(0.05, momentum=0.9), lambda: Adam(0.01), lambda: GradientDescent(0.1)])
@pytest.mark.parametrize("rate", [0.0, 0.3])
def test_a_checkpoint_resumes_training_bitwise(tmp_path, make, rate):
    straight = network(optimizer=make(), rate=rate)
    train(straight, 10)
    first = network(optimizer=make(), rate=rate)
    train(first, 5)
    written = first.save(tmp_path / "half")
    resumed = network(seed=7, optimizer=make(), rate=rate).load(written)  # other initial values
    train(resumed, 5, start=5)
    assert same_values(values(resumed), values(straight))
    assert resumed.optimizer.state_dict()["state"].keys() == straight.optimizer.state_dict()["state"].keys()


def test_optimizer_state_travels_with_its_settings(tmp_path):
    model = network(optimizer=Adam(0.02, beta1=0.8))
    train(model, 3)
    model.save(tmp_path / "adam.npz")
    archive = np.load(tmp_path / "adam.npz")
    assert "optimizer.0.exp_avg" in archive.files and "optimizer.3.exp_avg_sq" in archive.files
    meta = json.loads(str(archive["corgi.json"]))
    assert meta["optimizer"] == {"type": "Adam", "hyperparameters": {"learning_rate": 0.02, "beta1": 0.8,
                                                                     "beta2": 0.999, "epsilon": 1e-8},
                                 "steps": {"0": 3, "1": 3, "2": 3, "3": 3}}
    fresh = network(optimizer=Adam(0.5)).load(tmp_path / "adam.npz")
    assert fresh.optimizer.beta1 == 0.8 and fresh.optimizer.learning_rate == 0.02
    saved, restored = model.optimizer.state_dict(), fresh.optimizer.state_dict()
    for position in range(4):
        for slot in ("exp_avg", "exp_avg_sq"):
            assert np.array_equal(saved["state"][position][slot], restored["state"][position][slot])


def test_another_optimizer_kind_is_refused_unless_asked_to_skip_it(tmp_path):
    model = network(optimizer=Adam(0.01))
    train(model, 2)
    model.save(tmp_path / "ckpt")
    other = network(seed=3, optimizer=Momentum(0.1))
    before = values(other)
    with pytest.raises(ValueError, match="ckpt.npz holds the state of a Adam optimizer, the model's is a Momentum; "
                                         "pass optimizer=False"):
        other.load(tmp_path / "ckpt")
    assert same_values(values(other), before)
    other.load(tmp_path / "ckpt", optimizer=False)
    assert same_values(values(other), values(model)) and other.optimizer.state_dict()["state"] == {}
    inference = Model(network().layers).load(tmp_path / "ckpt")  # no optimizer: the state is not needed
    assert same_values(values(inference), values(model))


def test_extra_data_and_layer_state_round_trip(tmp_path):
    model = network(rate=0.5)
    train(model, 2)
    extra = {"epoch": 4, "schedule": {"type": "Constant", "rate": 0.1}, "generator": np.random.default_rng(1).bit_generator.state}
    path = model.save(tmp_path / "run", extra=extra)
    assert checkpoint.read(tmp_path / "run", "test").extra == extra
    twin = network(seed=5, rate=0.5).load(path)
    x, _ = batch(99)
    assert twin.forward(x) == model.forward(x)  # the same parameters and the same dropout mask next


class Counter(Layer):
    buffer_names = ("seen",)

    def __init__(self):
        self.seen = np.zeros(1)

    def forward(self, x):
        if self.training:
            self.seen = self.seen + x.dimensions[0]
        return x


def test_buffers_round_trip(tmp_path):
    model = Model([Counter(), Dense(4, 2, make_he(rng=0))], GradientDescent(0.1), make_mse())
    model.forward(batch(0)[0])
    model.save(tmp_path / "buffers")
    assert np.load(tmp_path / "buffers.npz")["buffers.0.seen"].tolist() == [8.0]
    other = Model([Counter(), Dense(4, 2, make_he(rng=1))], GradientDescent(0.1), make_mse()).load(tmp_path / "buffers")
    assert other.layers[0].seen.tolist() == [8.0]
    without = Model([Dense(4, 2, make_he(rng=1))], GradientDescent(0.1), make_mse())
    with pytest.raises(ValueError, match="holds parameters \\['0.biases', '0.weights'\\]|buffers"):
        without.load(tmp_path / "buffers")


# -- all or nothing ---------------------------------------------------------------------


def test_set_parameters_checks_every_layer_before_changing_any():
    model = network()
    before = model.parameters()
    replacement = [Array(p.numpy() + 1.0).tracked() for p in before]
    replacement[-1] = Array.zeros((4,))  # the last layer's biases: wrong dimensions
    with pytest.raises(ValueError, match="Dense.set_parameters: biases has dimensions \\(3,\\), got \\(4,\\)"):
        model.set_parameters(replacement)
    assert all(a is b for a, b in zip(model.parameters(), before))
    replacement[-1] = Array(before[-1].numpy(), dtype="float32")  # a float type the layer's weights do not have
    with pytest.raises(TypeError, match="the parameters mix float64 \\(weights\\) and float32 \\(biases\\)"):
        model.set_parameters(replacement)
    assert all(a is b for a, b in zip(model.parameters(), before))


def corrupt(tmp_path, change):
    """A checkpoint of a trained Adam network with one thing broken by ``change(arrays, meta)``."""
    model = network(optimizer=Adam(0.01), rate=0.5)
    train(model, 2)
    arrays, meta = checkpoint.encode(model, {})
    change(arrays, meta)
    return checkpoint.write(tmp_path / "broken", arrays, meta, "test")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a, m: a.update({"2.biases": np.zeros(5)}), "has 2.biases of dimensions \\(5,\\), the model has \\(3,\\)"),
        (lambda a, m: a.update({"2.biases": np.zeros(3, np.int64)}), "has 2.biases of dtype int64, not a float type"),
        (lambda a, m: a.pop("0.weights"), "holds parameters"),
        (lambda a, m: a.update({"optimizer.1.exp_avg": np.zeros(2)}),
         "parameter 1's exp_avg is float64 \\(2,\\), the parameter is float64 \\(6,\\)"),
        (lambda a, m: a.pop("optimizer.2.exp_avg_sq"), "parameter 2 needs step and"),
        (lambda a, m: m["optimizer"]["steps"].update({"9": 1}), "optimizer state for a parameter '9'"),
        (lambda a, m: m["optimizer"]["hyperparameters"].update(beta1=2.0), "beta1 must be in"),
        (lambda a, m: m["extra_state"]["1"]["generator"].update(bit_generator="MT19937"),
         "layer 1: Dropout.set_extra_state: the state is of a MT19937 generator"),
        (lambda a, m: m["extra_state"].update({"7": {}}), "extra state for layers the model does not have"),
        (lambda a, m: a.update({"buffers.0.mean": np.zeros(6)}), "buffers \\['buffers.0.mean'\\] that no layer"),
    ],
)
def test_a_bad_checkpoint_changes_nothing_and_names_the_file(tmp_path, change, message):
    path = corrupt(tmp_path, change)
    model = network(seed=9, optimizer=Adam(0.01), rate=0.5)
    train(model, 1)
    before, state = values(model), model.optimizer.state_dict()
    dropout = model.layers[1].get_extra_state()
    with pytest.raises(ValueError, match=message) as error:
        model.load(path)
    assert str(error.value).startswith(f"Model.load: {path}")
    assert same_values(values(model), before) and model.layers[1].get_extra_state() == dropout
    assert all(np.array_equal(state["state"][p]["exp_avg"], model.optimizer.state_dict()["state"][p]["exp_avg"])
               for p in range(4))


# -- paths --------------------------------------------------------------------------------


def test_paths_round_trip_and_reports_are_true(tmp_path):
    model = network()
    for given, written in (("ckpt", "ckpt.npz"), ("ckpt.npz", "ckpt.npz"), ("model.v2", "model.v2.npz")):
        result = model.save(tmp_path / given)
        assert result == tmp_path / written and result.is_file()
        assert same_values(values(network(seed=4).load(tmp_path / given)), values(model))
        assert same_values(values(network(seed=4).load(str(tmp_path / given))), values(model))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.npz", "model.v2.npz"]  # no temporary files


def test_a_directory_is_refused(tmp_path):
    with pytest.raises(IsADirectoryError, match=f"Model.save: {tmp_path} names a directory; give a file name"):
        network().save(tmp_path)
    with pytest.raises(IsADirectoryError, match="names a directory"):
        network().save(str(tmp_path) + os.sep)
    with pytest.raises(FileNotFoundError, match="the folder .*nowhere of .*nowhere/x.npz does not exist"):
        network().save(tmp_path / "nowhere" / "x")
    with pytest.raises(IsADirectoryError, match="Model.load: .* names a directory"):
        network().load(tmp_path)


def test_files_that_are_not_checkpoints_are_named(tmp_path):
    np.save(tmp_path / "weights.npy", np.zeros(3))
    with pytest.raises(ValueError, match="weights.npy is a .npy file \\(one numpy array\\), not a checkpoint; "
                                         "checkpoints are .npz files: Model.save\\('.*weights.npy'\\) writes .*weights.npy.npz"):
        network().load(tmp_path / "weights.npy")
    np.save(tmp_path / "renamed.npy", np.zeros(3))
    os.replace(tmp_path / "renamed.npy", tmp_path / "renamed.npz")
    with pytest.raises(ValueError, match="renamed.npz is a .npy file \\(one numpy array\\), not a checkpoint"):
        network().load(tmp_path / "renamed.npz")
    (tmp_path / "notes.npz").write_text("hello")
    with pytest.raises(ValueError, match="notes.npz is not a .npz archive, not a checkpoint"):
        network().load(tmp_path / "notes")
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.npz is an empty file"):
        network().load(tmp_path / "empty.npz")
    good = network().save(tmp_path / "cut")
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 2])  # a checkpoint cut short, as by a full disk without atomic saves
    with pytest.raises(ValueError, match="cut.npz is damaged or not a checkpoint"):
        network().load(good)
    with pytest.raises(FileNotFoundError, match="Model.load: no checkpoint file .*missing.npz"):
        network().load(tmp_path / "missing")


def test_a_foreign_json_entry_is_refused(tmp_path):
    np.savez(tmp_path / "foreign.npz", **{"corgi.json": np.array(json.dumps({"format": "other"}))})
    with pytest.raises(ValueError, match="foreign.npz has a corgi.json entry that is not a corgi checkpoint's"):
        network().load(tmp_path / "foreign")
    np.savez(tmp_path / "future.npz", **{"corgi.json": np.array(json.dumps({"format": "corgi checkpoint", "version": 9}))})
    with pytest.raises(ValueError, match="future.npz is a version 9 checkpoint; this corgi reads version 1"):
        network().load(tmp_path / "future")


def test_a_plain_npz_of_parameters_still_loads(tmp_path):
    # what corgi wrote before checkpoints had their JSON entry, or numpy.savez of the named parameters
    model = network()
    np.savez(tmp_path / "plain.npz", **{name: p.numpy() for name, p in model.named_parameters()})
    assert same_values(values(network(seed=3).load(tmp_path / "plain")), values(model))


# -- atomic under failures -------------------------------------------------------------


class FailingFile:
    """A file whose writes fail with ENOSPC once ``budget`` bytes went through, as on a full disk."""

    def __init__(self, file, budget):
        self.file, self.budget = file, budget

    def write(self, data):
        if len(data) > self.budget:
            raise OSError(28, "No space left on device")
        self.budget -= len(data)
        return self.file.write(data)

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.99])
def test_an_error_mid_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch, fraction):
    good = network(seed=1)
    path = good.save(tmp_path / "ckpt")
    before = path.read_bytes()
    budget = int(fraction * len(before))
    real_fdopen = os.fdopen
    monkeypatch.setattr(checkpoint.os, "fdopen", lambda *a, **k: FailingFile(real_fdopen(*a, **k), budget))
    with pytest.raises(OSError, match="No space left on device"):
        network(seed=2).save(tmp_path / "ckpt")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.npz"]
    monkeypatch.undo()
    assert same_values(values(network(seed=5).load(path)), values(good))


def run_child(script, timeout=60, **kwargs):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], check=False, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, **kwargs)


def test_a_real_file_size_limit_mid_write_keeps_the_previous_checkpoint(tmp_path):
    # RLIMIT_FSIZE makes the kernel refuse writes past a size (EFBIG), exactly where a full disk would
    child = run_child(f"""
        import resource, signal
        import numpy as np
        from pathlib import Path
        from corgi.initializer import make_he
        from corgi.layer import Dense
        from corgi.model import Model
        from corgi.optimizer import Adam
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
        def model(seed):
            return Model([Dense(300, 200, make_he(rng=seed))], Adam(0.01))
        path = model(1).save(Path({str(tmp_path)!r}) / "ckpt")
        size = path.stat().st_size
        resource.setrlimit(resource.RLIMIT_FSIZE, (size // 2, resource.RLIM_INFINITY))
        try:
            model(2).save(path)
        except OSError as error:
            print("refused:", error.errno, error.strerror)
    """)
    assert child.returncode == 0, child.stderr
    assert child.stdout.startswith("refused: 27 File too large")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.npz"]
    expected = Model([Dense(300, 200, make_he(rng=1))])
    assert same_values(values(Model([Dense(300, 200, make_he(rng=3))]).load(tmp_path / "ckpt")), values(expected))


def test_a_real_ctrl_c_during_saves_never_damages_the_checkpoint(tmp_path):
    """SIGINT from another process at random moments of many saves: the file is always a whole checkpoint."""
    rounds, side = 16, 1000
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import signal, sys, time
            from pathlib import Path
            from corgi.initializer import make_he
            from corgi.layer import Dense
            from corgi.model import Model
            path = Path({str(tmp_path)!r}) / "ckpt"
            models = [Model([Dense({side}, {side}, make_he(rng=seed))]) for seed in range({rounds} + 1)]
            models[0].save(path)

            def hold_interrupts():  # block SIGINT; one landing while we get there is simply retried
                while True:
                    try:
                        signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.SIGINT}})
                        return
                    except KeyboardInterrupt:
                        pass

            hold_interrupts()
            for seed in range(1, {rounds} + 1):
                while True:  # wait for the go; an interrupt held back from the last round lands here
                    try:
                        signal.pthread_sigmask(signal.SIG_UNBLOCK, {{signal.SIGINT}})
                        sys.stdin.readline()
                        break
                    except KeyboardInterrupt:
                        print("late", flush=True)
                hold_interrupts()
                print("start", flush=True)
                began = time.perf_counter()
                outcome = "interrupted"
                try:
                    signal.pthread_sigmask(signal.SIG_UNBLOCK, {{signal.SIGINT}})
                    models[seed].save(path)
                    outcome = "done"
                except KeyboardInterrupt:
                    pass
                hold_interrupts()  # exactly one outcome line per round, never cut short
                print(outcome, seed, time.perf_counter() - began, flush=True)
        """)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    rng = np.random.default_rng(0)
    weights_of = {}

    def weights(seed):
        if seed not in weights_of:
            weights_of[seed] = Model([Dense(side, side, make_he(rng=seed))]).parameters()[0].numpy()
        return weights_of[seed]

    outcomes, durations, on_disk = [], [0.05], 0
    try:
        for _ in range(rounds):
            child.stdin.write("go\n")
            child.stdin.flush()
            line = child.stdout.readline()
            while line.strip() == "late":
                line = child.stdout.readline()
            assert line.strip() == "start", (line, child.stderr.read() if child.poll() is not None else "")
            # interrupt anywhere in a save (8 MB: tens of milliseconds) or just after it
            time.sleep(rng.uniform(0.0, 1.2 * float(np.median(durations))))
            child.send_signal(signal.SIGINT)
            outcome, seed, seconds = child.stdout.readline().split()
            outcomes.append(outcome)
            if outcome == "done":
                durations.append(float(seconds))
            with np.load(tmp_path / "ckpt.npz") as archive:  # a whole archive: every entry's CRC checks
                saved = archive["0.weights"]
            if np.array_equal(saved, weights(int(seed))):
                on_disk = int(seed)
            else:  # an interrupted save leaves the checkpoint that was there
                assert outcome == "interrupted" and np.array_equal(saved, weights(on_disk)), (outcome, seed, on_disk)
            assert [p.name for p in tmp_path.iterdir()] == ["ckpt.npz"]  # no temporary file left behind
        child.stdin.close()
        assert child.wait(timeout=30) == 0, child.stderr.read()
    finally:
        if child.poll() is None:
            child.kill()
    # the interrupts must have hit inside saves, not only between them
    assert outcomes.count("interrupted") >= 4, outcomes


# -- models -----------------------------------------------------------------------------


def test_checkpoint_entries_are_numpy_readable_and_the_json_is_plain(tmp_path):
    model = network(optimizer=Momentum(0.1), rate=0.2)
    train(model, 1)
    path = model.save(tmp_path / "plain")
    with zipfile.ZipFile(path) as archive:
        names = sorted(archive.namelist())
    assert names == sorted(["0.weights.npy", "0.biases.npy", "2.weights.npy", "2.biases.npy", "corgi.json.npy"]
                           + [f"optimizer.{p}.momentum_buffer.npy" for p in range(4)])
    meta = json.loads(str(np.load(path)["corgi.json"]))
    assert meta["format"] == "corgi checkpoint" and meta["version"] == 1
    assert meta["layers"] == ["Dense(4, 6, activation=tanh)", "Dropout(0.2)", "Dense(6, 3)"]
    assert set(meta["extra_state"]) == {"1"}
    assert np.load(path, allow_pickle=False)["0.weights"].shape == (4, 6)


def test_save_keeps_the_file_permissions(tmp_path):
    path = network().save(tmp_path / "mode")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    os.chmod(path, 0o600)
    network(seed=2).save(path)
    assert path.stat().st_mode & 0o777 == 0o600


def test_json_extra_must_be_plain_data(tmp_path):
    with pytest.raises(TypeError, match="not JSON serializable"):
        network().save(tmp_path / "x", extra={"array": np.zeros(2)})
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        network().save(tmp_path / "x", extra={"rate": float("nan")})
    assert list(tmp_path.iterdir()) == []


def test_relu_model_round_trip_in_float32(tmp_path):
    he = make_he(rng=0)
    model = Model([Dense(3, 4, he, make_relu(), dtype="float32"), Dense(4, 2, he, dtype="float32")], Adam(0.01),
                  make_mse())
    model.forward(np.ones((2, 3)))
    model.backward(np.zeros((2, 2), np.float32))
    model.update()
    model.save(tmp_path / "f32")
    copy = Model([Dense(3, 4, he, make_relu(), dtype="float32"), Dense(4, 2, he, dtype="float32")], Adam(0.01),
                 make_mse()).load(tmp_path / "f32")
    assert all(p.dtype == np.float32 for p in copy.parameters()) and same_values(values(copy), values(model))
    assert copy.optimizer.state_dict()["state"][0]["exp_avg"].dtype == np.float32
