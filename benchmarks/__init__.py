"""Benchmarks of corgi against a hand-written numpy floor, PyTorch and HIPS autograd.

Run ``python -m benchmarks.run`` from the repository root; see README.md.
"""
