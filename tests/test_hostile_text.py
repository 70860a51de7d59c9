"""What a tenant controls never drives the operator's terminal and never breaks JSON (issue #15
items 1 and 8): real processes in a real pod's container cgroup with escape sequences, rich
markup, CR/LF, bidi overrides and bytes that are not UTF-8 as their names and in the paths they
open; real cgroups and API names with the same; every command's output checked byte for byte."""

import base64
import ctypes
import json
import logging
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from kernels.cgroup_child import remove_cgroup, run_in_child
from support import POD_STATS, pod_list_api

from pod_stats.cgroups import discover_mounts
from pod_stats.output import encode_line
from pod_stats.text import InertFormatter, inert, put_text
from pod_stats_dev.mininode import MiniNode

# (bytes a tenant chooses, what the operator sees instead)
PATHS = [
    (b"\x1b]0;pwned\x07", r"\x1b]0;pwned\x07"),  # window title
    (
        b"\x1b]8;;http://evil.example/\x1b\\click\x1b]8;;\x1b\\",  # OSC 8 hyperlink
        r"\x1b]8;;http://evil.example/\x1b\\click\x1b]8;;\x1b\\",
    ),
    (b"\x1b]52;c;cm0gLXJmIH4=\x07", r"\x1b]52;c;cm0gLXJmIH4=\x07"),  # OSC 52 clipboard write
    (b"\x1b[2J\x1b[3J\x1b[H", r"\x1b[2J\x1b[3J\x1b[H"),  # clear screen and scrollback
    (b"ok\r\nkube-system  coredns  forged", r"ok\x0d\x0akube-system  coredns  forged"),  # a forged row
    ("\u202egnp.exe".encode(), r"\u202egnp.exe"),  # bidi override
    ("\u2066iso\u2069".encode(), r"\u2066iso\u2069"),  # bidi isolate
    (b"[/x]", "[/x]"),  # rich markup that raised MarkupError
    (b"[blink]boom", "[blink]boom"),
    (b"bad-\xff\xfe\xc3(-\x9b", r"bad-\xff\xfe\xc3(-\x9b"),  # not UTF-8 (0x9b: an 8-bit CSI)
    (b"back\\x1b", r"back\\x1b"),  # a literal backslash cannot pass for an escape
]
# process names: at most 15 bytes (TASK_COMM_LEN)
COMMS = [
    (b"\x1b]0;pwn\x07", r"\x1b]0;pwn\x07"),
    (b"\x1b]52;c;cHdu\x07", r"\x1b]52;c;cHdu\x07"),
    (b"\x1b[2J\x1b[Hx", r"\x1b[2J\x1b[Hx"),
    (b"[/x]", "[/x]"),
    (b"[blink]boom", "[blink]boom"),
    (b"a\r\nforged", r"a\x0d\x0aforged"),
    ("\u202eevil".encode(), r"\u202eevil"),
    (b"\xff\xfe\xc3(\x9b", r"\xff\xfe\xc3(\x9b"),
]
# cgroup names: anything but "/" and "\n" (the kernel refuses those)
CGROUPS = [
    (b"\x1b]0;pwn\x07", r"\x1b]0;pwn\x07"),
    (b"\x1b]52;c;cHdu\x07", r"\x1b]52;c;cHdu\x07"),
    (b"\x1b[2J\rforged", r"\x1b[2J\x0dforged"),
    ("\u202eevil".encode(), r"\u202eevil"),
    (b"[/x]", "[/x]"),
    (b"[blink]x", "[blink]x"),
    (b"bad\xff\xfe\xc3(", r"bad\xff\xfe\xc3("),
]

_PR_SET_NAME = 15


def assert_inert(stdout: bytes) -> str:
    """Output an operator can print: valid UTF-8, every character printable but the newlines."""
    text = stdout.decode("utf-8")  # strict
    for line in text.split("\n"):
        bad = [ch for ch in line if not ch.isprintable()]
        assert not bad, (bad, line)
    assert b"\x1b" not in stdout and b"\r" not in stdout and b"\x07" not in stdout
    return text


def exact(row: dict, key: str) -> bytes:
    """The exact bytes of a JSON text field (README: the JSON contract)."""
    if f"{key}_b64" in row:
        return base64.b64decode(row[f"{key}_b64"], validate=True)
    return row[key].encode()


def pod_stats(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([POD_STATS, *args], capture_output=True, timeout=timeout)


# -- the helpers themselves, for any bytes and any text


@given(st.binary(max_size=64))
def test_any_bytes_are_inert_and_lossless_in_json(raw):
    value = raw.decode("utf-8", "surrogateescape")
    assert inert(value).isprintable()
    document: dict = {}
    put_text(document, "path", value)
    back = json.loads(encode_line(document))
    assert exact(back, "path") == raw
    assert ("path_b64" in back) == (not _is_utf8(raw))


@given(st.text(max_size=64))
def test_any_text_is_inert_and_exact_in_json(value):
    shown = inert(value)
    assert shown.isprintable() and (shown == value) == (value.isprintable() and "\\" not in value)
    document: dict = {}
    put_text(document, "name", value)
    if any("\ud800" <= ch <= "\udfff" for ch in value):
        return  # lone surrogates are no bytes: see test_lone_surrogates_from_json_are_replaced
    encoded = encode_line(document)
    assert json.loads(encoded)["name"] == value
    # what a terminal acts on is escaped even in JSON (other unprintables are left as they are)
    assert not [ch for ch in encoded.decode()[:-1] if _acts_on_a_terminal(ch)]


def test_lone_surrogates_from_json_are_replaced():
    document: dict = {}
    put_text(document, "name", "a\ud800b")  # json.loads("\"a\\ud800b\"") makes such a string
    assert json.loads(encode_line(document)) == {"name": "a\ufffdb"}


def test_a_log_message_is_one_inert_line():
    record = logging.LogRecord(
        "pod_stats.exporter",
        logging.DEBUG,
        __file__,
        1,
        "%s %s",
        ("127.0.0.1", "GET /\x1b]0;pwn\x07\r\nforged HTTP/1.1"),
        None,
    )
    line = InertFormatter("pod-stats: %(levelname)s: %(name)s: %(message)s").format(record)
    assert line == r"pod-stats: DEBUG: pod_stats.exporter: 127.0.0.1 GET /\x1b]0;pwn\x07\x0d\x0aforged HTTP/1.1"


def _acts_on_a_terminal(ch: str) -> bool:
    code = ord(ch)
    return (
        code < 0x20
        or 0x7F <= code <= 0x9F
        or 0x202A <= code <= 0x202E
        or 0x2066 <= code <= 0x2069
        or code in (0x061C, 0x200E, 0x200F, 0x2028, 0x2029)
    )


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode()
        return True
    except UnicodeDecodeError:
        return False


# -- a tenant inside a real pod


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    with MiniNode(tmp_path_factory.mktemp("log")) as node:
        pod = node.add_pod("tenant", "hostile-0", layout="systemd-containerd")
        pod.add_container("app")
        yield node


def _name_process(comm: bytes, how: str) -> None:
    if how == "prctl":
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_NAME, ctypes.c_char_p(comm), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl")
    else:
        with open("/proc/self/comm", "wb") as handle:
            handle.write(comm)


@pytest.fixture(scope="module")
def tenants(node, tmp_path_factory):
    """Processes in the container's cgroup, each with a hostile name, opening the hostile paths
    (relative to a directory of their own: the paths stay as short as written) until killed."""
    container = node.pods[0].containers[0]
    directory = tmp_path_factory.mktemp("cwd")
    dirs = container.cgroup_dirs()
    pids: list[int] = []

    def tenant(comm: bytes, how: str):
        def inside():
            for handle in [open(d / "cgroup.procs", "w") for d in dirs]:
                handle.write("0")
                handle.close()
            _name_process(comm, how)
            os.chdir(directory)
            while True:
                for path, _ in PATHS:
                    try:
                        os.close(os.open(path, os.O_RDONLY))
                    except OSError:
                        pass
                time.sleep(0.05)

        return inside

    try:
        for i, (comm, _) in enumerate(COMMS):
            pids.append(run_in_child(tenant(comm, "prctl" if i % 2 else "comm"), wait=False))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # named and moved
            if all(_comm(pid) == comm for pid, (comm, _) in zip(pids, COMMS)):
                break
            time.sleep(0.05)
        else:
            pytest.fail("the tenant processes did not take their names")
        yield container
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def _comm(pid: int) -> bytes:
    return Path(f"/proc/{pid}/comm").read_bytes()[:-1]


@pytest.mark.bpf
@pytest.mark.containers
def test_files_table_shows_hostile_paths_as_escapes(node, tenants):
    result = pod_stats("files", "--duration", "1", "--top", "50", "--log-dir", str(node.log_dir), "-n", "tenant")
    assert result.returncode == 0, result.stderr
    text = assert_inert(result.stdout)
    assert_inert(result.stderr)
    for _, shown in PATHS:
        assert shown in text, shown
    assert not any(line.startswith("kube-system") for line in text.splitlines())


@pytest.mark.bpf
@pytest.mark.containers
def test_files_json_keeps_every_path_byte_for_byte(node, tenants):
    result = pod_stats(
        "files", "--json", "--duration", "1", "--top", "50", "--log-dir", str(node.log_dir), "-n", "tenant"
    )
    assert result.returncode == 0, result.stderr
    assert_inert(result.stdout)
    rows = json.loads(result.stdout)["files"]
    by_bytes = {exact(row, "path"): row for row in rows}
    for path, _ in PATHS:
        row = by_bytes[path]
        assert row["opens"] > 0 and row["open_errors"] == row["opens"]  # ENOENT: nothing is there
        assert ("path_b64" in row) == (not _is_utf8(path))
        assert row["path"] == path.decode("utf-8", "replace")
        assert (row["namespace"], row["pod"], row["container"]) == ("tenant", "hostile-0", "app")


@pytest.mark.bpf
@pytest.mark.containers
def test_procs_table_shows_hostile_names_as_escapes_and_parses_no_markup(node, tenants):
    result = pod_stats("procs", "--duration", "0.5", "--log-dir", str(node.log_dir), "-n", "tenant")
    assert result.returncode == 0, result.stderr  # [/x] killed it with a MarkupError
    text = assert_inert(result.stdout)
    assert b"Traceback" not in result.stderr
    for _, shown in COMMS:
        assert shown in text, shown


@pytest.mark.bpf
@pytest.mark.containers
def test_procs_json_keeps_every_name_byte_for_byte(node, tenants):
    result = pod_stats("procs", "--json", "--duration", "0.5", "--log-dir", str(node.log_dir), "-n", "tenant")
    assert result.returncode == 0, result.stderr
    assert_inert(result.stdout)
    names = {exact(row, "command") for row in json.loads(result.stdout)["processes"] if row["command"] is not None}
    assert {comm for comm, _ in COMMS} <= names


@pytest.mark.bpf
@pytest.mark.containers
def test_names_from_the_api_server_are_inert_and_exact(node, tenants, tmp_path):
    """An API server (or whoever answers as one) names the pod with escape sequences."""
    pod, container = node.pods[0], tenants
    hostile = {"namespace": "ns\x1b]0;pwn\x07", "name": "pod\r\nkube-system  forged", "container": "[/x]\u202e"}
    pod_list = json.dumps(
        {
            "kind": "PodList",
            "items": [
                {
                    "metadata": {"uid": pod.uid, "name": hostile["name"], "namespace": hostile["namespace"]},
                    "status": {
                        "containerStatuses": [
                            {"name": hostile["container"], "containerID": f"containerd://{container.id}"}
                        ]
                    },
                }
            ],
        }
    ).encode()
    with pod_list_api(pod_list) as (api, _):
        table = pod_stats(
            "dump", "--duration", "0", "--log-dir", str(tmp_path), "--kube-api", api, "--alert", "pids>=1"
        )
        document = pod_stats("dump", "--json", "--duration", "0", "--log-dir", str(tmp_path), "--kube-api", api)
        procs = pod_stats("procs", "--duration", "0", "--log-dir", str(tmp_path), "--kube-api", api)
    assert table.returncode == 3, table.stderr  # the alert fired
    text = assert_inert(table.stdout)
    assert r"ns\x1b]0;pwn\x07" in text and r"pod\x0d\x0akube-system  forged" in text and r"[/x]\u202e" in text
    alerts = assert_inert(table.stderr)
    assert r"ALERT pids>=1: ns\x1b]0;pwn\x07/pod\x0d\x0akube-system  forged container [/x]\u202e: pids=" in alerts
    assert procs.returncode == 0, procs.stderr
    assert r"[/x]\u202e" in assert_inert(procs.stdout)
    assert document.returncode == 0, document.stderr
    assert_inert(document.stdout)
    sampled = next(p for p in json.loads(document.stdout)["pods"] if p["uid"] == pod.uid)
    assert (sampled["namespace"], sampled["name"]) == (hostile["namespace"], hostile["name"])
    assert next(c for c in sampled["containers"] if c["id"] == container.id)["name"] == hostile["container"]


# -- a tenant's cgroups outside any pod (--all)


def _roots() -> list[Path]:
    mounts = discover_mounts()
    roots = [Path(mounts.unified)] if mounts.unified else []
    if mounts.memory_hierarchy().version == 1:
        roots.append(Path(mounts.v1["memory"]))
    return roots


@pytest.fixture
def hostile_cgroups():
    """Cgroups with hostile names, each with a process opening a file every 20 ms; yields the
    relative path of each (bytes)."""
    parent = f"psh{uuid.uuid4().hex[:6]}"
    made, pids = [], []
    try:
        for name, _ in CGROUPS:
            relative = f"{parent}/{name.decode('utf-8', 'surrogateescape')}"
            dirs = [root / relative for root in _roots()]
            for directory in dirs:
                directory.mkdir(parents=True)
                made.append(directory)

            def inside(dirs=dirs):
                for handle in [open(d / "cgroup.procs", "w") for d in dirs]:
                    handle.write("0")
                    handle.close()
                while True:
                    os.close(os.open("/etc/hostname", os.O_RDONLY))
                    time.sleep(0.02)

            pids.append(run_in_child(inside, wait=False))
        yield [f"/{parent}/".encode() + name for name, _ in CGROUPS]
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        for directory in reversed(made):
            remove_cgroup(directory)
        for root in _roots():
            # and the directories mkdir(parents=True) made for a name with a "/" in it
            for directory, _, _ in reversed(list(os.walk(root / parent))):
                remove_cgroup(Path(directory))


@pytest.mark.bpf
def test_dump_json_all_keeps_hostile_cgroup_names_byte_for_byte(hostile_cgroups):
    result = pod_stats("dump", "--json", "--all", "--duration", "0.5")
    assert result.returncode == 0, result.stderr  # invalid UTF-8 in a cgroup name crashed it
    assert_inert(result.stdout)
    cgroups = json.loads(result.stdout)["cgroups"]
    paths = {exact(c, "cgroup_path"): c for c in cgroups}
    for path in hostile_cgroups:
        assert paths[path]["opens"] > 0, path
        assert ("cgroup_path_b64" in paths[path]) == (not _is_utf8(path))
    assert orjson.loads(result.stdout) == json.loads(result.stdout)


@pytest.mark.bpf
def test_run_table_shows_hostile_cgroup_names_as_escapes(hostile_cgroups):
    result = pod_stats("run", "--all", "--count", "2", "--interval", "0.5")
    assert result.returncode == 0, result.stderr
    text = assert_inert(result.stdout)
    last = text[text.rindex("pod-stats ·") :]
    for _, shown in CGROUPS:
        assert shown in last, shown


@pytest.mark.bpf
def test_log_and_error_lines_quoting_a_hostile_path_are_inert(tmp_path):
    """libbpf's log, pod-stats' own log lines and the one-line error all quote the --btf path."""
    btf = tmp_path / "btf\x1b]0;pwn\x07\r\nforged"
    btf.write_bytes(b"garbage")
    result = pod_stats("--log-level", "debug", "dump", "--btf", str(btf), "--duration", "0")
    assert result.returncode == 1
    text = assert_inert(result.stderr)
    shown = str(tmp_path) + r"/btf\x1b]0;pwn\x07\x0d\x0aforged"
    lines = text.splitlines()
    assert any(shown in line and "libbpf:" in line for line in lines)  # libbpf's log
    assert lines[-1].startswith("pod-stats: error: ") and shown in lines[-1]
    assert all(line.startswith("pod-stats: ") for line in lines), lines  # no line forged
