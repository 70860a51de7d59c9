"""pod-stats: per-pod kernel activity from CO-RE eBPF, joined with cgroupfs figures."""

from importlib.metadata import PackageNotFoundError, version

# pyproject.toml is the one place the version is written; the installed metadata carries it.
try:
    __version__ = version("pod-stats")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
