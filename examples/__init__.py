"""Scripts that reproduce the experiments of Mostafa & Wang (ICML 2019).

Run them from the repository root, e.g. `python examples/lenet300_mnist.py`
(or `python -m examples.lenet300_mnist`); this file only makes
`from examples import common` work for the scripts and their tests.
"""
