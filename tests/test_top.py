"""`pod-stats run` (and `replay`) on a real terminal: a pseudo-terminal the test types keys into and
reads the screen from. The terminal's settings must come back whatever ends the screen."""

import contextlib
import fcntl
import json
import os
import re
import signal
import struct
import subprocess
import termios
import threading
import time
from datetime import datetime, timedelta

import pytest
from rich.console import Console
from support import POD_STATS

from pod_stats.screen import Screen, State
from pod_stats_dev.mininode import MiniNode

LEAVE_ALTERNATE_SCREEN = "\x1b[?1049l"
_ESCAPES = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|[()][0-9A-Za-z]|[=>78])")


class Terminal:
    """A pseudo-terminal of 24 × `width`: the slave end for a program, what it wrote read from
    the master end as it comes."""

    def __init__(self, width: int = 80, height: int = 24):
        self.master, self.slave = os.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
        self.settings = termios.tcgetattr(self.slave)
        self.output = ""
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            with self._lock:
                self.output += data.decode(errors="replace")

    def screen(self) -> str:
        """The last frame drawn (from the last cursor-home), escape sequences removed."""
        with self._lock:
            text = self.output
        return _ESCAPES.sub("", text[text.rfind("\x1b[H") :])

    def wait_for(self, predicate, what: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            frame = self.screen()
            if predicate(frame):
                return frame
            time.sleep(0.05)
        raise AssertionError(f"no frame with {what} within {timeout}s; last frame:\n{self.screen()}")

    def resize(self, width: int, height: int = 24) -> None:
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def close(self) -> None:
        os.close(self.slave)
        os.close(self.master)


def _controlling_terminal() -> None:
    """In the child: its own session with the pseudo-terminal (its stdin) as controlling
    terminal, so that Ctrl-C typed into it is a SIGINT."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _popen(terminal: Terminal, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [POD_STATS, *args],
        stdin=terminal.slave,
        stdout=terminal.slave,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "", "LINES": ""},
        preexec_fn=_controlling_terminal,
    )


def _header(frame: str) -> str:
    return next((line for line in frame.splitlines() if "NAMESPACE" in line), "")


def test_the_terminal_is_restored_when_an_exception_leaves_the_screen():
    terminal = Terminal()
    try:
        out = os.fdopen(os.dup(terminal.slave), "w")
        console = Console(file=out, force_terminal=True, width=80, height=24)
        screen = Screen(State(), console=console, stdin=terminal.slave)
        with pytest.raises(RuntimeError):
            with screen:
                assert termios.tcgetattr(terminal.slave) != terminal.settings  # cbreak: no echo, no lines
                raise RuntimeError("a renderer's bug")
        out.flush()
        assert termios.tcgetattr(terminal.slave) == terminal.settings
        terminal.wait_for(lambda _: LEAVE_ALTERNATE_SCREEN in terminal.output, "the alternate screen left", 5)
        out.close()
    finally:
        terminal.close()


@contextlib.contextmanager
def _stopped(terminal, process):
    """The test's pod-stats killed if it still runs, and its terminal closed, however the test ends."""
    try:
        yield
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        terminal.close()


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    with MiniNode(tmp_path_factory.mktemp("log")) as node:
        web = node.add_pod("top-shop", "web-7d4b9c-k2x8p", layout="systemd-containerd").add_container("nginx")
        web.send("loop 5 1 1")
        node.add_pod("top-batch", "report.daily-0", qos="besteffort", layout="cgroupfs").add_container("report")
        yield node


# other tests may run miniature nodes on this machine at the same time
_OURS = ("-n", "top-shop", "-n", "top-batch")


def _ended(process: subprocess.Popen) -> str:
    """Its stderr, once it exited 0 with no traceback."""
    _, errors = process.communicate(timeout=30)
    assert process.returncode == 0, errors
    assert "Traceback" not in errors
    return errors


@pytest.mark.containers
@pytest.mark.bpf
def test_run_on_a_terminal_sorts_filters_expands_and_restores_the_terminal_after_q(node):
    terminal = Terminal()
    process = _popen(terminal, "run", "--interval", "0.5", *_OURS, "--log-dir", str(node.log_dir))
    with _stopped(terminal, process):
        frame = terminal.wait_for(lambda f: "web-7d4b9c-k2x8p" in f and "over 0.5s" in f, "a sample with rates")
        header = _header(frame)
        for column in ("NAMESPACE", "POD", "OPENS/s▼", "ERR/s", "CPU", "WORKING SET"):
            assert column in header
        assert "columns hidden (a wider terminal shows them)" in frame and "q quit" in frame
        assert "└ nginx" not in frame  # pods only
        assert termios.tcgetattr(terminal.slave) != terminal.settings  # cbreak while it runs
        # the busy pod first; sorted by name (the column left of OPENS/s), report.daily-0 comes first
        assert frame.index("web-7d4b9c-k2x8p") < frame.index("report.daily-0")
        terminal.type("<")
        frame = terminal.wait_for(lambda f: "POD / CONTAINER▲" in _header(f), "the name column sorted")
        assert frame.index("report.daily-0") < frame.index("web-7d4b9c-k2x8p")
        terminal.type("r")
        frame = terminal.wait_for(lambda f: "POD / CONTAINER▼" in _header(f), "the sort reversed")
        assert frame.index("web-7d4b9c-k2x8p") < frame.index("report.daily-0")
        # the cursor stays on its pod (report.daily-0, the first when sorted by name): up to web, expand
        # it; its sandbox row is hidden and counted
        terminal.type("\x1b[A\r")
        frame = terminal.wait_for(lambda f: "└ nginx" in f, "web's containers")
        assert "1 unnamed/sandbox row hidden (p)" in frame
        terminal.type("p")
        terminal.wait_for(lambda f: "└ (" in f and "unnamed/sandbox" not in f, "web's sandbox row")
        terminal.type("/nginx")
        frame = terminal.wait_for(lambda f: "1 of 2 pods" in f, "the filter applied as typed")
        assert "report.daily-0" not in frame and "filter: nginx" in frame
        terminal.type("\r")
        terminal.wait_for(lambda f: "q quit" in f and "1 of 2 pods" in f, "the filter kept after Enter")
        terminal.type("q")
        _ended(process)
        assert termios.tcgetattr(terminal.slave) == terminal.settings
        time.sleep(0.2)
        # the final sample stays on the terminal as the screen showed it
        final = terminal.output[terminal.output.rfind(LEAVE_ALTERNATE_SCREEN) :]
        final = _ESCAPES.sub("", final)
        assert "web-7d4b9c-k2x8p" in final and "└ nginx" in final and "report.daily-0" not in final


@pytest.mark.containers
@pytest.mark.bpf
def test_sigterm_on_the_screen_restores_the_terminal_and_prints_the_final_sample(node):
    terminal = Terminal(width=200)
    process = _popen(terminal, "run", "--interval", "30", *_OURS, "--log-dir", str(node.log_dir))
    with _stopped(terminal, process):
        frame = terminal.wait_for(lambda f: "web-7d4b9c-k2x8p" in f, "the first sample")
        assert "TOP ERRNO" in _header(frame) and "hidden (a wider" not in frame  # 200 columns: all
        process.send_signal(signal.SIGTERM)
        _ended(process)
        assert termios.tcgetattr(terminal.slave) == terminal.settings
        time.sleep(0.2)
        final = _ESCAPES.sub("", terminal.output[terminal.output.rfind(LEAVE_ALTERNATE_SCREEN) :])
        assert "web-7d4b9c-k2x8p" in final and "report.daily-0" in final


@pytest.mark.containers
@pytest.mark.bpf
def test_ctrl_c_on_the_screen_restores_the_terminal_and_prints_the_final_sample(node):
    terminal = Terminal()
    process = _popen(terminal, "run", "--interval", "30", *_OURS, "--log-dir", str(node.log_dir))
    with _stopped(terminal, process):
        terminal.wait_for(lambda f: "web-7d4b9c-k2x8p" in f, "the first sample")
        terminal.type("\x03")  # Ctrl-C
        _ended(process)
        assert termios.tcgetattr(terminal.slave) == terminal.settings
        time.sleep(0.2)
        final = _ESCAPES.sub("", terminal.output[terminal.output.rfind(LEAVE_ALTERNATE_SCREEN) :])
        assert "web-7d4b9c-k2x8p" in final and "over " in final  # a sample after the first: with rates


# -- replay ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recording(node, tmp_path_factory):
    """Four real samples of the miniature node, recorded; their JSON documents as `run --json` had them."""
    from pod_stats.output import encode, to_json
    from pod_stats.sampler import open_sampler
    from pod_stats.store import Recorder

    path = tmp_path_factory.mktemp("store") / "pod-stats.db"
    documents = []
    with open_sampler(log_dir=str(node.log_dir)) as sampler:
        recorder = Recorder(str(path))
        try:
            for _ in range(4):
                time.sleep(0.3)
                snapshot = sampler.sample()
                assert recorder.append(snapshot)
                documents.append(json.loads(encode(to_json(snapshot))))
        finally:
            recorder.close()
    return path, documents


def _replay(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([POD_STATS, "replay", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.containers
@pytest.mark.bpf
def test_replay_json_at_a_time_is_the_recorded_samples_document(recording):
    path, documents = recording
    for index in (1, 3):
        at = documents[index]["time"]  # ISO, Z: the sample's own time
        result = _replay("--store", str(path), "--at", at, "--json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == documents[index]
    # a time between two samples: the one before it
    between = documents[2]["time"].replace("Z", "") + "+00:00"
    later = (datetime.fromisoformat(between) + timedelta(milliseconds=100)).isoformat()
    assert json.loads(_replay("--store", str(path), "--at", later, "--json").stdout) == documents[2]
    # no --at: the latest
    assert json.loads(_replay("--store", str(path), "--json").stdout) == documents[-1]
    # the selection of run: -n, --pod
    only = json.loads(_replay("--store", str(path), "--json", "-n", "top-batch").stdout)
    assert [pod["name"] for pod in only["pods"]] == ["report.daily-0"]


@pytest.mark.containers
@pytest.mark.bpf
def test_replay_into_a_pipe_prints_the_table_of_that_sample(recording):
    path, documents = recording
    result = _replay("--store", str(path), "--at", documents[0]["time"], *_OURS)
    assert result.returncode == 0, result.stderr
    when = datetime.fromisoformat(documents[0]["time"].replace("Z", "+00:00"))
    assert "pod-stats replay · " in result.stdout and f"{when:%Y-%m-%d %H:%M:%S} UTC · recorded" in result.stdout
    assert "web-7d4b9c-k2x8p" in result.stdout and "└ nginx" in result.stdout


@pytest.mark.containers
@pytest.mark.bpf
def test_replay_errors_are_one_line(recording, tmp_path):
    path, documents = recording
    missing = _replay("--store", str(tmp_path / "nothing.db"))
    assert missing.returncode == 1 and missing.stderr.startswith("pod-stats: error: ")
    assert len(missing.stderr.splitlines()) == 1 and "no such recording" in missing.stderr
    (tmp_path / "text.db").write_text("not a database\n" * 100)
    other = _replay("--store", str(tmp_path / "text.db"))
    assert other.returncode == 1 and len(other.stderr.splitlines()) == 1 and "not a pod-stats recording" in other.stderr
    before = _replay("--store", str(path), "--at", "2001-01-01T00:00:00Z")
    assert before.returncode == 1 and len(before.stderr.splitlines()) == 1
    assert "no sample at or before 2001-01-01 00:00:00 UTC" in before.stderr and "the recording covers" in before.stderr
    from pod_stats.store import Recorder

    Recorder(str(tmp_path / "empty.db")).close()
    empty = _replay("--store", str(tmp_path / "empty.db"), "--json")
    assert empty.returncode == 1 and len(empty.stderr.splitlines()) == 1 and "no samples" in empty.stderr
    bad = _replay("--store", str(path), "--at", "yesterday-ish")
    assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1 and "--at" in bad.stderr
    assert "Traceback" not in missing.stderr + other.stderr + before.stderr + bad.stderr


@pytest.mark.containers
@pytest.mark.bpf
def test_replay_on_a_terminal_steps_through_the_samples(recording):
    path, documents = recording
    times = [datetime.fromisoformat(d["time"].replace("Z", "+00:00")) for d in documents]
    terminal = Terminal(width=120)
    process = _popen(terminal, "replay", "--store", str(path), "--at", documents[1]["time"], *_OURS)

    def at(index: int) -> str:
        return terminal.wait_for(
            lambda f: f"{times[index]:%Y-%m-%d %H:%M:%S} UTC · sample {index + 1} of 4" in f, f"sample {index + 1}"
        )

    with _stopped(terminal, process):
        frame = at(1)
        assert "pod-stats replay" in frame and "←→ sample" in frame and "web-7d4b9c-k2x8p" in frame
        terminal.type("\x1b[C")  # →
        at(2)
        terminal.type("\x1b[D\x1b[D")  # ← ←
        at(0)
        terminal.type("\x1b[D")  # nothing before the first
        terminal.type("\x1b[F")  # End
        at(3)
        terminal.type("\x1b[H")  # Home
        at(0)
        terminal.type("]")
        at(3)
        terminal.type(">")  # the run keys work the same: sorted by the next column
        terminal.wait_for(lambda f: "ERR/s▼" in _header(f) and "sample 4 of 4" in f, "the sort moved on")
        terminal.resize(80)  # redrawn to the new width with no key pressed
        terminal.wait_for(lambda f: "columns hidden" in f and "sample 4 of 4" in f, "the frame at 80 columns")
        terminal.type("q")
        _ended(process)
        assert termios.tcgetattr(terminal.slave) == terminal.settings
