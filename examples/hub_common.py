"""What the keras-hub examples share: the DSR and training flags, and one
run of a method (make the model sparse, train it on shuffled batches).

`vit_digits.py` and `gpt2_python_source.py` compare dense, DSR and static
sparse training of a keras-hub task model built from its classes.
"""

import argparse
import warnings

import tensorflow as tf

import tf_dsr

METHODS = ("dense", "dsr", "static")
LABELS = {"dense": "dense", "dsr": "DSR", "static": "static sparse"}


def parser(description, epochs, period):
    """An argument parser with the flags both examples take."""
    result = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    result.add_argument("--epochs", type=int, default=epochs, help="Training epochs.")
    result.add_argument("--sparsity", type=float, default=0.9,
                        help="Fraction of zeros in each sparse kernel.")
    result.add_argument("--seed", type=int, default=0,
                        help="Seeds initialisation, masks, shuffling and DSR.")
    result.add_argument("--batch_size", type=int, default=32, help="Batch size.")
    result.add_argument("--learning_rate", type=float, default=2e-3,
                        help="Adam's learning rate.")
    result.add_argument("--prune_target", type=float, default=0.05,
                        help="DSR: weights pruned per reallocation, as a fraction "
                             "of the active sparse weights.")
    result.add_argument("--period", type=int, default=period,
                        help="DSR: optimizer steps between reallocations.")
    result.add_argument("--stop_fraction", type=float, default=0.9,
                        help="DSR: no reallocation after this fraction of the epochs.")
    return result


def sparsify(model, method, args):
    """Makes `model` sparse in place unless `method` is dense; returns the
    text of `tf_dsr.sparsify`'s report of what stays dense ("" if none)."""
    if method == "dense":
        return ""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        tf_dsr.sparsify(model, args.sparsity, seed=args.seed)
    return "\n".join(str(w.message) for w in caught
                     if str(w.message).startswith("`tf_dsr.sparsify`"))


def fit(model, method, args, x, y):
    """Trains `model` (compiled) with the method's callback on the same
    batches for every method; returns the number of reallocations."""
    callbacks = []
    if method == "dsr":
        stop_epoch = max(1, int(round(args.stop_fraction * args.epochs)))
        callbacks.append(tf_dsr.DynamicReparam(
            prune_target=args.prune_target, period=args.period,
            stop_epoch=stop_epoch if args.epochs > 1 else None, seed=args.seed))
    # Reshuffled every epoch (keras-hub task models do not shuffle arrays
    # themselves: hand them a tf.data set).
    batches = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(
        len(y), seed=args.seed, reshuffle_each_iteration=True).batch(args.batch_size)
    model.fit(batches, epochs=args.epochs, shuffle=False, verbose=0, callbacks=callbacks)
    return int(callbacks[0].state.num_reallocations.numpy()) if callbacks else 0
