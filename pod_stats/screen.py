"""The interactive table of `run` and `replay` in a terminal: a top.

A pure State and `handle(state, key) -> State` decide what every key does; `view()` turns a
State into the pod_stats.output.View the one table renderer draws (columns fitted to the
terminal's width, rows to its height). The Screen below is the only part that touches the
terminal: cbreak mode (Ctrl-C still interrupts), keys read with select(), rich's Live on the
alternate screen, and the terminal's settings put back on every way out.
"""

import os
import select
import termios
import time
import tty
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Optional

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from pod_stats.model import Snapshot
from pod_stats.output import DEFAULT_SORT, View, fit_columns, render_table, shown_pods
from pod_stats.text import inert

RESIZE_CHECK = 0.5  # seconds between looks at the terminal's size while no key is pressed
PAGE = 10  # pods a PgUp/PgDn moves the cursor; samples `[`/`]` step in a replay
NAME_FIELDS = ("namespace", "name")


@dataclass(frozen=True)
class State:
    """What the screen shows, apart from the sample itself."""

    sort: str = DEFAULT_SORT
    reverse: bool = False
    filter: str = ""
    editing: Optional[str] = None  # the filter being typed after `/` (applied as it is typed)
    expand_all: bool = False  # pods only by default: a 100-pod node fits
    toggled: frozenset[str] = frozenset()  # pods (uid) expanded or collapsed against expand_all
    sandboxes: bool = False  # unnamed (sandbox/pause) container rows shown
    cursor: Optional[str] = None  # the selected pod's uid; None: the first
    help: bool = False
    quit: bool = False
    # What the last frame showed (see seen()): its pods in order and its sortable columns' fields.
    pods: tuple[str, ...] = ()
    sortable: tuple[str, ...] = NAME_FIELDS
    # A replay: the sample shown (index) out of how many; None live.
    position: Optional[int] = None
    samples: int = 0


def _cursor_index(state: State) -> int:
    return state.pods.index(state.cursor) if state.cursor in state.pods else 0


def _move_cursor(state: State, by: int) -> State:
    if not state.pods:
        return state
    index = max(0, min(len(state.pods) - 1, _cursor_index(state) + by))
    return replace(state, cursor=state.pods[index])


def _step(state: State, to: int) -> State:
    if state.position is None or not state.samples:
        return state
    return replace(state, position=max(0, min(state.samples - 1, to)))


def _sort_by(state: State, by: int) -> State:
    fields = state.sortable
    if state.sort in fields:
        index = (fields.index(state.sort) + by) % len(fields)
    else:  # sorted by a figure that has no column here (--sort): start from an edge
        index = 0 if by > 0 else len(fields) - 1
    return replace(state, sort=fields[index], reverse=False)


def _edit(state: State, key: str) -> State:
    """A key while the filter is typed."""
    text = state.editing or ""
    if key == "enter":
        return replace(state, filter=text, editing=None)
    if key == "esc":
        return replace(state, filter="", editing=None)
    if key == "backspace":
        return replace(state, editing=text[:-1], filter=text[:-1])
    if len(key) == 1 and key.isprintable():
        return replace(state, editing=text + key, filter=text + key)
    return state


def handle(state: State, key: str) -> State:
    """The state after `key` (a character, or a name from KEYS: "up", "enter", ...)."""
    if state.editing is not None:
        return _edit(state, key)
    if state.help:  # any key closes the help; q still quits
        return replace(state, help=False, quit=key == "q")
    if key == "q":
        return replace(state, quit=True)
    if key in ("?", "h"):
        return replace(state, help=True)
    if key == "/":
        return replace(state, editing=state.filter)
    if key == "esc":
        return replace(state, filter="")
    if key in ("up", "down", "pgup", "pgdn"):
        return _move_cursor(state, {"up": -1, "down": 1, "pgup": -PAGE, "pgdn": PAGE}[key])
    if key in ("enter", " ") and state.pods:
        uid = state.pods[_cursor_index(state)]
        return replace(state, cursor=uid, toggled=state.toggled ^ {uid})
    if key == "e":
        return replace(state, expand_all=not state.expand_all, toggled=frozenset())
    if key == "p":
        return replace(state, sandboxes=not state.sandboxes)
    if key in ("<", ">"):
        return _sort_by(state, 1 if key == ">" else -1)
    if key == "r":
        return replace(state, reverse=not state.reverse)
    position = state.position or 0
    steps = {"left": position - 1, "right": position + 1, "[": position - PAGE, "]": position + PAGE}
    if key in steps:
        return _step(state, steps[key])
    if key == "home":
        return _step(state, 0)
    if key == "end":
        return _step(state, state.samples - 1)
    return state


def view(state: State, width: Optional[int] = None, height: Optional[int] = None) -> View:
    """The table's View of a State on a terminal of that size."""
    return View(
        width=width,
        height=None if height is None else height - 1,  # the key hint's line
        reverse=state.reverse,
        filter=state.filter,
        expand_all=state.expand_all,
        toggled=state.toggled,
        sandboxes=state.sandboxes,
        cursor=state.cursor,
        interactive=True,
        replay=None if state.position is None else f"sample {state.position + 1} of {state.samples}",
    )


def seen(state: State, snapshot: Snapshot, width: Optional[int] = None) -> State:
    """The state with what a frame of `snapshot` shows: its pods (the cursor kept on its pod
    while it is there, else on the first) and its sortable columns."""
    pods = shown_pods(snapshot, state.sort, view(state, width))
    fit = fit_columns(snapshot, pods, view(state, width), state.sort)
    uids = tuple(pod.uid for pod in pods)
    cursor = state.cursor if state.cursor in uids else (uids[0] if uids else None)
    return replace(state, pods=uids, sortable=NAME_FIELDS + fit.figures, cursor=cursor)


# -- keys ----------------------------------------------------------------------------------------

# Escape sequences of the keys used, as xterm, the Linux console and tmux send them.
KEYS = {
    "\x1b[A": "up",
    "\x1b[B": "down",
    "\x1b[C": "right",
    "\x1b[D": "left",
    "\x1bOA": "up",
    "\x1bOB": "down",
    "\x1bOC": "right",
    "\x1bOD": "left",
    "\x1b[H": "home",
    "\x1b[F": "end",
    "\x1bOH": "home",
    "\x1bOF": "end",
    "\x1b[1~": "home",
    "\x1b[4~": "end",
    "\x1b[7~": "home",
    "\x1b[8~": "end",
    "\x1b[5~": "pgup",
    "\x1b[6~": "pgdn",
    "\r": "enter",
    "\n": "enter",
    "\x7f": "backspace",
    "\x08": "backspace",
}


def decode(data: bytes) -> list[str]:
    """Keys in what the terminal sent: names of KEYS, "esc", or characters. An escape sequence
    not in KEYS is dropped whole (a key pod-stats has no use for)."""
    keys: list[str] = []
    text = data.decode(errors="replace")
    i = 0
    while i < len(text):
        match = next((seq for seq in KEYS if text.startswith(seq, i)), None)
        if match is not None:
            keys.append(KEYS[match])
            i += len(match)
        elif text[i] == "\x1b" and text[i + 1 : i + 2] in ("[", "O"):
            i += 2  # CSI or SS3: parameters, then one final character in @..~
            while i < len(text) and not "@" <= text[i] <= "~":
                i += 1
            i += 1
        else:
            keys.append("esc" if text[i] == "\x1b" else text[i])
            i += 1
    return keys


def hint(state: State) -> Text:
    """The one line of keys under the table."""
    if state.editing is not None:
        return Text(f"filter: {inert(state.editing)}▏  (Enter applies, Esc clears)", style="bold")
    keys = "q quit  ↑↓ pod  ⏎ expand  e all  <> sort  r reverse  / filter  p sandbox  ? keys"
    if state.position is not None:
        keys = "←→ sample  [ ] ±10  Home/End  q quit  / filter  <> sort  ? keys"
    return Text(keys, style="dim")


HELP = """\
keys
  ↑ ↓ PgUp PgDn  move the cursor over pods
  Enter, space   expand/collapse the pod's containers
  e              expand/collapse every pod
  p              show/hide unnamed (sandbox/pause) container rows
                 (a pod's figures always include them)
  < >            sort by the next column left/right (its header marked ▼ or ▲)
  r              reverse the sort
  /              filter: text in a namespace, pod or container name (any case);
                 Enter keeps it, Esc clears it
  Esc            clear the filter
  q, Ctrl-C      quit (run: the final sample is printed)
replay
  ← →            one sample back/forward
  [ ]            ten samples back/forward
  Home End       the first/last sample
any key closes this help"""


def frame(state: State, snapshot: Snapshot, alerts: Sequence, width: int, height: int):
    """What the screen shows: the table fitted to width × height and the key hint."""
    if state.help:
        return Text(HELP)
    return Group(render_table(snapshot, state.sort, alerts, view(state, width, height)), hint(state))


# -- the terminal ----------------------------------------------------------------------------------


class Screen:
    """The terminal while the screen is up: keys in cbreak mode (if stdin is a terminal) and
    rich's Live on the alternate screen. A context manager: leaving it by any way (q, an
    exception, SIGTERM raising in the main thread) restores the terminal's settings and screen."""

    def __init__(self, state: State, console: Optional[Console] = None, stdin: Optional[int] = None):
        self.state = state
        self.console = console or Console()
        self.stdin = 0 if stdin is None else stdin
        self._saved: Optional[list] = None
        self._live = Live(console=self.console, auto_refresh=False, screen=True, redirect_stderr=False)
        self._shown: Optional[tuple[Snapshot, Sequence]] = None
        self._size = self.console.size

    def __enter__(self) -> "Screen":
        if os.isatty(self.stdin):
            self._saved = termios.tcgetattr(self.stdin)
            tty.setcbreak(self.stdin)
        try:
            self._live.__enter__()
        except BaseException:
            self._restore()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._live.__exit__(*exc)
        finally:
            self._restore()

    def _restore(self) -> None:
        if self._saved is not None:
            termios.tcsetattr(self.stdin, termios.TCSADRAIN, self._saved)
            self._saved = None

    def show(self, snapshot: Snapshot, alerts: Sequence = ()) -> None:
        """Draws `snapshot` (and remembers it: keys redraw it until the next one)."""
        self._shown = (snapshot, alerts)
        self._size = self.console.size
        self.state = seen(self.state, snapshot, self.console.width)
        self._live.update(frame(self.state, snapshot, alerts, self.console.width, self.console.height), refresh=True)

    def keys(self, timeout: Optional[float]) -> list[str]:
        """The keys pressed within `timeout` seconds (None: until one is); [] when none was."""
        if self._saved is None:  # no keyboard: just wait
            if timeout is not None:
                select.select([], [], [], max(0.0, timeout))
            return []
        ready, _, _ = select.select([self.stdin], [], [], None if timeout is None else max(0.0, timeout))
        if not ready:
            return []
        data = os.read(self.stdin, 1024)
        if not data:  # the terminal is gone
            self.state = replace(self.state, quit=True)
            return []
        return decode(data)

    def redraw_if_resized(self) -> None:
        """Draws what is shown again if the terminal's size changed since (no key needed)."""
        if self._shown is not None and self.console.size != self._size:
            self.show(*self._shown)

    def press(self, key: str) -> None:
        """Handles one key and redraws what is shown."""
        self.state = handle(self.state, key)
        if self._shown is not None and not self.state.quit:
            self.show(*self._shown)

    def wait(self, seconds: float) -> bool:
        """Handles keys for `seconds` (redrawing after each); True when asked to quit."""
        deadline = time.monotonic() + seconds
        while not self.state.quit:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            keys = self.keys(min(left, RESIZE_CHECK))
            self.redraw_if_resized()
            for key in keys:
                self.press(key)
                if self.state.quit:
                    break
        return self.state.quit

    def final(self) -> View:
        """The View for printing the last sample after the screen is gone: this one's columns,
        filter and expansions, every row, no cursor."""
        return replace(view(self.state, self.console.width), height=None, cursor=None)
