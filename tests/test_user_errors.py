"""What the user sees when their own code raises (found by a red team of ~120 runs on files
written without these features in mind): their frames only, exit 2, named as Python names
them; and a valid file that needs grad mode to run (a hook on an intermediate) is checked."""
import pickle

import pytest
from typer.testing import CliRunner

from cli.app import app

runner = CliRunner()
BACKENDS = ["engine", "torch"]


def _lib(backend):
    if backend == "torch":
        pytest.importorskip("torch", reason="PyTorch is not installed (.ci/run installs it)")
        return "torch"
    return "engine"


def _run(tmp_path, monkeypatch, *args):
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, list(args))
    return r, " ".join((r.stdout + r.stderr).split())


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_hook_registered_inside_f_does_not_stop_the_check(tmp_path, monkeypatch, backend):
    """y.register_hook inside f needs y to require grad; the numerical side ran f under no_grad
    and reported PyTorch's 'cannot register a hook' as the user's error (gradcheck passes)."""
    lib = _lib(backend)
    (tmp_path / "hook.py").write_text(f"import {lib} as torch\n\n\ndef f(x):\n    y = x * 2\n"
                                      "    y.register_hook(lambda g: g)\n    return (y * y).sum()\n")
    r, text = _run(tmp_path, monkeypatch, "check", "hook.py", "--x", "1,2", "--backend", backend)
    assert r.exit_code == 0 and "passed" in text, text
    # a hook that rewrites the gradient is what the check sees: analytical 2 * 8x, numerical 8x
    (tmp_path / "hook.py").write_text(f"import {lib} as torch\n\n\ndef f(x):\n    y = x * 2\n"
                                      "    y.register_hook(lambda g: g * 2)\n    return (y * y).sum()\n")
    r, text = _run(tmp_path, monkeypatch, "check", "hook.py", "--x", "1,2", "--backend", backend)
    assert r.exit_code == 1, text


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_hook_that_raises_shows_the_users_line_not_the_no_grad_refusal(tmp_path, monkeypatch, backend):
    lib = _lib(backend)
    (tmp_path / "hook.py").write_text(f"import {lib} as torch\n\n\ndef bad_hook(g):\n"
                                      "    raise RuntimeError('hook failed')\n\n\n"
                                      "def f(x):\n    y = x * 2\n    y.register_hook(bad_hook)\n    return y.sum()\n")
    r, text = _run(tmp_path, monkeypatch, "check", "hook.py", "--x", "1,2", "--backend", backend)
    assert r.exit_code == 2
    assert 'File "hook.py", line 5, in bad_hook' in text and "RuntimeError: hook failed" in text
    assert "cannot register a hook" not in text


def test_sys_exit_while_loading_shows_where_even_in_a_helper(tmp_path, monkeypatch):
    (tmp_path / "exithelper.py").write_text("import sys\nsys.exit(3)\n")
    (tmp_path / "t.py").write_text("import exithelper\n\n\ndef f(x):\n    return x.sum()\n")
    r, text = _run(tmp_path, monkeypatch, "grad", "t.py", "--x", "1,2")
    assert r.exit_code == 2
    assert 'File "t.py", line 1, in <module>' in text and "exithelper.py\", line 2, in <module>" in text
    assert "sys.exit(3) while t.py was being loaded" in text


def test_the_users_exception_class_is_named_as_python_names_it(tmp_path, monkeypatch):
    (tmp_path / "t.py").write_text("class ShapeError(Exception):\n    pass\n\n\n"
                                   "def f(x):\n    raise ShapeError('x has the wrong shape')\n")
    r, text = _run(tmp_path, monkeypatch, "grad", "t.py", "--x", "1,2")
    assert r.exit_code == 2 and "__main__.ShapeError: x has the wrong shape" in text
    assert "__autograd_target__" not in text


def test_the_cause_of_the_users_error_is_shown_above_it(tmp_path, monkeypatch):
    (tmp_path / "t.py").write_text("def load():\n    try:\n        return {}['w']\n    except KeyError as e:\n"
                                   "        raise LookupError('weights missing') from e\n\n\n"
                                   "def f(x):\n    return x.sum() * load()\n")
    r, text = _run(tmp_path, monkeypatch, "grad", "t.py", "--x", "1,2")
    assert r.exit_code == 2
    cause, _, effect = text.partition("The above exception was the direct cause of the following exception:")
    assert 'line 3, in load' in cause and "KeyError: 'w'" in cause
    assert 'line 9, in f' in effect and "LookupError: weights missing" in effect


def test_the_whole_chain_of_causes_is_shown_as_python_shows_it(tmp_path, monkeypatch):
    """Only one level was shown: the root (the missing file) of a three-deep chain was lost."""
    (tmp_path / "t.py").write_text(
        "def read():\n    return open('missing-weights.bin').read()\n\n\n"
        "def parse():\n    try:\n        return read()\n    except OSError as e:\n"
        "        raise KeyError('weights') from e\n\n\n"
        "def load():\n    try:\n        return parse()\n    except KeyError:\n"
        "        raise ValueError('no model')\n\n\n"
        "def f(x):\n    return x.sum() * load()\n")
    r, text = _run(tmp_path, monkeypatch, "grad", "t.py", "--x", "1,2")
    assert r.exit_code == 2
    first, second, third = (text.index("FileNotFoundError"), text.index("KeyError: 'weights'"),
                            text.index("ValueError: no model"))
    assert first < second < third, text
    assert text.count("The above exception was the direct cause") == 1
    assert text.count("During handling of the above exception") == 1
    assert "line 2, in read" in text[:first]


def test_an_engine_error_prints_as_pytorchs_builtin_type_and_still_pickles():
    import traceback

    import engine
    from engine.errors import EngineError, ShapeError
    with pytest.raises(RuntimeError) as info:
        engine.ones(2) + engine.ones(3)
    assert isinstance(info.value, EngineError) and isinstance(info.value, ShapeError)
    assert traceback.format_exception_only(type(info.value), info.value)[0].startswith("RuntimeError: The size of")
    again = pickle.loads(pickle.dumps(info.value))
    assert type(again) is type(info.value) and str(again) == str(info.value)


def test_a_non_scalar_file_output_is_told_to_return_a_scalar_not_to_wrap_the_file_name(tmp_path, monkeypatch):
    (tmp_path / "vec.py").write_text("def f(x):\n    return x * 2\n")
    r, text = _run(tmp_path, monkeypatch, "grad", "vec.py", "--x", "1,2")
    assert r.exit_code == 2 and "sum(vec.py)" not in text and "return a scalar from it" in text
    r, text = _run(tmp_path, monkeypatch, "grad", "x*2", "--x", "1,2")
    assert r.exit_code == 2 and 'e.g. "sum(x*2)"' in text


@pytest.mark.parametrize("name", ["expressions", "cli"])
def test_a_users_module_named_as_one_of_the_tools_packages_is_theirs(tmp_path, monkeypatch, name):
    """`import expressions` in a target beside the user's expressions.py gets theirs, as under
    `python t.py` (the tool's package of that name was returned), and the tool's own still works
    afterwards in the same process."""
    (tmp_path / f"{name}.py").write_text("def scale():\n    return 3.0\n")
    (tmp_path / "t.py").write_text(f"import {name}\n\n\ndef f(x):\n    return (x * {name}.scale()).sum()\n")
    r, text = _run(tmp_path, monkeypatch, "grad", "t.py", "--x", "1,2", "--json")
    assert r.exit_code == 0, text
    import json
    assert json.loads(r.stdout)["gradients"]["x"] == [3.0, 3.0]
    import sys
    assert not getattr(sys.modules[name], "__file__", "").startswith(str(tmp_path))       # ours again
    r, text = _run(tmp_path, monkeypatch, "grad", "sum(x*3)", "--x", "1,2")
    assert r.exit_code == 0, text
