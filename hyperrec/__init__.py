"""hyperrec: e-commerce recommendation from a researcher's config to a production endpoint."""

import os

# Plots are written to files, never shown: the file-only backend, before anything imports pyplot
# (also in Ray workers, which import this package first). A user's own MPLBACKEND wins.
os.environ.setdefault("MPLBACKEND", "Agg")

if os.environ.get("HYPERREC_QUIET") == "1":  # hyperrec.logs.QUIET_FLAG, set by a command for the processes it starts
    from hyperrec.logs import quiet_libraries

    quiet_libraries()

__version__ = "0.1.0"
