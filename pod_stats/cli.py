"""The `pod-stats` command line (click)."""

import contextlib
import functools
import gc
import logging
import signal
import ssl
import sys
import threading
import time
from collections.abc import Sequence
from typing import Callable, Optional

import click
from click.core import ParameterSource

log = logging.getLogger("pod_stats")

# Errors a user can cause end in one line and a non-zero exit, never a traceback. Each code
# means one thing, so that `pod-stats dump --alert … || notify` does not notify on a typo.
EXIT_OK = 0
EXIT_ERROR = 1  # a runtime error (privileges, kernel, cgroup layout, …)
EXIT_USAGE = 2  # a usage error (click's own code for it)
EXIT_ALERT = 3  # dump: an --alert fired
EXIT_NO_SAMPLES = 4  # report: the window asked for holds no sample (or no pod asked for)
EXIT_WEB_CONFIG_UNSUPPORTED = 78  # serve: a web-config key pod-stats does not implement (sysexits' EX_CONFIG)


class _Stop(Exception):
    """SIGTERM: leave the sampling loop the way Ctrl-C does."""


def _raise_stop(signum, frame):
    raise _Stop()


def _fail(message: str, code: int = EXIT_ERROR) -> None:
    from pod_stats.text import inert

    click.echo(f"pod-stats: error: {inert(message)}", err=True)  # messages quote paths and names
    sys.exit(code)


def _libbpf_version() -> str:
    from pod_stats._pod_stats_ffi import lib

    return f"{lib.libbpf_major_version()}.{lib.libbpf_minor_version()}"


def _version_message() -> str:
    from pod_stats import __version__

    return f"pod-stats {__version__} (libbpf {_libbpf_version()}, BPF object built in)"


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    # the version and libbpf's are looked up only when asked for, not at every start
    if value and not ctx.resilient_parsing:
        click.echo(_version_message())
        ctx.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the version and exit.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="warning",
    show_default=True,
    help="Diagnostics on stderr (debug includes libbpf's log).",
)
def cli(log_level: str) -> None:
    """Which pod is doing what, right now: per-pod kernel activity (CO-RE eBPF) with memory and CPU.

    Needs root (or CAP_BPF + CAP_PERFMON) and a kernel with BTF. Names pods and
    containers from kubelet's log directory; no API-server credentials needed.

    Exit codes: 0 ok, 1 runtime error, 2 usage error, 3 an --alert fired (dump), 78 a web-config key
    pod-stats does not implement (serve).
    """
    from pod_stats.text import InertFormatter

    handler = logging.StreamHandler()  # stderr
    handler.setFormatter(InertFormatter("pod-stats: %(levelname)s: %(name)s: %(message)s"))
    logging.basicConfig(level=log_level.upper(), handlers=[handler])


def _parse_probes(ctx, param, value):
    from pod_stats.bpf import PROBE_GROUPS

    groups = [group.strip() for group in value.split(",") if group.strip()]
    unknown = [group for group in groups if group not in PROBE_GROUPS]
    if unknown or not groups:
        raise click.BadParameter(
            f"{', '.join(unknown) or 'none given'}: choose from {','.join(PROBE_GROUPS)}", ctx=ctx, param=param
        )
    return frozenset(groups)


def _identity_options(command: Callable) -> Callable:
    """Where pods are found and named: options of every command that attaches."""
    options = [
        click.option(
            "--log-dir",
            default="/var/log",
            show_default=True,
            type=click.Path(file_okay=False),
            help="Where kubelet writes pods/ and containers/ (names pods and containers).",
        ),
        click.option(
            "--cgroup-root",
            default=None,
            # from the environment too: a container's (the DaemonSet's) is every exec'd command's
            envvar="POD_STATS_CGROUP_ROOT",
            show_envvar=True,
            type=click.Path(exists=True, file_okay=False),
            help="The host's cgroup filesystem, if mounted elsewhere (e.g. /host/sys/fs/cgroup).",
        ),
        click.option(
            "--btf",
            "btf_path",
            default=None,
            type=click.Path(exists=True, dir_okay=False),
            help="Kernel BTF file, for kernels without /sys/kernel/btf/vmlinux (e.g. from BTFHub).",
        ),
        click.option(
            "--kube-api",
            default=None,
            metavar="URL",
            help="Also name pods from this API server (e.g. http://127.0.0.1:8001 from "
            "`kubectl proxy`); automatic in-cluster (service account + NODE_NAME).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _parse_pod_labels(ctx, param, value):
    from pod_stats.owners import LabelAllowlist

    return LabelAllowlist.parse(value)


def _source_options(command: Callable) -> Callable:
    """Where the figures come from: options of every sampling command."""
    from pod_stats.bpf import DEFAULT_PROBES, OPEN_PROBES, PROBE_GROUPS

    options: list[Callable[[Callable], Callable]] = [
        click.option(
            "--probes",
            default=",".join(g for g in PROBE_GROUPS if g in DEFAULT_PROBES),
            show_default=True,
            callback=_parse_probes,
            metavar="GROUP,...",
            help="Kernel probe groups to attach: opens (opens and failed opens), errno (failed opens by "
            "errno), proc (forks, execs, exits), net (socket bytes), oom (OOM kills), tcp (TCP "
            "connects, accepts, failed connects, retransmits), sched (run-queue wait; opt-in, it runs "
            "on every context switch), ia32 (32-bit programs' opens on the syscall tracepoints; "
            "opt-in). Figures of a group that is off are null.",
        ),
        click.option(
            "--open-probe",
            type=click.Choice(OPEN_PROBES),
            default="auto",
            show_default=True,
            help="How opens are counted: fexit (one program on do_sys_openat2; needs BPF trampolines), "
            "tracepoint (the open syscalls' exit tracepoints), or auto: fexit where the kernel "
            "takes it, else tracepoints. The same counts either way.",
        ),
        click.option(
            "--max-cgroups",
            default=None,
            type=click.IntRange(min=1),
            metavar="N",
            help="Capacity of the BPF counters map (default 4096 cgroups).",
        ),
        click.option(
            "--pod-labels",
            default="",
            callback=_parse_pod_labels,
            metavar="KEY,...",
            help="Pod labels to show, from the Kubernetes API (names or globs, e.g. "
            "'app,app.kubernetes.io/*'; '*' is every label): in JSON as each pod's labels, on "
            "/metrics as pod_stats_pod_labels{label_<key>=…}. Default: none.",
        ),
        _identity_options,
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _parse_alerts(ctx, param, values):
    from pod_stats.alerts import parse_rule

    try:
        return [parse_rule(value) for value in values]
    except ValueError as error:
        raise click.BadParameter(str(error), ctx=ctx, param=param) from None


def _view_options(command: Callable) -> Callable:
    """What a table or JSON document shows."""
    options = [
        click.option(
            "--alert",
            "alert_rules",
            multiple=True,
            metavar="EXPR",
            callback=_parse_alerts,
            help="Threshold on any JSON field, per pod and per container, e.g. 'rss_bytes>512Mi' or "
            "'open_errors_per_second>100' (repeatable). Firing alerts go to stderr and the JSON "
            "document; dump exits 3.",
        ),
        click.option(
            "--all", "include_non_pods", is_flag=True, help="Also show cgroups that are not a pod's but did something."
        ),
        click.option(
            "--namespace",
            "-n",
            "namespaces",
            multiple=True,
            metavar="NS",
            help="Only pods of this namespace (repeatable).",
        ),
        click.option("--pod", "pod_glob", default=None, metavar="GLOB", help="Only pods whose name matches."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _sort_option(command: Callable) -> Callable:
    from pod_stats.output import DEFAULT_SORT, SORT_FIELDS

    return click.option(
        "--sort",
        default=DEFAULT_SORT,
        show_default=True,
        type=click.Choice(SORT_FIELDS),
        metavar="FIELD",
        help="Order pods by this JSON field (figures: largest first).",
    )(command)


@cli.command()
@click.option(
    "--interval", default=2.0, show_default=True, type=click.FloatRange(min=0.1), help="Seconds between samples."
)
@click.option("--count", default=None, type=click.IntRange(min=1), help="Stop after this many samples.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document per sample, one per line (NDJSON).")
@_sort_option
@_view_options
@_source_options
def run(interval, count, as_json, sort, **sampler_options) -> None:
    """Live table of every pod on this node (or NDJSON with --json). Ctrl-C prints the final sample.

    On a terminal it is a top: keys sort (<, >, r), filter (/), expand pods (up, down, Enter), show
    sandbox rows (p) and quit (q, the final sample printed); ? lists them all. Into a pipe: the
    table of each sample, as before.
    """
    _sample_loop(interval, count, as_json, sort, **sampler_options)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the JSON document (schema pod-stats/v1).")
@click.option(
    "--duration",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0.0),
    help="Seconds to count for before printing.",
)
@_sort_option
@_view_options
@_source_options
def dump(as_json, duration, sort, namespaces, pod_glob, alert_rules, **sampler_options) -> None:
    """Count for --duration seconds, print one sample, exit: for cron and scripts.

    Exits 3 when an --alert fired (1: runtime error, 2: usage error), so cron jobs and
    monitoring scripts can act on it.
    """
    from pod_stats.output import select
    from pod_stats.sampler import open_sampler

    with _user_errors(), open_sampler(**sampler_options) as sampler:
        _drop_privileges()
        sampler.sample()  # baseline: rates cover exactly the duration
        time.sleep(duration)
        snapshot = select(sampler.sample(), namespaces, pod_glob)
    if _print_snapshot(snapshot, as_json, sort, alert_rules):
        sys.exit(EXIT_ALERT)


def _store_option(command: Callable) -> Callable:
    """The recorder's store: record writes it; replay and report read it."""
    from pod_stats.store import DEFAULT_STORE

    return click.option(
        "--store",
        default=DEFAULT_STORE,
        show_default=True,
        type=click.Path(dir_okay=False),
        help="The recording (one SQLite file; see `pod-stats record`).",
    )(command)


def _parse_with(parse: Callable) -> Callable:
    """A click callback from a pod_stats.when parser: its ValueError is a usage error."""

    def callback(ctx, param, value):
        if value is None:
            return None
        try:
            return parse(value)
        except ValueError as error:
            raise click.BadParameter(str(error), ctx=ctx, param=param) from None

    return callback


def _parse_retain(value: str) -> Optional[float]:
    from pod_stats.when import parse_duration

    return None if value == "forever" else parse_duration(value)


def _parse_max_size(value: str) -> Optional[int]:
    from pod_stats.store import MIN_MAX_BYTES
    from pod_stats.when import parse_size

    if value == "unlimited":
        return None
    size = parse_size(value)
    if size < MIN_MAX_BYTES:
        raise ValueError(f"{value!r}: at least {MIN_MAX_BYTES >> 20}M (a sample of a large node is hundreds of KiB)")
    return size


def _retention_options(command: Callable) -> Callable:
    """How much a recording keeps (record, serve --record)."""
    options = [
        click.option(
            "--retain",
            default="7d",
            show_default=True,
            callback=_parse_with(_parse_retain),
            metavar="DURATION",
            help="Remove recorded samples older than this (e.g. 36h, 7d, 2w; 'forever' keeps them).",
        ),
        click.option(
            "--max-size",
            default="500M",
            show_default=True,
            callback=_parse_with(_parse_max_size),
            metavar="SIZE",
            help="Remove the oldest recorded samples while the store is larger (K, M, G: powers of 1024; 'unlimited').",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _parse_until(value: str):
    from pod_stats.when import parse_time

    return parse_time(value)


@cli.command()
@_store_option
@click.option(
    "--since",
    default="24h",
    show_default=True,
    metavar="WHEN",
    help="The window's start: a duration back from --until (6h, 7d) or a time ('2026-11-30 03:10', '2h ago').",
)
@click.option(
    "--until",
    default="now",
    show_default=True,
    metavar="WHEN",
    callback=_parse_with(_parse_until),
    help="The window's end: a time ('2026-11-30 04:00', '03:10' today, '1h ago'; local time unless it says Z).",
)
@click.option(
    "--namespace", "-n", "namespaces", multiple=True, metavar="NS", help="Only pods of this namespace (repeatable)."
)
@click.option("--pod", "pod_glob", default=None, metavar="GLOB", help="Only pods whose name matches.")
@click.option("--top", default=5, show_default=True, type=click.IntRange(min=1), help="Pods listed by each figure.")
@click.option(
    "--spike-factor",
    default=3.0,
    show_default=True,
    type=click.FloatRange(min=1.0, min_open=True),
    help="A spike: a figure above this many times its pod's own baseline (the median of the previous 10 minutes).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the JSON document (schema pod-stats/report/v1).")
@click.option(
    "--html",
    "html_path",
    default=None,
    metavar="FILE",
    help="Write the report as one self-contained HTML file with plots per pod (opens offline) instead of the table.",
)
def report(store, since, until, namespaces, pod_glob, top, spike_factor, as_json, html_path) -> None:
    """What happened on this node over a window of a recording: per pod the peak and average of
    memory, CPU, opens/s, failed opens/s and network, OOM kills, the top pods by each figure's
    peak, and spikes. --html FILE writes one self-contained page with plots per pod.

    \b
    Averages are weighted by each sample's interval; a figure unknown in every sample is shown
    as "-" (null), never 0. OOM kills are the increases of the kernel's counter and of the
    cgroup's (memory.events), each on its own; a restart of the agent never makes one negative.
    A spike is a figure above --spike-factor times its pod's rolling baseline: the median of
    the previous 10 minutes (of one-minute medians), at least 32 MiB of memory, 0.1 cores,
    50 opens/s, 10 failed opens/s or 256 KiB/s of network, so that 0 to a trickle is not one;
    consecutive samples above it are one spike. The window's first minute has no baseline.
    Times are shown in UTC. Exits 4 when the window holds no sample or no pod asked for.
    """
    from pod_stats.store import Recording, StoreError
    from pod_stats.when import parse_since

    end = until
    try:
        start = parse_since(since, end)  # a duration is counted back from --until
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="'--since'") from None
    if start >= end:
        _fail(
            f"--since ({start:%Y-%m-%d %H:%M:%S} UTC) is not before --until ({end:%Y-%m-%d %H:%M:%S} UTC)", EXIT_USAGE
        )
    from pod_stats.report import EmptyWindow, from_recording, render_table, to_json

    try:
        with Recording(store) as recording:
            result = from_recording(recording, start, end, namespaces, pod_glob, top, spike_factor)
    except EmptyWindow as error:
        _fail(str(error), EXIT_NO_SAMPLES)
    except StoreError as error:
        _fail(str(error))
    if html_path is not None:
        _write_html(html_path, result)
    if as_json:
        _print_json(to_json(result))
    elif html_path is None:
        _print_table(render_table(result))


def _write_html(path: str, result) -> None:
    """The page in one piece: written beside the target and renamed, never half a file."""
    import os
    import tempfile

    from pod_stats.report_html import render

    page = render(result).encode()
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, temporary = tempfile.mkstemp(prefix=".pod-stats-report-", suffix=".html", dir=directory)
        with os.fdopen(fd, "wb") as out:
            out.write(page)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except OSError as error:
        _fail(f"cannot write {path}: {error.strerror or error}")
    click.echo(f"pod-stats: wrote {path} ({len(page) / 1024:,.0f} KiB)", err=True)


# Prometheus' default-port allocations have filled 9100-9999 (9808 is another exporter's) and go on
# above 10000; 10305 is in none we know of and clear of Kubernetes' 10248-10259 (register it with a
# release). The one definition of the port: the manifests and the tests follow it.
DEFAULT_PORT = 10305

_WEB_CONFIG_FILE = click.Path(exists=True, dir_okay=False)


def _parse_at(value: str):
    from pod_stats.when import parse_time

    return parse_time(value)


@cli.command()
@_store_option
@click.option(
    "--at",
    default=None,
    callback=_parse_with(_parse_at),
    metavar="WHEN",
    help="The sample taken then or the last before it: '2026-11-30 03:10' (local time unless it says Z), "
    "'03:10' (today), '2h ago'. Default: the latest sample.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the sample's JSON document (schema pod-stats/v1).")
@_sort_option
@click.option("--all", "include_non_pods", is_flag=True, help="Also show recorded cgroups that are not a pod's.")
@click.option(
    "--namespace", "-n", "namespaces", multiple=True, metavar="NS", help="Only pods of this namespace (repeatable)."
)
@click.option("--pod", "pod_glob", default=None, metavar="GLOB", help="Only pods whose name matches.")
def replay(store, at, as_json, sort, include_non_pods, namespaces, pod_glob) -> None:
    """The table as it was at --at, from a recording (pod-stats record).

    On a terminal: the screen of `run`, stepping through the samples with ←/→ (one), [ and ]
    (ten), Home/End (the first/last). Otherwise, or with --json: that one sample, printed.

    Exits 1 when the store is missing, not a recording, or has no sample at or before --at (the
    line says what it covers); 2 on a --at it cannot read.
    """
    from dataclasses import replace

    from pod_stats.output import View, select
    from pod_stats.store import Recording, StoreError

    def selected(snapshot):
        snapshot = select(snapshot, namespaces, pod_glob)
        return snapshot if include_non_pods else replace(snapshot, cgroups=[])

    try:
        with Recording(store) as recording:
            span = recording.span()
            if span is None:
                raise StoreError(f"{recording.path}: {recording.describe_span()}")
            snapshot = selected(recording.snapshot(span[1] if at is None else at))
            if as_json or not sys.stdout.isatty():
                _print_snapshot(snapshot, as_json, sort, view=View(replay="recorded"))
            else:
                _replay_screen(recording, snapshot, sort, selected)
    except StoreError as error:
        _fail(str(error))


def _replay_screen(recording, snapshot, sort: str, selected) -> None:
    """The screen over a recording's samples, from `snapshot`'s; q prints the one shown."""
    import bisect
    from dataclasses import replace

    from pod_stats.screen import RESIZE_CHECK, Screen, State, handle

    times = recording.times()
    position = max(0, bisect.bisect_right(times, snapshot.time) - 1)
    screen = Screen(State(sort=sort, position=position, samples=len(times)))
    shown = {position: snapshot}
    with contextlib.suppress(KeyboardInterrupt, _Stop), screen:
        previous = signal.signal(signal.SIGTERM, _raise_stop)
        try:
            screen.show(snapshot)
            while not screen.state.quit:
                keys = screen.keys(RESIZE_CHECK)
                screen.redraw_if_resized()
                for key in keys:
                    if key == "end":  # the recording may have grown since
                        times = recording.times()
                        screen.state = replace(screen.state, samples=len(times))
                    screen.state = handle(screen.state, key)
                    if screen.state.quit:
                        break
                    at = screen.state.position or 0
                    if at not in shown:
                        shown.clear()  # one sample held: a week of them is not kept in memory
                        shown[at] = selected(recording.snapshot(times[at]))
                    screen.show(shown[at])
        finally:
            signal.signal(signal.SIGTERM, previous)
    _print_snapshot(next(iter(shown.values())), False, screen.state.sort, view=screen.final())


# Prometheus' default-port allocations have filled 9100-9999 (9808 is another exporter's) and go on
# above 10000; 10305 is in none we know of and clear of Kubernetes' 10248-10259 (register it with a
# release). The one definition of the port: the manifests and the tests follow it.
DEFAULT_PORT = 10305

_WEB_CONFIG_FILE = click.Path(exists=True, dir_okay=False)


def _old_spelling(old: str, new: str, name: str, **attrs) -> Callable[[Callable], Callable]:
    """`old`, option `new`'s spelling before it was spelled as every Prometheus exporter does
    (exporter-toolkit's `--web.…` flags): kept for one release, it still sets parameter `name`,
    is hidden from --help and prints one warning. Giving both spellings is a usage error."""
    hidden_name = "old_" + name

    def decorate(command: Callable) -> Callable:
        @functools.wraps(command)
        def with_new_spelling(*args, **kwargs):
            value = kwargs.pop(hidden_name)
            if value is not None:
                ctx = click.get_current_context()
                if ctx.get_parameter_source(name) is not ParameterSource.DEFAULT:
                    raise click.UsageError(f"{old} is the old spelling of {new}: give one of them", ctx)
                click.echo(f"pod-stats: warning: {old} is deprecated and goes in the next release: use {new}", err=True)
                kwargs[name] = value
            return command(*args, **kwargs)

        return click.option(old, hidden_name, default=None, hidden=True, **attrs)(with_new_spelling)

    return decorate


def _parse_metrics_exclude(ctx, param, values) -> tuple[str, ...]:
    from types import SimpleNamespace

    from pod_stats.exporter import family_names, unmatched_patterns
    from pod_stats.web import HttpStats

    patterns = tuple(dict.fromkeys(part.strip() for value in values for part in value.split(",") if part.strip()))
    http_stats = HttpStats()
    http_stats.auth = SimpleNamespace(outcomes={})  # type: ignore[assignment]  # its optional family too
    unmatched = unmatched_patterns(patterns, family_names(http_stats))
    if unmatched:
        raise click.BadParameter(f"{', '.join(unmatched)}: matches no metric family of /metrics", ctx=ctx, param=param)
    return patterns


@cli.command()
@click.option(
    "--web.listen-address",
    "listen_address",
    default=f":{DEFAULT_PORT}",
    show_default=True,
    metavar="HOST:PORT",
    help="Where to serve /metrics and /healthz (`:PORT` is every interface).",
)
@_old_spelling("--listen-address", "--web.listen-address", "listen_address", metavar="HOST:PORT")
@click.option(
    "--interval",
    default=15.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Seconds between samples (scrapes read the latest sample, never the kernel).",
)
@click.option(
    "--web.config.file",
    "web_config_file",
    default=None,
    type=_WEB_CONFIG_FILE,
    help="TLS, headers and basic auth, in the Prometheus exporter-toolkit web-config format "
    "(exit 78 on a key pod-stats does not implement; see the README).",
)
@_old_spelling("--web-config-file", "--web.config.file", "web_config_file", type=_WEB_CONFIG_FILE)
@click.option(
    "--bpf-stats/--no-bpf-stats",
    default=True,
    show_default=True,
    help="Have the kernel measure BPF run time while serving (needs CAP_SYS_ADMIN; "
    "without it, only when kernel.bpf_stats_enabled=1).",
)
@click.option(
    "--metrics-exclude",
    multiple=True,
    callback=_parse_metrics_exclude,
    metavar="FAMILY,...",
    help="Leave these metric families out of /metrics (names or globs, e.g. "
    "'pod_stats_pod_*,pod_stats_runq_wait_seconds'; repeatable), to bound the series per node. "
    "A name that matches no family is a usage error.",
)
@click.option(
    "--record",
    "record_store",
    default=None,
    type=click.Path(dir_okay=False),
    metavar="STORE",
    help="Also record every sample into this store, as `pod-stats record` does (for replay and report).",
)
@_retention_options
@_source_options
def serve(
    listen_address,
    interval,
    web_config_file,
    bpf_stats,
    metrics_exclude,
    record_store,
    retain,
    max_size,
    **source_options,
) -> None:
    """Prometheus exporter: sample every --interval, serve the latest sample on /metrics."""
    from pod_stats.bpf import BpfError, run_time_stats
    from pod_stats.exporter import SnapshotMetrics, make_app, sample_forever
    from pod_stats.sampler import open_sampler
    from pod_stats.store import Recorder
    from pod_stats.web import HttpStats, parse_listen_address, start_http
    from pod_stats.webconfig import WebConfig, WebConfigError, WebConfigUnsupported, load_web_config

    try:
        parse_listen_address(listen_address)
        web_config = load_web_config(web_config_file) if web_config_file else WebConfig()
    except WebConfigUnsupported as error:
        _fail(str(error), EXIT_WEB_CONFIG_UNSUPPORTED)
    except (ValueError, WebConfigError) as error:
        _fail(str(error), EXIT_USAGE)
    ctx = click.get_current_context()
    if record_store is None and any(
        ctx.get_parameter_source(name) is not ParameterSource.DEFAULT for name in ("retain", "max_size")
    ):
        _fail("--retain and --max-size apply to a recording: give --record STORE too", EXIT_USAGE)
    metrics = SnapshotMetrics(_libbpf_version())
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}

    def healthy() -> bool:
        _, sampled_at = metrics.latest()
        return sampled_at is not None and time.time() - sampled_at < 3 * interval + 5

    try:
        with _user_errors(), contextlib.ExitStack() as stack:
            recorder = stack.enter_context(Recorder(record_store, retain, max_size)) if record_store else None
            sampler = stack.enter_context(open_sampler(**source_options))
            if bpf_stats:
                try:
                    stack.enter_context(run_time_stats())
                except BpfError as error:
                    log.warning("BPF run-time statistics are off: %s", error)
            try:
                http_stats = HttpStats()
                app = make_app(metrics, healthy, http_stats, exclude=metrics_exclude)
                server = start_http(listen_address, app, web_config, http_stats)
            except (OSError, ssl.SSLError) as error:
                _fail(f"cannot serve on {listen_address}: {error}")
            host, port = server.server_address[:2]
            click.echo(f"pod-stats: serving http{'s' if server.tls else ''}://{host}:{port}/metrics", err=True)
            _drop_privileges()  # attached, statistics on, port bound: serving needs none of it
            _steady_heap()
            # Sampling reads hundreds of files, taking the GIL back after each read; with the HTTP
            # thread busy (a scrape flood) every take waits a switch interval: 5 ms by default.
            sys.setswitchinterval(0.0005)
            sample_forever(sampler.sample, metrics, interval, stop, [recorder.append] if recorder else [])
            if recorder is not None:
                recorder.append(sampler.sample())  # what was counted since the last sample is recorded
            server.shutdown()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _selection_options(command: Callable) -> Callable:
    options = [
        click.option(
            "--namespace",
            "-n",
            "namespaces",
            multiple=True,
            metavar="NS",
            help="Only pods of this namespace (repeatable).",
        ),
        click.option("--pod", "pod_glob", default=None, metavar="GLOB", help="Only pods whose name matches."),
        click.option(
            "--duration", default=5.0, show_default=True, type=click.FloatRange(min=0.0), help="Seconds to watch."
        ),
        click.option("--json", "as_json", is_flag=True, help="Print a JSON document instead of the table."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@contextlib.contextmanager
def _watch_window(group: str, duration: float, namespaces, pod_glob, **identity_options):
    """Attaches `group`'s on-demand probes for `duration` seconds; yields (sampler, snapshot)
    at the end of the window, the probes still attached."""
    from pod_stats.output import select
    from pod_stats.sampler import open_sampler

    with _user_errors(), open_sampler(probes={group}, **identity_options) as sampler:
        sampler.sample()  # finds the pods' cgroups before the window closes
        try:
            time.sleep(duration)
        except KeyboardInterrupt:
            pass  # Ctrl-C ends the window early; what was counted is shown
        yield sampler, select(sampler.sample(), namespaces, pod_glob)


def _print_json(document) -> None:
    """One document on one line, flushed (NDJSON streams through pipes)."""
    from pod_stats.output import encode_line

    sys.stdout.flush()  # anything written as text goes first
    sys.stdout.buffer.write(encode_line(document))
    sys.stdout.buffer.flush()


def _print_table(table) -> None:
    from rich.console import Console

    # a pipe or file has no width: do not cut the table at rich's default 80 columns
    Console(width=None if sys.stdout.isatty() else 200).print(table)


@cli.command()
@click.option("--top", default=10, show_default=True, type=click.IntRange(min=1), help="Paths shown per container.")
@_selection_options
@_identity_options
def files(top, duration, as_json, namespaces, pod_glob, **identity_options) -> None:
    """The most-opened paths of each container over --duration seconds (on demand).

    Paths are as the processes passed them; ones longer than 255 bytes are cut (…).
    A container's cgroup keeps at most 256 paths and follows 64 opens at once; what it
    could not add is shown as its drops.
    """
    from pod_stats.drilldown import drop_rows, drop_totals, hottest_files
    from pod_stats.output import files_json, render_files

    started = time.monotonic()
    with _watch_window("files", duration, namespaces, pod_glob, **identity_options) as (sampler, snapshot):
        rows = hottest_files(sampler, snapshot, sampler.bpf.read_files(), top)
        drops = drop_rows(sampler, snapshot, sampler.bpf.read_drilldown_drops("files"))
        totals = drop_totals("files", sampler.bpf.drops())
        window = time.monotonic() - started
        if as_json:
            _print_json(files_json(rows, snapshot, window, drops, totals))
        else:
            _print_table(render_files(rows, snapshot, window, drops, totals))


@cli.command()
@click.option("--sort", default="rss", show_default=True, type=click.Choice(["rss", "opens"]), help="Largest first.")
@click.option(
    "--proc-root",
    default=None,
    type=click.Path(exists=True, file_okay=False),
    help="The host's /proc, where a container mounts it (the kernel's pids are the host's). "
    "Default: /host/proc if it is mounted there, else /proc.",
)
@_selection_options
@_identity_options
def procs(sort, proc_root, duration, as_json, namespaces, pod_glob, **identity_options) -> None:
    """Every process of each container: pid, command, RSS now, opens over --duration seconds.

    Opens are counted for at most 1,024 processes per cgroup; the rest are shown as drops.
    """
    from pod_stats.drilldown import (
        default_proc_root,
        drop_rows,
        drop_totals,
        in_initial_pid_namespace,
        process_rows,
        same_pid_namespace,
        sort_processes,
    )
    from pod_stats.output import processes_json, render_processes

    proc_root = proc_root or default_proc_root()
    if same_pid_namespace(proc_root) and not in_initial_pid_namespace():
        log.warning(
            "%s shows this container's PID namespace, not the host's pids the kernel counts: other "
            "pods' processes are not listed (mount the host's /proc, e.g. at /host/proc)",
            proc_root,
        )
    started = time.monotonic()
    with _watch_window("procs", duration, namespaces, pod_glob, **identity_options) as (sampler, snapshot):
        opens = sampler.bpf.read_process_opens()
        rows = sort_processes(process_rows(sampler, snapshot, opens, proc_root), sort)
        drops = drop_rows(sampler, snapshot, sampler.bpf.read_drilldown_drops("procs"))
        totals = drop_totals("procs", sampler.bpf.drops())
        window = time.monotonic() - started
        if as_json:
            _print_json(processes_json(rows, snapshot, window, drops, totals))
        else:
            _print_table(render_processes(rows, snapshot, window, drops, totals))


@cli.command()
@_store_option
@click.option(
    "--interval", default=5.0, show_default=True, type=click.FloatRange(min=0.1), help="Seconds between samples."
)
@_retention_options
@click.option("--count", default=None, type=click.IntRange(min=1), help="Stop after this many samples.")
@click.option(
    "--all", "include_non_pods", is_flag=True, help="Also record cgroups that are not a pod's but did something."
)
@_source_options
def record(store, interval, retain, max_size, count, **sampler_options) -> None:
    """Record every pod's figures every --interval into a local store, for `replay` and `report`.

    Every figure of the JSON document, names included; one transaction per sample (a crash or a
    power loss loses at most the sample being written); a full disk pauses recording with one
    warning, and it resumes when there is space. SIGINT/SIGTERM record a final sample and exit 0.
    """
    from pod_stats.sampler import open_sampler
    from pod_stats.store import Recorder

    previous_handler = signal.signal(signal.SIGTERM, _raise_stop)
    try:
        with _user_errors(), Recorder(store, retain, max_size) as recorder, open_sampler(**sampler_options) as sampler:
            _drop_privileges()
            _steady_heap()
            log.info("recording to %s every %ss", store, interval)
            taken = 0
            deadline = time.monotonic()
            try:
                while True:
                    snapshot = sampler.sample()
                    if recorder.append(snapshot):
                        log.debug("recorded the sample of %s", snapshot.time.isoformat(timespec="milliseconds"))
                    taken += 1
                    if count is not None and taken >= count:
                        return
                    deadline += interval
                    time.sleep(max(0.0, deadline - time.monotonic()))
            except (KeyboardInterrupt, _Stop):
                recorder.append(sampler.sample())  # what was counted since the last sample is not lost
    finally:
        signal.signal(signal.SIGTERM, previous_handler)


class _user_errors:
    """Turns the errors a user can cause into one line and a non-zero exit."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        from pod_stats.bpf import BpfError
        from pod_stats.cgroups import CgroupLayoutError
        from pod_stats.store import StoreError

        if exc_type is not None and issubclass(exc_type, (BpfError, CgroupLayoutError, StoreError)):
            _fail(str(exc))
        return False


def _print_snapshot(snapshot, as_json: bool, sort: str, alert_rules=(), view=None) -> list:
    """Prints one sample (and its firing alerts, one line each); returns the alerts."""
    from pod_stats.alerts import evaluate
    from pod_stats.output import View, render_table, to_json

    alerts = evaluate(alert_rules, snapshot)
    for alert in alerts:
        click.echo(f"pod-stats: {alert.line()}", err=True)
    if as_json:
        document = to_json(snapshot)
        if alert_rules:
            document["alerts"] = [alert.to_json() for alert in alerts]
        _print_json(document)
    else:
        _print_table(render_table(snapshot, sort, view=view or View()))
    return alerts


def _sample_loop(
    interval: float,
    count: Optional[int],
    as_json: bool,
    sort: str,
    namespaces: Sequence[str] = (),
    pod_glob: Optional[str] = None,
    alert_rules=(),
    **sampler_options,
) -> None:
    """Samples every interval until --count, Ctrl-C or SIGTERM; the final sample is always printed.
    On a terminal (not --json) the samples go to the interactive screen (pod_stats.screen)."""
    from pod_stats.output import select
    from pod_stats.sampler import open_sampler

    previous_handler = signal.signal(signal.SIGTERM, _raise_stop)
    try:
        with _user_errors(), open_sampler(**sampler_options) as sampler:
            _drop_privileges()
            _steady_heap()

            def sample():
                return select(sampler.sample(), namespaces, pod_glob)

            if as_json or not sys.stdout.isatty():
                _print_samples(sample, interval, count, as_json, sort, alert_rules)
            else:
                _screen_samples(sample, interval, count, sort, alert_rules)
    finally:
        signal.signal(signal.SIGTERM, previous_handler)


def _print_samples(sample, interval: float, count: Optional[int], as_json: bool, sort: str, alert_rules) -> None:
    taken = 0
    deadline = time.monotonic()
    try:
        while True:
            snapshot = sample()
            taken += 1
            _print_snapshot(snapshot, as_json, sort, alert_rules)
            if count is not None and taken >= count:
                return
            deadline += interval
            time.sleep(max(0.0, deadline - time.monotonic()))
    except (KeyboardInterrupt, _Stop):
        # what was counted since the last sample is not lost
        _print_snapshot(sample(), as_json, sort, alert_rules)


def _screen_samples(sample, interval: float, count: Optional[int], sort: str, alert_rules) -> None:
    """The interactive screen until q, --count, Ctrl-C or SIGTERM; then the last sample is
    printed as the screen showed it (columns, filter, expansions), every row."""
    from pod_stats.alerts import evaluate
    from pod_stats.screen import Screen, State

    screen = Screen(State(sort=sort))
    snapshot = None
    try:
        with screen:
            taken = 0
            deadline = time.monotonic()
            while True:
                snapshot = sample()
                taken += 1
                screen.show(snapshot, evaluate(alert_rules, snapshot))
                if count is not None and taken >= count:
                    break
                deadline += interval
                if screen.wait(deadline - time.monotonic()):
                    snapshot = sample()  # q: what was counted since the last sample is not lost
                    break
    except (KeyboardInterrupt, _Stop):
        snapshot = sample()
    if snapshot is not None:
        _print_snapshot(snapshot, False, screen.state.sort, alert_rules, screen.final())


def _drop_privileges() -> None:
    """Once the probes are attached: every capability sampling does not need is dropped, and
    no_new_privs is set (pod_stats.privileges)."""
    from pod_stats.privileges import PrivilegeError, drop_after_attach

    try:
        drop_after_attach()
    except PrivilegeError as error:
        _fail(f"cannot drop privileges after attach: {error}")


def _steady_heap() -> None:
    """For the sampling loops. A sample makes thousands of short-lived dicts that reference
    counting frees; with the default thresholds the cycle collector still scanned them, and
    everything made at start-up, about four times a sample (1–2 ms of 30 at 250 pods).
    Start-up's objects are frozen out of collections, and a collection waits for 20,000 new
    tracked objects (dicts, lists) instead of 700."""
    gc.freeze()
    gc.set_threshold(20_000, 20, 100)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Entry point: click's usage errors become one line, like every other user error."""
    try:
        cli.main(args=argv, prog_name="pod-stats", standalone_mode=False)
    except click.UsageError as error:
        hint = f" (see: {error.ctx.command_path} --help)" if error.ctx else ""
        _fail(f"{error.format_message()}{hint}", EXIT_USAGE)
    except click.ClickException as error:
        _fail(error.format_message())
    except click.Abort:
        sys.exit(130)
    except BrokenPipeError:
        # `pod-stats run --json | head` is fine
        sys.stderr.close()
        sys.exit(0)
