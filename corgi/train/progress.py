"""The progress display of a training run: tqdm when installed, else a plain bar."""

from __future__ import annotations

import sys
from typing import Protocol, TextIO, runtime_checkable


@runtime_checkable
class Progress(Protocol):
    """What the training loop needs of a progress display: ``update`` per batch, ``close`` per epoch.

    >>> isinstance(ProgressBar(1, "epoch 1/1"), Progress)
    True
    """

    def update(self, loss: float) -> None:
        """One batch is done; its loss was ``loss``.

        >>> ProgressBar(2, "epoch 1/1").update(0.5)
        """

    def close(self) -> None:
        """The epoch is done.

        >>> ProgressBar(2, "epoch 1/1").close()
        """


class ProgressBar:
    """A plain progress bar on ``stream``, redrawn in place; silent when ``stream`` is not a terminal.

    >>> import io
    >>> stream = io.StringIO()
    >>> bar = ProgressBar(4, "epoch 1/1", stream, force=True)
    >>> for _ in range(4):
    ...     bar.update(0.5)
    >>> bar.close()
    >>> stream.getvalue().splitlines()[-1].split("\\r")[-1]
    'epoch 1/1 [##############################] 4/4 loss 0.5000'
    """

    WIDTH = 30

    def __init__(self, total: int, description: str, stream: TextIO | None = None, force: bool = False) -> None:
        self.total, self.description = total, description
        self.stream = sys.stderr if stream is None else stream
        self.count = 0
        self.active = force or (hasattr(self.stream, "isatty") and self.stream.isatty())

    def update(self, loss: float) -> None:
        """Advance by one batch whose loss was ``loss``.

        >>> import io
        >>> stream = io.StringIO()
        >>> bar = ProgressBar(2, "epoch 1/3", stream, force=True)
        >>> bar.update(0.25)
        >>> stream.getvalue()
        '\\repoch 1/3 [###############---------------] 1/2 loss 0.2500'
        >>> quiet = io.StringIO()                  # not a terminal: counts, draws nothing
        >>> bar = ProgressBar(2, "epoch 1/3", quiet)
        >>> bar.update(0.25)
        >>> bar.count, quiet.getvalue()
        (1, '')
        """
        self.count += 1
        if self.active:
            filled = self.WIDTH * self.count // max(self.total, 1)
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            self.stream.write(f"\r{self.description} [{bar}] {self.count}/{self.total} loss {loss:.4f}")
            self.stream.flush()

    def close(self) -> None:
        """End the bar's line.

        >>> import io
        >>> stream = io.StringIO()
        >>> bar = ProgressBar(1, "epoch 1/1", stream, force=True)
        >>> bar.update(0.5)
        >>> bar.close()
        >>> stream.getvalue().endswith("1/1 loss 0.5000\\n")
        True
        """
        if self.active:
            self.stream.write("\n")
            self.stream.flush()


class _TqdmBar:
    def __init__(self, total: int, description: str) -> None:
        from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]

        self.bar = tqdm(total=total, desc=description, unit="batch", leave=False, file=sys.stderr)

    def update(self, loss: float) -> None:
        self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def make_progress(total: int, description: str) -> Progress:
    """A tqdm progress bar on stderr when tqdm is installed, else a ``ProgressBar``.

    >>> bar = make_progress(3, "epoch 1/1")
    >>> bar.update(0.1); bar.close()
    """
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return ProgressBar(total, description)
    return _TqdmBar(total, description)
