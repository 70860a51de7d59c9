"""How figures add up (pod_stats.sums: pure, no kernel): a net figure one part cannot know makes
the sum unknown, where a figure no part knows (its probe group off) stays unknown anyway."""

from pod_stats.sums import Carry, sum_pod_figures


def test_a_pod_sum_with_a_part_whose_packets_another_cgroup_got_is_unknown():
    seen = {"opens": 5, "net_tx_bytes": 100, "net_tx_bytes_per_second": 10.0}
    unseen = {"opens": 7, "net_tx_bytes": None, "net_tx_bytes_per_second": None}
    for parts in ([seen, unseen], [unseen, seen]):
        total = sum_pod_figures(parts)
        assert total["opens"] == 12
        assert total["net_tx_bytes"] is None and total["net_tx_bytes_per_second"] is None


def test_a_pod_sum_of_parts_that_all_know_their_net_figures_is_their_sum():
    total = sum_pod_figures(
        [{"net_rx_bytes": 3, "net_rx_bytes_per_second": 1.5}, {"net_rx_bytes": 4, "net_rx_bytes_per_second": 0.5}]
    )
    assert (total["net_rx_bytes"], total["net_rx_bytes_per_second"]) == (7, 2.0)


def test_an_ended_cgroup_that_did_not_know_its_net_figures_leaves_them_unknown_for_good():
    carry = Carry()
    carry.add({"opens": 2, "net_tx_bytes": None}, {}, None)
    carry.add({"opens": 3, "net_tx_bytes": 50}, {}, None)
    assert carry.figures["opens"] == 5 and carry.figures["net_tx_bytes"] is None
    known = Carry()
    known.add({"net_tx_bytes": 50}, {}, None)
    known.add({"net_tx_bytes": 25}, {}, None)
    assert known.figures["net_tx_bytes"] == 75


def test_a_sum_of_seconds_never_shows_less_than_a_part_counted_in_nanoseconds():
    # v1 cpuacct.usage and throttled_time count nanoseconds: an ended instance's 0.370199086 s
    # plus a new one's 0 must stay 0.370199086, not round down to 0.370199 (the sampler's carry
    # rounds the same way: test_churn's restarted container checks it on real cgroups)
    for name in ("cpu_seconds", "runq_wait_seconds"):
        total = sum_pod_figures([{name: 0.370199086}, {name: 0.0}, {name: 0.000000001}])
        assert total[name] == 0.370199087, name
        assert sum_pod_figures([{name: 0.1}, {name: 0.2}])[name] == 0.3  # and no float noise
