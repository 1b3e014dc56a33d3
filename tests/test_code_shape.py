"""The shape the code promises to keep (see BUILD_NOTES, "Architecture"):
small files, small functions, and imports that only point down."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "tf_dsr"
MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 60


def _modules():
    return sorted(PACKAGE.rglob("*.py"))


def _name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _code_lines(node, source_lines):
    """Lines of `node` that are code: not blank, not comments, not its
    docstring or those of functions and classes nested in it."""
    docstrings = set()
    for inner in ast.walk(node):
        if isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = inner.body
            if (body and isinstance(body[0], ast.Expr)
                    and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                docstrings.update(range(body[0].lineno, body[0].end_lineno + 1))
    count = 0
    for number in range(node.lineno, node.end_lineno + 1):
        text = source_lines[number - 1].strip()
        if text and not text.startswith("#") and number not in docstrings:
            count += 1
    return count


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_file_is_over_the_limit(path):
    lines = path.read_text().count("\n")
    assert lines <= MAX_FILE_LINES, f"{path.name} has {lines} lines (limit {MAX_FILE_LINES})"


def test_no_function_is_over_the_limit():
    long = []
    for path in _modules():
        source = path.read_text()
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                size = _code_lines(node, lines)
                if size > MAX_FUNCTION_LINES:
                    long.append(f"{_name(path)}.{node.name}: {size} lines")
    assert not long, "functions over the limit:\n" + "\n".join(long)


def _imports(path):
    """The tf_dsr modules `path` imports, anywhere in it (lazy imports too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("tf_dsr"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("tf_dsr"):
                found.add(node.module)
    return found


def test_nothing_inside_the_package_imports_the_package_itself():
    upward = [f"{_name(path)} imports {module}" for path in _modules()
              if _name(path) != "tf_dsr"
              for module in _imports(path) if module == "tf_dsr"]
    assert not upward, "\n".join(upward)


def test_the_library_never_imports_the_application():
    library = [path for path in _modules() if not _name(path).startswith("tf_dsr.app")]
    wrong = [f"{_name(path)} imports {module}" for path in library
             for module in _imports(path) if module.startswith("tf_dsr.app")]
    assert not wrong, "\n".join(wrong)


def _subpackage(module):
    parts = module.split(".")
    return ".".join(parts[:2])


def test_imports_between_parts_of_the_package_have_no_cycle():
    """Between top-level parts (`tf_dsr.core`, `tf_dsr.layers`, ...), every
    import points one way: the graph has no cycle."""
    graph = {}
    for path in _modules():
        source = _subpackage(_name(path))
        if source == "tf_dsr":
            continue  # the package's __init__ re-exports everything
        for module in _imports(path):
            target = _subpackage(module)
            if target not in (source, "tf_dsr"):
                graph.setdefault(source, set()).add(target)
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def _find_cycle(graph):
    state = {}

    def visit(node, trail):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return trail[trail.index(nxt):] + [nxt] if nxt in trail else [node, nxt]
            if nxt not in state:
                found = visit(nxt, trail + [nxt])
                if found:
                    return found
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node, [node])
            if found:
                return found
    return None
