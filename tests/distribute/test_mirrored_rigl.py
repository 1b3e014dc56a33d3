"""RigL and DSR with gradient growth under MirroredStrategy on logical CPUs."""

import numpy as np
import pytest
import tensorflow as tf

import tf_dsr

from test_mirrored import _mirrored
from test_mirrored import _train

PERIOD = 6


METHODS = {
    "rigl": lambda: tf_dsr.RigL(drop_fraction=0.3, period=PERIOD, seed=5),
    "dsr-gradient": lambda: tf_dsr.DynamicReparam(prune_target=150, period=PERIOD, seed=5,
                                                  growth="gradient"),
}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_two_replicas_agree_and_match_one_device(method):
    _, _, reference = _train(tf.distribute.OneDeviceStrategy("/cpu:0"), METHODS[method])
    model, _, snapshots = _train(_mirrored(2), METHODS[method])

    # T_end = 24 steps: updates at 6, 12, 18 (RigL); 6 .. 24 (DSR).
    assert len(snapshots) == len(reference) == (3 if method == "rigl" else 4)
    counts = [int(np.sum(m[0])) for m in snapshots[0]["masks"]]
    for snap, ref in zip(snapshots, reference):
        for replicas in snap["masks"] + snap["kernels"]:
            np.testing.assert_array_equal(replicas[0], replicas[1])
        if method == "rigl":
            assert [int(np.sum(m[0])) for m in snap["masks"]] == counts
        # Gradients summed in another order differ in the last bits, so a
        # position on the cut can fall either way: masks agree nearly.
        for masks, ref_masks in zip(snap["masks"], ref["masks"]):
            assert np.mean(masks[0] == ref_masks[0]) >= 0.995
    assert tf_dsr.sparsity_summary(model).num_active == sum(counts)
