"""The main job: python -m corgi.train (SPEC section 7), its loop, its checkpoints and its resume."""

import gzip
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from corgi import checkpoint, engine
from corgi.datasets import load_digits, load_mnist10k
from corgi.initializer import make_he
from corgi.layer import Conv, Dense, Dropout, Flatten, Pool
from corgi.model import Model
from corgi.optimizer import GradientDescent, Momentum
from corgi.schedule import Constant, Cosine
from corgi.train import (
    History,
    ProgressBar,
    build_model,
    examples,
    fit,
    main,
    make_progress,
)

pytestmark = pytest.mark.timeout(180)
ROOT = Path(__file__).resolve().parent.parent
DIGITS = ["--dataset", "digits"]


@pytest.fixture(autouse=True)
def keep_engine_and_blas_settings():
    # main() sets the engine's workers (--workers) and the BLAS threads of the whole process
    from corgi.train import blas_threads, set_blas_threads

    before, threads = engine.settings(), blas_threads()
    yield
    engine.configure(workers=before.workers, handoff_cost=before.handoff_cost)
    if threads is not None:
        set_blas_threads(threads)


def epoch_losses(out: str) -> list[float]:
    return [float(line.split("loss ")[1].split()[0]) for line in out.splitlines() if line.startswith("epoch")]


def last_accuracy(out: str) -> float:
    last = out.strip().splitlines()[-1]
    number = last.removeprefix("held-out accuracy: ")
    assert number != last and len(number) == 6 and number[1] == "." and 0.0 <= float(number) <= 1.0, last
    return float(number)


# -- the main job on the bundled MNIST ---------------------------------------------------


def test_the_main_job_runs_a_few_steps_on_mnist_and_ends_with_the_accuracy(capsys):
    assert main(["--epochs", "3", "--max-steps", "15", "--workers", "0"]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert [line.split()[1] for line in lines[:3]] == ["1/3", "2/3", "3/3"]
    losses = epoch_losses(out)
    assert len(losses) == 3 and losses[2] < losses[0]
    assert 0.5 < last_accuracy(out) < 1.0  # 45 steps of the seed's network on real digits


def test_the_mlp_learns_real_mnist_in_two_epochs(capsys):
    # the whole 8,000 training digits twice (0.931-0.936 measured for seeds 0-2; the default 30 epochs reach 0.96)
    assert main(["--epochs", "2", "--dtype", "float32"]) == 0
    assert last_accuracy(capsys.readouterr().out) >= 0.925


def test_the_cnn_learns_real_mnist_on_a_subset(capsys):
    # 60 batches of 32 digits, once: a CI-sized check that the convolutional network learns (0.863-0.905
    # measured for seeds 0-2)
    assert main(["--model", "cnn", "--epochs", "1", "--max-steps", "60", "--dtype", "float32"]) == 0
    assert last_accuracy(capsys.readouterr().out) >= 0.80


def test_cnn_and_every_optimizer_on_the_digits(capsys):
    for optimizer in ("gd", "momentum", "adam"):
        assert main(["--model", "cnn", *DIGITS, "--optimizer", optimizer, "--epochs", "2", "--max-steps", "10"]) == 0
        losses = epoch_losses(capsys.readouterr().out)
        assert losses[1] < losses[0]


def test_seed_reproduces_a_run(capsys):
    runs = []
    for _ in range(2):
        main([*DIGITS, "--epochs", "1", "--max-steps", "5", "--seed", "3", "--workers", "0"])
        runs.append(epoch_losses(capsys.readouterr().out))
    main([*DIGITS, "--epochs", "1", "--max-steps", "5", "--seed", "4", "--workers", "0"])
    assert runs[0] == runs[1] != epoch_losses(capsys.readouterr().out)


def test_workers_option_configures_the_engine(capsys):
    main([*DIGITS, "--epochs", "1", "--max-steps", "2", "--workers", "1"])
    assert engine.settings().workers == 1


# -- saving and resuming ----------------------------------------------------------------------


def run_params(path):
    with np.load(path) as archive:
        return {name: archive[name] for name in archive.files if name[0].isdigit()}


def test_save_writes_a_loadable_model_and_reports_its_true_path(tmp_path, capsys):
    main([*DIGITS, "--epochs", "1", "--max-steps", "5", "--save", str(tmp_path / "digits")])
    out = capsys.readouterr().out
    assert f"saved the model to {tmp_path / 'digits.npz'}\n" in out
    data = load_digits()
    model = build_model("mlp", data.image_shape, 10, GradientDescent(0.1)).load(tmp_path / "digits")
    assert model.accuracy(data.test_images, data.test_labels) == pytest.approx(last_accuracy(out), abs=1e-4)
    # a folder gets <model>.npz, and the report names it
    main([*DIGITS, "--model", "cnn", "--epochs", "1", "--max-steps", "2", "--save", f"{tmp_path}/"])
    assert f"saved the model to {tmp_path / 'cnn.npz'}\n" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cnn.npz", "digits.npz"]


@pytest.mark.parametrize("extra", [[], ["--model", "cnn", "--dropout", "0.3", "--optimizer", "adam"],
                                   ["--dropout", "0.5", "--optimizer", "momentum", "--warmup", "2",
                                    "--dtype", "float32"]])
def test_resume_ten_plus_ten_epochs_equals_twenty_bitwise(tmp_path, capsys, extra):
    common = [*DIGITS, "--epochs", "20", "--max-steps", "3", "--workers", "0", *extra]
    assert main([*common, "--save", str(tmp_path / "straight")]) == 0
    straight_out = capsys.readouterr().out
    assert main([*common, "--stop-after", "10", "--save", str(tmp_path / "split")]) == 0
    first = capsys.readouterr().out
    assert len(epoch_losses(first)) == 10 and f"saved the model to {tmp_path / 'split.npz'}" in first
    assert first.splitlines()[9].split()[1] == "10/20"  # the run's length, not where it stops
    assert checkpoint.read(tmp_path / "split", "test").extra["epoch"] == 10
    assert main(["--resume", str(tmp_path / "split"), "--workers", "0"]) == 0
    second = capsys.readouterr().out
    assert [line.split()[1] for line in second.splitlines()[:2]] == ["11/20", "12/20"]
    straight, resumed = run_params(tmp_path / "straight.npz"), run_params(tmp_path / "split.npz")
    assert straight.keys() == resumed.keys()
    assert all(np.array_equal(straight[name], resumed[name]) for name in straight)
    assert epoch_losses(first) + epoch_losses(second) == epoch_losses(straight_out)
    assert last_accuracy(second) == last_accuracy(straight_out)


def test_a_real_ctrl_c_then_resume_ends_where_an_uninterrupted_run_ends(tmp_path):
    # 100 short epochs (about 20 ms each): the interrupt sent after the third must land before the
    # run ends even when this process waits for a core (with 12, a loaded machine let the child
    # finish first now and then)
    command = [sys.executable, "-m", "corgi.train", *DIGITS, "--epochs", "100", "--max-steps", "40",
               "--workers", "0"]
    straight = subprocess.run([*command, "--save", str(tmp_path / "straight")], cwd=ROOT, capture_output=True,
                              text=True, timeout=120, check=True)
    job = subprocess.Popen([*command, "--save", str(tmp_path / "cut")], cwd=ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        for _ in range(3):  # interrupt somewhere in the fourth epoch or later
            assert job.stdout.readline().startswith("epoch")
        job.send_signal(signal.SIGINT)
        _, errors = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 130, errors
    assert f"corgi-train: interrupted; resume with --resume {tmp_path / 'cut.npz'}" in errors
    assert "Traceback" not in errors
    done = checkpoint.read(tmp_path / "cut", "test").extra["epoch"]
    assert 3 <= done < 100
    resumed = subprocess.run([sys.executable, "-m", "corgi.train", "--resume", str(tmp_path / "cut"),
                              "--workers", "0"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    assert resumed.stdout.splitlines()[0].split()[1] == f"{done + 1}/100"
    a, b = run_params(tmp_path / "straight.npz"), run_params(tmp_path / "cut.npz")
    assert all(np.array_equal(a[name], b[name]) for name in a)
    assert resumed.stdout.splitlines()[-1] == straight.stdout.splitlines()[-1]


def test_resume_keeps_the_runs_settings(tmp_path, capsys):
    main([*DIGITS, "--epochs", "3", "--stop-after", "1", "--max-steps", "2", "--save", str(tmp_path / "run")])
    capsys.readouterr()
    for argv, message in (
        (["--model", "cnn"], "--model cnn differs from the resumed run's mlp; a resumed run keeps its settings"),
        (["--lr", "0.1"], "--lr 0.1 differs from the resumed run's 0.3"),
        (["--dataset", "mnist"], "--dataset mnist differs from the resumed run's digits"),
    ):
        with pytest.raises(SystemExit) as exit:
            main(["--resume", str(tmp_path / "run"), *argv])
        assert exit.value.code == 2 and message in capsys.readouterr().err
    # options equal to the run's own are fine, and --epochs may change the plan (the schedule says so)
    assert main(["--resume", str(tmp_path / "run"), "--lr", "0.3", "--epochs", "4", "--save", str(tmp_path / "more")]) == 0
    captured = capsys.readouterr()
    assert "the run now has 4 epochs (it had 3)" in captured.err
    assert [line.split()[1] for line in captured.out.splitlines()[:3]] == ["2/4", "3/4", "4/4"]
    assert checkpoint.read(tmp_path / "more", "test").extra["epoch"] == 4


def test_resume_refuses_what_is_not_a_training_checkpoint(tmp_path, capsys):
    model = build_model("mlp", (8, 8), 10, GradientDescent(0.1), rng=0)
    model.save(tmp_path / "plain")
    for path, message in ((tmp_path / "plain", "is a checkpoint, but not of a corgi-train run"),
                          (tmp_path / "missing", "no checkpoint file")):
        with pytest.raises(SystemExit) as exit:
            main(["--resume", str(path)])
        assert exit.value.code == 2 and message in capsys.readouterr().err


# -- options --------------------------------------------------------------------------------


def test_plot_writes_a_png(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="--plot draws with matplotlib")
    path = tmp_path / "curves.png"
    main([*DIGITS, "--epochs", "2", "--max-steps", "3", "--plot", str(path)])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_is_a_clear_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    with pytest.raises(SystemExit) as exit:
        main(["--plot", str(tmp_path / "curves.png")])
    assert exit.value.code == 2
    assert "--plot needs matplotlib, which is not installed" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--epochs", "0"], "expected a whole number >= 1, got '0'"),
        (["--batch-size", "many"], "expected a whole number >= 1, got 'many'"),
        (["--lr", "-1"], "expected a positive number, got '-1'"),
        (["--lr", "nan"], "expected a positive number, got 'nan'"),
        (["--model", "rnn"], "invalid choice: 'rnn'"),
        (["--optimizer", "sgd"], "invalid choice: 'sgd'"),
        (["--workers", "-2"], "expected a whole number >= 0, got '-2'"),
        (["--blas-threads", "0"], "expected a whole number >= 1, got '0'"),
        (["--dropout", "1"], "expected a number in [0, 1), got '1'"),
        (["--dtype", "float16"], "invalid choice: 'float16'"),
        (["--data", "/nonexistent/mnist"], "MNIST directory not found: /nonexistent/mnist"),
        (["--data", "/tmp", "--dataset", "digits"], "--data reads MNIST IDX files; it does not go with --dataset digits"),
        (["--save", "/nonexistent/dir/model.npz"], "--save: the folder /nonexistent/dir does not exist"),
        (["--save", "/nonexistent/dir/"], "--save: the folder /nonexistent/dir does not exist"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exit:
        main(argv)
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("usage: corgi-train")


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def test_data_reads_mnist_idx_files(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 40), ("t10k", 10)):
        labels = rng.integers(0, 10, size=n)
        images = np.zeros((n, 28, 28))
        for i, label in enumerate(labels):  # a bright bar whose row is the label: learnable
            images[i, 2 * label + 2 : 2 * label + 4, 4:24] = 255
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", labels)
    for model in ("mlp", "cnn"):
        assert main(["--data", str(tmp_path), "--model", model, "--epochs", "2", "--batch-size", "8"]) == 0
        last_accuracy(capsys.readouterr().out)


def test_blas_threads_are_set_after_numpy_loaded(capsys):
    from corgi.train import blas_threads, set_blas_threads

    if blas_threads() is None:
        pytest.skip("this numpy's BLAS cannot be asked for its thread count")
    before = blas_threads()
    try:
        for count in (2, 1):
            assert set_blas_threads(count).startswith(f"BLAS threads: {count} (")
            assert blas_threads() == count
        main([*DIGITS, "--epochs", "1", "--max-steps", "1", "--blas-threads", "2"])
        assert blas_threads() == 2
    finally:
        set_blas_threads(before)


def test_blas_threads_degrade_gracefully_without_a_library(monkeypatch, capsys):
    from corgi.train import blas, set_blas_threads

    monkeypatch.setitem(sys.modules, "threadpoolctl", None)
    monkeypatch.setattr(blas, "_openblas_libraries", lambda: iter(()))
    said = set_blas_threads(1)
    assert said.startswith("could not set the BLAS threads") and "OPENBLAS_NUM_THREADS" in said
    assert blas.blas_threads() is None
    assert main([*DIGITS, "--epochs", "1", "--max-steps", "1"]) == 0
    assert "corgi-train: could not set the BLAS threads" in capsys.readouterr().err


# -- the loop as a library --------------------------------------------------------------------


def test_fit_with_a_schedule_and_resuming_by_hand():
    data = load_digits()
    rates = []

    class Recording(Momentum):
        def update(self, parameters):
            rates.append(self.learning_rate)
            return super().update(parameters)

    def make():
        return build_model("mlp", data.image_shape, 10, Recording(0.05), rng=1, dropout=0.2)

    lines = []
    model, rng = make(), np.random.default_rng(2)
    history = fit(model, data, epochs=4, batch_size=64, rng=rng, schedule=Cosine(0.05, total=4), max_steps=3,
                  report=lines.append)
    assert len(history.losses) == len(history.accuracies) == len(history.seconds) == len(lines) == 4
    assert rates == pytest.approx([Cosine(0.05, total=4)(epoch) for epoch in range(4) for _ in range(3)])
    # stop after two epochs, save everything, continue in a fresh model: the same as straight through
    half, rng, shown = make(), np.random.default_rng(2), []
    fit(half, data, epochs=4, batch_size=64, rng=rng, schedule=Cosine(0.05, total=4), end_epoch=2, max_steps=3,
        report=shown.append)
    assert [line.split()[1] for line in shown] == ["1/4", "2/4"]
    buffer = io.BytesIO()
    state = rng.bit_generator.state
    arrays, meta = checkpoint.encode(half, {})
    np.savez(buffer, **arrays)
    other, again = make(), np.random.default_rng(99)
    checkpoint.restore(other, checkpoint.Checkpoint(Path("x.npz"), arrays, {**meta, "format": "corgi checkpoint",
                                                                            "version": 1}), True, "test")()
    again.bit_generator.state = state
    rest = fit(other, data, epochs=4, batch_size=64, rng=again, schedule=Cosine(0.05, total=4), start_epoch=2,
               max_steps=3, report=lambda line: None)
    assert len(rest.losses) == 2 and rest.losses == history.losses[2:]
    assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(other.parameters(), model.parameters()))


def test_fit_checks_its_arguments():
    data = load_digits()
    model = build_model("mlp", data.image_shape, 10, GradientDescent(0.5), rng=0)
    with pytest.raises(TypeError, match="fit: rng must be a numpy Generator, got int"):
        fit(model, data, 1, 32, rng=0)
    with pytest.raises(ValueError, match="fit: batch_size must be a whole number >= 1, got 0"):
        fit(model, data, 1, 0, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="fit: a schedule needs a model with an optimizer"):
        fit(Model(model.layers), data, 1, 32, np.random.default_rng(0), schedule=Constant(0.1))
    history = fit(model, data, 1, 32, np.random.default_rng(0), max_steps=1, report=lambda line: None)
    assert model.optimizer.learning_rate == 0.5 and isinstance(history, History)


def test_the_loop_learns_the_input_shape_from_the_model():
    data = load_mnist10k()
    cnn = build_model("cnn", data.image_shape, 10, GradientDescent(0.1), rng=0)
    assert examples(data.test_images[:3], data.image_shape, cnn).shape == (3, 1, 28, 28)
    mlp = build_model("mlp", data.image_shape, 10, GradientDescent(0.1), rng=0, dtype="float32")
    shaped = examples(data.test_images[:3].reshape(3, 28, 28), data.image_shape, mlp)
    assert shaped.shape == (3, 784) and shaped.dtype == np.float32
    # a model whose first layer takes any shape gets the images as they are
    free = Model([Flatten(), Dense(784, 10, make_he(rng=0))])
    assert examples(data.test_images[:3], data.image_shape, free).shape == (3, 784)


def test_build_model_networks():
    cnn = build_model("cnn", (28, 28), 10, GradientDescent(0.1), rng=0)
    assert [type(layer) for layer in cnn.layers] == [Conv, Pool, Conv, Pool, Flatten, Dense, Dense]
    small = build_model("cnn", (8, 8), 10, GradientDescent(0.1), rng=0, dropout=0.5)
    assert repr(small.layers) == ("[Conv((16, 1, 3, 3), (1, 1), activation=relu), Pool((2, 2), (2, 2)), Flatten(), "
                                  "Dense(144, 64, activation=relu), Dropout(0.5), Dense(64, 10, activation=softmax)]")
    assert isinstance(small.layers[4], Dropout)
    with pytest.raises(ValueError, match="kind must be 'mlp' or 'cnn'"):
        build_model("rnn", (8, 8), 10, GradientDescent(0.1))
    with pytest.raises(ValueError, match="images of \\(3, 3\\) are too small"):
        build_model("cnn", (3, 3), 10, GradientDescent(0.1))
    a = build_model("mlp", (8, 8), 10, GradientDescent(0.1), rng=np.random.default_rng(5))
    b = build_model("mlp", (8, 8), 10, GradientDescent(0.1), rng=np.random.default_rng(5))
    assert all(x == y for x, y in zip(a.parameters(), b.parameters()))


# -- the display and the program --------------------------------------------------------------


def test_plain_progress_bar_without_tqdm(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    assert isinstance(make_progress(3, "epoch 1/1"), ProgressBar)
    stream = io.StringIO()
    bar = ProgressBar(2, "epoch 1/2", stream, force=True)
    bar.update(0.25)
    assert stream.getvalue() == "\repoch 1/2 [###############---------------] 1/2 loss 0.2500"
    silent = io.StringIO()
    ProgressBar(2, "x", silent).update(1.0)  # not a terminal: nothing drawn
    assert silent.getvalue() == ""


def test_module_runs_as_a_program():
    result = subprocess.run(
        [sys.executable, "-m", "corgi.train", "--epochs", "1", "--max-steps", "3"],
        capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    last_accuracy(result.stdout)
    bad = subprocess.run([sys.executable, "-m", "corgi.train", "--epochs", "x"], capture_output=True,
                         text=True, cwd=ROOT, timeout=60, check=False)
    assert bad.returncode == 2 and "--epochs" in bad.stderr


def test_a_reader_that_stops_early_gets_no_traceback():
    # `python -m corgi.train | head -1`: the job stops quietly when its reader goes away
    job = subprocess.Popen(
        [sys.executable, "-m", "corgi.train", *DIGITS, "--epochs", "30"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},  # a line per epoch, as on a terminal
    )
    first = job.stdout.readline()
    job.stdout.close()
    _, errors = job.communicate(timeout=60)
    assert first.startswith(b"epoch")
    assert b"Traceback" not in errors and b"BrokenPipeError" not in errors
    # 1 when a later epoch's line met the closed pipe (all but certain with 29 to go)
    assert job.returncode in (0, 1)


def test_blas_threads_go_through_threadpoolctl_when_it_is_installed(monkeypatch):
    # a stand-in module with threadpoolctl's two functions: the calls corgi makes, and what it reports
    import types

    from corgi.train import blas

    calls = []
    fake = types.ModuleType("threadpoolctl")
    fake.threadpool_limits = lambda limits, user_api: calls.append((limits, user_api)) or object()
    fake.threadpool_info = lambda: [{"user_api": "openmp", "num_threads": 8},
                                    {"user_api": "blas", "num_threads": 3}]
    monkeypatch.setitem(sys.modules, "threadpoolctl", fake)
    assert blas.set_blas_threads(3) == "BLAS threads: 3 (threadpoolctl)"
    assert calls == [(3, "blas")] and blas.blas_threads() == 3
    with pytest.raises(ValueError, match="set_blas_threads: count must be a whole number >= 1, got 0"):
        blas.set_blas_threads(0)


def test_resuming_a_finished_run_trains_nothing_and_keeps_its_epoch(tmp_path, capsys):
    main([*DIGITS, "--epochs", "2", "--max-steps", "2", "--save", str(tmp_path / "done")])
    capsys.readouterr()
    assert main(["--resume", str(tmp_path / "done"), "--stop-after", "1", "--save", str(tmp_path / "copy")]) == 0
    captured = capsys.readouterr()
    assert "has finished 2 of 2 epochs; nothing to train" in captured.err
    assert not any(line.startswith("epoch") for line in captured.out.splitlines())
    assert checkpoint.read(tmp_path / "copy", "test").extra["epoch"] == 2
    assert run_params(tmp_path / "copy.npz").keys() == run_params(tmp_path / "done.npz").keys()
