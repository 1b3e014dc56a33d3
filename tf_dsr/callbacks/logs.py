"""Numbers for the Keras logs that progress bars print readably.

Keras' `Progbar` (Keras 3) prints every logged value as `f"{avg:.4f}"`
(`.4e` when `|avg| <= 1e-3`), where `avg` is the value divided by its
count, which is 1 for values a callback writes into `logs` (they are
"stateful": shown as-is, not averaged). It has no integer or
significant-digit format, so a count prints as `266.0000` and a threshold
of 0.00395 as `0.0040`. The two float subclasses below keep their type
through that division by 1 and choose their own format; everywhere else
(`History`, TensorBoard, CSV, JSON, arithmetic) they are plain floats.
"""


class _LogFloat(float):
    """A float that `Progbar` formats with `_FORMAT` instead of `.4f`."""

    _FORMAT = "g"

    def __truediv__(self, other):
        # Progbar divides by the number of values averaged: 1 here.
        if other == 1:
            return self
        return float(self) / other

    def __format__(self, format_spec):
        return format(float(self), self._FORMAT)


class CountLog(_LogFloat):
    """A count (`num_pruned`): printed as an integer, `266`."""

    def __format__(self, format_spec):
        return str(int(self)) if self.is_integer() else format(float(self), "g")


class ThresholdLog(_LogFloat):
    """A magnitude threshold: three significant digits, `0.00395`, `nan`."""

    _FORMAT = ".3g"
