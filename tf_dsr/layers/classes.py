"""The sparse class of every layer class: `SPARSE_CLASSES` and `sparse_class_for`.

`SPARSE_CLASSES` maps each Keras class tf_dsr knows to its sparse class;
`sparse_class_for` makes the sparse class of any other layer class (a
user's own layer) from the names of the kernels it reads in `call`.
"""

import keras

from tf_dsr.layers.attention import SparseMultiHeadAttention
from tf_dsr.layers.base import SparseLayer
from tf_dsr.layers.conv import SparseConv1D
from tf_dsr.layers.conv import SparseConv1DTranspose
from tf_dsr.layers.conv import SparseConv2D
from tf_dsr.layers.conv import SparseConv2DTranspose
from tf_dsr.layers.conv import SparseConv3D
from tf_dsr.layers.conv import SparseConv3DTranspose
from tf_dsr.layers.conv import SparseDepthwiseConv1D
from tf_dsr.layers.conv import SparseDepthwiseConv2D
from tf_dsr.layers.conv import SparseSeparableConv1D
from tf_dsr.layers.conv import SparseSeparableConv2D
from tf_dsr.layers.dense import SparseDense
from tf_dsr.layers.dense import SparseEinsumDense
from tf_dsr.layers.dense import SparseEmbedding
from tf_dsr.layers.dense import SparseReversibleEmbedding
from tf_dsr.layers.rnn import SparseGRU
from tf_dsr.layers.rnn import SparseGRUCell
from tf_dsr.layers.rnn import SparseLSTM
from tf_dsr.layers.rnn import SparseLSTMCell
from tf_dsr.layers.rnn import SparseSimpleRNN
from tf_dsr.layers.rnn import SparseSimpleRNNCell

# Every sparse class, keyed by the Keras class it masks (exact types: a
# user's subclass of Dense may compute something else with its kernel).
SPARSE_CLASSES = {
    cls.keras_class(): cls
    for cls in (
        SparseDense, SparseEinsumDense, SparseEmbedding, SparseReversibleEmbedding,
        SparseConv1D, SparseConv2D, SparseConv3D,
        SparseConv1DTranspose, SparseConv2DTranspose, SparseConv3DTranspose,
        SparseDepthwiseConv1D, SparseDepthwiseConv2D,
        SparseSeparableConv1D, SparseSeparableConv2D,
        SparseSimpleRNNCell, SparseGRUCell, SparseLSTMCell,
        SparseSimpleRNN, SparseGRU, SparseLSTM,
        SparseMultiHeadAttention,
    )
}

# Classes made by `sparse_class_for`, by (layer class, kernel names).
_MADE = {}


def sparse_class_for(layer_class, kernel_names=None):
    """The sparse class of `layer_class`, masking `kernel_names`.

    Args:
        layer_class: a `keras.layers.Layer` subclass.
        kernel_names: None for a Keras class tf_dsr knows
            (`SPARSE_CLASSES`), or the attribute names of the trainable
            variables `layer_class.call` reads as `self.<name>`.

    Returns:
        A `SparseLayer` subclass of `layer_class`. Classes made for a
        user's layer are registered with Keras (`tf_dsr>Sparse<Name>`) so
        that a model config naming them deserializes in this process.
    """
    if kernel_names is None:
        return SPARSE_CLASSES[layer_class]
    key = (layer_class, tuple(kernel_names))
    if key not in _MADE:
        if SPARSE_CLASSES.get(layer_class) is not None and (
            tuple(kernel_names) == SPARSE_CLASSES[layer_class].sparse_kernel_names
        ):
            _MADE[key] = SPARSE_CLASSES[layer_class]
        else:
            name = f"Sparse{layer_class.__name__}"
            registered = f"{name}[{','.join(kernel_names)}]"
            # Two users' classes of one name (registered in two packages)
            # must not share a registered name: a config naming one would
            # load as the other. Unique when the user's registered names are.
            user = keras.saving.get_registered_name(layer_class)
            if user not in (layer_class.__name__, f"Custom>{layer_class.__name__}"):
                registered += f"@{user}"
            _MADE[key] = type(name, (SparseLayer, layer_class), {
                "sparse_kernel_names": tuple(kernel_names),
                "registered_name": registered,
                "__module__": __name__,
                "__doc__": f"`{layer_class.__name__}` with masks on "
                           f"{list(kernel_names)} (made by tf_dsr.sparsify).",
            })
    return _MADE[key]
