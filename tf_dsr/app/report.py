"""Summaries of comparison results: tables and plots.

Turns the result dicts of `tf_dsr.app.compare.run_one` into the report:
`summarize` (mean ± std per method and sparsity), `format_markdown` (the
tables of docs/reproducing_the_paper.md) and `plot_accuracy` /
`plot_layer_sparsity` (its figures). Methods appear in registry order with the registry's
labels (`tf_dsr/methods/registry.py`).
"""

import numpy as np

from tf_dsr.methods.registry import REGISTRY
from tf_dsr.methods.registry import is_full_dense


def _label(method):
    return REGISTRY[method].label


def summarize(results):
    """Mean and std of test accuracy per `(method, sparsity)`.

    The std is the sample standard deviation (ddof=1), 0 for a single run.

    Returns:
        dict `(method, sparsity) -> (mean, std, num_runs, epochs)`;
        `dense` has sparsity None.
    """
    groups = {}
    for result in results:
        key = (result["method"], result["sparsity"])
        groups.setdefault(key, []).append(result)
    summary = {}
    for key, runs in groups.items():
        accuracies = np.array([r["test_accuracy"] for r in runs], float)
        std = float(accuracies.std(ddof=1)) if len(accuracies) > 1 else 0.0
        summary[key] = (float(accuracies.mean()), std, len(runs), runs[0]["epochs"])
    return summary


def format_cell(mean, std):
    """`mean ± std` of accuracies in [0, 1], as percentages with 2 decimals."""
    return f"{100 * mean:.2f} ± {100 * std:.2f}"


def format_markdown(results, title=None):
    """A markdown table: methods x sparsities, test accuracy (%) mean ± std.

    Full dense has no sparsity: its one value is repeated in every column
    (and stated above the table) so columns read like the paper's tables.

    Args:
        results: list of result dicts from `run_one`.
        title: optional first line.

    Returns:
        The markdown text, ending in a newline.
    """
    summary = summarize(results)
    sparsities = sorted({s for (_, s) in summary if s is not None}, reverse=True)
    methods = [m for m in REGISTRY if any(key[0] == m for key in summary)]
    num_seeds = max(n for (_, _, n, _) in summary.values())
    lines = []
    if title:
        lines += [title, ""]
    lines.append(f"Test accuracy (%), mean ± std over {num_seeds} seed(s).")
    dense = _full_dense(summary)
    if dense is not None:
        mean, std, n, epochs = summary[(dense, None)]
        lines.append(f"Full dense: {format_cell(mean, std)} ({epochs} epochs, {n} runs).")
    lines.append("")
    lines.append("| method | epochs | " + " | ".join(f"s = {s:g}" for s in sparsities) + " |")
    lines.append("| --- | --- | " + " | ".join("---" for _ in sparsities) + " |")
    for method in methods:
        if method == dense:
            mean, std, _, epochs = summary[(dense, None)]
            cells = [format_cell(mean, std)] * len(sparsities)
        else:
            cells, epochs = [], None
            for sparsity in sparsities:
                entry = summary.get((method, sparsity))
                if entry is None:
                    cells.append("–")
                else:
                    cells.append(format_cell(entry[0], entry[1]))
                    epochs = entry[3]
        lines.append(f"| {_label(method)} | {epochs} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _full_dense(summary):
    """The full-dense method of `summary` (results without sparsity), or None."""
    return next((name for name, sparsity in summary
                 if sparsity is None and is_full_dense(name)), None)


# ----- plots -----------------------------------------------------------------
def _pyplot():
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError("Plots need matplotlib: pip install 'tf-dsr[demo]'.") from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_accuracy(results, path, title="LeNet-300-100 on the digits"):
    """Draws test accuracy vs sparsity per method (mean, std error bars).

    Full dense, which has no sparsity, is a horizontal line with a band of
    ± one std. Writes a PNG to `path`.
    """
    plt = _pyplot()
    summary = summarize(results)
    figure, axes = plt.subplots(figsize=(7, 4.5))
    dense = _full_dense(summary)
    for method in REGISTRY:
        if method == dense or not any(key[0] == method for key in summary):
            continue
        points = sorted((s, m, sd) for (name, s), (m, sd, _, _) in summary.items()
                        if name == method)
        x, mean, std = (np.array(column, float) for column in zip(*points))
        axes.errorbar(x, 100 * mean, yerr=100 * std, marker="o", capsize=3,
                      label=_label(method))
    if dense is not None:
        mean, std, _, _ = summary[(dense, None)]
        axes.axhline(100 * mean, color="black", linestyle="--", label=_label(dense))
        axes.axhspan(100 * (mean - std), 100 * (mean + std), color="black", alpha=0.08)
    axes.set_xlabel("sparsity (fraction of zero weights)")
    axes.set_ylabel("test accuracy (%)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_layer_sparsity(results, path, sparsity=None, method="dsr",
                        title="Per-layer sparsity during DSR training"):
    """Draws each layer's sparsity over training steps for `method`.

    Uses the runs at `sparsity` (default: the highest with a recorded
    history): the first seed as solid lines, the others faint. The global
    sparsity, which DSR conserves, is a dashed line. Writes a PNG to `path`.

    Raises:
        ValueError: no run of `method` recorded a sparsity history.
    """
    runs = [r for r in results if r["method"] == method and r.get("sparsity_history")]
    if sparsity is None and runs:
        sparsity = max(r["sparsity"] for r in runs)
    runs = sorted((r for r in runs if r["sparsity"] == sparsity), key=lambda r: r["seed"])
    if not runs:
        raise ValueError(
            f"No '{method}' run at sparsity {sparsity} has a sparsity history; "
            "run the grid with `history_every` set."
        )
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, run in enumerate(runs):
        history = run["sparsity_history"]
        first = index == 0
        for color, (name, values) in zip(colors, history["layers"].items()):
            size = run["num_weights"][name]
            axes.plot(history["step"], values, color=color, alpha=1.0 if first else 0.25,
                      linewidth=1.5 if first else 1.0,
                      label=f"{name} ({size} weights)" if first else None)
        axes.plot(history["step"], history["sparsity"], color="black", linestyle="--",
                  alpha=1.0 if first else 0.25, label="all sparse kernels" if first else None)
    axes.set_xlabel("training step")
    axes.set_ylabel("sparsity of the layer")
    axes.set_title(f"{title} (s = {sparsity:g}, {len(runs)} seed(s))")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return sparsity
