"""`tf_dsr.app.options`: a method's options reach `tf-dsr train` and
`tf-dsr compare` from its callback's constructor, with no other file edited."""

import json
import re

import pytest

from tf_dsr.app import cli
from tf_dsr.app import compare
from tf_dsr.app import options
from tf_dsr.methods import registry
from tf_dsr.methods.set import SET


class FooSET(SET):
    """SET with one more constructor argument, for these tests.

    Args:
        prune_fraction: as `SET`'s.
        prune_target: as `SET`'s.
        period: as `SET`'s.
        stop_epoch: as `SET`'s.
        seed: as `SET`'s.
        jit_compile: as `SET`'s.
        foo: int >= 1, how many foos the test asked for. Defaults to 1.
    """

    constructed = []

    def __init__(self, prune_fraction=None, prune_target=None, period=100, stop_epoch=None,
                 seed=None, jit_compile=False, foo=1):
        if isinstance(foo, bool) or not isinstance(foo, int) or foo < 1:
            raise ValueError(f"`foo` must be an int >= 1. Received: {foo!r}.")
        super().__init__(prune_fraction, prune_target, period, stop_epoch, seed, jit_compile)
        self.foo = foo
        FooSET.constructed.append(foo)


@pytest.fixture
def foo_method(monkeypatch):
    """The registry with one more method, `foo-set`, taking option `foo`."""
    monkeypatch.setitem(registry.REGISTRY, "foo-set", registry.Method(
        "foo-set", "SET with foo", registry.SPARSE, FooSET, summary="SET plus foo"))
    monkeypatch.setattr(FooSET, "constructed", [])
    return FooSET


def _usage_error(argv, capsys):
    with pytest.raises(SystemExit) as error:
        cli.main(argv)
    assert error.value.code == 2
    captured = capsys.readouterr()
    assert "Initial masks" not in captured.out  # nothing trained
    return " ".join(captured.err.split())


@pytest.mark.parametrize("text, value", [
    ("0.05", 0.05), ("600", 600), ("{0: 25, 10: 50}", {0: 25, 10: 50}), ("layer", "layer"),
    ("None", None), ("1e-3", 1e-3), ("0:25", "0:25"),
])
def test_values_are_python_literals_or_text(text, value):
    assert options.parse_value(text) == value


def test_train_help_lists_a_new_option_with_its_docstring(foo_method, capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--foo VALUE [foo-set] int >= 1, how many foos the test asked for." in out
    assert "foo-set: SET plus foo" in out  # a --method choice


def test_without_the_method_there_is_no_such_flag(capsys):
    assert _usage_error(["train", "--foo", "3"], capsys).endswith(
        "error: unrecognized arguments: --foo 3")


def test_train_constructs_the_callback_with_the_new_option(foo_method, capsys):
    assert cli.main(["train", "--method", "foo-set", "--foo", "3", "--epochs", "1",
                     "--period", "10", "--verbose", "0"]) == 0
    assert foo_method.constructed == [3]
    first = capsys.readouterr().out.splitlines()[0]
    assert first.endswith("SET with foo, sparsity 0.9, prune target 0.05, period 10, foo 3")


def test_a_value_the_constructor_refuses_is_a_usage_error_naming_the_flag(foo_method, capsys):
    err = _usage_error(["train", "--method", "foo-set", "--foo", "0"], capsys)
    assert "error: --foo 0: foo-set: `foo` must be an int >= 1. Received: 0." in err
    err = _usage_error(["compare", "--methods", "foo-set", "--foo", "'many'"], capsys)
    assert "--foo many: foo-set at sparsity 0.9: `foo` must be an int >= 1" in err


@pytest.mark.parametrize("argv, message", [
    (["train", "--method", "dsr", "--foo", "3"],
     "--foo 3: not used by dsr; it is for foo-set. Leave it out"),
    (["compare", "--methods", "dsr", "static", "--foo", "3"],
     "--foo 3: not used by dsr, static; it is for foo-set. Leave it out"),
])
def test_an_option_no_chosen_method_takes_is_refused(foo_method, argv, message, capsys):
    assert message in _usage_error(argv, capsys)
    assert foo_method.constructed == []


def test_compare_passes_the_option_to_the_method_taking_it(foo_method, tmp_path):
    argv = ["compare", "--methods", "foo-set", "dsr", "--sparsities", "0.9", "--seeds", "1",
            "--epochs", "1", "--num-train", "100", "--period", "1", "--foo", "2", "--output-dir",
            str(tmp_path)]
    assert cli.main(argv) == 0
    # Once when every run is checked before training, once for the run.
    assert foo_method.constructed == [2, 2]
    payload = json.loads((tmp_path / "digits_comparison.json").read_text())
    assert payload["config"]["foo"] == 2 and payload["config"]["prune_target"] == 0.05
    assert [r["method"] for r in payload["results"]] == ["foo-set", "dsr"]
    assert re.search(r"^\| SET with foo \| 1 \| ", (tmp_path / "digits_comparison.md")
                     .read_text(), re.M)


def test_run_grid_refuses_an_option_no_method_takes(foo_method):
    with pytest.raises(ValueError, match="Option foo=2 is not taken by dsr; it is for foo-set"):
        compare.run_grid(["dsr"], [0.9], 1, 1, options={"foo": 2})
    with pytest.raises(ValueError, match="it is for no method"):
        compare.check_options(["dsr"], {"fooo": 2})
    with pytest.raises(ValueError, match="stop_fraction"):
        compare.check_options(["dsr"], {"stop_epoch": 2})


def test_an_error_names_the_flags_it_is_about_not_words_of_its_prose():
    from tf_dsr.app.options import flags_in
    given = {"period": 25, "end_step": 10, "drop_fraction": 0.3}
    error = ValueError("RigL: end_step=10 is at or below period=25: the first "
                       "update is due at step 25 or later")
    assert flags_in(error, given) == "--period 25, --end-step 10"
    prose = ValueError("`drop_fraction` must be in (0, 1]; the period of updates is fine")
    assert flags_in(prose, given) == "--drop-fraction 0.3"
