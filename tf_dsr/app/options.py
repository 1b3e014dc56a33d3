"""The methods' options on the command line, read from the method registry.

Every constructor argument a method's callback takes (`Method.options()`
in `tf_dsr/methods/registry.py`) is one `--<option-with-dashes>` flag of
`tf-dsr train` and `tf-dsr compare`, helped by the `Args:` entry of the
callback's docstring. A value is read as a Python literal (`0.05`, `600`,
`{0: 25, 10: 50}`) or, failing that, kept as text (`layer`). The
callback's constructor validates it; this module turns the constructor's
errors into usage errors that name the flag, before anything trains. No
method's options are listed here: a new constructor argument is a new flag.
"""

import ast
import inspect
import re

from tf_dsr.methods import registry

# Options the application sets for each run itself: `stop_epoch` follows
# from --stop-fraction and the epochs of the run (a comparison doubles
# some methods' epochs), so one value could not serve every run.
SET_BY_THE_APP = frozenset({"stop_epoch"})

# The application's values where the user gives none and the constructor
# has none to give (DSR needs both): the paper's N_prune of 5% of the
# active weights, and a period that gives the digits' short runs dozens of
# updates.
DEFAULTS = {"prune_target": 0.05, "period": 25}


def flag(name):
    """`prune_target` -> `--prune-target`."""
    return "--" + name.replace("_", "-")


def parse_value(text):
    """A flag's text as a Python literal (`0.3`, `600`, `{0: 25}`), else the text."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def takers(names=None):
    """dict, option -> the methods among `names` (default: all) taking it,
    less the options the application sets itself."""
    names = tuple(registry.REGISTRY) if names is None else names
    return {option: methods for option, methods in registry.options(names).items()
            if option not in SET_BY_THE_APP}


def help_text(option, methods):
    """The help of option `option`: each distinct `Args:` entry of the
    callbacks of `methods`, after the methods it documents."""
    texts = {}
    for name in methods:
        callback = registry.get(name).callback
        texts.setdefault(registry.option_help(callback, option), []).append(name)
    return " ".join(f"[{', '.join(names)}] {text}" for text, names in texts.items())


def add_flags(parser):
    """Adds one flag per option of any method in the registry to `parser`."""
    for option, methods in takers().items():
        text = help_text(option, methods)
        if option in DEFAULTS:
            text += f" tf-dsr's default: {DEFAULTS[option]}."
        # argparse formats help with %: a literal % is %%.
        parser.add_argument(flag(option), dest=option, type=parse_value, default=None,
                            metavar="VALUE", help=text.replace("%", "%%"))


def given(args):
    """dict, option -> value, of the option flags given in `args`."""
    return {option: getattr(args, option) for option in takers()
            if getattr(args, option, None) is not None}


def refuse_untaken(args, methods, parser):
    """argparse error for an option flag none of `methods` takes."""
    taken = takers(methods)
    for option, value in given(args).items():
        if option not in taken:
            users = takers()[option]
            parser.error(
                f"{flag(option)} {value}: not used by {', '.join(methods)}; it is for "
                f"{', '.join(users)}. Leave it out, or choose one of those.")


def chosen(args, methods):
    """The options for `methods`: those given, and the application's
    defaults of those the methods take."""
    taken = takers(methods)
    defaults = {option: value for option, value in DEFAULTS.items() if option in taken}
    return {**defaults, **given(args)}


def flags_in(error, options):
    """The flags (with their values) of `options` that `error`'s message
    names: which flags a constructor's error is about ('' if none)."""
    message = str(error)
    # Validators name an argument as `name` or name=value; the bare word
    # ("the period of ...") is prose, not the flag.
    named = [option for option in options
             if re.search(rf"`{option}`|(?<!\w){option}=", message)]
    return ", ".join(f"{flag(option)} {options[option]}" for option in named)


def describe(method, options):
    """`prune target 0.05, period 25, ...`: the options in force for `method`
    (the given ones, else the constructor's defaults), None and False
    left out."""
    parts = []
    for option, parameter in registry.get(method).options().items():
        if option in SET_BY_THE_APP:
            continue
        value = options.get(option, parameter.default)
        if value is not None and value is not False and value is not inspect.Parameter.empty:
            parts.append(f"{option.replace('_', ' ')} {value}")
    return ", ".join(parts)


def usage_error(parser, method, options, error):
    """Reports a constructor's (or a model check's) `error` for `method` as
    a usage error naming the flags it is about."""
    where = flags_in(error, options)
    parser.error(f"{where + ': ' if where else ''}{method}: {error}")

