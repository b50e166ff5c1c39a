"""Reflow: self-hosted reverse ETL with a Census-compatible Management API."""

import os

__version__ = "0.1.0"

# Arrow's C++ code allocates from its default pool (mimalloc), which keeps freed blocks
# of every batch mapped; Arrow reads this variable once, when the pool is first used,
# so it is set before anything imports pyarrow. engine/memory.py says why the system
# allocator suits a run; measured: a 1M-row engine-side first sync peaked ~25 MB lower.
# An operator's own choice is kept.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
