"""Exact-size uniform random subsets of a boolean tensor, without a sort.

Growing weights (DSR_SPEC section 4, step 5) and drawing initial masks
(section 3) both need "pick exactly `n` of these positions uniformly at
random". Sorting random keys would do it, but a sort over tens of millions
of weights is the cost the reference pays and we avoid. Instead every
candidate gets a random 31-bit key and we find the `n` smallest keys by a
two-level radix select: a histogram over the keys' high bits finds the
bucket holding the cut, a histogram over the low bits of the keys in that
bucket finds the exact cut key. Candidates sharing the cut key (rare with
31-bit keys) are split by a second radix select over their positions,
which are unique.

Every pass is linear in the tensor size, all shapes are static, and no
cumulative sum runs over a long axis (XLA on CPU lowers `cumsum` to a
quadratic reduce-window), so the selection compiles with XLA and handles
tensors far beyond 2^24 elements.
"""

import tensorflow as tf

_LOW_BITS = 16
_NUM_LOW_BUCKETS = 1 << _LOW_BITS
_KEY_BITS = 31
_NUM_KEY_HIGH_BUCKETS = 1 << (_KEY_BITS - _LOW_BITS)
_CUT_BLOCK = 256


def _count(x):
    return tf.reduce_sum(tf.cast(x, tf.int64))


def _histogram(bucket_ids, num_buckets):
    # A constant number of segments keeps the shape static for XLA
    # (`tf.math.bincount` takes its size from the data, and XLA lowers
    # DenseBincount to a one-hot product that does not finish at this size).
    counts = tf.math.unsorted_segment_sum(
        tf.ones_like(bucket_ids, tf.int32), bucket_ids, num_buckets + 1
    )
    return tf.cast(counts[:-1], tf.int64)


def _pick(vector, index):
    # A masked sum, not `vector[index]`: XLA compiles a dynamic slice of a
    # fused producer very slowly (seconds per slice), a reduction quickly.
    positions = tf.range(vector.shape[0], dtype=index.dtype)
    return tf.reduce_sum(
        tf.where(tf.equal(positions, index), vector, tf.zeros_like(vector))
    )


def _first_reaching(running, wanted):
    index = tf.reduce_sum(tf.cast(running < wanted, tf.int64))
    return tf.minimum(index, running.shape[0] - 1)


def _cut(counts, num_wanted):
    """Finds the bucket at which a running count reaches `num_wanted`.

    The running count is taken in blocks of `_CUT_BLOCK`: XLA on CPU lowers
    `tf.cumsum` to a reduce-window that is quadratic in the axis length.

    Args:
        counts: int64 `[num_buckets]` histogram, `num_buckets` static.
        num_wanted: int64 scalar, `0 <= num_wanted <= sum(counts)`.

    Returns:
        `(bucket, num_from_bucket)`: every key in a bucket below `bucket`
        is taken, and `num_from_bucket` more come from `bucket` itself.
    """
    num_buckets = counts.shape[0]
    num_blocks = -(-num_buckets // _CUT_BLOCK)
    blocks = tf.reshape(
        tf.pad(counts, [[0, num_blocks * _CUT_BLOCK - num_buckets]]),
        [num_blocks, _CUT_BLOCK],
    )
    block_totals = tf.reduce_sum(blocks, axis=1)
    block_running = tf.cumsum(block_totals)
    block = _first_reaching(block_running, num_wanted)
    before_block = _pick(block_running, block) - _pick(block_totals, block)

    is_block = tf.equal(tf.range(num_blocks, dtype=tf.int64), block)
    in_block = tf.reduce_sum(
        tf.where(is_block[:, None], blocks, tf.zeros_like(blocks)), axis=0
    )
    running = tf.cumsum(in_block)
    offset = _first_reaching(running, num_wanted - before_block)
    num_below = before_block + _pick(running, offset) - _pick(in_block, offset)
    return block * _CUT_BLOCK + offset, num_wanted - num_below


def select_smallest(high, low, num_high_buckets, candidates, num_selected):
    """Radix-selects the `num_selected` candidates with the smallest keys.

    A key is the pair `(high, low)` with `0 <= high < num_high_buckets`
    and `0 <= low < 2^16`, compared high first.

    Returns:
        `(below, at_cut, num_from_cut)`: `below` marks candidates whose key
        is smaller than the cut key, all of them selected; `at_cut` marks
        candidates holding the cut key, of which `num_from_cut` are wanted.
    """
    high = tf.where(candidates, high, num_high_buckets)
    bucket, num_from_bucket = _cut(
        _histogram(high, num_high_buckets), num_selected
    )
    bucket = tf.cast(bucket, high.dtype)
    low = tf.where(tf.equal(high, bucket), low, _NUM_LOW_BUCKETS)
    cut_key, num_from_cut = _cut(
        _histogram(low, _NUM_LOW_BUCKETS), num_from_bucket
    )
    cut_key = tf.cast(cut_key, low.dtype)
    below = (high < bucket) | (low < cut_key)
    return below, tf.equal(low, cut_key), num_from_cut


def random_subset(candidates, num_selected, seed, fallback=None):
    """Selects exactly `num_selected` candidate positions uniformly at random.

    Args:
        candidates: bool tensor of any static shape; `True` marks positions
            that may be selected.
        num_selected: int scalar. Values above the number of candidates
            (plus fallback positions) are clipped to it.
        seed: int32/int64 tensor of shape `[2]`, a stateless RNG seed.
        fallback: optional bool tensor shaped like `candidates`, disjoint
            from it: positions taken, uniformly at random, only once every
            candidate is selected.

    Returns:
        bool tensor shaped like `candidates`, `True` at exactly
        `min(num_selected, count(candidates | fallback))` positions: all of
        `candidates` before any of `fallback`, every subset within a group
        equally likely up to the 31-bit key resolution.
    """
    candidates = tf.convert_to_tensor(candidates, tf.bool)
    flat = tf.reshape(candidates, [-1])
    num_high_buckets = _NUM_KEY_HIGH_BUCKETS
    if fallback is not None:
        # Fallback keys get the top bit of the high part, so they all sort
        # after the candidates' keys.
        fallback = tf.reshape(tf.convert_to_tensor(fallback, tf.bool), [-1])
        num_high_buckets *= 2
    size = flat.shape[0]

    # Full-range integers masked to 31 bits: a bounded integer range makes
    # XLA draw through a slow modulo path (over 10 s for 22M keys). Philox
    # named explicitly: "auto_select" picks different generators for XLA
    # and for TF's kernels, and compiled results must equal uncompiled ones.
    keys = tf.bitwise.bitwise_and(
        tf.random.stateless_uniform(
            [size], seed=seed, minval=None, maxval=None, dtype=tf.int32,
            alg="philox",
        ),
        (1 << _KEY_BITS) - 1,
    )
    high = tf.bitwise.right_shift(keys, _LOW_BITS)
    if fallback is not None:
        high = tf.where(fallback, high + _NUM_KEY_HIGH_BUCKETS, high)
        flat = flat | fallback
    num_selected = tf.minimum(tf.cast(num_selected, tf.int64), _count(flat))
    below, at_cut, num_from_cut = select_smallest(
        high,
        tf.bitwise.bitwise_and(keys, _NUM_LOW_BUCKETS - 1),
        num_high_buckets,
        flat,
        num_selected,
    )

    def first_by_position():
        # Positions are unique, so this select has no ties of its own.
        position = tf.range(size, dtype=tf.int64)
        by_position, last, num_last = select_smallest(
            tf.bitwise.right_shift(position, _LOW_BITS),
            tf.bitwise.bitwise_and(position, _NUM_LOW_BUCKETS - 1),
            max(1, -(-size // _NUM_LOW_BUCKETS)),
            at_cut,
            num_from_cut,
        )
        return by_position | (last & (num_last > 0))

    ties = tf.cond(num_from_cut < _count(at_cut), first_by_position,
                   lambda: at_cut)
    return tf.reshape(flat & (below | ties), tf.shape(candidates))
