"""The on-demand views' readers: /proc entries that vanish or hold garbage degrade, never raise."""

import os

from hypothesis import given
from hypothesis import strategies as st

from pod_stats.drilldown import read_process, statm_rss_bytes

PAGE = os.sysconf("SC_PAGE_SIZE")


def test_statm_rss_is_the_second_field_in_pages():
    assert statm_rss_bytes("5120 2048 512 10 0 300 0\n") == 2048 * PAGE


def test_truncated_or_garbled_statm_has_no_rss():
    for text in ("", "5120", "5120 \n", "5120 -3 1", "5120 ² 1", "5120 ٣ 1", "a b c"):
        assert statm_rss_bytes(text) is None, text


@given(st.text())
def test_statm_parser_never_raises(text):
    value = statm_rss_bytes(text)
    assert value is None or value >= 0


def test_a_process_that_vanished_or_half_vanished_is_skipped(tmp_path):
    (tmp_path / "10").mkdir()
    (tmp_path / "10" / "comm").write_text("nginx\n")
    (tmp_path / "10" / "statm").write_text("100 25 3 1 0 20 0\n")
    (tmp_path / "11").mkdir()
    (tmp_path / "11" / "comm").write_text("gone-mid-read\n")  # statm already gone
    (tmp_path / "12").mkdir()
    (tmp_path / "12" / "comm").write_bytes(b"\xff\xfebin\n")
    (tmp_path / "12" / "statm").write_text("garbage\n")
    assert read_process(str(tmp_path), 10) == ("nginx", 25 * PAGE)
    assert read_process(str(tmp_path), 11) is None
    assert read_process(str(tmp_path), 13) is None
    command, rss = read_process(str(tmp_path), 12)
    assert rss is None and command.endswith("bin")


def test_this_process_reads_back():
    command, rss = read_process("/proc", os.getpid())
    assert command and rss > 0
