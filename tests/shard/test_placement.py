"""Whether shard bundles fit a cluster's nodes, decided before Ray is asked (it would wait forever)."""

import pytest

from distmeta.shard.placement import Bundle, fits

TWO_NODES = [{"CPU": 4.0, "GPU": 2.0}, {"CPU": 4.0}]


@pytest.mark.parametrize(
    "bundle, count, strategy",
    [
        (Bundle(1, 0), 8, "PACK"),
        (Bundle(1, 0.5), 4, "PACK"),
        (Bundle(1, 1), 2, "STRICT_PACK"),
        (Bundle(1, 0), 2, "STRICT_SPREAD"),
        (Bundle(0.5, 0), 16, "SPREAD"),
    ],
)
def test_requests_the_nodes_can_hold(bundle, count, strategy):
    assert fits(bundle, count, strategy, TWO_NODES) is None


@pytest.mark.parametrize(
    "bundle, count, strategy, message",
    [
        (Bundle(1, 1), 3, "PACK", "need 3 GPU; the cluster has 8 CPU, 2 GPU in all, room for 2 shards"),
        (
            Bundle(2.5, 0),
            3,
            "SPREAD",
            "do not fit: each needs 2.5 CPU on one node, and the nodes have room for 2 (cluster: 8 CPU in all)",
        ),
        (Bundle(1, 0), 5, "STRICT_PACK", "must share one node, and no node holds more than 4 of them"),
        (Bundle(1, 0), 3, "STRICT_SPREAD", "need 3 nodes with room for one each; 2 have it"),
        (Bundle(1, 0.5), 5, "PACK", "need 2.5 GPU"),
    ],
)
def test_requests_they_cannot_hold_name_the_shortfall(bundle, count, strategy, message):
    problem = fits(bundle, count, strategy, TWO_NODES)
    assert problem is not None and message in problem, problem
