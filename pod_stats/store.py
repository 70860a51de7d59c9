"""The recorder's store: every sample, as the JSON contract has it, in one SQLite file.

Layout (format 1):
- `entities`: each pod, container and non-pod cgroup identity seen (its names, labels, owner,
  cgroup path; JSON with every non-ASCII character escaped, so names that are not UTF-8 survive),
  written once; frames refer to them by id.
- `configs`: the agent's settings of a sample (node, probe groups, sources, open routes), deduplicated.
- `samples`: one row per sample, keyed by its time in milliseconds: a frame, the sample's figures
  as changes against the previous frame's (unchanged figures cost nothing), orjson, raw deflate
  with the previous frame as the compression dictionary. A keyframe (every KEYFRAME_EVERY samples,
  and the first after a start or a pause) stands alone: a reader seeks to the keyframe at or
  before a time and decodes forward.
- `meta`: the format, the figure names in frame order (a later version's new figures are appended).

Crash safety is SQLite's: WAL, one transaction per sample, synchronous=FULL (a power loss keeps
every committed sample). A full disk fails the transaction; the recorder warns once, keeps
sampling and writes a keyframe when space returns. Retention removes exactly the samples older
than the cutoff (and the oldest first until the file fits its size), and rewrites the first
kept frame as a keyframe so that everything kept stays readable.

Standard library and orjson only: an output of the sampler's Snapshot (no libbpf here).
"""

import fcntl
import json
import logging
import os
import sqlite3
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

import orjson

from pod_stats.figures import JSON_FIGURES
from pod_stats.model import AgentStats, CgroupSample, ContainerSample, OpenRoute, PodSample, Snapshot

log = logging.getLogger(__name__)

DEFAULT_STORE = "/var/lib/pod-stats/pod-stats.db"
FORMAT = 1
APPLICATION_ID = 0x706F6473  # "pods": `file` and sqlite3 tell a pod-stats store from another database
MIN_MAX_BYTES = 1 << 20  # --max-size: below it one sample of a large node would not fit
KEYFRAME_EVERY = 120  # samples (10 minutes at 5 s): how far a reader decodes to reach any sample
_WINDOW = 32 * 1024  # deflate's window: the most of the previous frame a dictionary can use
_LEVEL = 6

_POD, _CONTAINER, _CGROUP = 0, 1, 2
_POD_IDENTITY = ("uid", "namespace", "name", "qos", "owner_kind", "owner_name", "owner_source", "labels")
_CONTAINER_IDENTITY = ("id", "name", "runtime", "cgroup_id", "cgroup_path")
_CGROUP_IDENTITY = ("cgroup_id", "cgroup_path")
_FIELDS_OF = {_POD: _POD_IDENTITY, _CONTAINER: _CONTAINER_IDENTITY, _CGROUP: _CGROUP_IDENTITY}
# AgentStats: numbers recorded with every frame; settings recorded once per change (configs)
_AGENT_SKIPPED = ("probes", "programs")  # what pod-stats' own checks show live; not recorded
_AGENT_CONFIG = ("node", "probe_groups", "net_source", "open_source", "open_source_reason", "open_routes")
_AGENT_NUMBERS = tuple(
    f.name for f in fields(AgentStats) if f.name not in _AGENT_SKIPPED and f.name not in _AGENT_CONFIG
)
_SQLITE_FULL = 13
_UNCHANGED = 0  # an entry's errnos or slots as in the previous frame

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE entities (
    id INTEGER PRIMARY KEY,
    kind INTEGER NOT NULL,
    identity TEXT NOT NULL,
    run_start INTEGER NOT NULL,  -- ms: when its latest run of consecutive samples began (retention)
    UNIQUE (kind, identity)
);
CREATE TABLE configs (id INTEGER PRIMARY KEY, config TEXT NOT NULL UNIQUE);
CREATE TABLE samples (time INTEGER PRIMARY KEY, keyframe INTEGER NOT NULL, frame BLOB NOT NULL);
"""


class StoreError(Exception):
    """A store that cannot be used, in one line for the user."""


def _full(error: sqlite3.Error) -> bool:
    """The disk (or the file system's quota) is full: SQLITE_FULL, or an I/O error from ENOSPC."""
    code = getattr(error, "sqlite_errorcode", None)  # Python 3.11+
    return code & 0xFF == _SQLITE_FULL if code is not None else "disk is full" in str(error)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = timedelta(milliseconds=1)


def _ms(moment: datetime) -> int:
    """Milliseconds since the epoch, truncated as the JSON document's time is."""
    return (moment - _EPOCH) // _MS


def _time(ms: int) -> datetime:
    return _EPOCH + ms * _MS


def _text(value: Any) -> str:
    """Identity and settings as JSON text, exactly round-tripped (lone surrogates included)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=True, separators=(",", ":"))


_INT64, _UINT64 = 2**63, 2**64
_REPLACE = "="  # a value, or an errno list, that replaces the previous one (not a difference)
_NANO = 1e9
_SMALL_STEP = 10**7  # ns: a float that moved less than this (seconds counters) is written as its step
_FINITE = 9e15  # beyond it (or NaN) a float is written as it is


def _float_step(old: float, new: float) -> Any:
    """A float that follows a float: [its step in billionths] where that is short and decodes to
    exactly `new` (see _apply); else `new` itself. Seconds counters (9 decimals at most) then
    take a few digits instead of a dozen."""
    if -_FINITE < old < _FINITE and -_FINITE < new < _FINITE:
        base = round(old * _NANO)
        step = round(new * _NANO) - base
        if -_SMALL_STEP < step < _SMALL_STEP and (base + step) / _NANO == new:
            return [step]
    return new


def _changes(before: list, after: list) -> list:
    """[index, value, ...] where `after` differs from `before`. An integer that follows an
    integer is written as the difference (counters then take a digit or two), a float that
    follows a float maybe as its step (_float_step)."""
    if before == after and list(map(type, before)) == list(map(type, after)):
        return []  # most entities, most samples (compared in C)
    out: list = []
    for index, old, new in zip(range(len(after)), before, after):
        if new != old or type(new) is not type(old):
            kind = type(new)
            if kind is int and type(old) is int:
                # the difference, if a JSON number of orjson's holds it; else the value, marked
                new = new - old if -_INT64 <= new - old < _UINT64 else [_REPLACE, new]
            elif kind is float and type(old) is float:
                new = _float_step(old, new)
            out += (index, new)
    return out


def _decode(old: Any, value: Any) -> Any:
    """A figure's new value from its old one and what _changes wrote for it."""
    kind = type(value)
    if kind is int:
        return old + value if type(old) is int else value
    if kind is list:
        return value[1] if len(value) == 2 else (round(old * _NANO) + value[0]) / _NANO
    return value


def _apply(before: list, changes: list) -> list:
    after = before.copy()
    for index, value in zip(changes[::2], changes[1::2]):
        after[index] = _decode(after[index], value)
    return after


def _hashable(value: Any) -> Any:
    """An identity field as a dict key (labels are a dict)."""
    return tuple(sorted(value.items())) if isinstance(value, dict) else value


def _identity_key(kind: int, identity: dict[str, Any]) -> tuple:
    return (kind, *(_hashable(identity[name]) for name in _FIELDS_OF[kind]))


def _errno_changes(before: dict[int, int], after: dict[int, int]) -> Any:
    """_UNCHANGED; [errno, increase, ...] (counts only grow while a cgroup lives); or, when one
    went down or away, ["=", errno, count, ...]."""
    if after == before:
        return _UNCHANGED
    if all(after.get(number, -1) >= count for number, count in before.items()):
        return [
            n
            for number, count in sorted(after.items())
            if count != before.get(number)
            for n in (number, count - before.get(number, 0))
        ]
    return [_REPLACE, *(n for item in sorted(after.items()) for n in item)]


def _apply_errnos(before: dict[int, int], changes: Any) -> dict[int, int]:
    if changes == _UNCHANGED:
        return before
    if changes[:1] == [_REPLACE]:
        return dict(zip(changes[1::2], changes[2::2]))
    after = dict(before)
    for number, increase in zip(changes[::2], changes[1::2]):
        after[number] = after.get(number, 0) + increase
    return after


@dataclass
class _State:
    values: list
    errnos: dict[int, int]
    slots: Optional[tuple[int, ...]]
    final: bool = False
    children: tuple[int, ...] = ()


_EMPTY: dict[int, list] = {}


def _empty(width: int) -> _State:
    return _State([None] * width, {}, None)


class _Frames:
    """The frame encoding, shared by the writer and the reader: the state after the last frame."""

    def __init__(self, width: int):
        self.width = width
        self.states: dict[int, _State] = {}
        self.raw: bytes = b""  # the last frame before compression: the next one's dictionary

    def reset(self) -> None:
        self.states = {}
        self.raw = b""

    # -- encoding --------------------------------------------------------------------------------

    def _entry(
        self, eid: int, state: _State, previous: Optional[_State], new: dict[int, _State], pod: bool = False
    ) -> list:
        """An entity's entry: [eid] when it is as it was (not for a pod, whose [eid] also means
        its containers are), else [eid, changes, errnos, slots]."""
        new[eid] = state
        if previous is state and not pod:
            return [eid]
        before = previous or _empty(self.width)
        changes = _changes(before.values, state.values)
        errnos = _errno_changes(before.errnos, state.errnos)
        slots = _UNCHANGED if state.slots == before.slots and previous is not None else state.slots
        if not pod and previous is not None and not changes and errnos == _UNCHANGED and slots == _UNCHANGED:
            return [eid]
        return [eid, changes, errnos, slots]

    def encode(
        self, pods: list[tuple[int, _State, list[tuple[int, _State]]]], cgroups: list[tuple[int, _State]], header: list
    ) -> bytes:
        """pods: [(eid, state, [(container eid, state)])], cgroups: [(eid, state)]. Returns the raw
        frame. A state that is the previous frame's object (the sampler handed the same sample on)
        is written as [eid] alone."""
        new: dict[int, _State] = {}
        states = self.states
        pod_entries = []
        for eid, state, containers in pods:
            if states.get(eid) is state and all(states.get(ceid) is cstate for ceid, cstate in containers):
                new[eid] = state
                new.update(containers)
                pod_entries.append([eid])
                continue
            entry = self._entry(eid, state, states.get(eid), new, pod=True)
            entry.append(int(state.final))
            entry.append([self._entry(ceid, cstate, states.get(ceid), new) for ceid, cstate in containers])
            pod_entries.append(entry)
        cgroup_entries = [self._entry(eid, state, states.get(eid), new) for eid, state in cgroups]
        raw = orjson.dumps([*header, pod_entries, cgroup_entries])
        self.states = new
        return raw

    def compress(self, raw: bytes, keyframe: bool) -> bytes:
        compressor = (
            zlib.compressobj(_LEVEL, zlib.DEFLATED, -15)
            if keyframe
            else zlib.compressobj(_LEVEL, zlib.DEFLATED, -15, zdict=self.raw[-_WINDOW:])
        )
        blob = compressor.compress(raw) + compressor.flush()
        self.raw = raw
        return blob

    # -- decoding --------------------------------------------------------------------------------

    def inflate(self, blob: bytes, keyframe: bool) -> list:
        """The frame as written (entries of changes); the next frame's dictionary kept."""
        if keyframe:
            decompressor = zlib.decompressobj(-15)
        else:
            decompressor = zlib.decompressobj(-15, zdict=self.raw[-_WINDOW:])
        raw = decompressor.decompress(blob) + decompressor.flush()
        self.raw = raw
        return orjson.loads(raw)

    def decode(self, blob: bytes, keyframe: bool) -> list:
        """[header, pod ids, cgroup ids]; the entities' states after the frame in self.states."""
        if keyframe:
            self.reset()
        *header, pod_entries, cgroup_entries = self.inflate(blob, keyframe)
        states = self.states
        new: dict[int, _State] = {}
        pods = []
        for entry in pod_entries:
            if len(entry) == 1:  # as in the previous frame, containers included
                state = new[entry[0]] = states[entry[0]]
                new.update((ceid, states[ceid]) for ceid in state.children)
                pods.append(entry[0])
                continue
            state = self._decoded(entry, states, new)
            state.final = bool(entry[4])
            for container in entry[5]:
                self._decoded(container, states, new)
            state.children = tuple(container[0] for container in entry[5])
            pods.append(entry[0])
        cgroups = []
        for entry in cgroup_entries:
            self._decoded(entry, states, new)
            cgroups.append(entry[0])
        self.states = new
        return [header, pods, cgroups]

    def _decoded(self, entry: list, states: dict[int, _State], new: dict[int, _State]) -> _State:
        if len(entry) == 1:
            state = new[entry[0]] = states[entry[0]]
            return state
        eid, changes, errnos, slots = entry[:4]
        previous = states.get(eid)
        before = previous or _empty(self.width)
        state = _State(
            _apply(before.values, changes) if changes else before.values,
            _apply_errnos(before.errnos, errnos),
            (before.slots if slots == _UNCHANGED else (tuple(slots) if slots is not None else None)),
        )
        new[eid] = state
        return state


def _connect(path: str, readonly: bool) -> sqlite3.Connection:
    if readonly:
        if not os.path.exists(path):
            raise StoreError(f"{path}: no such recording (see `pod-stats record --help`)")
        uri = "file:" + path.replace("?", "%3f").replace("#", "%23") + "?mode=ro"
        connection = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    else:
        connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        application_id = connection.execute("PRAGMA application_id").fetchone()[0]
    except sqlite3.OperationalError as error:  # permissions, a read-only directory for its -shm
        connection.close()
        raise StoreError(f"{path}: cannot open it ({error})") from None
    except sqlite3.DatabaseError as error:
        connection.close()
        raise StoreError(f"{path}: not a pod-stats recording ({error})") from None
    if application_id not in (0, APPLICATION_ID) or (application_id == 0 and readonly):
        connection.close()
        raise StoreError(f"{path}: not a pod-stats recording")
    return connection


class _Reading:
    """What reader and writer share: the store's figure names and entity/config lookups."""

    connection: sqlite3.Connection
    path: str

    def _load_meta(self) -> None:
        meta = dict(self.connection.execute("SELECT key, value FROM meta"))
        if int(meta.get("format", 0)) > FORMAT:
            raise StoreError(
                f"{self.path}: recorded by a newer pod-stats (format {meta['format']}); upgrade to read it"
            )
        self.figure_names: list[str] = json.loads(meta["figures"])
        self._entities: dict[int, tuple[int, dict[str, Any]]] = {}
        self._configs: dict[int, dict[str, Any]] = {}
        self._entities_seen = 0

    def _entity(self, eid: int) -> tuple[int, dict[str, Any]]:
        found = self._entities.get(eid)
        if found is None:  # recorded after this reader last looked
            for row_id, kind, identity in self.connection.execute(
                "SELECT id, kind, identity FROM entities WHERE id >= ?", (min(eid, self._entities_seen),)
            ):
                self._entities[row_id] = (kind, json.loads(identity))
                self._entities_seen = max(self._entities_seen, row_id + 1)
            found = self._entities[eid]
        return found

    def _config(self, cid: int) -> dict[str, Any]:
        found = self._configs.get(cid)
        if found is None:
            (text,) = self.connection.execute("SELECT config FROM configs WHERE id = ?", (cid,)).fetchone()
            found = self._configs[cid] = json.loads(text)
        return found


@dataclass(frozen=True)
class PodSeries:
    """One pod's figures over a window, for reports."""

    uid: str
    namespace: Optional[str]
    name: Optional[str]
    owner_kind: Optional[str]
    owner_name: Optional[str]
    # figure -> one value per Series.times entry; None where the pod was absent or the figure unknown
    values: dict[str, list[Optional[float]]]


@dataclass(frozen=True)
class Series:
    times: list[datetime]
    interval_seconds: list[Optional[float]]  # None: the first sample of an agent run (no rates yet)
    pods: list[PodSeries]


class Recording(_Reading):
    """A store, read-only (safe while `pod-stats record` writes it)."""

    def __init__(self, path: str):
        self.path = path
        self.connection = _connect(path, readonly=True)
        try:
            self._load_meta()
        except (sqlite3.Error, KeyError, ValueError) as error:
            self.connection.close()
            raise StoreError(f"{path}: not a readable pod-stats recording ({error})") from None
        self._frames = _Frames(len(self.figure_names))
        # figures in the JSON contract's order: a store from another version may lack some (null)
        position = {name: at for at, name in enumerate(self.figure_names)}
        self._order = [position.get(name) for name in JSON_FIGURES]

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> "Recording":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def node(self) -> Optional[str]:
        row = self.connection.execute("SELECT config FROM configs ORDER BY id DESC LIMIT 1").fetchone()
        return None if row is None else json.loads(row[0]).get("node")

    def times(self, since: Optional[datetime] = None, until: Optional[datetime] = None) -> list[datetime]:
        low, high = self._range(since, until)
        return [
            _time(ms)
            for (ms,) in self.connection.execute(
                "SELECT time FROM samples WHERE time BETWEEN ? AND ? ORDER BY time", (low, high)
            )
        ]

    def span(self) -> Optional[tuple[datetime, datetime]]:
        """The first and last sample's times (None: no samples)."""
        first, last = self.connection.execute("SELECT min(time), max(time) FROM samples").fetchone()
        return None if first is None else (_time(first), _time(last))

    def describe_span(self) -> str:
        span = self.span()
        if span is None:
            return "the recording has no samples yet"
        return f"the recording covers {span[0]:%Y-%m-%d %H:%M:%S} to {span[1]:%Y-%m-%d %H:%M:%S} UTC"

    @staticmethod
    def _range(since: Optional[datetime], until: Optional[datetime]) -> tuple[int, int]:
        return (_ms(since) if since else -(2**62), _ms(until) if until else 2**62)

    def _rows(self, low: int, high: int) -> Iterator[tuple[int, int, bytes]]:
        """Rows from the keyframe at or before `low` to `high`, one transaction (a consistent view
        while the writer goes on)."""
        self.connection.execute("BEGIN")
        try:
            start = self.connection.execute(
                "SELECT max(time) FROM samples WHERE keyframe = 1 AND time <= ?", (max(low, -(2**62)),)
            ).fetchone()[0]
            if start is None:
                start = low
            yield from self.connection.execute(
                "SELECT time, keyframe, frame FROM samples WHERE time BETWEEN ? AND ? ORDER BY time", (start, high)
            )
        finally:
            self.connection.execute("COMMIT")

    def _decoded(self, low: int, high: int) -> Iterator[tuple[int, list]]:
        frames = self._frames
        started = False
        for ms, keyframe, blob in self._rows(low, high):
            if not keyframe and not started:
                continue  # retention is rewriting the head: nothing before a keyframe is readable
            started = True
            frame = frames.decode(blob, bool(keyframe))
            if ms >= low:
                yield ms, frame

    def _figures(self, values: list) -> dict[str, Optional[float]]:
        return {name: (None if at is None else values[at]) for name, at in zip(JSON_FIGURES, self._order)}

    def _snapshot(self, ms: int, frame: list) -> Snapshot:
        (interval, config_id, numbers), pod_ids, cgroup_ids = frame
        states = self._frames.states
        config = self._config(config_id)
        pods = []
        for eid in pod_ids:
            state = states[eid]
            identity = self._entity(eid)[1]
            containers = []
            for ceid in state.children:
                cstate = states[ceid]
                containers.append(
                    ContainerSample(
                        **self._entity(ceid)[1],
                        figures=self._figures(cstate.values),
                        open_errors_by_errno=cstate.errnos,
                        runq_wait_slots=cstate.slots,
                    )
                )
            pods.append(
                PodSample(
                    **identity,
                    figures=self._figures(state.values),
                    containers=containers,
                    open_errors_by_errno=state.errnos,
                    runq_wait_slots=state.slots,
                    final=state.final,
                )
            )
        cgroups = [
            CgroupSample(
                **self._entity(eid)[1],
                figures=self._figures(states[eid].values),
                open_errors_by_errno=states[eid].errnos,
                runq_wait_slots=states[eid].slots,
            )
            for eid in cgroup_ids
        ]
        routes = config.get("open_routes")
        agent = AgentStats(
            **dict(zip(_AGENT_NUMBERS, numbers)),
            probes=[],
            programs={},
            probe_groups=config["probe_groups"],
            net_source=config["net_source"],
            open_source=config["open_source"],
            open_source_reason=config["open_source_reason"],
            open_routes=None if routes is None else {route: OpenRoute(*value) for route, value in routes.items()},
        )
        return Snapshot(config["node"], _time(ms), interval, pods, cgroups, agent)

    def snapshots(self, since: Optional[datetime] = None, until: Optional[datetime] = None) -> Iterator[Snapshot]:
        for ms, frame in self._decoded(*self._range(since, until)):
            yield self._snapshot(ms, frame)

    def snapshot(self, at: datetime) -> Snapshot:
        """The sample taken at `at`, or the last one before it."""
        row = self.connection.execute("SELECT max(time) FROM samples WHERE time <= ?", (_ms(at),)).fetchone()
        if row[0] is None:
            raise StoreError(f"no sample at or before {at:%Y-%m-%d %H:%M:%S} UTC: {self.describe_span()}")
        for ms, frame in self._decoded(row[0], row[0]):
            return self._snapshot(ms, frame)
        raise StoreError(f"the sample at {_time(row[0]):%Y-%m-%d %H:%M:%S} UTC was removed while reading; try again")

    def _series_target(self, eid: int, seen: dict[str, "_Columns"], width: int) -> "_Columns":
        """The columns of the pod an entity is (by uid: a pod named later is one pod)."""
        identity = self._entity(eid)[1]
        found = seen.get(identity["uid"])
        if found is None:
            found = seen[identity["uid"]] = _Columns(identity, width)
        elif identity["name"] is not None:
            found.identity = identity  # the latest name known
        return found

    def series(
        self, figures: Sequence[str], since: Optional[datetime] = None, until: Optional[datetime] = None
    ) -> Series:
        """Pods' figures over a window, columnar. Decodes only the pods' entries and only the
        figures asked for (each figure's changes chain on their own): no Snapshot per sample."""
        position = {name: at for at, name in enumerate(self.figure_names)}
        wanted = [position.get(name) for name in figures]
        indices = [at for at in wanted if at is not None]
        low, high = self._range(since, until)
        times: list[datetime] = []
        intervals: list[Optional[float]] = []
        # pod entity -> its wanted figures' values after the last frame
        states: dict[int, dict[int, Any]] = {}
        seen: dict[str, _Columns] = {}  # uid -> its columns
        targets: dict[int, _Columns] = {}  # pod entity -> its uid's columns

        wanted_set = frozenset(indices)
        frames = self._frames
        started = False
        for ms, keyframe, blob in self._rows(low, high):
            if not keyframe and not started:
                continue
            started = True
            frame = frames.inflate(blob, bool(keyframe))
            previous = {} if keyframe else states
            states = {}
            index = len(times)
            keep = ms >= low
            for entry in frame[-2]:
                eid = entry[0]
                state = previous.get(eid)
                if state is None:
                    state = dict.fromkeys(indices)
                changes = entry[1] if len(entry) > 1 else None
                if changes:
                    hit = wanted_set.intersection(changes[::2])
                    if hit:
                        changed = dict(zip(changes[::2], changes[1::2]))
                        state = state.copy()
                        for at in hit:
                            state[at] = _decode(state[at], changed[at])
                states[eid] = state
                if keep:
                    target = targets.get(eid)
                    if target is None:
                        target = targets[eid] = self._series_target(eid, seen, len(indices))
                    target.put(index, [state[at] for at in indices])
            if keep:
                times.append(_time(ms))
                intervals.append(frame[0])
        frames.reset()  # self._frames' states are not this path's: the next read starts at a keyframe
        count = len(times)
        pods = []
        for columns in seen.values():
            identity = columns.identity
            columns.put(count, None)  # every column padded to the window's samples
            by_index = dict(zip(indices, columns.columns))
            values: dict[str, list[Optional[float]]] = {
                name: by_index[at] if at is not None else [None] * count for name, at in zip(figures, wanted)
            }
            pods.append(
                PodSeries(
                    identity["uid"],
                    identity["namespace"],
                    identity["name"],
                    identity["owner_kind"],
                    identity["owner_name"],
                    values,
                )
            )
        return Series(times, intervals, pods)


class _Columns:
    """One pod's figures over the samples of a window, filled as they are decoded."""

    def __init__(self, identity: dict[str, Any], width: int):
        self.identity = identity
        self.columns: list[list[Optional[float]]] = [[] for _ in range(width)]
        self.length = 0  # samples filled

    def put(self, index: int, values: Optional[list]) -> None:
        """The pod's values in sample `index` (None: only pad to it); samples it missed are None."""
        if index < self.length:  # a second entry of the pod in one sample: the later wins
            for column, value in zip(self.columns, values or ()):
                column[index] = value
            return
        gap = index - self.length
        if gap:
            padding = [None] * gap
            for column in self.columns:
                column.extend(padding)
        if values is not None:
            for column, value in zip(self.columns, values):
                column.append(value)
        self.length = index + (values is not None)


class Recorder(_Reading):
    """Appends snapshots to a store (made if missing), one transaction each, with retention."""

    def __init__(self, path: str, retain_seconds: Optional[float] = None, max_bytes: Optional[int] = None):
        self.path = path
        self.retain_seconds = retain_seconds
        self.max_bytes = max_bytes
        directory = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(directory, mode=0o750, exist_ok=True)
            # One writer per store. flock, not SQLite's POSIX locks (which this descriptor would
            # drop if closed early: it is closed after the connection).
            self._lock = open(path, "ab")
        except OSError as error:
            raise StoreError(f"{path}: cannot record there ({error.strerror})") from None
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            raise StoreError(f"{path}: another pod-stats is recording to it") from None
        try:
            self.connection = _connect(path, readonly=False)
            self._prepare()
        except sqlite3.Error as error:
            self._lock.close()
            raise StoreError(f"{path}: cannot record there ({error})") from None
        except StoreError:
            self._lock.close()
            raise
        self._frames = _Frames(len(self.figure_names))
        self._identities: dict[tuple, int] = {
            _identity_key(kind, json.loads(identity)): eid
            for eid, kind, identity in self.connection.execute("SELECT id, kind, identity FROM entities")
        }
        self._config_ids: dict[str, int] = {
            text: cid for cid, text in self.connection.execute("SELECT id, config FROM configs")
        }
        self._present: set[int] = set()  # entities of the last frame written
        # The last frame's pods by the PodSample they were made of: one the sampler hands on
        # unchanged (the same object) is written as [eid]
        self._last_pods: dict[int, tuple[PodSample, int, _State, list]] = {}
        self._since_keyframe = KEYFRAME_EVERY  # the first frame is a keyframe
        self._last_ms = self.connection.execute("SELECT max(time) FROM samples").fetchone()[0] or 0
        self.paused_since: Optional[datetime] = None
        self.not_recorded = 0  # samples lost to a full disk since the pause began
        self._retention()

    def _prepare(self) -> None:
        connection = self.connection
        connection.execute("PRAGMA busy_timeout = 5000")
        if connection.execute("PRAGMA application_id").fetchone()[0] == 0:
            if connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                raise StoreError(f"{self.path}: a database that is not a pod-stats recording")
            connection.execute("PRAGMA auto_vacuum = INCREMENTAL")  # before the first table: files shrink
            connection.executescript(
                f"BEGIN; {_SCHEMA}; PRAGMA application_id = {APPLICATION_ID}; "
                f"INSERT INTO meta VALUES ('format', '{FORMAT}'), ('figures', '{json.dumps(list(JSON_FIGURES))}'); "
                "COMMIT;"
            )
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = FULL")  # a power loss keeps every committed sample
        # The log is checkpointed into the database every few samples' worth and kept short, so
        # that it counts little against --max-size.
        wal_pages = 1000 if self.max_bytes is None else max(16, min(1000, self.max_bytes // 16 // 4096))
        connection.execute(f"PRAGMA wal_autocheckpoint = {wal_pages}")
        connection.execute(f"PRAGMA journal_size_limit = {wal_pages * 4096}")
        self._load_meta()
        missing = [name for name in JSON_FIGURES if name not in self.figure_names]
        if missing:  # figures of a newer pod-stats: appended, older frames have them unknown
            self.figure_names += missing
            connection.execute("UPDATE meta SET value = ? WHERE key = 'figures'", (json.dumps(self.figure_names),))

    def close(self) -> None:
        try:
            self.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass
        self.connection.close()
        self._lock.close()

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- one sample -------------------------------------------------------------------------------

    def _state(self, sample) -> _State:
        values = list(map(sample.figures.get, self.figure_names))
        return _State(values, sample.open_errors_by_errno, sample.runq_wait_slots)

    def _eid(self, kind: int, sample, names: tuple[str, ...], ms: int, new: list) -> int:
        key = (kind, *map(_hashable, (getattr(sample, name) for name in names)))
        eid = self._identities.get(key)
        if eid is None:
            identity = _text({name: getattr(sample, name) for name in names})
            cursor = self.connection.execute(
                "INSERT INTO entities (kind, identity, run_start) VALUES (?, ?, ?)", (kind, identity, ms)
            )
            eid = int(cursor.lastrowid or 0)
            new.append((key, eid))
        elif eid not in self._present:
            self.connection.execute("UPDATE entities SET run_start = ? WHERE id = ?", (ms, eid))
        return eid

    def _config_id(self, snapshot: Snapshot, new: list) -> int:
        agent = snapshot.agent
        routes = agent.open_routes
        text = _text(
            {
                "node": snapshot.node,
                "probe_groups": agent.probe_groups,
                "net_source": agent.net_source,
                "open_source": agent.open_source,
                "open_source_reason": agent.open_source_reason,
                "open_routes": None if routes is None else {name: list(route) for name, route in routes.items()},
            }
        )
        cid = self._config_ids.get(text)
        if cid is None:
            cid = int(self.connection.execute("INSERT INTO configs (config) VALUES (?)", (text,)).lastrowid or 0)
            new.append((text, cid))
        return cid

    def append(self, snapshot: Snapshot) -> bool:
        """Writes one sample; False when it could not be (a full disk: recording is paused, warned once)."""
        ms = max(_ms(snapshot.time), self._last_ms + 1)  # a clock step back never rewrites a sample
        keyframe = self._since_keyframe >= KEYFRAME_EVERY
        frames = self._frames
        saved_states, saved_raw = frames.states, frames.raw
        if keyframe:
            frames.reset()
        new_entities: list = []
        new_configs: list = []
        present: set[int] = set()
        connection = self.connection
        try:
            connection.execute("BEGIN IMMEDIATE")
            pods = []
            last, made = self._last_pods, {}
            for pod in snapshot.pods:
                kept = last.get(id(pod))
                if kept is not None and kept[0] is pod:  # handed on unchanged by the sampler
                    _, eid, state, containers = kept
                else:
                    eid = self._eid(_POD, pod, _POD_IDENTITY, ms, new_entities)
                    containers = [
                        (self._eid(_CONTAINER, c, _CONTAINER_IDENTITY, ms, new_entities), self._state(c))
                        for c in pod.containers
                    ]
                    state = self._state(pod)
                    state.final = pod.final
                    state.children = tuple(ceid for ceid, _ in containers)
                made[id(pod)] = (pod, eid, state, containers)
                present.add(eid)
                present.update(state.children)
                pods.append((eid, state, containers))
            cgroups = [
                (self._eid(_CGROUP, c, _CGROUP_IDENTITY, ms, new_entities), self._state(c)) for c in snapshot.cgroups
            ]
            present.update(eid for eid, _ in cgroups)
            numbers = [getattr(snapshot.agent, name) for name in _AGENT_NUMBERS]
            header = [snapshot.interval_seconds, self._config_id(snapshot, new_configs), numbers]
            raw = frames.encode(pods, cgroups, header)
            blob = frames.compress(raw, keyframe)
            connection.execute("INSERT INTO samples VALUES (?, ?, ?)", (ms, int(keyframe), blob))
            connection.execute("COMMIT")
        except sqlite3.Error as error:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            frames.states, frames.raw = saved_states, saved_raw
            self._present = set()
            self._last_pods = {}
            self._since_keyframe = KEYFRAME_EVERY  # the next frame written stands alone
            if not _full(error):
                raise StoreError(f"{self.path}: cannot record ({error})") from None
            if self.paused_since is None:
                self.paused_since = snapshot.time
                log.warning(
                    "%s: the disk is full (%s): recording paused; sampling goes on and recording resumes "
                    "when there is space",
                    self.path,
                    error,
                )
            self.not_recorded += 1
            return False
        self._identities.update(new_entities)
        self._config_ids.update(new_configs)
        self._present = present
        self._last_pods = made
        self._last_ms = ms
        self._since_keyframe = 1 if keyframe else self._since_keyframe + 1
        if self.paused_since is not None:
            log.warning(
                "%s: recording resumed; %d samples since %s were not recorded (disk full)",
                self.path,
                self.not_recorded,
                self.paused_since.isoformat(timespec="seconds"),
            )
            self.paused_since, self.not_recorded = None, 0
        if keyframe or self._over_size():
            self._retention()
        return True

    # -- retention --------------------------------------------------------------------------------

    def size(self) -> int:
        """Bytes on disk: the database and its write-ahead log."""
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += os.stat(self.path + suffix).st_size
            except FileNotFoundError:
                pass
        return total

    def _over_size(self) -> bool:
        return self.max_bytes is not None and self.size() > self.max_bytes

    def _retention(self) -> None:
        """Removes the samples older than --retain, then the oldest until the store fits --max-size."""
        try:
            if self.retain_seconds is not None and self._last_ms:
                cutoff = self._last_ms - round(self.retain_seconds * 1000)
                self._remove_before(cutoff)
            if self._over_size():
                self._shrink()
        except sqlite3.Error as error:
            if self.connection.in_transaction:
                self.connection.execute("ROLLBACK")
            if not _full(error):
                raise StoreError(f"{self.path}: cannot apply retention ({error})") from None
            log.warning("%s: retention could not run (disk full): %s", self.path, error)

    def _shrink(self) -> None:
        assert self.max_bytes is not None
        # Free a tenth of the limit beyond the excess: not one delete per sample at the limit.
        target = self.size() - self.max_bytes + self.max_bytes // 10
        freed = 0
        cutoff = None
        for ms, length in self.connection.execute("SELECT time, length(frame) FROM samples ORDER BY time"):
            if freed >= target:
                cutoff = ms
                break
            freed += length
        if cutoff is None:  # the newest sample alone is kept
            cutoff = self._last_ms
        self._remove_before(cutoff)
        self.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _remove_before(self, cutoff: int) -> None:
        """Removes exactly the samples before `cutoff`; the first kept one becomes a keyframe."""
        connection = self.connection
        first = connection.execute(
            "SELECT time, keyframe FROM samples WHERE time >= ? ORDER BY time LIMIT 1", (cutoff,)
        ).fetchone()
        if (
            first is None
            or connection.execute("SELECT 1 FROM samples WHERE time < ? LIMIT 1", (cutoff,)).fetchone() is None
        ):
            return
        first_ms, first_is_keyframe = first
        connection.execute("BEGIN IMMEDIATE")
        kept = self._rekey(first_ms, bool(first_is_keyframe))
        connection.execute("DELETE FROM samples WHERE time < ?", (first_ms,))
        # the kept frame's entities in a table, not as parameters: SQLite before 3.32 takes 999
        connection.execute("CREATE TEMP TABLE IF NOT EXISTS kept (id INTEGER PRIMARY KEY)")
        connection.execute("DELETE FROM kept")
        connection.executemany("INSERT INTO kept VALUES (?)", ((eid,) for eid in kept))
        connection.execute("DELETE FROM entities WHERE run_start < ? AND id NOT IN (SELECT id FROM kept)", (first_ms,))
        connection.execute("COMMIT")
        remaining = {eid for (eid,) in connection.execute("SELECT id FROM entities")}
        self._identities = {key: eid for key, eid in self._identities.items() if eid in remaining}
        connection.execute("PRAGMA incremental_vacuum")

    def _rekey(self, first_ms: int, is_keyframe: bool) -> set[int]:
        """Rewrites the sample at first_ms as a keyframe (and recompresses the next against it);
        returns the entities it holds."""
        reader = _Frames(len(self.figure_names))
        start = first_ms
        if not is_keyframe:
            start = self.connection.execute(
                "SELECT max(time) FROM samples WHERE keyframe = 1 AND time <= ?", (first_ms,)
            ).fetchone()[0]
        rows = self.connection.execute(
            "SELECT time, keyframe, frame FROM samples WHERE time >= ? ORDER BY time LIMIT ?",
            (start, KEYFRAME_EVERY + 2),
        ).fetchall()
        following = None
        for at, (ms, keyframe, blob) in enumerate(rows):
            reader.decode(blob, bool(keyframe))
            if ms == first_ms:
                following = rows[at + 1] if at + 1 < len(rows) else None
                break
        kept = set(reader.states)
        if is_keyframe:
            return kept
        old_raw = reader.raw
        if following is not None and not following[1]:
            next_raw = zlib.decompressobj(-15, zdict=old_raw[-_WINDOW:])
            following_raw = next_raw.decompress(following[2]) + next_raw.flush()
        # the same state, encoded against nothing
        states = reader.states
        frame = orjson.loads(old_raw)
        header = frame[:-2]
        pods = [
            (entry[0], states[entry[0]], [(ceid, states[ceid]) for ceid in states[entry[0]].children])
            for entry in frame[-2]
        ]
        cgroups = [(entry[0], states[entry[0]]) for entry in frame[-1]]
        writer = _Frames(len(self.figure_names))
        raw = writer.encode(pods, cgroups, header)
        self.connection.execute(
            "UPDATE samples SET keyframe = 1, frame = ? WHERE time = ?", (writer.compress(raw, True), first_ms)
        )
        if following is not None and not following[1]:
            self.connection.execute(
                "UPDATE samples SET frame = ? WHERE time = ?", (writer.compress(following_raw, False), following[0])
            )
        elif following is None:
            self._frames.raw = raw  # the rewritten sample is the writer's last: the next frame's dictionary
        return kept
