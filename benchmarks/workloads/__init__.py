"""One module per peer; each is run as ``python -m benchmarks.workloads.<peer> <workload> ...``
in a fresh child process and prints a single JSON line (see common.py)."""
