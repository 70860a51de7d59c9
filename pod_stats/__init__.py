"""pod-stats: per-pod kernel activity from CO-RE eBPF, joined with cgroupfs figures."""


def __getattr__(name: str) -> str:
    # pyproject.toml is the one place the version is written; the installed metadata carries it.
    # Looked up on first use: importlib.metadata costs ~40 ms to import, paid by every start.
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pod-stats")
    except PackageNotFoundError:  # imported from a source tree that was never installed
        return "0+unknown"
