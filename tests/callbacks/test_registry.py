"""The method registry: options come from constructors, and nothing given
to it is dropped silently."""

import warnings

import pytest

from tf_dsr.methods import registry
from tf_dsr.training.schedule import Schedule

RUN = registry.Run(sparsity=0.9, seed=0, total_steps=200)


@pytest.mark.parametrize("options, match", [
    ({"drop_fractoin": 0.5}, "drop_fractoin"),
    ({"growth": "gradient"}, "growth"),  # fixed by the entry: dsr vs dsr-gradient
    ({"seed": 3}, "seed"),  # the run's
])
def test_an_option_no_method_takes_is_refused(options, match):
    with pytest.raises(ValueError, match=match):
        registry.make_callback("rigl", RUN, **options)


def test_an_option_of_another_method_is_ignored_and_ones_own_are_used():
    rigl = registry.make_callback("rigl", RUN, prune_target=0.05, drop_fraction=0.5,
                                  jit_compile=True)
    assert rigl.drop_fraction == 0.5 and rigl.jit_compile is True
    gradual = registry.make_callback("gradual", RUN, initial_sparsity=0.5)
    assert gradual.initial_sparsity == 0.5 and gradual.final_sparsity == 0.9
    assert (gradual.begin_step, gradual.end_step) == (0, 150)


def test_gradual_takes_both_ends_of_its_schedule_or_neither():
    with pytest.raises(ValueError, match="begin_step.*end_step.*together"):
        registry.make_callback("gradual", RUN, begin_step=10)
    # A period the user gives is kept, even beyond the schedule.
    gradual = registry.make_callback("gradual", RUN, begin_step=0, end_step=30, period=50)
    assert gradual.period == {0: 50}


@pytest.mark.parametrize("kwargs, error", [
    ({"jit_compile": "false"}, TypeError),
    ({"stop_epoch": 2.5}, TypeError),
    ({"stop_epoch": "3"}, TypeError),
    ({"stop_epoch": -1}, ValueError),
])
def test_arguments_of_the_wrong_type_are_type_errors(kwargs, error):
    import tf_dsr
    with pytest.raises(error):
        tf_dsr.RigL(**kwargs)


def test_a_final_update_within_the_fit_is_not_warned_about():
    schedule = Schedule(100, final_step=50)
    # 60 steps in one epoch: the final update is due at step 50.
    assert schedule.due(60, 0, 0) == 60
    assert schedule.no_update_message(0, 0, 0, 60, 1) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Schedule(100).no_update_message(0, 0, 0, 60, 1) is not None
