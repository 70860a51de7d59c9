"""How figures add up: a pod's of its parts', a container's across the instances that ended,
and what lost events make unknown. Pure functions over pod_stats.model's Figures (no kernel,
no files), driven by the table in pod_stats.figures."""

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Optional

from pod_stats.figures import (
    COUNTER_FIELDS,
    COUNTER_RATES,
    FLOAT_FIGURES,
    LAST_ACTIVE,
    NET_FIGURES,
    POD_SUMMED,
    RATES,
    UNCOUNTED,
)
from pod_stats.model import Errnos, Figures, Slots

_SUMMED_SET = frozenset(POD_SUMMED)
# Net bytes and their rates: where the packet fallback counted some part's under another cgroup
# (see pod_stats.sampler), a sum over that part is unknown.
NET_COUNTS = NET_FIGURES + tuple(rate for rate, figure in RATES.items() if figure in NET_FIGURES)
# What lost events make unknown: the kernel's counters, and the rates of all counted since attach.
_COUNT_FIGURES = COUNTER_FIELDS + COUNTER_RATES


def add_errnos(parts: list[Errnos]) -> Errnos:
    """Failed opens by errno, added up."""
    total: Errnos = {}
    for part in parts:
        for error, count in part.items():
            total[error] = total.get(error, 0) + count
    return total


def add_slots(parts: list[Optional[Slots]]) -> Optional[Slots]:
    """Histogram slots added up, slot by slot; None if no part has them."""
    known = [p for p in parts if p is not None]
    return tuple(map(sum, zip(*known))) if known else None


def sum_known(values: list[Optional[float]]) -> Optional[float]:
    """Their sum; None if any of them is unknown."""
    known = [value for value in values if value is not None]
    return sum(known) if len(known) == len(values) else None


def latest(times: Iterable[Optional[float]]) -> Optional[float]:
    """The latest of the known times; None if none is known."""
    known = [t for t in times if t is not None]
    return max(known) if known else None


def sum_pod_figures(parts: list[Figures]) -> Figures:
    """A pod's figures: its containers' (and its own cgroup's counters) added up; a figure no
    part knows stays unknown. Pods are mostly a sandbox and a container, most of their
    counters zero: the first part is copied, the others add only what they can change."""
    if not parts:
        return dict.fromkeys(POD_SUMMED + (LAST_ACTIVE,))
    total: Figures = dict.fromkeys(POD_SUMMED)
    total.update(parts[0])
    total.pop("memory_limit_bytes", None)  # the pod's own, set by the caller
    for part in parts[1:]:
        for name, value in part.items():
            if value is None or name not in _SUMMED_SET:
                continue
            before = total[name]
            if before is None:
                total[name] = value
            elif value:
                # summing rounded rates must not print float noise
                total[name] = round(before + value, 6) if name in FLOAT_FIGURES else before + value
    total[LAST_ACTIVE] = latest(part.get(LAST_ACTIVE) for part in parts)
    for name in NET_COUNTS:  # a part whose packets another cgroup got: the sum is unknown too
        if total[name] is not None and any(name in part and part[name] is None for part in parts):
            total[name] = None
    return total


def unknown_counts(figures: Figures, lost: Optional[float]) -> Figures:
    """Kernel counters some of whose events were never counted are unknown, not a smaller number."""
    for name in _COUNT_FIGURES:
        figures[name] = None
    figures[UNCOUNTED] = lost
    return figures


@dataclass
class Carry:
    """What the ended cgroups of one container identity (pod uid, container name) counted, or of
    a pod's own cgroups: kept while the pod lives and added to what its live cgroups count, so
    that a restart or a nested cgroup going away never makes a cumulative figure go down."""

    # SINCE_ATTACH, CGROUPFS_COUNTERS, UNCOUNTED; NET_FIGURES None once an ended cgroup did not know them
    figures: dict[str, Optional[float]] = field(default_factory=dict)
    errnos: Errnos = field(default_factory=dict)
    slots: Optional[Slots] = None
    version: int = 0  # +1 per add: what the pod's figures were made of has changed

    def add(self, figures: dict[str, Optional[float]], errnos: Errnos, slots: Optional[Slots]) -> None:
        self.version += 1
        for name, value in figures.items():
            if name in NET_FIGURES and (value is None or (name in self.figures and self.figures[name] is None)):
                self.figures[name] = None  # counted under another cgroup (or not at all): unknown for good
            elif value is not None:
                self.figures[name] = round(self.figures.get(name, 0) + value, 9)  # type: ignore[operator]
        self.errnos = add_errnos([self.errnos, errnos])
        self.slots = add_slots([self.slots, slots])
