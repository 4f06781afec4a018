"""The communicator: mpi4py's, imported only when asked for, or a one-process stand-in.

corgi.distributed uses a small set of collective operations. ``Transport``
is that set; ``_MPITransport`` forwards it to an mpi4py communicator, and
``LocalComm`` implements it for a single process without MPI (examples,
tests, and a data-parallel script run as a plain single process).

mpi4py is imported here and nowhere else, and only when a communicator is
needed, so ``import corgi`` and ``import corgi.distributed`` never load MPI.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Protocol

import numpy as np

EXTRA = "mpi"
# seconds between a failed rank's error report and its Abort (see install_abort_hook)
ABORT_GRACE = 0.05


class Request(Protocol):
    """A started non-blocking operation."""

    def Wait(self) -> Any: ...


class Transport(Protocol):
    """The collective operations corgi.distributed needs (mpi4py's names and argument order)."""

    rank: int
    size: int
    # whether any thread may make MPI calls (one at a time), or only the thread that initialised MPI
    any_thread: bool

    def allgather(self, value: Any) -> list[Any]: ...

    def bcast(self, value: Any, root: int = 0) -> Any: ...

    def Allreduce(self, send: np.ndarray, receive: np.ndarray) -> None: ...

    def Bcast(self, buffer: np.ndarray, root: int = 0) -> None: ...

    def Iallreduce(self, send: np.ndarray, receive: np.ndarray) -> Request: ...

    def Ireduce(self, send: np.ndarray, receive: np.ndarray | None, root: int = 0) -> Request: ...

    def Ibcast(self, buffer: np.ndarray, root: int = 0) -> Request: ...

    def waitall(self, requests: Sequence[Request]) -> None: ...

    def Abort(self, code: int = 1) -> None: ...


def _distribution() -> str:
    """The name to ``pip install`` corgi under (the source tree's name if it is not installed)."""
    try:
        from importlib.metadata import packages_distributions

        names = packages_distributions().get("corgi")
    except Exception:  # noqa: BLE001 - metadata only improves the message; it must never hide the real error
        names = None
    return names[0] if names else "corgi"


def _import_mpi() -> Any:
    """mpi4py's ``MPI`` module, or a ModuleNotFoundError that says which extra to install."""
    try:
        from mpi4py import MPI
    except ImportError as error:
        raise ModuleNotFoundError(
            f"corgi.distributed needs mpi4py and an MPI library: pip install '{_distribution()}[{EXTRA}]' "
            f"(mpi4py and the mpich wheel), or pass comm=LocalComm() for a single process ({error})",
            name="mpi4py",
        ) from error
    return MPI


class _Done:
    """The request of an operation that finished when it started."""

    def Wait(self) -> None:
        return None


class LocalComm:
    """A communicator of one process that needs no MPI: rank 0 of 1.

    Every collective operation is the identity (a reduction copies its input),
    so a data-parallel script runs unchanged in a single process.

    >>> comm = LocalComm()
    >>> comm.rank, comm.size, comm.allgather("x"), comm.bcast(3)
    (0, 1, ['x'], 3)
    >>> received = np.empty(2)
    >>> comm.waitall([comm.Iallreduce(np.array([1.0, 2.0]), received)])
    >>> received.tolist()
    [1.0, 2.0]
    """

    rank = 0
    size = 1
    any_thread = True

    def __repr__(self) -> str:
        return "LocalComm()"

    def allgather(self, value: Any) -> list[Any]:
        """``[value]``: what every rank passed, in rank order.

        >>> LocalComm().allgather({"a": 1})
        [{'a': 1}]
        """
        return [value]

    def bcast(self, value: Any, root: int = 0) -> Any:
        """``value``, as rank ``root`` sent it.

        >>> LocalComm().bcast("hello")
        'hello'
        """
        _check_root(root)
        return value

    def Allreduce(self, send: np.ndarray, receive: np.ndarray) -> None:
        """Copies ``send`` into ``receive`` (the sum over one rank).

        >>> out = np.empty(1)
        >>> LocalComm().Allreduce(np.array([2.5]), out)
        >>> out.tolist()
        [2.5]
        """
        np.copyto(receive, send.reshape(receive.shape))

    def Bcast(self, buffer: np.ndarray, root: int = 0) -> None:
        """Leaves ``buffer`` as it is (rank ``root`` already holds it).

        >>> LocalComm().Bcast(np.zeros(3))
        """
        _check_root(root)

    def Iallreduce(self, send: np.ndarray, receive: np.ndarray) -> Request:
        """``Allreduce``, returning a finished request.

        >>> out = np.empty(1)
        >>> LocalComm().Iallreduce(np.array([4.0]), out).Wait()
        >>> out.tolist()
        [4.0]
        """
        self.Allreduce(send, receive)
        return _Done()

    def Ireduce(self, send: np.ndarray, receive: np.ndarray | None, root: int = 0) -> Request:
        """The sum over one rank, into ``receive`` on rank ``root``; a finished request.

        >>> out = np.empty(1)
        >>> LocalComm().Ireduce(np.array([4.0]), out).Wait()
        >>> out.tolist()
        [4.0]
        """
        _check_root(root)
        if receive is not None:
            self.Allreduce(send, receive)
        return _Done()

    def Ibcast(self, buffer: np.ndarray, root: int = 0) -> Request:
        """``Bcast``, returning a finished request.

        >>> LocalComm().Ibcast(np.zeros(2)).Wait()
        """
        _check_root(root)
        return _Done()

    def waitall(self, requests: Sequence[Request]) -> None:
        """Wait for every request (they are all finished).

        >>> LocalComm().waitall([])
        """
        for request in requests:
            request.Wait()

    def Abort(self, code: int = 1) -> None:
        """Nothing to abort: the only process ends by itself when its error reaches the top.

        >>> LocalComm().Abort(1)
        """


def _check_root(root: int) -> None:
    if root != 0:
        raise ValueError(f"LocalComm: root must be 0, the only rank, got {root!r}")


class _MPITransport:
    """corgi.distributed's collective operations on an mpi4py communicator (``Transport``)."""

    def __init__(self, comm: Any) -> None:
        for method in ("Get_rank", "Get_size", "Iallreduce", "Ireduce", "Ibcast", "allgather", "bcast", "Abort"):
            if not callable(getattr(comm, method, None)):
                raise TypeError(
                    f"corgi.distributed: comm must be an mpi4py communicator or LocalComm(), "
                    f"got {type(comm).__name__} (it has no {method}())"
                )
        self.comm = comm
        self.rank: int = comm.Get_rank()
        self.size: int = comm.Get_size()
        MPI = _import_mpi()
        # mpi4py asks for MPI_THREAD_MULTIPLE; an MPI built without threads may give less
        self.any_thread: bool = MPI.Query_thread() >= MPI.THREAD_SERIALIZED
        self._waitall = MPI.Request.Waitall

    def __repr__(self) -> str:
        return f"MPITransport(rank {self.rank} of {self.size})"

    def allgather(self, value: Any) -> list[Any]:
        return list(self.comm.allgather(value))

    def bcast(self, value: Any, root: int = 0) -> Any:
        return self.comm.bcast(value, root=root)

    def Allreduce(self, send: np.ndarray, receive: np.ndarray) -> None:
        self.comm.Allreduce(send, receive)

    def Bcast(self, buffer: np.ndarray, root: int = 0) -> None:
        self.comm.Bcast(buffer, root=root)

    def Iallreduce(self, send: np.ndarray, receive: np.ndarray) -> Request:
        request: Request = self.comm.Iallreduce(send, receive)
        return request

    def Ireduce(self, send: np.ndarray, receive: np.ndarray | None, root: int = 0) -> Request:
        request: Request = self.comm.Ireduce(send, receive, root=root)
        return request

    def Ibcast(self, buffer: np.ndarray, root: int = 0) -> Request:
        request: Request = self.comm.Ibcast(buffer, root=root)
        return request

    def waitall(self, requests: Sequence[Request]) -> None:
        # MPI progresses all of them together, which waiting one by one would not
        if requests:
            self._waitall(list(requests))

    def Abort(self, code: int = 1) -> None:
        self.comm.Abort(code)


# an mpi4py communicator, a LocalComm, or None for MPI.COMM_WORLD (mpi4py is not imported to name its type)
Comm = Any


def transport(comm: Comm = None) -> Transport:
    """The Transport for ``comm``: an mpi4py communicator, a ``LocalComm``, or None for ``MPI.COMM_WORLD``.

    >>> transport(LocalComm()).size
    1
    >>> transport("world")
    Traceback (most recent call last):
    ...
    TypeError: corgi.distributed: comm must be an mpi4py communicator or LocalComm(), got str (it has no Get_rank())
    """
    if isinstance(comm, (LocalComm, _MPITransport)):
        return comm
    if comm is None:
        comm = _import_mpi().COMM_WORLD
    return _MPITransport(comm)


_HOOKED = "_corgi_aborts_on_error"


def install_abort_hook(comm: Comm = None) -> bool:
    """Make an uncaught exception on this rank end every rank of ``comm`` at once.

    Without it, a rank that raises exits while the others wait forever in
    their next collective operation (``python -m mpi4py script.py`` does the
    same for the whole script; a plain ``python script.py`` under
    ``mpiexec`` does not). The hook prints the traceback as usual, then calls
    ``Abort``. Installing it twice does nothing; on a single process it is
    not installed. Returns whether it is installed now.

    >>> install_abort_hook(LocalComm())
    False
    """
    link = transport(comm)
    if link.size <= 1:
        return False
    previous = sys.excepthook
    if getattr(previous, _HOOKED, False):
        return True

    def abort_on_error(kind: type[BaseException], error: BaseException, trace: TracebackType | None) -> None:
        try:
            if previous is sys.__excepthook__:
                # one write, so that mpiexec forwards the report whole, not cut off by the abort
                sys.stderr.write("".join(traceback.format_exception(kind, error, trace)))
            else:
                previous(kind, error, trace)
            sys.stderr.flush()
            # mpiexec's forwarding process reads this rank's stderr and handles the abort in one
            # loop: give it a moment to forward the report before the abort tears everything down
            time.sleep(ABORT_GRACE)
        finally:
            # 130 for Ctrl-C, as a shell reports SIGINT; 1 for any other error
            link.Abort(130 if issubclass(kind, KeyboardInterrupt) else 1)

    setattr(abort_on_error, _HOOKED, True)
    sys.excepthook = abort_on_error
    return True
