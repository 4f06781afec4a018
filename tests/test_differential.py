"""Differential testing against PyTorch: random programs over the whole operation set.

Each program draws a few tracked leaves of random shapes and a chain of random steps; a step
applies one operation (with random axes, keepdims, indices, masks, split points, exponents)
to earlier values whose shapes fit, broadcasting where the operation broadcasts. The same
program runs in corgi and in PyTorch (one backend adapter each); the values of every step
and the gradient of every leaf, for a random delta on a sum of the last values, are
compared. A step whose values leave [-20, 20] is dropped in both, so that saturating
functions (sigmoid's s (1 - s)) are compared where both libraries compute them accurately.

The suite runs ``PROGRAMS`` float64 programs and a quarter as many float32 ones; set
``CORGI_DIFFERENTIAL_PROGRAMS`` to run more (the issue's campaign ran 16,000). Optional:
it is skipped where PyTorch is not installed.
"""

from __future__ import annotations

import itertools
import os
import random
from typing import Any

import numpy as np
import pytest

import corgi
from corgi import Array

torch = pytest.importorskip("torch", reason="PyTorch is an optional oracle: pip install torch==2.13.0")
F = torch.nn.functional

pytestmark = pytest.mark.timeout(600)

PROGRAMS = int(os.environ.get("CORGI_DIFFERENTIAL_PROGRAMS", "200"))
LIMIT = 20.0


class CorgiBackend:
    """The operations a program uses, in corgi."""

    def leaf(self, values: np.ndarray) -> Any:
        return Array(values).tracked()

    def numpy(self, x: Any) -> np.ndarray:
        return x.numpy()

    def constant(self, values: np.ndarray, like: Any) -> Any:
        return Array(values.astype(like.dtype))

    def call(self, name: str, *args: Any, **params: Any) -> Any:
        x = args[0]
        if name == "binary":
            op, y = params["op"], args[1]
            return {"add": lambda: x + y, "sub": lambda: x - y, "mul": lambda: x * y, "div": lambda: x / y,
                    "maximum": lambda: corgi.maximum(x, y), "minimum": lambda: corgi.minimum(x, y),
                    "pow": lambda: abs(x) ** y, "axpy": lambda: Array.axpy(-0.5, x, y)}[op]()
        if name == "unary":
            return getattr(_Unary, params["op"])(x, corgi_mode=True)
        if name == "where":
            return corgi.where(params["mask"], x, args[1])
        if name == "clip":
            return x.clip(params["lo"], params["hi"])
        if name == "powf":
            return (abs(x) + 0.5).powf(params["exponent"])
        if name == "reduce":
            op, axis, keepdims = params["op"], params["axis"], params["keepdims"]
            if op in ("var", "std"):
                return getattr(x, op)(axis=axis, ddof=params["ddof"], keepdims=keepdims)
            if op == "sum":
                return x.sum(axis=axis, keepdims=keepdims)
            return getattr(x, op)(axis=axis, keepdims=keepdims)
        if name == "skip_sum":
            return x.sum(params["count"])
        if name == "transpose":
            return x.transpose(*params["perm"])
        if name == "T":
            return x.T
        if name == "swapaxes":
            return x.swapaxes(*params["axes"])
        if name == "squeeze":
            return x.squeeze(params["axis"])
        if name == "expand_dims":
            return x.expand_dims(params["axis"])
        if name == "flatten":
            return x.flatten()
        if name == "reshape":
            return x.reshape(params["shape"])
        if name == "broadcast_to":
            return x.broadcast_to(params["shape"])
        if name == "index":
            return x[params["index"]]
        if name == "concatenate":
            return corgi.concatenate(list(args), axis=params["axis"])
        if name == "stack":
            return corgi.stack(list(args), axis=params["axis"])
        if name == "split":
            return corgi.split(x, params["cuts"], axis=params["axis"])[params["piece"]]
        if name == "matmul":
            return x @ args[1]
        if name == "softmax":
            return x.softmax() if params["log"] is False else x.log_softmax()
        if name == "cross_entropy":
            return x.softmax_cross_entropy(args[1])
        if name == "astype":
            other = np.float32 if x.dtype == np.float64 else np.float64
            return x.astype(other).astype(x.dtype)
        if name == "conv":
            return x.conv(args[1], params["stride"])
        if name == "max_pool":
            return x.max_pool(params["pool"], params["stride"])
        if name == "stack_arr":
            return corgi.arr(*args)
        raise AssertionError(name)


class TorchBackend:
    """The same operations in PyTorch."""

    def leaf(self, values: np.ndarray) -> Any:
        return torch.tensor(values, requires_grad=True)

    def numpy(self, x: Any) -> np.ndarray:
        return x.detach().numpy()

    def constant(self, values: np.ndarray, like: Any) -> Any:
        return torch.tensor(values, dtype=like.dtype)

    def call(self, name: str, *args: Any, **params: Any) -> Any:
        out = self._call(name, *args, **params)
        return out.reshape(1) if out.dim() == 0 else out  # corgi has no 0-d arrays

    def _call(self, name: str, *args: Any, **params: Any) -> Any:
        x = args[0]
        if name == "binary":
            op, y = params["op"], args[1]
            return {"add": lambda: x + y, "sub": lambda: x - y, "mul": lambda: x * y, "div": lambda: x / y,
                    "maximum": lambda: torch.maximum(x, y), "minimum": lambda: torch.minimum(x, y),
                    "pow": lambda: torch.abs(x) ** y, "axpy": lambda: -0.5 * x + y}[op]()
        if name == "unary":
            return getattr(_Unary, params["op"])(x, corgi_mode=False)
        if name == "where":
            return torch.where(torch.tensor(params["mask"]), x, args[1])
        if name == "clip":
            return torch.clamp(x, params["lo"], params["hi"])
        if name == "powf":
            return (torch.abs(x) + 0.5) ** params["exponent"]
        if name == "reduce":
            op, axis, keepdims = params["op"], params["axis"], params["keepdims"]
            dims = tuple(range(x.dim())) if axis is None else axis
            if op == "sum":
                return x.sum(dim=dims, keepdim=keepdims)
            if op == "mean":
                return x.mean(dim=dims, keepdim=keepdims)
            if op in ("var", "std"):
                return getattr(torch, op)(x, dim=dims, correction=params["ddof"], keepdim=keepdims)
            if op == "max":
                return torch.amax(x, dim=dims, keepdim=keepdims)
            if op == "min":
                return torch.amin(x, dim=dims, keepdim=keepdims)
            if op == "logsumexp":
                return torch.logsumexp(x, dim=dims, keepdim=keepdims)
            if op == "prod":
                if axis is None:
                    out = torch.prod(x)
                    return out.reshape((1,) * x.dim()) if keepdims else out
                return torch.prod(x, dim=axis, keepdim=keepdims)
        if name == "skip_sum":
            count = params["count"]
            lead = tuple(x.shape[: x.dim() - count])
            return x.reshape(lead + (-1,)).sum(-1).reshape(lead + (1,)) if count else x
        if name == "transpose":
            return x.permute(*params["perm"])
        if name == "T":
            return x.permute(*reversed(range(x.dim())))
        if name == "swapaxes":
            return torch.swapaxes(x, *params["axes"])
        if name == "squeeze":
            return torch.squeeze(x, params["axis"]) if params["axis"] is not None else _squeeze_all(x)
        if name == "expand_dims":
            axis = params["axis"]
            for a in sorted(a % (x.dim() + len(axis)) for a in axis) if isinstance(axis, tuple) else [axis]:
                x = x.unsqueeze(a)
            return x
        if name == "flatten":
            return torch.flatten(x)
        if name == "reshape":
            return x.reshape(params["shape"])
        if name == "broadcast_to":
            return torch.broadcast_to(x, params["shape"])
        if name == "index":
            return x[_torch_index(params["index"])]
        if name == "concatenate":
            return torch.cat(list(args), dim=params["axis"])
        if name == "stack":
            return torch.stack(list(args), dim=params["axis"])
        if name == "split":
            size = x.shape[params["axis"]]
            bounds = [0, *params["cuts"], size]
            return torch.split(x, [b - a for a, b in itertools.pairwise(bounds)], dim=params["axis"])[params["piece"]]
        if name == "matmul":
            return x @ args[1]
        if name == "softmax":
            return torch.softmax(x, -1) if params["log"] is False else torch.log_softmax(x, -1)
        if name == "cross_entropy":
            batch = x.shape[0] if x.dim() >= 2 else 1
            return -(torch.log_softmax(x, -1) * args[1]).sum() / batch
        if name == "astype":
            other = torch.float32 if x.dtype == torch.float64 else torch.float64
            return x.to(other).to(x.dtype)
        if name == "conv":
            return F.conv2d(x, args[1], stride=params["stride"])
        if name == "max_pool":
            return F.max_pool2d(x, params["pool"], params["stride"])
        if name == "stack_arr":
            return torch.stack(list(args))
        raise AssertionError(name)


def _squeeze_all(x: Any) -> Any:
    out = torch.squeeze(x)
    return out.reshape(1) if out.dim() == 0 else out


def _torch_index(index: Any) -> Any:
    items = index if isinstance(index, tuple) else (index,)
    converted = tuple(torch.tensor(i) if isinstance(i, np.ndarray) else i for i in items)
    return converted if isinstance(index, tuple) else converted[0]


class _Unary:
    """Unary steps, written once for both backends; each keeps its operation's domain."""

    @staticmethod
    def _lib(corgi_mode: bool) -> Any:
        return None if corgi_mode else torch

    @staticmethod
    def exp(x, corgi_mode):
        return x.tanh().exp() if corgi_mode else torch.exp(torch.tanh(x))

    @staticmethod
    def ln(x, corgi_mode):
        return (x * x + 0.5).ln() if corgi_mode else torch.log(x * x + 0.5)

    @staticmethod
    def log(x, corgi_mode):
        return (abs(x) + 0.25).log() if corgi_mode else torch.log(torch.abs(x) + 0.25)

    @staticmethod
    def log1p(x, corgi_mode):
        return abs(x).log1p() if corgi_mode else torch.log1p(torch.abs(x))

    @staticmethod
    def expm1(x, corgi_mode):
        return x.tanh().expm1() if corgi_mode else torch.expm1(torch.tanh(x))

    @staticmethod
    def sqrt(x, corgi_mode):
        return (x * x + 0.1).sqrt() if corgi_mode else torch.sqrt(x * x + 0.1)

    @staticmethod
    def reciprocal(x, corgi_mode):
        return (x * x + 0.5).reciprocal() if corgi_mode else 1.0 / (x * x + 0.5)

    @staticmethod
    def neg(x, corgi_mode):
        return -x

    @staticmethod
    def abs(x, corgi_mode):
        return abs(x) if corgi_mode else torch.abs(x)

    @staticmethod
    def square(x, corgi_mode):
        return x.square() if corgi_mode else torch.square(x)

    @staticmethod
    def sin(x, corgi_mode):
        return x.sin() if corgi_mode else torch.sin(x)

    @staticmethod
    def cos(x, corgi_mode):
        return x.cos() if corgi_mode else torch.cos(x)

    @staticmethod
    def tanh(x, corgi_mode):
        return x.tanh() if corgi_mode else torch.tanh(x)

    @staticmethod
    def sigmoid(x, corgi_mode):
        return x.sigmoid() if corgi_mode else torch.sigmoid(x)

    @staticmethod
    def relu(x, corgi_mode):
        return x.relu() if corgi_mode else torch.relu(x)


UNARY = [name for name in vars(_Unary) if not name.startswith("_")]
REDUCTIONS = ["sum", "mean", "var", "std", "max", "min", "prod", "logsumexp"]
BINARY = ["add", "sub", "mul", "div", "maximum", "minimum", "pow", "axpy"]


def _broadcasts(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    try:
        np.broadcast_shapes(a, b)
    except ValueError:
        return False
    return True


def _random_shape(rng: random.Random, max_dims: int = 3) -> tuple[int, ...]:
    return tuple(rng.choice([1, 2, 3, 4]) for _ in range(rng.randint(1, max_dims)))


def _random_axis(rng: random.Random, ndim: int) -> Any:
    kind = rng.random()
    if kind < 0.25:
        return None
    if kind < 0.65:
        return rng.randrange(-ndim, ndim)
    axes = rng.sample(range(ndim), rng.randint(1, ndim))
    return tuple(a - ndim if rng.random() < 0.5 else a for a in axes)


def _random_index(rng: random.Random, shape: tuple[int, ...]) -> Any:
    """A numpy index both libraries read alike: positive-step slices, None, ..., one integer array or a mask."""
    kind = rng.random()
    if kind < 0.3:
        return np.array([rng.randrange(shape[0]) for _ in range(rng.randint(1, 5))])  # repeats likely
    if kind < 0.45:
        mask = np.array([rng.random() < 0.6 for _ in range(int(np.prod(shape)))]).reshape(shape)
        mask.reshape(-1)[rng.randrange(mask.size)] = True
        return mask
    items: list[Any] = []
    for size in shape:
        choice = rng.random()
        if choice < 0.4:
            start = rng.randrange(size)
            items.append(slice(start, rng.randint(start + 1, size), rng.choice([1, 1, 2])))
        elif choice < 0.6 and len(shape) > 1:
            items.append(rng.randrange(-size, size))
        else:
            items.append(slice(None))
    if rng.random() < 0.2:
        items.insert(rng.randrange(len(items) + 1), None)
    if rng.random() < 0.2 and len(items) > 1:
        items = [Ellipsis] + items[1:]
    index = tuple(items)
    if all(isinstance(i, int) for i in index):
        index = index + (Ellipsis,)
    return index


class Program:
    """A random program: leaves and steps, each step (operation, value positions, parameters)."""

    def __init__(self, seed: int, dtype: type) -> None:
        self.rng = random.Random(seed)
        self.np_rng = np.random.default_rng(seed)
        self.dtype = dtype
        self.leaves = [self.np_rng.uniform(-1.5, 1.5, _random_shape(self.rng)) for _ in range(self.rng.randint(1, 3))]
        self.initial = len(self.leaves)  # the first values; leaves drawn later are operands only
        self.steps: list[tuple[str, tuple[int, ...], dict[str, Any]]] = []

    def new_leaf(self, shape: tuple[int, ...]) -> int:
        self.leaves.append(self.np_rng.uniform(-1.0, 1.0, shape))
        return -len(self.leaves)  # leaves are referred to by negative positions

    def draw_step(self, shapes: list[tuple[int, ...]]) -> tuple[str, tuple[int, ...], dict[str, Any]]:
        rng = self.rng
        i = rng.randrange(len(shapes))
        shape = shapes[i]
        ndim = len(shape)
        pick = rng.random()
        if pick < 0.16:
            partners = [j for j, s in enumerate(shapes) if _broadcasts(shape, s)]
            return "binary", (i, rng.choice(partners)), {"op": rng.choice(BINARY)}
        if pick < 0.32:
            return "unary", (i,), {"op": rng.choice(UNARY)}
        if pick < 0.42:
            op = rng.choice(REDUCTIONS)
            axis = _random_axis(rng, ndim)
            if op == "prod" and isinstance(axis, tuple):
                axis = axis[0]
            params = {"op": op, "axis": axis, "keepdims": rng.random() < 0.4, "ddof": 0}
            count = int(np.prod([shape[a] for a in (range(ndim) if axis is None else np.atleast_1d(axis))]))
            if op in ("var", "std") and count > 1:
                params["ddof"] = rng.randint(0, 1)
            if op == "std" and count - params["ddof"] <= 1:
                params["op"] = "var" if count - params["ddof"] == 1 else "mean"  # std's pole at one value
            if params["op"] == "var" and count - params["ddof"] <= 0:
                params["op"] = "mean"
            return "reduce", (i,), params
        if pick < 0.45:
            return "skip_sum", (i,), {"count": rng.randint(0, ndim)}
        if pick < 0.56:
            return "index", (i,), {"index": _random_index(rng, shape)}
        if pick < 0.66:
            kind = rng.choice(["transpose", "T", "swapaxes", "squeeze", "expand_dims", "flatten", "reshape", "broadcast_to"])
            if kind == "transpose":
                return kind, (i,), {"perm": tuple(rng.sample(range(ndim), ndim))}
            if kind == "swapaxes":
                return kind, (i,), {"axes": (rng.randrange(-ndim, ndim), rng.randrange(-ndim, ndim))}
            if kind == "squeeze":
                ones = [a for a, s in enumerate(shape) if s == 1]
                return kind, (i,), {"axis": rng.choice(ones) if ones and rng.random() < 0.5 else None}
            if kind == "expand_dims":
                return kind, (i,), {"axis": rng.randrange(-ndim - 1, ndim + 1)}
            if kind == "reshape":
                size = int(np.prod(shape))
                factor = rng.choice([d for d in range(1, size + 1) if size % d == 0])
                return kind, (i,), {"shape": rng.choice([(-1,), (factor, -1), (-1, factor, 1)])}
            if kind == "broadcast_to":
                target = tuple(rng.choice([2, 3]) if s == 1 else s for s in shape)
                return kind, (i,), {"shape": ((rng.randint(1, 3),) if rng.random() < 0.5 else ()) + target}
            return kind, (i,), {}
        if pick < 0.72:
            axis = rng.randrange(-ndim, ndim)
            partners = [j for j, s in enumerate(shapes) if len(s) == ndim and all(
                a == b for k, (a, b) in enumerate(zip(s, shape)) if k != axis % ndim)]
            chosen = tuple(rng.choice(partners) for _ in range(rng.randint(1, 3)))
            return "concatenate", (i, *chosen), {"axis": axis}
        if pick < 0.76:
            same = [j for j, s in enumerate(shapes) if s == shape]
            chosen = (i, *(rng.choice(same) for _ in range(rng.randint(0, 2))))
            if rng.random() < 0.3:
                return "stack_arr", chosen, {}
            return "stack", chosen, {"axis": rng.randrange(-ndim - 1, ndim + 1)}
        if pick < 0.79:
            axis = rng.randrange(ndim)
            size = shape[axis]
            cuts = sorted(rng.sample(range(1, size), rng.randint(0, size - 1))) if size > 1 else []
            return "split", (i,), {"axis": axis, "cuts": cuts, "piece": rng.randrange(len(cuts) + 1)}
        if pick < 0.83:
            mask = np.array([rng.random() < 0.5 for _ in range(int(np.prod(shape)))]).reshape(shape)
            partners = [j for j, s in enumerate(shapes) if _broadcasts(shape, s)]
            return "where", (i, rng.choice(partners)), {"mask": mask}
        if pick < 0.86:
            lo = rng.uniform(-1.0, 0.5)
            return "clip", (i,), {"lo": lo, "hi": lo + rng.uniform(0.1, 1.5)}
        if pick < 0.88:
            return "powf", (i,), {"exponent": rng.choice([0.0, 0.5, 1.0, 2.0, 3.0, -1.0, 1.7])}
        if pick < 0.91:
            other = shape[:-2] + (shape[-1], rng.randint(1, 3)) if ndim >= 2 else (shape[-1], rng.randint(1, 3))
            return "matmul", (i, self.new_leaf(other)), {}
        if pick < 0.94:
            return "softmax", (i,), {"log": rng.random() < 0.5}
        if pick < 0.96:
            target = shape[:-1] + (1,) if rng.random() < 0.5 else shape
            j = self.new_leaf(target)
            return "cross_entropy", (i, j), {}
        if pick < 0.97:
            return "astype", (i,), {}
        if pick < 0.985:
            image = (rng.randint(1, 2), rng.randint(1, 2), rng.randint(3, 5), rng.randint(3, 5))
            filters = (rng.randint(1, 2), image[1], rng.randint(1, 3), rng.randint(1, 3))
            return "conv", (self.new_leaf(image), self.new_leaf(filters)), {"stride": (rng.randint(1, 2), rng.randint(1, 2))}
        image = (rng.randint(1, 2), rng.randint(3, 5), rng.randint(3, 5))
        pool = (rng.randint(1, 2), rng.randint(1, 2))
        return "max_pool", (self.new_leaf(image),), {"pool": pool, "stride": (rng.randint(1, 2), rng.randint(1, 2))}

    def run(self, backend: Any, plan: list | None = None) -> tuple[list[Any], list[Any], list]:
        """Run the program; with ``plan`` None, draw its steps (keeping those whose values stay bounded)."""
        drawing = plan is None
        leaves: list[Any] = []
        values: list[Any] = []

        def resolve(position: int) -> Any:
            if position < 0:
                while len(leaves) < -position:
                    leaves.append(backend.leaf(self.leaves[len(leaves)].astype(self.dtype)))
                return leaves[-position - 1]
            return values[position]

        values.extend(resolve(-(k + 1)) for k in range(self.initial))
        kept = []
        steps = plan if not drawing else [None] * self.rng.randint(4, 12)
        for step in steps:
            if drawing:
                shapes = [tuple(backend.numpy(v).shape) for v in values]
                step = self.draw_step(shapes)
            name, positions, params = step
            out = backend.call(name, *[resolve(p) for p in positions], **params)
            result = backend.numpy(out)
            if drawing and (not np.all(np.isfinite(result)) or np.abs(result).max() > LIMIT):
                continue
            values.append(out)
            kept.append(step)
        # the leaves drawn during the run, in the order they were made
        while len(leaves) < len(self.leaves):
            leaves.append(backend.leaf(self.leaves[len(leaves)].astype(self.dtype)))
        return values, leaves, kept


TOLERANCE = {np.float64: (1e-9, 1e-11), np.float32: (2e-3, 2e-4)}
NON_FINITE: list[int] = []  # programs whose PyTorch pass carried a non-finite delta somewhere


def _root(backend_values: list[Any], backend: Any, heads: int, rng: np.random.Generator, reduce: Any) -> tuple[Any, list]:
    """A delta-weighted sum of the last ``heads`` values (every value's delta random)."""
    deltas = [rng.uniform(-1.0, 1.0, backend.numpy(v).shape) for v in backend_values[-heads:]]
    return reduce(backend_values[-heads:], deltas), deltas


def run_differential(seed: int, dtype: type) -> str | None:
    """Run one program in both libraries; a description of the first mismatch, or None."""
    program = Program(seed, dtype)
    with np.errstate(all="ignore"):  # a step that overflows or divides by zero is dropped, not reported
        corgi_values, corgi_leaves, plan = program.run(CorgiBackend())
    torch_values, torch_leaves, _ = program.run(TorchBackend(), plan)
    rtol, atol = TOLERANCE[dtype]
    for k, (a, b) in enumerate(zip(corgi_values, torch_values)):
        got, expected = a.numpy(), b.detach().numpy()
        if got.shape != (expected.shape or (1,)) and got.shape != expected.shape:
            return f"step {k} ({_name(plan, k, corgi_values, corgi_leaves)}): dimensions {got.shape} vs torch {expected.shape}"
        scale = max(1.0, float(np.nanmax(np.abs(expected), initial=0.0)))
        if not np.allclose(got.reshape(-1), expected.reshape(-1), rtol=rtol, atol=atol * scale, equal_nan=True):
            return f"step {k} ({_name(plan, k, corgi_values, corgi_leaves)}): values differ by {np.abs(got.reshape(-1) - expected.reshape(-1)).max():.3g}"
    heads = min(3, len(corgi_values))
    rng = np.random.default_rng(seed)
    deltas = [rng.uniform(-1.0, 1.0, v.numpy().shape) for v in corgi_values[-heads:]]
    corgi_root = None
    for value, delta in zip(corgi_values[-heads:], deltas):
        term = (value * Array(delta.astype(dtype))).sum(axis=None)
        corgi_root = term if corgi_root is None else corgi_root + term
    torch_root = sum((v * torch.tensor(d.astype(dtype)).reshape(v.shape)).sum() for v, d in zip(torch_values[-heads:], deltas))
    if not corgi_root.is_tracked:
        return None
    for value in torch_values:  # to see whether any delta of the pass was not finite
        if value.requires_grad and not value.is_leaf:
            value.retain_grad()
    corgi_root.backward()
    torch_root.backward()
    non_finite_pass = any(v.grad is not None and not torch.isfinite(v.grad).all() for v in torch_values)
    for k, (a, b) in enumerate(zip(corgi_leaves, torch_leaves)):
        got = None if a.gradient() is None else a.gradient().numpy()
        expected = None if b.grad is None else b.grad.numpy()
        if got is None or expected is None:
            if (got is None) != (expected is None) and not (got is None and not np.any(expected)):
                return f"leaf {k}: gradient {'missing' if got is None else 'unexpected'}"
            continue
        if non_finite_pass:
            # an infinite or NaN delta arose in the pass: where a derivative is 0, numpy's product
            # gives NaN and PyTorch's masked rules (relu, clamp, maximum) give 0 (operations.md,
            # rule 9); only the places finite in both are compared
            NON_FINITE.append(seed)
            finite = np.isfinite(expected) & np.isfinite(got)
            got, expected = got[finite], expected[finite]
        scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
        if got.dtype != dtype or not np.allclose(got, expected, rtol=rtol * 10, atol=atol * 10 * scale):
            return f"leaf {k}: gradients differ by {np.abs(got - expected).max():.3g} (steps: {[s[0] for s in plan]})"
    return None


def _name(plan: list, k: int, values: list, leaves: list) -> str:
    offset = len(values) - len(plan)
    return "a leaf" if k < offset else f"{plan[k - offset][0]} {plan[k - offset][2]}"


def test_every_operation_appears_in_the_programs():
    from corgi.array import COMPOSED, PRIMITIVES

    # a step is named by its operation ("unary" and "binary" steps by params["op"])
    aliases = {"skip_sum": {"sum"}, "softmax": {"softmax", "log_softmax"}, "cross_entropy": {"softmax_cross_entropy"},
               "stack_arr": {"stack"}}
    covered: set[str] = set()
    for seed in range(PROGRAMS):
        with np.errstate(all="ignore"):
            _, _, plan = Program(seed, np.float64).run(CorgiBackend())
        for name, _, params in plan:
            op = params.get("op", name)
            covered |= aliases.get(op, {op})
    operations = set(PRIMITIVES) | set(COMPOSED)
    assert operations - covered == set(), f"operations no program uses: {sorted(operations - covered)}"


@pytest.mark.parametrize("block", range(10))
def test_random_programs_agree_with_torch_float64(block):
    mismatches = []
    for seed in range(block, PROGRAMS, 10):
        problem = run_differential(seed, np.float64)
        if problem is not None:
            mismatches.append(f"seed {seed}: {problem}")
    assert not mismatches, "\n".join(mismatches[:20])


@pytest.mark.parametrize("block", range(4))
def test_random_programs_agree_with_torch_float32(block):
    mismatches = []
    for seed in range(100_000 + block, 100_000 + PROGRAMS // 4, 4):
        problem = run_differential(seed, np.float32)
        if problem is not None:
            mismatches.append(f"seed {seed}: {problem}")
    assert not mismatches, "\n".join(mismatches[:20])
