"""`pod-stats run` (and `replay`) on a real terminal: a pseudo-terminal the test types keys into and
reads the screen from. The terminal's settings must come back whatever ends the screen."""

import fcntl
import os
import re
import signal
import struct
import subprocess
import termios
import threading
import time
from typing import Optional

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

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def close(self) -> None:
        os.close(self.slave)
        os.close(self.master)


def _popen(terminal: Terminal, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [POD_STATS, *args],
        stdin=terminal.slave,
        stdout=terminal.slave,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "", "LINES": ""},
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


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    with MiniNode(tmp_path_factory.mktemp("log")) as node:
        web = node.add_pod("top-shop", "web-7d4b9c-k2x8p", layout="systemd-containerd").add_container("nginx")
        web.send("loop 5 1 1")
        node.add_pod("top-batch", "report.daily-0", qos="besteffort", layout="cgroupfs").add_container("report")
        yield node


# other tests may run miniature nodes on this machine at the same time
_OURS = ("-n", "top-shop", "-n", "top-batch")


def _quit(process: subprocess.Popen, terminal: Terminal, keys: Optional[str] = "q") -> str:
    if keys:
        terminal.type(keys)
    else:
        process.send_signal(signal.SIGTERM)
    _, errors = process.communicate(timeout=30)
    assert process.returncode == 0, errors
    assert "Traceback" not in errors
    return errors


@pytest.mark.containers
@pytest.mark.bpf
def test_run_on_a_terminal_sorts_filters_expands_and_restores_the_terminal_after_q(node):
    terminal = Terminal()
    process = _popen(terminal, "run", "--interval", "0.5", *_OURS, "--log-dir", str(node.log_dir))
    try:
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
        _quit(process, terminal, "q")
        assert termios.tcgetattr(terminal.slave) == terminal.settings
        time.sleep(0.2)
        # the final sample stays on the terminal as the screen showed it
        final = terminal.output[terminal.output.rfind(LEAVE_ALTERNATE_SCREEN) :]
        final = _ESCAPES.sub("", final)
        assert "web-7d4b9c-k2x8p" in final and "└ nginx" in final and "report.daily-0" not in final
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        terminal.close()


@pytest.mark.containers
@pytest.mark.bpf
def test_sigterm_on_the_screen_restores_the_terminal_and_prints_the_final_sample(node):
    terminal = Terminal(width=200)
    process = _popen(terminal, "run", "--interval", "30", *_OURS, "--log-dir", str(node.log_dir))
    try:
        frame = terminal.wait_for(lambda f: "web-7d4b9c-k2x8p" in f, "the first sample")
        assert "TOP ERRNO" in _header(frame) and "hidden (a wider" not in frame  # 200 columns: all
        _quit(process, terminal, None)
        assert termios.tcgetattr(terminal.slave) == terminal.settings
        time.sleep(0.2)
        final = _ESCAPES.sub("", terminal.output[terminal.output.rfind(LEAVE_ALTERNATE_SCREEN) :])
        assert "web-7d4b9c-k2x8p" in final and "report.daily-0" in final
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        terminal.close()
