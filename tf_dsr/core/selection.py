"""Exact-size uniform random subsets of a boolean tensor, without a sort.

Growing weights (DSR's Algorithm 1, the growth step) and drawing initial
masks both need "pick exactly `n` of these positions uniformly at
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

Outside XLA a faster route gives the same answer: when only a few of many
candidates are wanted (growth picks about 2% of the free positions), keep
the candidates whose key lies below a cutoff that about
`n + 6 sqrt(n) + 64` of them pass, compact those with `tf.where`, find the
n-th smallest key among them with a small `top_k`, and mark every
candidate up to that cut key with one comparison. Every candidate below
the cutoff is kept, so the `n` smallest keys overall are the `n` smallest
survivors, ties again going to the lowest position: the subset is
bit-identical to the radix select's. If fewer than `n` pass (a 6-sigma
event, or fallback positions are needed) the whole pool is sorted instead,
with the same result. XLA cannot compile the data-dependent `tf.where`, so
compiled functions always take the radix select.
"""

import tensorflow as tf

from tf_dsr._keras_internals import in_xla_context
from tf_dsr.core.counts import count_active

_LOW_BITS = 16
_NUM_LOW_BUCKETS = 1 << _LOW_BITS
_KEY_BITS = 31
_NUM_KEY_HIGH_BUCKETS = 1 << (_KEY_BITS - _LOW_BITS)
_CUT_BLOCK = 256


def _histogram(bucket_ids, num_buckets):
    """Counts of `bucket_ids` in `[0, num_buckets)`; the id `num_buckets`
    (non-candidates) is not counted."""
    if not _in_xla_context():
        # TensorFlow's CPU bincount shares the work out over threads and is
        # 4-5x faster than its single-threaded segment sum (LeNet's 235k
        # weights, 2^16 buckets); ids at `maxlength` and above are dropped.
        counts = tf.math.bincount(bucket_ids, minlength=num_buckets,
                                  maxlength=num_buckets, dtype=tf.int32)
        return tf.cast(tf.reshape(counts, [num_buckets]), tf.int64)  # static shape
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


def _in_xla_context():
    """True while tracing for XLA (or when that cannot be told: the radix
    select is always valid)."""
    return in_xla_context()


_TRACED = {}


def per_shape_function(fn):
    """Wraps `fn` so that graphs trace it once per argument signature.

    A reallocation graph repeats the same per-tensor subgraph for every
    kernel (WRN-28-2: 24 kernels of 6 shapes; ResNet-50: 49 of 17), and
    building TF ops in Python is what makes the first call slow (seconds
    per dozen kernels). Inside a graph, `fn` becomes a `tf.function` traced
    once for each list of argument shapes and dtypes (and separately for
    XLA, which takes other code paths) and called as a function op;
    TensorFlow inlines such calls before running the graph, so what runs
    is unchanged. Eagerly, `fn` simply runs.

    Args:
        fn: a function of tensors only (no Python values that change the
            graph), returning tensors.

    Returns:
        A function with the same signature.
    """

    def call(*args):
        if tf.executing_eagerly():
            return fn(*args)
        args = [tf.convert_to_tensor(a) for a in args]
        key = (fn, _in_xla_context(),
               tuple((tuple(a.shape), a.dtype) for a in args))
        traced = _TRACED.get(key)
        if traced is None:
            traced = tf.function(fn, autograph=False)
            _TRACED[key] = traced
        return traced(*args)

    return call


def _num_expected_passing(num_selected):
    # A binomial count with this mean falls below `num_selected` with
    # probability about Phi(-6) ~ 1e-9; the constant covers tiny requests.
    n = tf.cast(num_selected, tf.float64)
    return n + 6.0 * tf.sqrt(n) + 64.0


def _passing_positions(flat, keys, num_selected, num_candidates):
    """Positions of the candidates whose key lies below a cutoff.

    The cutoff is chosen so that about `_num_expected_passing(num_selected)`
    candidates pass; every candidate with a smaller key than a passing one
    passes too.

    Returns:
        int64 `[m]`, increasing positions; `m` is data-dependent.
    """
    # Keys are uniform on [0, 2^31): a cutoff at fraction p of the range is
    # passed by about p * num_candidates candidates.
    fraction = _num_expected_passing(num_selected) / tf.cast(
        tf.maximum(num_candidates, 1), tf.float64
    )
    cutoff = tf.minimum(tf.math.ceil(fraction * float(1 << _KEY_BITS)),
                        float(1 << _KEY_BITS))
    # `keys <= cutoff - 1` keeps the comparison in int32; subtracting in
    # float64 first keeps 2^31 (everything passes) out of int32's range.
    last_passing = tf.cast(cutoff - 1.0, tf.int32)
    return tf.where(flat & (keys <= last_passing))[:, 0]


def _smallest_by_key(keys, positions, num_selected, size):
    """The `num_selected` of `positions` with the smallest `keys`, as a mask.

    Args:
        keys: int32/int64 `[m]` non-negative keys, one per position.
        positions: int64 `[m]`, increasing.
        num_selected: int64 scalar, `<= m`.
        size: Python int, length of the returned mask.

    Returns:
        bool `[size]`; ties at the cut go to the lowest positions.
    """
    # `top_k` puts the lower index first among equal values and positions
    # increase, so ties go to the lowest position, as in the radix select.
    # Keys are non-negative, so negating them cannot overflow.
    smallest = tf.math.top_k(-keys, k=tf.cast(num_selected, tf.int32)).indices
    chosen = tf.gather(positions, smallest)
    return tf.scatter_nd(chosen[:, None], tf.ones_like(chosen, tf.bool), [size])


def _select_up_to_cut(flat, keys, positions, num_selected):
    """The `num_selected` smallest-key candidates, given all passing ones.

    Finds the cut key among the few passing candidates and marks every
    candidate up to it with one comparison over the tensor: sorting all
    passing keys and scattering the chosen positions back costs several
    times more (TopK and ScatterNd over ~n elements).

    Args:
        flat: bool `[size]` candidates.
        keys: int32 `[size]` keys in `[0, 2^31)`.
        positions: int64 `[m]` increasing positions, every candidate whose
            key is below some cutoff, `m >= num_selected`.
        num_selected: int64 scalar.

    Returns:
        bool `[size]`: the candidates with the `num_selected` smallest keys,
        ties at the cut going to the lowest positions.
    """
    passing_keys = tf.gather(keys, positions)

    def up_to_cut():
        # The n-th smallest of m keys is the (m - n + 1)-th largest, and
        # m - n is small (about 6 sqrt(n)), so `top_k` keeps a small heap.
        num_passing = tf.size(positions)
        cut = tf.math.top_k(
            passing_keys, k=num_passing - tf.cast(num_selected, tf.int32) + 1
        ).values[-1]
        at_cut = tf.equal(passing_keys, cut)
        num_from_cut = num_selected - count_active(passing_keys < cut)

        def lowest_at_cut():
            # Rare with 31-bit keys: candidates share the cut key and only
            # some are wanted; take the lowest positions among them.
            taken = tf.boolean_mask(positions, at_cut)[:num_from_cut]
            return (flat & (keys < cut)) | tf.scatter_nd(
                taken[:, None], tf.ones_like(taken, tf.bool), tf.shape(flat,
                                                                     tf.int64)
            )

        return tf.cond(num_from_cut < count_active(at_cut), lowest_at_cut,
                       lambda: flat & (keys <= cut))

    return tf.cond(num_selected > 0, up_to_cut,
                   lambda: tf.zeros_like(flat))


def _smallest_in_pool(flat, keys, num_selected, fallback):
    """The radix select's subset by sorting every candidate and fallback.

    Outside XLA, the rare case where filtering keeps too few: fallback
    positions are wanted, or a 6-sigma shortfall.
    """
    pool = flat if fallback is None else flat | fallback
    positions = tf.where(pool)[:, 0]
    pool_keys = tf.gather(keys, positions)
    if fallback is not None:
        # Bit 31 set on fallback keys ranks them after every candidate.
        pool_keys = tf.cast(pool_keys, tf.int64) + tf.bitwise.left_shift(
            tf.cast(tf.gather(fallback, positions), tf.int64), _KEY_BITS
        )
    return _smallest_by_key(pool_keys, positions, num_selected, flat.shape[0])


def _radix_select_subset(flat, keys, num_selected, fallback):
    """The `num_selected` smallest-key positions by two-level radix select.

    Fallback positions rank after every candidate; ties go to the lowest
    position.
    """
    size = flat.shape[0]
    high = tf.bitwise.right_shift(keys, _LOW_BITS)
    num_high_buckets = _NUM_KEY_HIGH_BUCKETS
    pool = flat
    if fallback is not None:
        # Fallback keys get the top bit of the high part, so they all sort
        # after the candidates' keys.
        high = tf.where(fallback, high + _NUM_KEY_HIGH_BUCKETS, high)
        num_high_buckets *= 2
        pool = flat | fallback
    below, at_cut, num_from_cut = select_smallest(
        high,
        tf.bitwise.bitwise_and(keys, _NUM_LOW_BUCKETS - 1),
        num_high_buckets,
        pool,
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

    ties = tf.cond(num_from_cut < count_active(at_cut), first_by_position,
                   lambda: at_cut)
    return pool & (below | ties)


def random_subset(candidates, num_selected, seed, fallback=None,
                  num_candidates=None, num_fallback=None):
    """Selects exactly `num_selected` candidate positions uniformly at random.

    Each position gets a 31-bit key drawn from `seed` (Philox) and the
    candidates with the smallest keys are taken, ties by position. Compiled
    with XLA this runs a radix select; otherwise it usually filters and
    sorts a few candidates (module docstring). The result is the same.

    Args:
        candidates: bool tensor of any static shape; `True` marks positions
            that may be selected.
        num_selected: int scalar. Values above the number of candidates
            (plus fallback positions) are clipped to it.
        seed: int32/int64 tensor of shape `[2]`, a stateless RNG seed.
        fallback: optional bool tensor shaped like `candidates`, disjoint
            from it: positions taken, uniformly at random, only once every
            candidate is selected.
        num_candidates: optional int scalar, `count(candidates)` if the
            caller knows it (saves a pass over the tensor). Defaults to None.
        num_fallback: optional int scalar, `count(fallback)`, likewise.

    Returns:
        bool tensor shaped like `candidates`, `True` at exactly
        `min(num_selected, count(candidates | fallback))` positions: all of
        `candidates` before any of `fallback`, every subset within a group
        equally likely up to the 31-bit key resolution.
    """
    candidates = tf.convert_to_tensor(candidates, tf.bool)
    flat = tf.reshape(candidates, [-1])
    size = flat.shape[0]
    if fallback is not None:
        fallback = tf.reshape(tf.convert_to_tensor(fallback, tf.bool), [-1])

    # Full-range integers masked to 31 bits: a bounded integer range makes
    # XLA draw through a slow modulo path (BUILD_NOTES.md). Philox
    # named explicitly: "auto_select" picks different generators for XLA
    # and for TF's kernels, and compiled results must equal uncompiled ones.
    keys = tf.bitwise.bitwise_and(
        tf.random.stateless_uniform(
            [size], seed=seed, minval=None, maxval=None, dtype=tf.int32,
            alg="philox",
        ),
        (1 << _KEY_BITS) - 1,
    )
    if num_candidates is None:
        num_candidates = count_active(flat)
    num_candidates = tf.cast(num_candidates, tf.int64)
    num_in_pool = num_candidates
    if fallback is not None:
        if num_fallback is None:
            num_fallback = count_active(fallback)
        num_in_pool += tf.cast(num_fallback, tf.int64)
    num_selected = tf.minimum(tf.cast(num_selected, tf.int64), num_in_pool)

    if _in_xla_context():
        selected = _radix_select_subset(flat, keys, num_selected, fallback)
    else:
        # Passing positions are candidates only: when fallback positions are
        # needed, too few pass and the whole pool is sorted instead.
        positions = _passing_positions(flat, keys, num_selected, num_candidates)
        selected = tf.cond(
            tf.size(positions, out_type=tf.int64) >= num_selected,
            lambda: _select_up_to_cut(flat, keys, positions, num_selected),
            lambda: _smallest_in_pool(flat, keys, num_selected, fallback),
        )
    return tf.reshape(selected, tf.shape(candidates))


_SCORE_HIGH_BUCKETS = 1 << 15


def smallest_magnitudes(score, candidates, num_selected, seed):
    """Selects the `num_selected` candidates of smallest `|score|`.

    Linear in the tensor size (radix select on the float32 bit pattern of
    `|score|`, no sort). Candidates tied at the cut magnitude are chosen
    uniformly at random. Magnitudes must be finite.

    Args:
        score: float tensor, any static shape (a kernel: magnitude pruning).
        candidates: bool tensor shaped like `score`; positions that may be
            selected.
        num_selected: int scalar; clipped to `[0, count(candidates)]`.
        seed: int tensor `[2]`, stateless seed for breaking ties.

    Returns:
        bool tensor shaped like `score`, `True` at exactly
        `min(num_selected, count(candidates))` candidates, none of which has
        a larger magnitude than an unselected candidate.
    """
    candidates = tf.reshape(tf.convert_to_tensor(candidates, tf.bool), [-1])
    magnitude = tf.abs(tf.reshape(tf.cast(score, tf.float32), [-1]))
    # |x| >= 0 has a clear sign bit, so its bits as int32 lie in [0, 2^31)
    # and order exactly like the magnitudes.
    keys = tf.bitcast(magnitude, tf.int32)
    num_selected = tf.clip_by_value(
        tf.cast(num_selected, tf.int64), 0, count_active(candidates)
    )
    below, at_cut, num_from_cut = select_smallest(
        tf.bitwise.right_shift(keys, _LOW_BITS),
        tf.bitwise.bitwise_and(keys, _NUM_LOW_BUCKETS - 1),
        _SCORE_HIGH_BUCKETS,
        candidates,
        num_selected,
    )
    at_cut = candidates & at_cut
    ties = random_subset(at_cut, num_from_cut, seed)
    return tf.reshape(candidates & (below | ties), tf.shape(score))
