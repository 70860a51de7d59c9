"""--alert rules: parsing, units and evaluation per pod and per container."""

from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pod_stats.alerts import evaluate, parse_rule
from pod_stats.model import AgentStats, ContainerSample, PodSample, Snapshot


def _snapshot(pod_rss, container_rss):
    container = ContainerSample("a" * 64, "cart", "containerd", 7, "/kubepods/pod1/aaa", {"rss_bytes": container_rss})
    sandbox = ContainerSample("b" * 64, None, "containerd", 8, "/kubepods/pod1/bbb", {"rss_bytes": None})
    pod = PodSample("uid-1", "shop", "cart-0", "burstable", {"rss_bytes": pod_rss}, [container, sandbox])
    agent = AgentStats(0, 4096, 0, 0, 0, 0.0, 0, 0, 0, [], {"errno": True}, None, None, {})
    return Snapshot("node", datetime.now(timezone.utc), 1.0, [pod], [], agent)


@pytest.mark.parametrize(
    "text, field, operator, threshold",
    [
        ("rss_bytes>512Mi", "rss_bytes", ">", 512 * 2**20),
        (" open_errors_per_second >= 100 ", "open_errors_per_second", ">=", 100),
        ("memory_working_set_bytes<1.5G", "memory_working_set_bytes", "<", 1.5e9),
        ("pids!=0", "pids", "!=", 0),
        ("cpu_cores==2", "cpu_cores", "==", 2),
    ],
)
def test_rules_parse_with_units(text, field, operator, threshold):
    rule = parse_rule(text)
    assert (rule.field, rule.operator, rule.threshold) == (field, operator, threshold)


@pytest.mark.parametrize("text", ["rss_bytes", "rss_bytes>", "rss_bytes>>1", "nope>1", "rss_bytes>1Xi", ">1"])
def test_bad_rules_say_why(text):
    with pytest.raises(ValueError):
        parse_rule(text)


@given(st.text(max_size=40))
def test_rule_parser_never_raises_anything_but_value_error(text):
    try:
        parse_rule(text)
    except ValueError:
        pass


def test_fires_per_pod_and_per_container_with_the_breaking_value():
    alerts = evaluate([parse_rule("rss_bytes>1Mi")], _snapshot(pod_rss=3 * 2**20, container_rss=2 * 2**20))
    assert [(a.container_id, a.value) for a in alerts] == [(None, 3 * 2**20), ("a" * 64, 2 * 2**20)]
    assert alerts[1].line() == "ALERT rss_bytes>1Mi: shop/cart-0 container cart: rss_bytes=2.09715e+06"
    assert alerts[1].to_json()["container"] == "cart"


def test_unknown_figures_never_fire():
    assert evaluate([parse_rule("rss_bytes<1")], _snapshot(pod_rss=None, container_rss=None)) == []


def test_quiet_snapshot_fires_nothing():
    assert evaluate([parse_rule("rss_bytes>1Gi")], _snapshot(pod_rss=10, container_rss=10)) == []
