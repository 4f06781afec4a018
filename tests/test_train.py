"""The main job: python -m corgi.train (SPEC section 7)."""

import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from corgi import engine
from corgi.datasets import load_digits
from corgi.model import Model
from corgi.optimizer import GradientDescent
from corgi.train import ProgressBar, build_model, main, make_progress, train

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def keep_engine_settings():
    before = engine.settings()
    yield
    engine.configure(workers=before.workers, handoff_cost=before.handoff_cost)


def epoch_losses(out: str) -> list[float]:
    return [float(line.split("loss ")[1].split()[0]) for line in out.splitlines() if line.startswith("epoch")]


def test_main_runs_a_few_steps_and_the_loss_falls(capsys):
    assert main(["--epochs", "3", "--max-steps", "15", "--workers", "0"]) == 0
    out = capsys.readouterr().out
    losses = epoch_losses(out)
    assert len(losses) == 3 and losses[2] < losses[0]
    last = out.strip().splitlines()[-1]
    assert last.startswith("held-out accuracy: 0.") and len(last.split(": ")[1]) == 6


def test_main_cnn_and_every_optimizer(capsys):
    for optimizer in ("gd", "momentum", "adam"):
        assert main(["--model", "cnn", "--optimizer", optimizer, "--epochs", "2", "--max-steps", "10"]) == 0
        losses = epoch_losses(capsys.readouterr().out)
        assert losses[1] < losses[0]


def test_seed_reproduces_a_run(capsys):
    runs = []
    for _ in range(2):
        main(["--epochs", "1", "--max-steps", "5", "--seed", "3", "--workers", "0"])
        runs.append(epoch_losses(capsys.readouterr().out))
    main(["--epochs", "1", "--max-steps", "5", "--seed", "4", "--workers", "0"])
    assert runs[0] == runs[1] != epoch_losses(capsys.readouterr().out)


def test_workers_option_configures_the_engine(capsys):
    main(["--epochs", "1", "--max-steps", "2", "--workers", "1"])
    assert engine.settings().workers == 1


def test_save_writes_a_loadable_model(tmp_path, capsys):
    path = tmp_path / "digits.npz"
    main(["--epochs", "1", "--max-steps", "5", "--save", str(path)])
    out = capsys.readouterr().out
    assert f"saved the model to {path}" in out and out.strip().splitlines()[-1].startswith("held-out accuracy")
    data = load_digits()
    model = build_model("mlp", data.image_shape, 10, GradientDescent(0.1)).load(path)
    accuracy = float(out.strip().splitlines()[-1].split(": ")[1])
    assert model.accuracy(data.test_images, data.test_labels) == pytest.approx(accuracy, abs=1e-4)


def test_plot_writes_a_png(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="--plot draws with matplotlib")
    path = tmp_path / "curves.png"
    main(["--epochs", "2", "--max-steps", "3", "--plot", str(path)])
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
        (["--data", "/nonexistent/mnist"], "MNIST directory not found: /nonexistent/mnist"),
        (["--save", "/nonexistent/dir/model.npz"], "--save: the folder /nonexistent/dir does not exist"),
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
        out = capsys.readouterr().out
        assert out.strip().splitlines()[-1].startswith("held-out accuracy: ")


def test_train_function_and_schedules():
    data = load_digits()
    rng = np.random.default_rng(0)
    model = build_model("mlp", data.image_shape, 10, GradientDescent(0.5), rng)
    lines = []
    history = train(model, data, epochs=2, batch_size=64, rng=rng, schedule="constant", max_steps=5,
                    report=lines.append)
    assert len(history.losses) == len(history.accuracies) == len(history.seconds) == len(lines) == 2
    assert model.optimizer.learning_rate == 0.5
    with pytest.raises(ValueError, match="schedule must be"):
        train(model, data, 1, 32, rng, schedule="step")
    with pytest.raises(ValueError, match="kind must be 'mlp' or 'cnn'"):
        build_model("rnn", (8, 8), 10, GradientDescent(0.1))
    assert isinstance(build_model("cnn", (28, 28), 10, GradientDescent(0.1)), Model)


def test_plain_progress_bar_without_tqdm(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    assert isinstance(make_progress(3, "epoch 1/1"), ProgressBar)
    import io

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
        capture_output=True, text=True, cwd=Path(__file__).parents[1], timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("held-out accuracy: 0.")
    bad = subprocess.run([sys.executable, "-m", "corgi.train", "--epochs", "x"], capture_output=True,
                         text=True, cwd=Path(__file__).parents[1], timeout=60)
    assert bad.returncode == 2 and "--epochs" in bad.stderr


def test_a_reader_that_stops_early_gets_no_traceback():
    # `python -m corgi.train | head -1`: the job stops quietly when its reader goes away
    job = subprocess.Popen(
        [sys.executable, "-m", "corgi.train", "--epochs", "30"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=Path(__file__).parents[1],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},  # a line per epoch, as on a terminal
    )
    first = job.stdout.readline()
    job.stdout.close()
    _, errors = job.communicate(timeout=60)
    assert first.startswith(b"epoch")
    assert b"Traceback" not in errors and b"BrokenPipeError" not in errors
    # 1 when a later epoch's line met the closed pipe (all but certain with 29 to go)
    assert job.returncode in (0, 1)


def test_he_used_by_build_model_is_seeded():
    data = load_digits()
    a = build_model("mlp", data.image_shape, 10, GradientDescent(0.1), np.random.default_rng(5))
    b = build_model("mlp", data.image_shape, 10, GradientDescent(0.1), np.random.default_rng(5))
    assert all(x == y for x, y in zip(a.parameters(), b.parameters()))
