"""pod-stats: per-pod kernel activity from CO-RE eBPF, joined with cgroupfs figures."""

__version__ = "0.1.0"
