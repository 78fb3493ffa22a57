"""The hard edges of the CLI: every bad input a clear error, nothing lost, never a traceback.

Each test runs a command that misbehaved before (issue 15) and asserts the exit code (0, 1 a
failed check, 2 usage/input, 3 internal, 130 Ctrl-C, 141 closed pipe), the message, and for
outputs the files left on disk. A hypothesis test throws argv built from the grammar at every
command."""
import errno
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from typer.testing import CliRunner

from cli.app import app

runner = CliRunner()
SCRIPT = shutil.which("autograd") or str(pathlib.Path(sys.executable).parent / "autograd")


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def no_traceback(r):
    assert "Traceback (most recent call last)" not in r.stdout + r.stderr, r.stdout + r.stderr


def one_error(r, code, fragment):
    assert r.exit_code == code, (r.exit_code, r.stdout, r.stderr)
    no_traceback(r)
    assert fragment in r.stderr, r.stderr


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


# -- the contract: exit codes ---------------------------------------------------------------------
def test_an_internal_error_is_exit_3_with_one_line(monkeypatch):
    import engine.autograd.checker as checker

    def broken(*a, **k):
        raise KeyError("no such thing")
    monkeypatch.setattr(checker, "check_gradients", broken)
    r = invoke("check", "sum(x*x)", "--x", "1,2")
    assert r.exit_code == 3
    no_traceback(r)
    assert r.stderr.strip().splitlines() == [
        "error: internal error (KeyError: 'no such thing'); run again with --debug for the traceback"]
    r = invoke("check", "sum(x*x)", "--x", "1,2", "--debug")
    assert r.exit_code == 3 and "Traceback" in r.stderr


@pytest.mark.parametrize("body,fragment", [
    ("class Bad(engine.autograd.Function):\n    @staticmethod\n    def forward(ctx, x):\n        return x * 2\n"
     "    @staticmethod\n    def backward(ctx, g):\n        raise ValueError('boom in backward')\n"
     "def f(x):\n    return Bad.apply(x).sum()\n", "ValueError: boom in backward"),
    ("def f(x):\n    raise BaseException('base')\n", "BaseException: base"),
    ("def f(x):\n    import sys\n    sys.exit(0)\n", "your code called sys.exit(0) in f"),
    ("inputs = {'x': 1 / 0}\ndef f(x):\n    return x.sum()\n", "ZeroDivisionError"),
    ("class C(engine.autograd.Function):\n    @staticmethod\n    def forward(ctx, x):\n        raise RuntimeError('in forward')\n"
     "    @staticmethod\n    def backward(ctx, g):\n        return g\n"
     "def f(x):\n    return C.apply(x).sum()\n", "RuntimeError: in forward"),
], ids=["backward", "base_exception", "sys_exit", "inputs_dict", "forward"])
@pytest.mark.parametrize("command", ["grad", "check", "jacobian", "graph"])
def test_the_users_code_raising_is_their_traceback_and_exit_2(tmp_path, body, fragment, command):
    target = write(tmp_path, "t.py", "import engine\n" + body)
    r = invoke(command, target, "--x", "1,2")
    if command in ("jacobian", "graph") and "backward" in fragment:
        assert r.exit_code in (0, 2)                 # graph/jacobian may not run that backward
        no_traceback(r)
        return
    one_error(r, 2, fragment)
    assert "Traceback (in your file)" in r.stderr or "sys.exit" in r.stderr
    assert "cli/" not in r.stderr and "engine/" not in r.stderr      # trimmed to the user's file


def test_ctrl_c_is_130_also_while_the_target_loads(tmp_path):
    for body in ("raise KeyboardInterrupt\n", "def f(x):\n    raise KeyboardInterrupt\n"):
        r = invoke("grad", write(tmp_path, "k.py", body), "--x", "1")
        assert r.exit_code == 130 and r.stderr.strip() == "interrupted"


def test_prints_of_a_target_go_to_stderr_while_json_and_dot_go_to_stdout(tmp_path):
    target = write(tmp_path, "p.py", "def f(x):\n    print('hello from f')\n    return (x * x).sum()\n")
    r = invoke("grad", target, "--x", "1,2", "--json")
    assert r.exit_code == 0 and "hello from f" in r.stderr
    assert json.loads(r.stdout)["gradients"] == {"x": [2.0, 4.0]}
    r = invoke("check", target, "--x", "1,2", "--json")
    assert json.loads(r.stdout)["passed"] is True and "hello from f" not in r.stdout
    r = invoke("graph", target, "--x", "1,2")
    assert r.stdout.startswith("digraph") and "hello" not in r.stdout


def test_an_input_that_gets_no_gradient_shows_none():
    r = invoke("grad", "sum(where(w > 0, x, 2*x))", "--w", "1,2", "--x", "3,4")
    assert r.exit_code == 0
    assert "w     (2,)   None" in r.stdout and "w.grad is None: w does not reach the output" in r.stdout
    doc = json.loads(invoke("grad", "sum(where(w > 0, x, 2*x))", "--w", "1,2", "--x", "3,4", "--json").stdout)
    assert doc["gradients"] == {"w": None, "x": [1.0, 1.0]} and doc["no_gradient"] == ["w"]
    r = invoke("grad", "sum(where(w > 0, x, 2*x))", "--w", "1,2", "--x", "3,4", "--times", "2", "--zero-grad")
    assert r.exit_code == 0 and "None" in r.stdout


# -- limits that protect the machine --------------------------------------------------------------
@pytest.mark.parametrize("expr,fragment", [
    ("sum(x.expand(10**6, 10**6, 10**6))", "would have 1,000,000,000,000,000,000 elements"),
    ("sum(x.reshape(2, 1) * x.reshape(1, 2).expand(10**5, 2).reshape(1, 2, 10**5).expand(10**4, 2, 10**5))",
     "would have"),
    ("sum(outer(y, y))", "'outer(y, y)' would have 400,000,000 elements"),
    ("sum(y.reshape(-1, 1) @ y.reshape(1, -1))", "would have 400,000,000 elements"),
    ("sum(mm(y.reshape(-1, 1), y.reshape(1, -1)))", "would have 400,000,000 elements"),
])
def test_huge_intermediates_are_refused_before_they_are_computed(expr, fragment):
    t0 = time.perf_counter()
    if "y" in expr:
        r = invoke("grad", expr, "--y", "randn(20000)")
    else:
        r = invoke("grad", expr, "--x", "1" if "expand(10**6" in expr else "1,2")
    one_error(r, 2, fragment)
    assert time.perf_counter() - t0 < 5


@pytest.mark.parametrize("command", ["jacobian", "check"])
def test_a_dense_jacobian_too_large_is_refused_first(command):
    t0 = time.perf_counter()
    r = invoke(command, "x*2", "--x", "randn(100000)")
    one_error(r, 2, "the Jacobian would have 10,000,000,000 elements (74.5 GiB")
    assert ("--fast" in r.stderr) and time.perf_counter() - t0 < 10


def _npy_with_header(path, shape):
    h = np.lib.format.header_data_from_array_1_0(np.zeros(1))
    h["shape"] = shape
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, h)
        f.write(np.zeros(4).tobytes())


@pytest.mark.parametrize("make,fragment", [
    (lambda p: _npy_with_header(p / "v.npy", (100000, 100000)), "10,000,000,000 elements; the limit is"),
    (lambda p: np.savez(p / "v.npz", a=np.zeros(2)) or os.rename(p / "v.npz", p / "v.npy"), "zip archive"),
    (lambda p: (p / "v.npy").write_bytes(b""), "is empty"),
    (lambda p: (p / "v.csv").write_text(""), "is empty"),
    (lambda p: (p / "v.csv").write_text("\n\n"), "holds no numbers"),
    (lambda p: np.save(p / "v.npy", np.array([1, "a"], dtype=object), allow_pickle=True), "does not hold numbers"),
    (lambda p: np.save(p / "v.npy", np.zeros((1,) * 40)), "40 dimensions; the limit is 32"),
    (lambda p: (p / "v.npy").write_bytes(b"hello world"), "not a .npy file"),
    (lambda p: (p / "v.csv").mkdir(), "is a folder"),
    (lambda p: os.mkfifo(p / "v.csv"), "not a regular file"),
], ids=["header_too_big", "npz_named_npy", "empty_npy", "empty_csv", "blank_csv", "pickle", "dims",
        "not_npy", "folder", "fifo"])
def test_value_files_are_checked_before_reading(tmp_path, make, fragment):
    make(tmp_path)
    path = next(p for p in tmp_path.iterdir() if p.name.startswith("v."))
    r = invoke("grad", "sum(x)", "--x", f"@{path}")
    one_error(r, 2, fragment)
    assert "allow_pickle" not in r.stderr


def test_a_huge_text_file_is_refused_from_its_size(tmp_path):
    big = tmp_path / "v.csv"
    with open(big, "wb") as fh:
        fh.truncate(10 ** 10)                       # 10 GB, sparse: nothing is written
    t0 = time.perf_counter()
    one_error(invoke("grad", "sum(x)", "--x", f"@{big}"), 2, "10,000,000,000 bytes")
    assert time.perf_counter() - t0 < 2


def test_a_file_of_2e8_numbers_is_refused(tmp_path):
    _npy_with_header(tmp_path / "v.npy", (2 * 10 ** 8,))
    one_error(invoke("grad", "sum(x)", "--x", f"@{tmp_path / 'v.npy'}"), 2, "200,000,000 elements; the limit is")


def test_device_files_are_not_read():
    r = invoke("grad", "sum(x)", "--x", "@/dev/zero")
    one_error(r, 2, "use a .npy, .csv or .txt file")


def test_empty_and_fortran_ordered_inputs_are_checked(tmp_path):
    np.save(tmp_path / "f.npy", np.asfortranarray(np.arange(6.0).reshape(2, 3)))
    r = invoke("check", "sum(x*x)", "--x", f"@{tmp_path / 'f.npy'}")
    assert r.exit_code == 0 and "passed" in r.stdout
    r = invoke("check", "sum(x*x)", "--x", "zeros(0)")
    assert r.exit_code == 0 and "- (empty)" in r.stdout


@pytest.mark.parametrize("args,fragment", [
    (["--eps", "0"], "must be a finite number > 0"), (["--eps", "nan"], "must be a finite number > 0"),
    (["--eps", "inf"], "must be a finite number > 0"), (["--eps", "-1"], "must be a finite number > 0"),
    (["--atol", "-1"], "must be a finite number >= 0"), (["--rtol", "nan"], "must be a finite number >= 0"),
    (["--seed", "-1"], "-1 is not in the range"),
])
def test_bad_tolerances_and_seeds_are_usage_errors(args, fragment):
    r = invoke("check", "sum(x*2)", "--x", "1,2", *args)
    assert r.exit_code == 2 and fragment in r.stdout + r.stderr
    no_traceback(r)


def test_times_is_bounded():
    r = invoke("grad", "sum(x*2)", "--x", "1,2", "--times", "101")
    assert r.exit_code == 2 and "101" in r.stdout + r.stderr


# -- nothing lost ---------------------------------------------------------------------------------
def test_output_paths_are_checked_before_any_work(tmp_path):
    slow = write(tmp_path, "slow.py", "import time\ndef f(x):\n    time.sleep(5)\n    return x.sum()\n")
    t0 = time.perf_counter()
    r = invoke("graph", slow, "--x", "1", "-o", tmp_path / "nodir" / "g.dot")
    one_error(r, 2, "the folder")
    assert time.perf_counter() - t0 < 3
    r = invoke("graph", "sum(x)", "--x", "1", "-o", tmp_path)
    one_error(r, 2, "cannot tell the format")
    (tmp_path / "d.dot").mkdir()
    one_error(invoke("graph", "sum(x)", "--x", "1", "-o", tmp_path / "d.dot"), 2, "is a folder")
    one_error(invoke("grad", "sum(x)", "--x", "1", "--dot", tmp_path / "nodir" / "g.dot"), 2, "the folder")


def test_a_target_that_changes_directory_cannot_move_the_output(tmp_path, monkeypatch):
    other = tmp_path / "elsewhere"
    other.mkdir()
    target = write(tmp_path, "cd.py", f"import os\ndef f(x):\n    os.chdir({str(other)!r})\n    return x.sum()\n")
    monkeypatch.chdir(tmp_path)
    try:
        r = invoke("graph", target, "--x", "1", "-o", "g.dot")
    finally:
        os.chdir(tmp_path)
    assert r.exit_code == 0 and (tmp_path / "g.dot").exists() and not (other / "g.dot").exists()


def test_a_failed_command_leaves_the_previous_file_and_no_partial_file(tmp_path, monkeypatch):
    out = tmp_path / "g.dot"
    out.write_text("OLD")
    bad = write(tmp_path, "bad.py", "def f(x):\n    raise ValueError('no')\n")
    assert invoke("graph", bad, "--x", "1", "-o", out).exit_code == 2
    assert out.read_text() == "OLD"
    real = os.replace

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "replace", full)
    r = invoke("graph", "sum(x)", "--x", "1", "-o", out)
    one_error(r, 2, "No space left on device")
    monkeypatch.setattr(os, "replace", real)
    assert out.read_text() == "OLD"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.py", "g.dot"]      # no temp file left
    assert invoke("graph", "sum(x)", "--x", "1", "-o", out).exit_code == 0
    assert out.read_text().startswith("digraph")


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz not installed (.ci/run installs it)")
def test_graphviz_runs_with_a_timeout_and_leaves_the_previous_file(tmp_path):
    chain = write(tmp_path, "chain.py", "def f(x):\n    for _ in range(3000):\n        x = x * 1.0001\n"
                                        "    return x.sum()\n")
    out = tmp_path / "g.svg"
    out.write_text("OLD")
    r = invoke("graph", chain, "--x", "1", "--max-nodes", "100000", "-o", out, "--dot-timeout", "0.1")
    one_error(r, 2, "did not finish rendering g.svg within 0.1 s")
    assert out.read_text() == "OLD" and sorted(p.name for p in tmp_path.iterdir()) == ["chain.py", "g.svg"]
    if sys.platform.startswith("linux"):
        time.sleep(0.2)
        assert not _live_dots(os.getpid())                  # the timed-out dot was stopped


def _live_dots(pid):
    """The running (not zombie) `dot` processes whose parent is `pid` (Linux /proc)."""
    found = []
    for k in _children(pid):
        try:
            stat = pathlib.Path(f"/proc/{k}/stat").read_text()
        except OSError:
            continue
        if stat.split("(", 1)[1].split(")", 1)[0] == "dot" and stat.rsplit(")", 1)[1].split()[0] != "Z":
            found.append(k)
    return found


def _alive(pid):
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(shutil.which("dot") is None or not sys.platform.startswith("linux"),
                    reason="needs Graphviz and Linux's parent-death signal")
def test_a_killed_autograd_leaves_no_dot_running(tmp_path):
    # dot needs several seconds for this chain; killed with autograd it is gone at once
    chain = write(tmp_path, "chain.py", "def f(x):\n    for _ in range(12000):\n        x = x * 1.0001\n"
                                        "    return x.sum()\n")
    out = tmp_path / "big.svg"
    p = subprocess.Popen([SCRIPT, "graph", str(chain), "--x", "1", "--max-nodes", "100000", "-o", str(out)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    dots = []
    for _ in range(600):                                  # wait until dot runs
        dots = _live_dots(p.pid)
        if dots or p.poll() is not None:
            break
        time.sleep(0.05)
    if not dots:
        p.kill()
        p.wait()
        pytest.skip("dot finished before it could be observed")
    time.sleep(1.0)                  # dot has read its input and is rendering (it takes seconds)
    p.kill()                                              # SIGKILL: no handler of ours runs
    p.wait()
    time.sleep(0.5)
    left = [d for d in dots if _alive(d)]
    for d in left:
        os.kill(d, 9)
    assert not left, "dot kept running after autograd was killed"
    assert not out.exists()


# -- smaller defects ------------------------------------------------------------------------------
@pytest.mark.parametrize("expr,fragment", [
    ("sum([x, x])", "sum() takes tensors, not a list"), ("sum(x, dim=0, dim=0)", "keyword argument repeated: dim="),
    ("sum(x, dim=(0, 0))", "dim 0 appears multiple times in the list of dims"),
])
def test_bad_calls_in_expressions(expr, fragment):
    one_error(invoke("grad", expr, "--x", "1,2"), 2, fragment)


@pytest.mark.parametrize("option,near", [("--chek", "--check"), ("--jsn", "--json"), ("--zero_grad", "--zero-grad")])
@pytest.mark.parametrize("value", [None, "1"])
def test_misspelled_options_suggest_the_nearest(option, near, value):
    args = ["grad", "sum(x*2)", "--x", "1,2", option] + ([value] if value else [])
    one_error(invoke(*args), 2, f"no such option: {option} (did you mean {near}?)")


def test_a_variable_may_be_named_like_a_constant():
    doc = json.loads(invoke("grad", "sum(x*e + pi*inf)", "--x", "1,2", "--e", "3", "--pi", "2", "--inf", "1",
                            "--json").stdout)
    # sum(x*e + pi*inf): the scalar pi*inf is broadcast over x's two elements
    assert doc["gradients"] == {"x": [3.0, 3.0], "e": 3.0, "pi": 2.0, "inf": 4.0}
    doc = json.loads(invoke("grad", "sum(x*e)", "--x", "1,2", "--json").stdout)
    assert doc["output"]["value"] == pytest.approx(3 * np.e)          # without --e, e is e


def test_long_expressions_are_echoed_around_the_caret_only():
    text = "sum(" + "x+" * 65000 + "x)"
    r = invoke("grad", text, "--x", "1")
    one_error(r, 2, "the expression is 130006 characters long")
    assert len(r.stderr) < 1000


def test_escape_sequences_from_the_input_are_not_echoed_raw():
    r = invoke("grad", "sum(x)\x1b[31m", "--x", "1")
    assert r.exit_code == 2 and "\x1b" not in r.stderr and "\\x1b" in r.stderr


def test_an_upper_case_py_suffix_is_a_file_and_an_empty_return_an_error(tmp_path):
    target = write(tmp_path, "T.PY", "def f(x):\n    return (x * x).sum()\n")
    assert invoke("grad", target, "--x", "1,2").exit_code == 0
    empty = write(tmp_path, "e.py", "def f(x):\n    return ()\n")
    one_error(invoke("grad", empty, "--x", "1"), 2, "the target returned no outputs")


def test_numpy_warnings_do_not_leak(tmp_path):
    (tmp_path / "v.csv").write_text("\n")
    r = invoke("grad", "sum(x)", "--x", f"@{tmp_path / 'v.csv'}")
    assert "site-packages" not in r.stderr and "Warning" not in r.stderr
    assert r.stderr.strip().endswith("holds no numbers")


# -- pipes and closed streams, as a real process ---------------------------------------------------
def _sh(cmd):
    return subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=60)


def test_a_closed_pipe_exits_141_quietly():
    r = _sh(f"'{SCRIPT}' graph 'sum(x)' --x 'randn(3000)' --show-values | head -c 10; exit ${{PIPESTATUS[0]}}")
    assert r.returncode in (0, 141) and "Traceback" not in r.stderr and r.returncode != 1
    r = _sh(f"'{SCRIPT}' jacobian 'x*2' --x 'randn(300)' --full | head -1 > /dev/null; exit ${{PIPESTATUS[0]}}")
    assert r.returncode == 141 and r.stderr == ""


def test_closed_or_full_streams():
    r = _sh(f"'{SCRIPT}' grad 'sum(x)' --x 1,2 > /dev/full")
    assert r.returncode == 2 and "cannot write the output: No space left on device" in r.stderr
    r = _sh(f"'{SCRIPT}' grad 'sum(x)' --x 1,2 >&-")
    assert r.returncode == 2 and "standard output is closed" in r.stderr
    r = _sh(f"'{SCRIPT}' grad 'sum(y)' --x 1,2 2>&-")
    assert r.returncode == 2


# -- the whole surface, fuzzed ---------------------------------------------------------------------
COMMANDS = ["grad", "jacobian", "check", "graph", "explain"]
GOOD_EXPRS = ["sum(w*x)", "w*x", "sum(tanh(w) + x)", "sum(w @ x)", "sum(w, dim=0) * x", "w[0] * x",
              "sum(log(w*w + 1) + x)", "max(w) + sum(x)", "w * x.T", "exp(w) ** 300 + x", "sum(sqrt(w - 10) + x)",
              "where(w > 0, x, 2*x)", "sum(w / x)", "relu(w) * abs(x)", "mse_loss(w, x[0])", "x * 10 + w"]
BAD_EXPRS = ["sum(", "__import__('os')", "sum(x.expand(10**9)) + w", "", "'s'", "sum(w*x, dim=(0, 0))",
             "sum([w, x])", "w.__class__ + x", "lambda: w"]
# .py targets ({dir} is the fuzz folder): the engine, real PyTorch (the engine's API without it), wrong backwards
FILES = {
    "engine.py": "def f(w, x):\n    return (w * x).sum()\n",
    "torchy.py": "import torch\ndef f(w, x):\n    return (torch.tanh(w) * x).sum()\n",
    "wrong.py": ("import engine\nclass Cube(engine.autograd.Function):\n    @staticmethod\n    def forward(ctx, w):\n"
                 "        ctx.save_for_backward(w)\n        return w ** 3\n    @staticmethod\n    def backward(ctx, g):\n"
                 "        w, = ctx.saved_tensors\n        return g * 3 * w ** 2 * 1.01\n"
                 "def f(w, x):\n    return (Cube.apply(w) * x).sum()\n"),
    "wrong_torch.py": ("import torch\nclass Cube(torch.autograd.Function):\n    @staticmethod\n    def forward(ctx, w):\n"
                       "        ctx.save_for_backward(w)\n        return w ** 3\n    @staticmethod\n"
                       "    def backward(ctx, g):\n        w, = ctx.saved_tensors\n        return g * 3 * w ** 2 * 1.01\n"
                       "def f(w, x):\n    return (Cube.apply(w) * x).sum()\n"),
    "raising.py": ("import engine\nclass Boom(engine.autograd.Function):\n    @staticmethod\n    def forward(ctx, w):\n"
                   "        return w * 2\n    @staticmethod\n    def backward(ctx, g):\n"
                   "        raise RuntimeError('boom in backward')\n"
                   "def f(w, x):\n    return (Boom.apply(w) * x).sum()\n"),
}
TOOL_LINE = re.compile(r"(cli|engine|expressions)/\w+\.py[:\"]")     # a source line of the tool's own code
GOOD_VALUES = ["1,2", "3", "-1,0.5", "randn(2)", "nan,1", "inf", "rand(2)", "0,0", "1e300,1", "-2,-3"]
BAD_VALUES = ["zeros(0)", "1;2", "[[1,2]]", "@nofile.npy", "abc", "1,,2", "rand(2,3)", "eye(2)", "@/dev/zero",
              "ones(10**9)"]
OPTIONS = [[], ["--json"], ["--wrt", "w"], ["--wrt", "zz"], ["--eps", "0"], ["--eps", "1e-3"], ["--fast"],
           ["--times", "3"], ["--seed", "-1"], ["--chek"], ["--full"], ["--check"], ["--dtype", "float32"],
           ["--dtype", "int8"], ["--grad-output", "1,1"], ["--rtol", "nan"], ["-o", "/nonexistent/g.dot"],
           ["--show-grad"], ["--zero-grad"], ["--func", "g"], ["--atol", "0"], ["--debug"],
           # issue 22: the newer surface
           ["-o", "{dir}/g.html"], ["-o", "{dir}/g.svg"], ["--dot", "{dir}/c.dot"], ["--dot", "{dir}/c.html"],
           ["--order", "2"], ["--sweep"], ["--sweep", "--plot", "{dir}/s.svg"], ["--plot", "{dir}/s.svg"], ["--locate"],
           ["--backend", "engine"], ["--backend", "torch"], ["--backend", "auto"], ["--backend", "jax"],
           ["--compare", "torch"], ["--compare", "jax"], ["--strict"], ["--no-retain"], ["--detach", "w"],
           ["--no-grad"], ["--forward"], ["--show-saved"], ["--retain-grad"], ["--max-nodes", "1"]]
exprs = st.one_of(*[st.sampled_from(GOOD_EXPRS)] * 3, st.sampled_from(["{dir}/" + n for n in FILES]),
                  st.sampled_from(BAD_EXPRS))
values = st.one_of(*[st.sampled_from(GOOD_VALUES)] * 4, st.sampled_from(BAD_VALUES))


def _command_options():
    """{command: its option spellings}, read from the app itself."""
    import typer.main
    return {name: {o for p in cmd.params for o in getattr(p, "opts", [])}
            for name, cmd in typer.main.get_command(app).commands.items()}


OPTS_OF = _command_options()


@st.composite
def fuzz_argv(draw):
    """A command, a target, w and x, and up to three options: mostly the command's own (so the
    run gets past the parser), sometimes any (another command's, misspelt, invalid)."""
    command = draw(st.sampled_from(COMMANDS))
    own = [o for o in OPTIONS if o and o[0] in OPTS_OF[command]]
    opts = draw(st.lists(st.one_of(*[st.sampled_from(own)] * 3, st.sampled_from(OPTIONS)), max_size=3))
    return [command, draw(exprs), "--w", draw(values), "--x", draw(values)] + [a for o in opts for a in o]


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    for name, text in FILES.items():
        (d / name).write_text(text)
    return d


def _as_python_shows(message, category, filename, lineno, file=None, line=None):
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def _fuzz_run(argv, folder=None):
    t0 = time.perf_counter()
    with warnings.catch_warnings():       # as a real process shows warnings (pytest would record them)
        warnings.resetwarnings()
        warnings.simplefilter("default")
        warnings.showwarning = _as_python_shows
        r = runner.invoke(app, argv)
    elapsed = time.perf_counter() - t0
    out = r.stdout + r.stderr
    # a user's .py target that raises shows "Traceback (in your file)": Python's own never
    assert "Traceback (most recent call last)" not in out or "--debug" in argv, (argv, out[-800:])
    assert r.exit_code in (0, 1, 2), (argv, r.exit_code, out[-500:])
    if r.exit_code == 1:                                  # 1 only for a failed check (or a --compare that differs)
        assert command_checks(argv), argv
    if r.exit_code == 2:
        assert r.stderr.strip(), argv                    # an error always says something, on stderr
    if "--debug" not in argv:
        assert not TOOL_LINE.search(r.stderr), (argv, r.stderr[-800:])    # no warning with the tool's source line
    if argv[1].endswith("raising.py") and r.exit_code == 0:               # its backward raises: never a success
        assert ((argv[0] == "graph" and "--show-grad" not in argv)
                or (argv[0] == "explain" and ("--no-grad" in argv or "--detach" in argv))), argv
    if folder is not None:
        assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")], argv   # no temporary file left
    assert elapsed < 20, argv
    return r


def command_checks(argv):
    return argv[0] == "check" or "--check" in argv or (argv[0] == "grad" and "--compare" in argv)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fuzz_argv())
def test_fuzzed_argv_never_tracebacks(fuzz_dir, argv):
    _fuzz_run([a.replace("{dir}", str(fuzz_dir)) for a in argv], fuzz_dir)


def test_the_fuzz_grammar_names_real_options():
    """Every option the fuzz grammar uses on purpose exists on some command (a renamed option
    would leave the fuzz throwing only 'no such option' at it)."""
    deliberate_misses = {"--chek"}
    every = set().union(*OPTS_OF.values())
    assert {o[0] for o in OPTIONS if o} - every == deliberate_misses
    assert set(COMMANDS) == set(OPTS_OF) - {"functions"}


@pytest.mark.parametrize("argv", [
    ["explain", "sum(w*x)"], ["graph", "sum(w*x)", "-o", "{dir}/g.html"], ["check", "sum(w*x)", "--order", "2"],
    ["check", "sum(w*x)", "--sweep", "--plot", "{dir}/s.svg"], ["check", "{dir}/wrong.py", "--locate", "--dot",
                                                                  "{dir}/c.dot"],
    ["check", "{dir}/engine.py", "--backend", "engine"], ["check", "{dir}/torchy.py", "--backend", "auto"],
    ["check", "{dir}/torchy.py", "--backend", "torch"], ["grad", "sum(w*x)", "--compare", "torch"],
    ["explain", "{dir}/engine.py", "--times", "2", "--no-retain"], ["grad", "mse_loss(w, x[0])"],
])
def test_the_fuzzed_grammars_new_surface_is_reachable(fuzz_dir, argv):
    """Each new piece of the fuzz grammar can succeed, so the fuzz reaches past the parser."""
    if "torch" in argv and "--backend" in argv and argv[argv.index("--backend") + 1] == "torch" or "--compare" in argv:
        pytest.importorskip("torch")
    argv = [a.replace("{dir}", str(fuzz_dir)) for a in argv] + ["--w", "1,2", "--x", "3,4"]
    r = _fuzz_run(argv, fuzz_dir)
    assert r.exit_code == (1 if "wrong.py" in argv[1] else 0), (argv, r.stderr)


def test_a_variable_named_like_an_option_takes_its_value_after_the_double_dash(tmp_path):
    target = tmp_path / "epsf.py"
    target.write_text("def f(x, eps):\n    return (x * x + eps).sum()\n")
    r = invoke("check", str(target), "--x", "1,2", "--eps", "1e-7", "--json", "--", "--eps", "0.5")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["eps"] == 1e-7 and doc["passed"] and set(doc["inputs"]) == {"x", "eps"}
    r = invoke("grad", str(target), "--x", "1,2", "--json", "--", "--eps", "0.5")
    assert json.loads(r.stdout)["output"]["value"] == (1 + 0.5) + (4 + 0.5)     # sum(x*x + eps)
    one_error(invoke("check", str(target), "--x", "1,2", "--eps", "0.5"), 2, "give its value after --")
    one_error(invoke("check", str(target), "--x", "1,2", "--", "--eps", "0.5", "--json"), 2,
              "--json comes after --")


def test_functions_lists_the_expression_language():
    from expressions import compile_expression
    from expressions.compiler import functions
    r = invoke("functions", "--json")
    assert r.exit_code == 0
    rows = json.loads(r.stdout)["functions"]
    listed = {f["name"] for f in rows} | {a for f in rows for a in f["also"].split(", ") if a and "." not in a}
    assert listed == set(functions())                     # every name, aliases folded in
    by_name = {f["name"]: f for f in rows}
    assert by_name["tanh"]["call"] == "tanh(x)" and by_name["tanh"]["nodes"] == ["TanhBackward0"]
    assert by_name["sum"]["call"] == "sum(x, dim=, keepdim=)" and "x.sum()" in by_name["sum"]["also"]
    for f in rows:                                          # the stated keywords are accepted
        for kw in [p[:-1] for p in f["call"][f["call"].index("(") + 1:-1].split(", ") if p.endswith("=")]:
            try:
                compile_expression(f"{f['name']}(x, {kw}=1)")
            except Exception as e:  # noqa: BLE001 - only the keyword check matters here
                assert "unknown keyword" not in str(e), (f["name"], kw)
    r = invoke("functions", "soft")
    assert r.exit_code == 0 and "softplus(x, beta=, threshold=)" in r.stdout and "tanh" not in r.stdout
    r = invoke("functions", "--x", "1")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1


def test_small_cli_courtesies(tmp_path):
    r = invoke("jacobian", "y*2", "--y", "1")                 # an input named y: the output is out
    assert r.exit_code == 0 and "dout/dy" in r.stdout and "1 row (out elements) x 1 column" in r.stdout
    out = tmp_path / "g.dot"
    r = invoke("graph", "x*2", "--x", "1", "--rankdir", "lr", "-o", str(out))
    assert r.exit_code == 0 and "rankdir=LR" in out.read_text() and str(out) in r.stderr
    f = tmp_path / "defaults.py"
    f.write_text("def f(x, scale=2.0):\n    return (x * scale).sum()\n")
    doc = json.loads(invoke("grad", str(f), "--x", "1,2", "--json").stdout)
    assert doc["inputs"]["scale"]["value"] == 2.0 and doc["gradients"]["x"] == [2.0, 2.0]
    r = invoke("grad", "sum(w*x)", "--w", "1,2", "--x", "3,4", "--times", "2", "--zero-grad")
    assert "w.grad, x.grad were zeroed before each call" in r.stdout


@pytest.mark.parametrize("width", [80, 140])
def test_tables_fit_the_terminal_without_splitting_numbers(monkeypatch, width):
    """On a forced Rich terminal of 80 and 140 columns: no line is wider than the terminal, no
    number is folded onto a second line or cut, names and shapes keep their width."""
    import re
    monkeypatch.setenv("AUTOGRAD_RICH", "1")
    monkeypatch.setenv("COLUMNS", str(width))
    monkeypatch.setenv("NO_COLOR", "1")
    for argv in (["jacobian", "tanh(W @ x)", "--W", "randn(20,20)", "--x", "randn(20)", "--wrt", "x"],
                 ["jacobian", "tanh(W @ x)", "--W", "randn(20,20)", "--x", "randn(20)", "--wrt", "x", "--full"],
                 ["grad", "sum(tanh(W @ x))", "--W", "randn(6,6)", "--x", "randn(6)"],
                 ["check", "examples/wrong_backward.py", "--func", "Cube", "--x", "1,2,3"]):
        r = invoke(*argv)
        lines = r.stdout.splitlines()
        assert lines and max(len(line) for line in lines) <= width, (argv, max(len(line) for line in lines))
        cells = [c for line in lines for c in re.split(r"\s{2,}", line.strip())]
        numbers = [c for c in cells if re.fullmatch(r"-?\d+(\.\d+)?(e-?\d+)?", c)]
        assert numbers or argv[0] == "grad"
        assert not any(c.endswith("…") and re.fullmatch(r"-?[\d.e]+…", c) for c in cells), argv   # no cut number
        if argv[0] != "grad":       # no row continued on a second line (a folded number reads as two)
            assert not any(re.match(r"\s+-?\d", line) for line in lines), argv
        if argv[0] == "jacobian":
            J = [line for line in lines if line.strip().startswith("y[")]
            assert all(re.fullmatch(r"\s*y\[\d+\](\s+(-?[\d.]+(e-?\d+)?|\.\.\.))+\s*", line) for line in J), J[:3]
        if argv[0] == "grad":
            assert any(re.match(r"\s*W\s+\(6, 6\)\s+True", line) for line in lines)
        if argv[0] == "check":
            assert sum("FAIL" in line for line in lines) >= 2           # the result column survives at 80


def test_explain_tells_the_backward_pass_step_by_step():
    doc = json.loads(invoke("explain", "sum(w*x)", "--w", "1,2", "--x", "3,4", "--json").stdout)
    assert [f["node"] for f in doc["forward"]] == ["MulBackward0", "SumBackward0"]
    steps = doc["calls"][0]["steps"]
    assert [s["node"] for s in steps][:2] == ["SumBackward0", "MulBackward0"]
    mul = steps[1]
    assert mul["received"] == "[1, 1]" and mul["sent"] == {"w": "[3, 4]", "x": "[1, 2]"}     # d/dw = x, d/dx = w
    assert mul["rule"] == "grad_w = grad * x; grad_x = grad * w"
    leaves = {s["leaf"]: s for s in steps if s["node"] == "AccumulateGrad"}
    assert leaves["w"]["grad_before"] is None and leaves["w"]["grad_after"] == "[3, 4]"
    assert doc["gradients"] == {"w": [3.0, 4.0], "x": [1.0, 2.0]}
    doc = json.loads(invoke("explain", "sum(tanh(w*x))", "--w", "1,2", "--x", "3,4", "--times", "2", "--no-retain",
                            "--json").stdout)
    assert "Trying to backward through the graph a second time" in doc["calls"][1]["error"]
    doc = json.loads(invoke("explain", "sum(w*x)", "--w", "1,2", "--x", "3,4", "--times", "2", "--json").stdout)
    assert doc["gradients"] == {"w": [6.0, 8.0], "x": [2.0, 4.0]}                               # accumulated
    doc = json.loads(invoke("explain", "sum(w*x)", "--w", "1,2", "--x", "3,4", "--times", "2", "--zero-grad",
                            "--json").stdout)
    assert doc["gradients"] == {"w": [3.0, 4.0], "x": [1.0, 2.0]}
    doc = json.loads(invoke("explain", "sum(w*x)", "--w", "1,2", "--x", "3,4", "--no-grad", "--json").stdout)
    assert "does not require grad" in doc["error"] and "no_grad" in doc["why"]
    doc = json.loads(invoke("explain", "sum(w*x)", "--w", "1,2", "--x", "3,4", "--detach", "x", "--json").stdout)
    assert doc["gradients"] == {"w": [3.0, 4.0], "x": None}
    r = invoke("explain", "examples/my_square.py", "--func", "MySquare", "--x", "3")
    assert "rule: your backward (MySquare.backward)" in r.stdout and "sent 6 to x" in r.stdout       # 2x at 3


def test_several_outputs_are_named_alike_in_check_and_jacobian(tmp_path):
    f = tmp_path / "two.py"
    f.write_text("def f(x):\n    return x.sin(), (x * x).sum()\n")
    r = invoke("check", str(f), "--x", "1,2")
    rows = [line.split()[0] for line in r.stdout.splitlines()[3:6]]
    assert rows == ["dy0/dx", "dy1/dx", "x.grad"], r.stdout
    r = invoke("jacobian", str(f), "--x", "1,2")
    assert "dy0/dx: shape" in r.stdout and "dy1/dx: shape" in r.stdout


@pytest.mark.parametrize("words,cword,want", [
    ("autograd gr", "1", ["grad", "graph"]),
    ("autograd check --st", "2", ["--strict"]),
    ("autograd ex", "1", ["explain"]),
])
def test_shell_completion_completes_commands_and_options(words, cword, want):
    """autograd --install-completion installs Typer's completion; this is the call the
    installed script makes on Tab."""
    from typer.testing import CliRunner as _Runner
    r = _Runner().invoke(app, [], prog_name="autograd",
                         env={"_AUTOGRAD_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": cword})
    assert r.exit_code == 0 and r.stdout.split() == want


def test_show_completion_prints_the_script():
    from typer.testing import CliRunner as _Runner
    r = _Runner().invoke(app, ["--show-completion", "bash"], prog_name="autograd")
    assert r.exit_code == 0 and "_autograd_completion()" in r.stdout and "complete_bash" in r.stdout


# -- signals, as a real process (issue 22) ---------------------------------------------------------
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/status (Linux)")


def _start(*argv, cwd=None):
    return subprocess.Popen([SCRIPT, *map(str, argv)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=cwd)


def _handlers_installed(p, timeout=20):
    """Wait until the process catches SIGTERM (cli/entry.py installs its handlers before it imports
    the app): from then on a signal is ours to handle; before it, it is Python's own start-up."""
    import signal
    bit = 1 << (signal.SIGTERM - 1)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            status = pathlib.Path(f"/proc/{p.pid}/status").read_text()
        except OSError:
            return False
        caught = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), 16)
        if caught & bit:
            return True
    return False


def _children(pid):
    """The pids whose parent is `pid` (from /proc)."""
    kids = []
    for d in pathlib.Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(d.name))
    return kids


def _finish(p, timeout=30):
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        pytest.fail(f"autograd did not end within {timeout} s: {err[-500:]}")
    return p.returncode, out, err


SLOW = "import time\ndef f(x):\n    time.sleep(0.2)\n    return (x * x).sum()\n"


@linux_only
def test_ctrl_c_during_start_up_is_130_and_one_line(tmp_path):
    import signal
    slow = write(tmp_path, "slow.py", SLOW)
    for _ in range(3):
        p = _start("check", slow, "--x", "1,2,3")
        assert _handlers_installed(p)
        p.send_signal(signal.SIGINT)               # at once: the app and its imports are still loading
        code, out, err = _finish(p)
        assert (code, out, err) == (130, "", "interrupted\n")


@linux_only
@pytest.mark.parametrize("gap", [0.005, 0.05])
@pytest.mark.parametrize("delay", [0.0, 0.15, 0.5, 1.2])
def test_two_ctrl_cs_in_quick_succession_are_one_interrupt(tmp_path, delay, gap):
    """timeout -s INT signals the process and then its group; a person presses Ctrl-C twice.
    The second one must not cut the first one's report short (exit 3, a traceback, or death by
    SIGINT during Python's shutdown)."""
    import signal
    slow = write(tmp_path, "slow.py", SLOW)
    p = _start("check", slow, "--x", "1,2,3,4,5,6,7,8")
    assert _handlers_installed(p)
    time.sleep(delay)
    p.send_signal(signal.SIGINT)
    time.sleep(gap)
    p.send_signal(signal.SIGINT)
    code, out, err = _finish(p)
    assert code == 130, (code, err)
    assert "Traceback" not in err and err.splitlines()[-1] == "interrupted", err
    assert "internal error" not in err


@pytest.mark.skipif(shutil.which("timeout") is None, reason="needs coreutils' timeout")
def test_timeout_s_int_is_130(tmp_path):
    slow = write(tmp_path, "slow.py", SLOW)
    r = subprocess.run(["timeout", "--preserve-status", "-s", "INT", "1", SCRIPT, "check", str(slow), "--x",
                        "1,2,3,4,5,6,7,8"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 130 and "Traceback" not in r.stderr and r.stderr.splitlines()[-1] == "interrupted"


def _wait_for_child(p, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end and p.poll() is None:
        kids = _children(p.pid)
        if kids:
            return kids
        time.sleep(0.02)
    return []


@linux_only
@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz not installed (.ci/run installs it)")
@pytest.mark.parametrize("signame,code", [("SIGTERM", 143), ("SIGHUP", 129)])
@pytest.mark.parametrize("suffix", [".svg", ".html"])
def test_sigterm_or_sighup_during_a_render_leaves_no_temporary_file(tmp_path, signame, code, suffix):
    """dot needs seconds for this chain: the signal arrives while it renders. The temporary file
    beside the output is removed, the previous output is untouched, dot is stopped."""
    import signal
    chain = write(tmp_path, "chain.py", "def f(x):\n    for _ in range(12000):\n        x = x * 1.0001\n"
                                        "    return x.sum()\n")
    out = tmp_path / f"g{suffix}"
    out.write_text("OLD")
    p = _start("graph", chain, "--x", "1", "--max-nodes", "100000", "-o", out)
    kids = _wait_for_child(p)
    if not kids:
        p.kill()
        pytest.skip("dot finished before it could be observed")
    time.sleep(0.3)                                    # dot has its input and renders
    p.send_signal(getattr(signal, signame))
    rc, _, err = _finish(p)
    assert rc == code and err.splitlines() == [f"terminated by {signame}"], (rc, err)
    assert out.read_text() == "OLD"
    assert sorted(q.name for q in tmp_path.iterdir()) == ["chain.py", out.name]     # no temporary file
    time.sleep(0.2)
    assert not [k for k in kids if pathlib.Path(f"/proc/{k}").exists()
                and "Z" not in pathlib.Path(f"/proc/{k}/stat").read_text().split(")")[1][:3]], "dot still runs"


@pytest.mark.parametrize("unbuffered", ["", "1"])
@pytest.mark.parametrize("argv", [["grad", "sum(x)", "--x", "randn(30000)", "--json"],
                                  ["jacobian", "x*2", "--x", "randn(300)", "--full"]])
def test_output_larger_than_the_pipe_into_head_is_141_also_unbuffered(argv, unbuffered):
    """PYTHONUNBUFFERED=1 made stdout's binary layer the raw file: the write the pipe took only
    part of returned short, the rest was dropped without an error, and the command said 0."""
    env = {**os.environ, "PYTHONUNBUFFERED": unbuffered}
    cmd = " ".join(f"'{a}'" for a in [SCRIPT, *argv])
    r = subprocess.run(["bash", "-c", f"{cmd} | (head -c1 > /dev/null; sleep 0.3); exit ${{PIPESTATUS[0]}}"],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 141 and r.stderr == "", (r.returncode, r.stderr)


def test_unbuffered_output_is_written_whole(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    argv = [SCRIPT, "grad", "sum(x)", "--x", "randn(30000)", "--json"]
    whole = subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout
    r = subprocess.run(["bash", "-c", " ".join(f"'{a}'" for a in argv) + " | (sleep 0.5; cat)"],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.stdout == whole and json.loads(r.stdout)["gradients"]["x"] == [1.0] * 30000


# -- shell completion (issue 22) --------------------------------------------------------------------
def _completion(*args, env=None):
    from typer.testing import CliRunner as _Runner
    return _Runner().invoke(app, list(args), prog_name="autograd", env=env)


@pytest.mark.parametrize("shell,fragments", [
    ("bash", ["_autograd_completion()", "_AUTOGRAD_COMPLETE=complete_bash", "complete -o default -F"]),
    ("zsh", ["#compdef autograd", "_AUTOGRAD_COMPLETE=complete_zsh", "compdef _autograd_completion autograd"]),
    ("fish", ["complete --command autograd", "_AUTOGRAD_COMPLETE=complete_fish"]),
    ("powershell", ["Register-ArgumentCompleter", '"complete_powershell"']),
    ("pwsh", ["Register-ArgumentCompleter", '"complete_powershell"']),
])
def test_show_completion_prints_the_named_shells_script(shell, fragments):
    for argv in (["--show-completion", shell], [f"--show-completion={shell}"]):
        r = _completion(*argv)
        assert r.exit_code == 0 and r.stderr == "", (r.exit_code, r.stderr)
        assert all(f in r.stdout for f in fragments), r.stdout
        others = {"bash": "complete_bash", "zsh": "complete_zsh", "fish": "complete_fish"}
        assert not any(v in r.stdout for k, v in others.items() if k != shell), r.stdout


def test_an_unknown_shell_is_a_usage_error():
    for argv in (["--show-completion", "tcsh"], ["--install-completion", "tcsh"]):
        r = _completion(*argv)
        assert r.exit_code == 2 and r.stdout == "", (r.exit_code, r.stdout)
        assert r.stderr.strip() == ("error: autograd has no completion for the shell 'tcsh': name one of bash, "
                                    "zsh, fish, powershell, pwsh")


def test_install_completion_never_creates_a_missing_home(tmp_path, monkeypatch):
    home = tmp_path / "no" / "home"
    for run in (lambda: _completion("--install-completion", "bash", env={"HOME": str(home)}),
                lambda: subprocess.run([SCRIPT, "--install-completion", "bash"], capture_output=True, text=True,
                                       timeout=60, env={**os.environ, "HOME": str(home)})):
        r = run()
        code = getattr(r, "exit_code", getattr(r, "returncode", None))
        assert code == 2 and "Traceback" not in r.stderr, (code, r.stderr)
        assert r.stderr.strip().splitlines() == [
            f"error: cannot install completion: the home folder '{home}' (HOME) does not exist: set HOME to your "
            "home folder, or print the script with 'autograd --show-completion SHELL' and install it by hand"]
        assert not (tmp_path / "no").exists()
    monkeypatch.chdir(tmp_path)                    # an empty HOME is not the current folder
    r = _completion("--install-completion", "bash", env={"HOME": ""})
    assert r.exit_code == 2 and "HOME is empty" in r.stderr and sorted(os.listdir(tmp_path)) == []


@pytest.fixture
def read_only_home(tmp_path):
    """A home folder nobody may write in: a read-only tmpfs when this runs as root (root writes
    through file modes), else a folder of mode 555."""
    home = tmp_path / "home"
    home.mkdir()
    if os.geteuid() == 0:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=16k", "tmpfs", str(home)], capture_output=True)
        if r.returncode != 0:
            pytest.skip("running as root and cannot mount a read-only tmpfs")
        yield home
        subprocess.run(["umount", str(home)])
    else:
        home.chmod(0o555)
        yield home
        home.chmod(0o755)


def test_install_completion_into_a_read_only_home_is_exit_2(read_only_home):
    for shell in ("bash", "zsh", "fish"):
        r = subprocess.run([SCRIPT, "--install-completion", shell], capture_output=True, text=True, timeout=60,
                           env={**os.environ, "HOME": str(read_only_home)})
        assert r.returncode == 2 and r.stdout == "", (r.returncode, r.stdout, r.stderr)
        assert r.stderr.strip().splitlines() == [
            f"error: cannot install completion: no permission to write in the home folder '{read_only_home}' "
            "(HOME): print the script with 'autograd --show-completion SHELL' and install it by hand"]
        assert list(read_only_home.iterdir()) == []


def test_install_completion_writes_the_named_shells_files(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    r = _completion("--install-completion", "zsh", env={"HOME": str(home)})
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines()[0] == f"zsh completion installed in {home / '.zfunc' / '_autograd'}"
    assert "#compdef autograd" in (home / ".zfunc" / "_autograd").read_text()
    assert "fpath+=~/.zfunc" in (home / ".zshrc").read_text()
    r = _completion("--install-completion=bash", env={"HOME": str(home)})
    assert r.exit_code == 0 and "complete_bash" in (home / ".bash_completions" / "autograd.sh").read_text()


def test_a_file_in_the_way_of_completion_is_exit_2(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / ".zfunc").write_text("not a folder")
    r = _completion("--install-completion", "zsh", env={"HOME": str(home)})
    assert r.exit_code == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith(f"error: cannot install completion: could not write '{home / '.zfunc'}") , r.stderr


# -- explain (issue 22) -------------------------------------------------------------------------------
BAD_BACKWARD = ("import engine\nclass C(engine.autograd.Function):\n    @staticmethod\n    def forward(ctx, x):\n"
                "        return x * 2\n    @staticmethod\n    def backward(ctx, g):\n        {body}\n"
                "def f(x):\n    return C.apply(x).sum()\n")


@pytest.mark.parametrize("body,lines", [
    ("raise RuntimeError('boom in backward')", ["Traceback (in your file):", "raise RuntimeError('boom in backward')",
                                                "RuntimeError: boom in backward"]),
    ("raise ValueError('boom in backward')", ["Traceback (in your file):", "ValueError: boom in backward"]),
    ("return g.sum()", ["error: Function CBackward returned an invalid gradient at index 0 - got [] but expected "
                        "shape compatible with [2]"]),
    ("return g, g", ["error: function CBackward returned an incorrect number of gradients (expected 1, got 2)"]),
], ids=["runtime_error", "value_error", "wrong_shape", "wrong_count"])
@pytest.mark.parametrize("json_out", [False, True])
def test_explain_a_backward_that_raises_or_returns_wrong_is_exit_2(tmp_path, body, lines, json_out):
    """As grad says it (exit 2); explain told the RuntimeError as a step of the story and said 0."""
    target = write(tmp_path, "eb.py", BAD_BACKWARD.format(body=body))
    r = invoke("explain", target, "--x", "1,2", *(["--json"] if json_out else []))
    assert r.exit_code == 2 and r.stdout == "", (r.exit_code, r.stdout, r.stderr)
    no_traceback(r)
    assert all(line in r.stderr for line in lines), r.stderr
    g = invoke("grad", target, "--x", "1,2")
    assert g.exit_code == 2 and g.stderr == r.stderr                  # the same words as grad


def test_explain_still_tells_a_second_backward_without_retain_graph():
    doc = json.loads(invoke("explain", "sum(exp(x))", "--x", "1,2", "--times", "2", "--no-retain", "--json").stdout)
    assert "Trying to backward through the graph a second time" in doc["calls"][1]["error"]


@pytest.mark.parametrize("value,seeded,grad1,grad2", [("3", "1", "1", "2"), ("3,4", "[1, 1]", "[1, 1]", "[2, 2]")])
def test_explain_an_output_that_is_its_own_leaf(value, seeded, grad1, grad2):
    """PyTorch: x.backward() on a leaf that requires grad gives x.grad = 1 (ones for a tensor,
    seeded with ones as explain seeds every output)."""
    doc = json.loads(invoke("explain", "x", "--x", value, "--times", "2", "--json").stdout)
    assert "error" not in doc, doc
    calls = [c["steps"] for c in doc["calls"]]
    assert calls[0] == [{"node": "AccumulateGrad", "leaf": "x", "received": seeded, "grad_before": None,
                         "grad_after": grad1}]
    assert calls[1][0]["grad_before"] == grad1 and calls[1][0]["grad_after"] == grad2
    r = invoke("explain", "x", "--x", value)
    assert r.exit_code == 0 and f"AccumulateGrad for x: received {seeded}; x.grad None -> {grad1}" in r.stdout
    doc = json.loads(invoke("explain", "x", "--x", value, "--detach", "x", "--json").stdout)
    assert "does not require grad" in doc["error"]


def test_explain_a_leaf_output_agrees_with_pytorch():
    torch = pytest.importorskip("torch")
    x = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    x.backward()
    doc = json.loads(invoke("explain", "x", "--x", "3", "--json").stdout)
    assert doc["gradients"] == {"x": x.grad.item()}


# -- refused before any work (issue 22) ----------------------------------------------------------------
def _marked(tmp_path, name="t.py", imports_torch=False):
    """A target that leaves a marker file when its module loads and another when f runs."""
    load, run = tmp_path / "loaded.marker", tmp_path / "ran.marker"
    head = "import torch\n" if imports_torch else ""
    return write(tmp_path, name, f"{head}import pathlib\npathlib.Path({str(load)!r}).write_text('x')\n"
                                 f"def f(x):\n    pathlib.Path({str(run)!r}).write_text('x')\n"
                                 "    return (x * x).sum()\n"), load, run


@pytest.mark.parametrize("args,fragment", [
    (["graph", "{t}", "-o", "{d}/nodir/g.svg"], "the folder"),
    (["graph", "{t}", "-o", "{d}/g.txt"], "cannot tell the format"),
    (["grad", "{t}", "--dot", "{d}/nodir/g.dot"], "the folder"),
    (["check", "{t}", "--dot", "{d}/nodir/g.dot"], "the folder"),
    (["check", "{t}", "--dot", "{d}"], "cannot tell the format"),
    (["check", "{t}", "--sweep", "--plot", "{d}/nodir/s.svg"], "the folder"),
    (["check", "{t}", "--plot", "{d}/s.svg"], "--plot draws the --sweep: add --sweep"),
    (["check", "{t}", "--order", "2", "--dot", "{d}/nodir/g.dot"], "the folder"),
])
def test_a_refused_option_is_refused_before_the_target_loads(tmp_path, args, fragment):
    target, loaded, ran = _marked(tmp_path)
    r = invoke(*[a.format(t=target, d=tmp_path) for a in args], "--x", "1,2")
    one_error(r, 2, fragment)
    assert not loaded.exists() and not ran.exists()


@pytest.mark.parametrize("option", [["--dot", "{d}/g.dot"], ["--locate"], ["--order", "2"],
                                    ["--order", "2", "--dot", "{d}/g.dot"]])
@pytest.mark.parametrize("backend", ["torch", "engine"])
def test_check_options_work_on_pytorch_as_on_the_engine(tmp_path, option, backend):
    """--dot, --locate and --order 2 run on both backends (on PyTorch they were refused, or
    --locate silently ignored); with --order 2, --dot draws the first-order graph's nodes."""
    if backend == "torch":
        pytest.importorskip("torch")
    target, loaded, ran = _marked(tmp_path, imports_torch=True)
    r = invoke("check", target, "--x", "1,2", "--backend", backend, "--json", *[a.format(d=tmp_path) for a in option])
    assert r.exit_code == 0 and ran.exists(), r.stderr
    doc = json.loads(r.stdout)
    assert doc["backend"] == backend and doc["verdict"] == "pass"
    if "--order" in option:
        assert doc["second_order"]["passed"] is True
    if "--locate" in option or "--dot" in option:
        assert "locate" in doc
    if "--dot" in option:
        assert "digraph" in (tmp_path / "g.dot").read_text()


def test_a_helper_that_brings_real_torch_runs_there_with_dot(tmp_path):
    pytest.importorskip("torch")
    write(tmp_path, "torchy_helper_22.py", "import torch\ndef sq(x):\n    return x * x\n")
    target = write(tmp_path, "t.py", "from torchy_helper_22 import sq, torch\n"
                                     "def f(x):\n    return sq(x).sum()\n")
    r = invoke("check", target, "--x", "1,2", "--dot", tmp_path / "g.dot", "--json")
    assert r.exit_code == 0, r.stderr
    dot = (tmp_path / "g.dot").read_text()
    assert json.loads(r.stdout)["backend"] == "torch" and "MulBackward0" in dot and 'label="x\\n(2,)' in dot


# -- the target's folder and its variables (issue 22) ----------------------------------------------
def test_a_lazy_import_inside_f_finds_the_targets_folder(tmp_path, monkeypatch):
    """`python ste.py` finds a module beside it at any time; autograd took the folder off
    sys.path once the file was loaded, so an import inside f (or a backward) failed."""
    folder = tmp_path / "proj"
    folder.mkdir()
    write(folder, "lazyhelper22a.py", "def sq(x):\n    return x * x\n")
    write(folder, "lazyhelper22b.py", "def twice(g):\n    return 2 * g\n")
    target = write(folder, "ste.py",
                   "import engine\n"
                   "class Sq(engine.autograd.Function):\n    @staticmethod\n    def forward(ctx, x):\n"
                   "        ctx.save_for_backward(x)\n        return x * x\n    @staticmethod\n"
                   "    def backward(ctx, g):\n        import lazyhelper22b\n        x, = ctx.saved_tensors\n"
                   "        return lazyhelper22b.twice(g) * x\n"
                   "def f(x):\n    import lazyhelper22a\n    return (lazyhelper22a.sq(x) + Sq.apply(x)).sum()\n")
    before = list(sys.path)
    try:
        doc = json.loads(invoke("grad", target, "--x", "1,2", "--json").stdout)
        assert doc["gradients"]["x"] == [4.0, 8.0]                      # d/dx 2 x^2 = 4x
        monkeypatch.chdir(folder)                                       # a relative path, from the folder
        r = invoke("check", "ste.py", "--x", "1,2")
        assert r.exit_code == 0 and "passed" in r.stdout, r.stderr
        assert sys.path == before                                       # put back when the command ends
    finally:
        for m in ("lazyhelper22a", "lazyhelper22b"):
            sys.modules.pop(m, None)


OPTION_NAMED = "def f(x, max_nodes, grad_output, dot_timeout):\n    return (x * max_nodes + grad_output + dot_timeout).sum()\n"


@pytest.mark.parametrize("spelling", ["_", "-"])
def test_variables_named_like_dashed_options_take_their_values_after_the_double_dash(tmp_path, spelling):
    target = write(tmp_path, "opt.py", OPTION_NAMED)
    names = [n.replace("_", spelling) for n in ("max_nodes", "grad_output", "dot_timeout")]
    tail = ["--", f"--{names[0]}", "3", f"--{names[1]}", "10", f"--{names[2]}", "100"]
    r = invoke("grad", target, "--x", "1,2", "--json", *tail)
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["output"]["value"] == (1 * 3 + 10 + 100) + (2 * 3 + 10 + 100)
    assert doc["gradients"]["x"] == [3.0, 3.0] and doc["gradients"]["grad_output"] == 2.0
    r = invoke("graph", target, "--x", "1,2", "--show-values", "--max-nodes", "50", "--dot-timeout", "5", *tail)
    assert r.exit_code == 0 and "229" in r.stdout, r.stderr              # the option 50, the variable 3


def test_a_dashed_options_variable_before_the_double_dash_says_where_it_goes(tmp_path):
    target = write(tmp_path, "opt.py", OPTION_NAMED)
    r = invoke("grad", target, "--x", "1,2", "--grad_output", "1", "--max_nodes", "2", "--dot_timeout", "3")
    one_error(r, 2, "the variable 'grad_output' is named like the option --grad-output: give its value after --, "
                    "as in `-- --grad_output VALUES`")
    r = invoke("graph", target, "--x", "1,2", "--", "--grad_output", "1", "--max_nodes", "2", "--dot_timeout", "3")
    assert r.exit_code == 0, r.stderr
    r = invoke("graph", target, "--x", "1,2", "--grad_output", "1", "--", "--max_nodes", "2", "--dot_timeout", "3")
    one_error(r, 2, "the variable 'grad_output' is named like the option --grad-output")   # graph has it too now
    r = invoke("graph", target, "--x", "1,2", "--", "--grad_output", "1", "--max_nodes", "2")
    one_error(r, 2, "the variable 'dot_timeout' is named like the option --dot-timeout: give its value after --, "
                    "as in `-- --dot_timeout VALUES`")
    r = invoke("graph", target, "--x", "1,2", "--max_nodes", "2", "--", "--grad_output", "1", "--dot_timeout", "3")
    one_error(r, 2, "the variable 'max_nodes' is named like the option --max-nodes: give its value after --")
    # a misspelt option where no variable has that name is still a misspelt option
    one_error(invoke("grad", "sum(x)", "--x", "1,2", "--grad_output", "1"), 2,
              "no such option: --grad_output (did you mean --grad-output?)")
    one_error(invoke("grad", target, "--x", "1,2", "--", "--max-nodes", "3", "--grad_output", "1"), 2,
              "'dot_timeout' has no value: pass --dot_timeout VALUES")


# -- a full disk, overflow, warnings (issue 22) ------------------------------------------------------
@pytest.fixture
def full_dir(tmp_path):
    """A folder on a 64 KiB tmpfs, filled up but for an old g.* of each format (root only: mount)."""
    d = tmp_path / "full"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(d)], capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root); test_a_full_disk_simulated covers the message")
    try:
        for s in (".svg", ".png", ".pdf", ".html", ".dot", ".mmd"):
            (d / f"g{s}").write_text("OLD")
        with open(d / "filler", "wb", buffering=0) as fh:
            try:
                while True:
                    fh.write(b"\0" * 4096)
            except OSError as e:
                assert e.errno == errno.ENOSPC
        yield d
    finally:
        subprocess.run(["umount", str(d)])


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz not installed (.ci/run installs it)")
@pytest.mark.parametrize("suffix", [".svg", ".png", ".pdf", ".html", ".dot", ".mmd"])
def test_a_full_disk_says_no_space_left(full_dir, tmp_path, suffix):
    chain = write(tmp_path, "chain.py", "def f(x):\n    for _ in range(300):\n        x = x * 1.0001\n"
                                        "    return x.sum()\n")
    out = full_dir / f"g{suffix}"
    r = invoke("graph", chain, "--x", "1", "-o", out)
    assert r.exit_code == 2 and r.stdout == "", (r.exit_code, r.stderr)
    assert r.stderr.splitlines() == [f"error: could not write '{out}': No space left on device"]
    assert out.read_text() == "OLD"
    assert sorted(p.name for p in full_dir.iterdir()) == sorted(
        ["filler"] + [f"g{s}" for s in (".svg", ".png", ".pdf", ".html", ".dot", ".mmd")])


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz not installed (.ci/run installs it)")
def test_a_full_disk_simulated(tmp_path, monkeypatch):
    """Without root: the write of the rendered bytes fails as a full disk makes it fail."""
    real = pathlib.Path.write_bytes

    def full(self, data):
        if self.name.startswith(".g.svg."):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)
    monkeypatch.setattr(pathlib.Path, "write_bytes", full)
    out = tmp_path / "g.svg"
    out.write_text("OLD")
    r = invoke("graph", "sum(x*x)", "--x", "1", "-o", out)
    assert r.exit_code == 2 and r.stderr.splitlines() == [f"error: could not write '{out}': No space left on device"]
    assert out.read_text() == "OLD" and [p.name for p in tmp_path.iterdir()] == ["g.svg"]


# (x*10 at 1e308 is refused before any work now: the step 1e-6 is below float64's resolution there)
@pytest.mark.parametrize("argv,where", [(["exp(x)", "--x", "1000"], "x"),
                                        (["sum(exp(x))", "--x", "1000,1"], "x[0]")])
def test_check_calls_an_overflow_an_overflow(argv, where):
    r = invoke("check", *argv)
    assert r.exit_code == 1 and r.stderr == "", r.stderr
    last = r.stdout.strip().splitlines()[-1]       # finite differences cannot judge it: not "wrong"
    assert last.startswith(f"INCONCLUSIVE: the function overflowed at {where} ("), last
    assert "sqrt, log" not in r.stdout and "gradient is wrong" not in r.stdout
    doc = json.loads(invoke("check", *argv, "--json").stdout)
    assert doc["verdict"] == "inconclusive" and doc["inconclusive"].startswith(f"the function overflowed at {where}")
    assert any(f.startswith(f"the function overflowed at {where}") for f in doc["failures"])
    r = invoke("check", "sum(sqrt(x))", "--x", "0,1")                   # leaving the domain is still that
    assert "left the function's domain at x[0]" in r.stdout and "overflow" not in r.stdout


@pytest.mark.parametrize("command", ["grad", "check", "jacobian", "graph", "explain"])
def test_a_warning_from_the_tools_own_code_is_one_clean_line(command):
    """mse_loss with a broadcasting target warns (PyTorch's words); Python printed it with the
    tool's own source line: 'expressions/compiler.py:414: UserWarning' and the code under it."""
    r = invoke(command, "mse_loss(x, y)", "--x", "1,2", "--y", "1")
    assert r.exit_code == 0, r.stderr
    assert r.stderr.splitlines() == [
        "warning: Using a target size (()) that is different to the input size ((2,)). This will likely lead to "
        "incorrect results due to broadcasting. Please ensure they have the same size."], r.stderr


def test_a_warning_from_the_users_own_code_keeps_their_line(tmp_path):
    target = write(tmp_path, "wu.py", "import warnings\ndef f(x):\n    warnings.warn('mind the gap')\n"
                                      "    return (x * x).sum()\n")
    r = invoke("grad", target, "--x", "1")
    assert r.exit_code == 0 and "wu.py:3: UserWarning: mind the gap" in r.stderr


@pytest.mark.parametrize("inputs", ["np.array([1 + 2j, 3])", "[1 + 2j, 3]", "1j"])
def test_complex_default_values_are_a_clear_error(tmp_path, inputs):
    target = write(tmp_path, "cx.py", f"import numpy as np\ninputs = {{'x': {inputs}}}\n"
                                      "def f(x):\n    return (x * x).sum()\n")
    r = invoke("grad", target)
    one_error(r, 2, "inputs['x'] in cx.py is ")
    assert "complex" in r.stderr and "a value must be a number" in r.stderr
    assert "Warning" not in r.stderr and "targets.py" not in r.stderr
    target = write(tmp_path, "cd.py", "def f(x, s=2j):\n    return (x * s).sum()\n")
    one_error(invoke("grad", target, "--x", "1", "--s", "1j"), 2, "--s")

# -- issue 22: user errors are exit 2, nothing says internal --------------------------------------
import importlib.util  # noqa: E402

HAVE_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="PyTorch is not installed (pip install torch)")
BOTH = ["engine", pytest.param("torch", marks=needs_torch)]


def target_file(tmp_path, backend, body, name="t.py"):
    """A .py target for `backend`: the same body, with `torch` the engine's or PyTorch's."""
    head = "import torch\n" if backend == "torch" else "import engine as torch\n"
    return write(tmp_path, name, head + body)


@pytest.mark.parametrize("backend", ["expression"] + BOTH)
def test_jacobian_json_with_an_input_named_y(tmp_path, backend):
    """An input called y makes the outputs `out`, `out0`...; --json read "y" and died (KeyError)."""
    if backend == "expression":
        one, two = ["x*y"], ["y*x"]
        r = invoke("jacobian", "x*y", "--x", "1,2", "--y", "3,4", "--json")
    else:
        f = target_file(tmp_path, backend, "def f(x, y):\n    return x * y\n"
                                           "def g(x, y):\n    return x * y, (x + y).sum()\n")
        one, two = [f, "--backend", backend], [f, "--func", "g", "--backend", backend]
        r = invoke("jacobian", *one, "--x", "1,2", "--y", "3,4", "--json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["output"] == {"value": [3.0, 8.0], "shape": [2]}
    assert doc["jacobian"] == {"x": [[3.0, 0.0], [0.0, 4.0]], "y": [[1.0, 0.0], [0.0, 2.0]]}   # diag(y), diag(x)
    if backend != "expression":              # several outputs: keyed by the names check uses too
        doc = json.loads(invoke("jacobian", *two, "--x", "1,2", "--y", "3,4", "--json").stdout)
        assert set(doc["output"]) == {"out0", "out1"} and doc["output"]["out1"]["value"] == 10.0
        assert doc["jacobian"]["out1/y"] == [1.0, 1.0] and doc["jacobian"]["out0/x"] == [[3.0, 0.0], [0.0, 4.0]]


@pytest.mark.parametrize("suffix", [".dot", pytest.param(".html", marks=pytest.mark.skipif(
    shutil.which("dot") is None, reason="Graphviz not installed (.ci/run installs it)"))])
def test_a_long_output_name_that_fits_is_written(tmp_path, suffix):
    """The temporary name beside the output was longer than the output's (ENAMETOOLONG, exit 3)."""
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    for name in ("a" * (limit - len(suffix)), "é" * ((limit - len(suffix)) // 2)):   # bytes, not characters
        out = tmp_path / (name + suffix)
        r = invoke("graph", "x*2", "--x", "1", "-o", out)
        assert r.exit_code == 0, r.stderr
        assert out.read_text().startswith("digraph" if suffix == ".dot" else "<!DOCTYPE html>")
        assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]          # no temporary file left
        out.unlink()
    r = invoke("graph", "x*2", "--x", "1", "-o", tmp_path / ("a" * limit + suffix))
    one_error(r, 2, f"longer than the {limit} bytes")
    assert r.stderr.count("\n") == 1 and list(tmp_path.iterdir()) == []


def test_a_temporary_file_that_cannot_be_made_is_one_clear_line(tmp_path, monkeypatch):
    import tempfile

    def refused(*a, **k):
        raise OSError(errno.EACCES, "Permission denied")
    monkeypatch.setattr(tempfile, "mkstemp", refused)
    out = tmp_path / "g.dot"
    r = invoke("graph", "x*2", "--x", "1", "-o", out)
    one_error(r, 2, f"could not write '{out}': Permission denied")
    assert r.stderr.count("\n") == 1 and not out.exists()


def test_compare_torch_without_pytorch_says_so_before_any_work(tmp_path, monkeypatch):
    """README's own example died of ModuleNotFoundError (exit 3) where PyTorch is missing."""
    monkeypatch.setitem(sys.modules, "torch", None)          # `import torch` fails, as without PyTorch
    slow = write(tmp_path, "slow.py", "import time\nimport torch\ndef f(x):\n    time.sleep(5)\n    return (x * x).sum()\n")
    for argv in (["sum(softplus(W @ x) * x)", "--W", "1,2;3,4", "--x", "0.5,-1", "--wrt", "x"], [slow, "--x", "1,2"]):
        t0 = time.perf_counter()
        r = invoke("grad", *argv, "--compare", "torch")
        one_error(r, 2, "--compare torch needs PyTorch, which is not installed here")
        assert r.stderr.count("\n") == 1 and r.stdout == "" and time.perf_counter() - t0 < 3


def _log_softmax(z):
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


Z = np.array([[0.5, -1.0, 2.0], [0.1, 0.2, -0.3]])


@pytest.mark.parametrize("expr,value", [
    ("cross_entropy(z, [0, 2])", -(_log_softmax(Z)[0, 0] + _log_softmax(Z)[1, 2]) / 2),   # README's loss
    ("nll_loss(log_softmax(z, 1), [0, 2])", -(_log_softmax(Z)[0, 0] + _log_softmax(Z)[1, 2]) / 2),
    ("dot(z[0], [1, 2, 3])", Z[0] @ [1, 2, 3]),
    ("sum(pow(z, [1, 2, 3]))", (Z ** [1, 2, 3]).sum()),
    ("sum(where(z > 0, z, [1, 2, 3]))", np.where(Z > 0, Z, [1, 2, 3]).sum()),
    ("sum(z.maximum([1, 2, 3]))", np.maximum(Z, [1, 2, 3]).sum()),
])
@pytest.mark.parametrize("compare", [False, pytest.param(True, marks=needs_torch)])
def test_a_list_given_for_a_tensor_is_a_tensor_on_both_backends(expr, value, compare):
    """A list of numbers where a function takes a tensor: PyTorch takes no list there (--compare
    torch said 'must be Tensor, not tuple'); dot and pow on the engine died of an AttributeError."""
    r = invoke("grad", expr, "--z", ";".join(",".join(map(str, row)) for row in Z), "--json",
               *(["--compare", "torch"] if compare else []))
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["output"]["value"] == pytest.approx(value, rel=1e-12)
    if compare:
        assert doc["compare"]["same"] is True, doc["compare"]


@pytest.mark.parametrize("backend", BOTH)
def test_a_tensor_method_the_engine_lacks_is_the_same_clear_error_as_a_missing_torch_name(tmp_path, backend):
    """x.cummax(...) (x.unfold until issue 23 added it) was a raw AttributeError where torch.X names
    the engine lacks say how to run the file on PyTorch; hasattr() and getattr(x, name, default)
    must still see AttributeError."""
    body = ("def probe(x):\n    assert not hasattr(x, 'no_such_method') and getattr(x, 'no_such', 3) == 3\n"
            "    try:\n        x.no_such_either\n    except AttributeError:\n        return 1.0\n"
            "def f(x):\n    return x.cummax(0)[0].sum() * probe(x)\n"
            "def g(x):\n    return torch.no_such_function(x)\n")
    target = target_file(tmp_path, "torch", body)       # a file that imports torch: on the engine's API, or PyTorch
    r = invoke("grad", target, "--x", "1,2,3", "--json", "--backend", backend)
    if backend == "torch":                              # PyTorch has cummax: [1, 2, 3]
        assert r.exit_code == 0 and json.loads(r.stdout)["output"]["value"] == 6.0, r.stderr
        return
    one_error(r, 2, "the engine has no Tensor.cummax (yet): this file uses a part of PyTorch the engine does "
                    "not provide; run it on real PyTorch instead")
    assert "x.cummax(0)" in r.stderr and "cli/" not in r.stderr          # the user's trimmed traceback
    r2 = invoke("grad", target, "--func", "g", "--x", "1,2,3", "--backend", backend)
    one_error(r2, 2, "the engine has no torch.no_such_function (yet): this file uses a part of PyTorch")
    tail = lambda text, what: text[text.rindex(what) + len(what):].strip()       # noqa: E731
    assert tail(r.stderr, "Tensor.cummax") == tail(r2.stderr, "torch.no_such_function")   # one message
    for method in ("index_fill_", "index_copy"):
        t = target_file(tmp_path, "torch", f"def f(x):\n    return x.{method}(0, x, x).sum()\n", name="m.py")
        one_error(invoke("grad", t, "--x", "1,2", "--backend", backend), 2, f"the engine has no Tensor.{method} (yet)")


_FN = ("class S(torch.autograd.Function):\n    @staticmethod\n    def forward(ctx, x, w):\n        return x * w\n"
       "    @staticmethod\n    def backward(ctx, g):\n        return {ret}\n"
       "def f(x, w):\n    return S.apply(x, w).sum()\n")
USER_GRAPH_ERRORS = {           # what the user's code did wrong -> what PyTorch says about it
    "wrong_shape": (_FN.format(ret="g.sum(), g"), "returned an invalid gradient at index 0 - got [] but expected"),
    "a_list": (_FN.format(ret="[g * 2], g"), "expected Variable or None (got list)"),
    "a_string": (_FN.format(ret="'abc', g"), "expected Variable or None (got str)"),
    "too_few": (_FN.format(ret="g"), "returned an incorrect number of gradients (expected 2, got 1)"),
    "not_a_tensor_input": (_FN.replace("S.apply(x, w)", "S.apply(x, 3.0)").format(ret="g, g"),
                           "returned a gradient different than None at position 2, but the corresponding forward "
                           "input was not a Variable"),
    "backward_inside_f": ("def f(x, w):\n    y = (x * w).sum()\n    y.backward()\n    return y\n",
                          "Trying to backward through the graph a second time"),
}


def _pytorch_says(path):
    """The first line of what real PyTorch raises running the file's f and backward() itself."""
    import torch
    spec = importlib.util.spec_from_file_location("_said", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    x = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    w = torch.tensor([3.0, 4.0], dtype=torch.float64, requires_grad=True)
    with pytest.raises(RuntimeError) as e:
        mod.f(x, w).backward()
    return str(e.value).splitlines()[0]


@pytest.mark.parametrize("case", sorted(USER_GRAPH_ERRORS))
@pytest.mark.parametrize("backend", BOTH)
def test_pytorchs_errors_about_the_users_code_are_exit_2_on_both_backends(tmp_path, case, backend):
    """On the torch backend PyTorch's autograd raised these from the CLI's own backward() or
    autograd.grad call: exit 3, 'internal error'. They are the user's, as on the engine."""
    body, fragment = USER_GRAPH_ERRORS[case]
    target = target_file(tmp_path, backend, body)
    said = _pytorch_says(target_file(tmp_path, "torch", body, name="said.py")) if HAVE_TORCH else None
    for command in ("grad", "check", "jacobian"):
        r = invoke(command, target, "--x", "1,2", "--w", "3,4", "--backend", backend)
        one_error(r, 2, fragment)
        assert r.stderr.count("\n") == 1 and "internal" not in r.stderr, (command, r.stderr)
        if said is not None:                  # PyTorch's own words, on the engine too
            assert r.stderr.strip() == f"error: {said}", (command, r.stderr)
    if backend == "torch":                    # graph's backward (--show-grad) too
        one_error(invoke("graph", target, "--x", "1,2", "--w", "3,4", "--show-grad", "--backend", backend), 2, fragment)


@pytest.mark.parametrize("backend,half", [("engine", "float16"), pytest.param("torch", "float16", marks=needs_torch),
                                          pytest.param("torch", "bfloat16", marks=needs_torch)])
@pytest.mark.parametrize("where", ["output", "inside"])
def test_half_precision_is_refused_by_the_check_and_shown_by_the_rest(tmp_path, backend, half, where):
    """bfloat16 (which numpy lacks) killed check, jacobian and graph on PyTorch ('Got unsupported
    ScalarType BFloat16', exit 3); in the middle of f, check called the right gradient 2 wrong
    (finite differences of a bfloat16 sum at eps 1e-6 are 0)."""
    tail = ".double()" if where == "inside" else ""
    target = target_file(tmp_path, backend, f"def f(x):\n    return (x.to(torch.{half}) * 2).sum(){tail}\n")
    for argv in (["check"], ["check", "--fast"], ["grad", "--check"], ["jacobian", "--check"]):
        r = invoke(*argv, target, "--x", "1,2", "--backend", backend)
        one_error(r, 2, f"the target computes in {half}, whose")
        assert r.stderr.count("\n") == 1 and "without its cast to" in r.stderr
    doc = json.loads(invoke("grad", target, "--x", "1,2", "--json", "--backend", backend).stdout)
    assert doc["output"]["value"] == 6.0 and doc["gradients"] == {"x": [2.0, 2.0]}      # d(2x0 + 2x1)
    doc = json.loads(invoke("jacobian", target, "--x", "1,2", "--json", "--backend", backend).stdout)
    assert doc["output"]["value"] == 6.0 and doc["jacobian"] == {"x": [2.0, 2.0]}
    for argv in (["graph"], ["graph", "--show-grad", "--show-saved"]):
        r = invoke(*argv, target, "--x", "1,2", "--backend", backend)
        assert r.exit_code == 0 and r.stdout.startswith("digraph"), r.stderr


@pytest.mark.parametrize("backend", BOTH)
def test_complex_outputs_are_one_clear_line(tmp_path, backend):
    """A complex output died inside the checker ('unsupported dtype complex128', exit 3);
    complex numbers inside a real function are fine. The engine has no complex dtype: making
    one is the user's code raising (exit 2, their traceback)."""
    if backend == "engine":
        target = target_file(tmp_path, backend, "def f(x):\n    return x * torch.tensor([1 + 2j])\n")
        one_error(invoke("check", target, "--x", "1,2", "--backend", backend), 2, "unsupported dtype complex128")
        return
    target = target_file(tmp_path, backend, "def f(x):\n    return x * (1 + 2j)\n"
                                            "def g(x):\n    return (x * (1 + 2j)).abs().sum()\n")
    for command in ("grad", "check", "jacobian"):
        r = invoke(command, target, "--x", "1,2", "--backend", backend)
        one_error(r, 2, f"the output is complex (complex128): {command} works on real outputs (complex numbers "
                        "inside the target are fine)")
        assert r.stderr.count("\n") == 1
    r = invoke("check", target, "--func", "g", "--x", "1,2", "--json", "--backend", backend)
    doc = json.loads(r.stdout)
    assert r.exit_code == 0 and doc["passed"], r.stderr
    doc = json.loads(invoke("jacobian", target, "--func", "g", "--x", "1,2", "--json", "--backend", backend).stdout)
    assert doc["jacobian"]["x"] == pytest.approx([5 ** 0.5, 5 ** 0.5], rel=1e-12)         # |1 + 2j|


@pytest.mark.parametrize("value", ["ones({})", "zeros({})", "randn({})", "{}"])
def test_values_and_intermediates_past_32_dimensions_are_refused(value):
    """ones(1,...,1) with 33 ones died in numpy's broadcasting (only 32 dimensions), 65 in numpy
    itself (exit 3); so did an expression's reshape to 33 dimensions at its next op."""
    for n, ok in ((32, True), (33, False), (65, False)):
        text = "[" * n + "1" + "]" * n if value == "{}" else value.format(",".join(["1"] * n))
        r = invoke("grad", "sum(x * 2)", "--x", text, "--json")
        if ok:
            assert r.exit_code == 0, r.stderr
            g = np.array(json.loads(r.stdout)["gradients"]["x"])
            assert g.shape == (1,) * n and g.item() == 2.0
        else:
            one_error(r, 2, "32")
            assert r.stderr.count("\n") == 1
    r = invoke("grad", f"sum(x.reshape({','.join(['1'] * 33)}) * 2)", "--x", "1")
    one_error(r, 2, "would have 33 dimensions; the limit is 32")


NAMING_MISTAKES = ['m.register_parameter("a.b", P)', 'm.register_parameter("", P)', 'setattr(m, "a.b", P)',
                   'm.register_buffer("a.b", lib.ones(2))', 'm.register_buffer("", lib.ones(2))',
                   'm.add_module("a.b", lib.nn.Linear(1, 1))', 'm.add_module("", lib.nn.Linear(1, 1))',
                   'm.register_parameter(3, P)']


def _raised(lib, call):
    m, P = lib.nn.Module(), lib.nn.Parameter(lib.ones(2))
    try:
        eval(call, {"m": m, "P": P, "lib": lib})
    except Exception as e:  # noqa: BLE001 - what it raises is the point
        return type(e).__name__, str(e)
    return None


@pytest.mark.parametrize("call", NAMING_MISTAKES)
def test_module_names_with_a_dot_are_refused_in_pytorchs_words(call):
    """A parameter named "a.b" was accepted by the engine, and then `a.b` as a qualified name
    (module a, parameter b) named nothing."""
    import engine
    got = _raised(engine, call)
    assert got is not None and got[0] in ("KeyError", "TypeError"), got
    assert any(w in got[1] for w in ('contain "."', "be empty string", "should be a string")), got
    if HAVE_TORCH:
        import torch
        assert got == _raised(torch, call)                # PyTorch's own type and text


@pytest.mark.parametrize("backend", BOTH)
def test_a_module_parameter_named_with_a_dot_is_the_users_error(tmp_path, backend):
    target = target_file(tmp_path, backend, "class M(torch.nn.Module):\n    def __init__(self):\n"
                                            "        super().__init__()\n"
                                            "        self.register_parameter('w.x', torch.nn.Parameter(torch.ones(2)))\n"
                                            "    def forward(self, x):\n        return (x * 2).sum()\n")
    r = invoke("check", target, "--func", "M", "--x", "1,2", "--backend", backend)
    one_error(r, 2, 'KeyError: \'parameter name can\\\'t contain "."\'')
    assert "Traceback (in your file)" in r.stderr


@pytest.mark.parametrize("backend", ["expression"] + BOTH)
def test_a_step_that_cannot_make_a_difference_is_refused(tmp_path, backend):
    """--eps 5e-324 died of ZeroDivisionError (eps / 2 is 0); --eps 1e-17 was taken and called
    sum(x*x)'s right gradient wrong (x + 1e-17 is x, so every difference was 0); so was the
    default step at x = 1e11."""
    if backend == "expression":
        tgt = ["sum(x*x)"]
    else:
        tgt = [target_file(tmp_path, backend, "def f(x):\n    return (x * x).sum()\n"), "--backend", backend]
    one_error(invoke("check", *tgt, "--x", "0,0", "--eps", "5e-324"), 2, "below the smallest normal float64")
    r = invoke("check", *tgt, "--x", "1,2", "--eps", "1e-17")
    one_error(r, 2, "the step 1e-17 is below float64's resolution at x[1] = 2 (the next float is 4.4e-16 away)")
    assert r.stderr.count("\n") == 1 and "use --eps 1e-10 or more" in r.stderr
    r = invoke("check", *tgt, "--x", "1e11")                     # the default 1e-6 against spacing 1.5e-05
    one_error(r, 2, "the step 1e-06 is below float64's resolution at x = 1e+11")
    assert "use --eps 10 or more" in r.stderr
    doc = json.loads(invoke("check", *tgt, "--x", "1e11", "--eps", "10", "--json").stdout)
    assert doc["passed"] is True                                             # the step it suggests works
    for command in (["grad", "--check"], ["jacobian", "--check"]):
        one_error(invoke(*command, *tgt, "--x", "1e11"), 2, "check it with 'autograd check --eps 10'")
    r = invoke("check", *tgt, "--x", "1,2", "--eps", "1e-13", "--json")    # representable, but coarse: a warning
    doc = json.loads(r.stdout)
    assert any("eps=1e-13 is only 225 times float64's spacing at x[1] = 2" in w for w in doc["warnings"]), doc
    r = invoke("check", *tgt, "--x", "1,2")
    assert r.exit_code == 0 and "spacing" not in r.stderr                    # the default step: no warning


@pytest.mark.parametrize("value,what", [
    ('"1,2"', "is text ('1,2')"), ("[[1, 2], [3]]", "is a ragged list"), ("object()", "is an object"),
    ("None", "is None"), ("[1, None]", "is None at [1]"), ("{'a': 1}", "is a dict"), ("1 + 2j", "is a complex number"),
    ("10 ** 400", "is an integer too large for float64 (401 digits)"), ("[[1, 'a']]", "is text at [0][1] ('a')"),
    ("np.ones((1,) * 33)", "is an array of 33 dimensions (the limit is 32)"),
    ("np.array([1 + 1j])", "is a numpy array of complex values"),
])
@pytest.mark.parametrize("backend", BOTH)
def test_inputs_that_are_not_numbers_are_one_clear_line(tmp_path, value, what, backend):
    """`inputs = {"x": "1,2"}` died in numpy (exit 3); None silently became NaN."""
    target = target_file(tmp_path, backend, f"import numpy as np\ninputs = {{'x': {value}}}\n"
                                            "def f(x):\n    return (x * 2).sum()\n")
    for command in ("grad", "check", "jacobian", "graph"):
        r = invoke(command, target, "--backend", backend)
        one_error(r, 2, f"inputs['x'] in t.py {what}")
        assert r.stderr.count("\n") == 1 and "a value must be a number, a (nested) list of numbers" in r.stderr
    r = invoke("grad", target, "--x", "1,2", "--json", "--backend", backend)      # a value given wins
    assert r.exit_code == 0 and json.loads(r.stdout)["gradients"] == {"x": [2.0, 2.0]}, r.stderr


@pytest.mark.parametrize("backend", BOTH)
def test_defaults_that_are_not_numbers_are_constants(tmp_path, backend):
    """f(x, s=["a"]) and f(x, n=10**400) died in numpy (exit 3), f(x, mode="sum") and f(x, m=None)
    asked for --mode / --m: a default that is not a value is passed as it is. Numbers are
    variables with that value, as before."""
    target = target_file(tmp_path, backend, "def f(x, s=['a'], n=10 ** 400, mode='sum', m=None, flag=True, scale=2.0):\n"
                                            "    assert s == ['a'] and n == 10 ** 400 and mode == 'sum' and m is None\n"
                                            "    return (x * scale).sum() if flag else x.sum()\n")
    for command in ("grad", "check", "jacobian", "graph"):
        r = invoke(command, target, "--x", "1,2", "--backend", backend)
        assert r.exit_code == 0, (command, r.stderr)
    doc = json.loads(invoke("grad", target, "--x", "1,2", "--json", "--backend", backend).stdout)
    assert set(doc["inputs"]) == {"x", "scale"} and doc["inputs"]["scale"]["value"] == 2.0
    assert doc["gradients"] == {"x": [2.0, 2.0], "scale": 3.0}                  # d/dscale = x0 + x1
    r = invoke("grad", target, "--x", "1,2", "--m", "5", "--json", "--backend", backend)     # given: a variable
    assert r.exit_code == 2 and "AssertionError" in r.stderr                   # f asserts m is None: its code ran


@pytest.mark.parametrize("backend", BOTH)
def test_a_functions_keyword_defaults_are_constants_unless_named_in_wrt(tmp_path, backend):
    """forward(ctx, x, eps=1e-5): eps was a checked input; it clashed with --eps, and given after
    -- it was differentiated, so the (right) Function FAILed. PyTorch differentiates tensor
    arguments only."""
    body = ("class Norm(torch.autograd.Function):\n    @staticmethod\n    def forward(ctx, x, eps=1e-5, n=2):\n"
            "        ctx.save_for_backward(x)\n        ctx.eps, ctx.n = eps, n\n"
            "        return x / (x.abs().sum() + eps) * n\n"
            "    @staticmethod\n    def backward(ctx, g):\n        x, = ctx.saved_tensors\n"
            "        s = x.abs().sum() + ctx.eps\n"
            "        return (g / s - (g * x).sum() * x.sign() / s ** 2) * ctx.n, None, None\n")
    target = target_file(tmp_path, backend, body)
    base = ["--func", "Norm", "--x", "1,2", "--json", "--backend", backend]
    for extra in ([], ["--", "--eps", "0.5"], ["--", "--n", "3"], ["--eps", "1e-7"]):
        r = invoke("check", target, *base, *extra)
        doc = json.loads(r.stdout)
        assert r.exit_code == 0 and doc["passed"] and set(doc["inputs"]) == {"x"}, (extra, r.stderr)
    doc = json.loads(invoke("jacobian", target, *base, "--", "--eps", "0.5").stdout)
    s = 3 + 0.5                                 # |1| + |2| + eps; d(2x_i/s)/dx_j = 2(delta_ij / s - x_i / s^2)
    want = [[2 * (1 / s - 1 / s ** 2), 2 * (-1 / s ** 2)], [2 * (-2 / s ** 2), 2 * (1 / s - 2 / s ** 2)]]
    assert np.allclose(doc["jacobian"]["x"], want, rtol=1e-12)
    one_error(invoke("check", target, *base, "--", "--n", "2.5"), 2, "--n takes a whole number (its default is 2)")
    r = invoke("check", target, *base, "--wrt", "x,eps")       # asked for: eps is checked, and gets no gradient
    doc = json.loads(r.stdout)
    assert r.exit_code == 1 and set(doc["inputs"]) == {"x", "eps"} and doc["jacobians"]["input"] == "eps"


@pytest.mark.parametrize("backend", BOTH)
def test_module_parameters_go_by_their_qualified_names(tmp_path, backend):
    """README says `--wrt net.0.weight`; a module class got `MLP.net.0.weight` (an instance
    `net.weight`). The names are named_parameters()'s, for a class and an instance alike."""
    target = target_file(tmp_path, backend,
                         "class MLP(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                         "        self.net = torch.nn.Sequential(torch.nn.Linear(2, 1))\n"
                         "    def forward(self, x):\n        return self.net(x).sum()\n"
                         "seq = torch.nn.Sequential(torch.nn.Linear(2, 1))\nmlp = MLP()\n")
    for func, stem, x in (("MLP", "net.0.", "x"), ("mlp", "net.0.", "x"), ("seq", "0.", "input")):
        w, b = stem + "weight", stem + "bias"
        given = [f"--{x}", "4,5", "--backend", backend]
        r = invoke("grad", target, "--func", func, *given, f"--{w}", "[[1,2]]", f"--{b}", "[3]", "--wrt", f"{x},{w}",
                   "--json", "--grad-output", "[1]" if func == "seq" else "1")
        assert r.exit_code == 0, (func, r.stderr)
        doc = json.loads(r.stdout)
        assert list(doc["inputs"]) == [x, w, b] and doc["inputs"][b]["value"] == [3.0]
        assert np.sum(doc["output"]["value"]) == 1 * 4 + 2 * 5 + 3                 # w . x + b
        assert doc["gradients"] == {x: [1.0, 2.0], w: [[4.0, 5.0]]}               # d/dx = w, d/dw = x
        doc = json.loads(invoke("check", target, "--func", func, *given, "--json").stdout)
        assert doc["passed"] and set(doc["inputs"]) == {x, w, b}
        r = invoke("graph", target, "--func", func, *given)
        assert r.exit_code == 0 and w in r.stdout                                 # the graph's leaves say so too


_CTX_NAMES = ("op", "name", "forward_arrays", "n_outputs", "inner_functions", "variable", "metadata_", "to_do")


@pytest.mark.parametrize("backend", BOTH)
@pytest.mark.parametrize("factor", [2, 3])           # 2: right; 3: the backward is wrong
def test_the_users_attributes_on_ctx_are_theirs(tmp_path, backend, factor):
    """ctx.op = "scale" (or ctx.name = ...) crashed check, --locate, --dot, graph and explain on
    both backends (exit 3: the tools read `op` and `name()` off the node, which is the user's ctx).
    The tools read them from the node's class; the user's values stay theirs, and a wrong backward
    is still located under the Function's own name."""
    sets = "".join(f"        ctx.{a} = 'mine'\n" for a in _CTX_NAMES)
    asserts = " and ".join(f"ctx.{a} == 'mine'" for a in _CTX_NAMES)
    body = ("class Scale(torch.autograd.Function):\n    @staticmethod\n    def forward(ctx, x):\n" + sets +
            "        ctx.save_for_backward(x)\n        return x * 2\n"
            "    @staticmethod\n    def backward(ctx, g):\n"
            f"        assert {asserts}, 'the tool changed the ctx'\n"
            f"        return g * {factor}\n"
            "def f(x):\n    return (Scale.apply(x) * x).sum()\n")
    target = target_file(tmp_path, backend, body)
    ok = factor == 2
    base = [target, "--x", "1,2", "--backend", backend]
    r = invoke("check", *base, "--json", "--locate", "--dot", tmp_path / "c.dot")
    assert r.exit_code == (0 if ok else 1), r.stderr
    doc = json.loads(r.stdout)
    assert doc["passed"] is ok
    if not ok:
        assert doc["locate"][0]["node"] == "ScaleBackward" and doc["locate"][0]["passed"] is False, doc["locate"]
    assert "ScaleBackward" in (tmp_path / "c.dot").read_text()
    for args in (["graph", *base, "-o", tmp_path / "g.html"], ["graph", *base], ["grad", *base, "--json"]):
        r = invoke(*args)
        assert r.exit_code == 0, (args, r.stderr)
    assert "ScaleBackward" in (tmp_path / "g.html").read_text()
    r = invoke("explain", *base)                 # on either backend (issue 23: --backend)
    assert r.exit_code == 0 and "ScaleBackward" in r.stdout and "Scale.backward" in r.stdout, r.stderr


def test_jacobian_json_is_refused_past_its_size_and_o_saves_any_size(tmp_path):
    """`jacobian 'x*2' --x randn(10000) --json` peaked at 13.9 GB and wrote 1.3 GB of text: past
    10^6 elements --json is refused before the Jacobian is computed, and -o FILE.npz saves it
    (numpy's format), atomically; --json then names the file instead of carrying the matrices."""
    from cli.commands import jacobian as jac_cmd
    n = int(np.sqrt(jac_cmd.JSON_MAX)) + 1                     # just past the limit
    one_error(invoke("jacobian", "x*2", "--x", f"randn({n})", "--json"), 2, "too many for --json")
    r = invoke("jacobian", "x*2", "--x", f"randn({n - 1})", "--json")   # just within it
    assert r.exit_code == 0 and len(json.loads(r.stdout)["jacobian"]["x"]) == n - 1
    out = tmp_path / "j.npz"
    r = invoke("jacobian", "x*2", "--x", f"randn({n})", "-o", out, "--json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert "jacobian" not in doc and doc["jacobian_file"] == {"path": str(out), "arrays": ["x"]}
    assert np.array_equal(np.load(out)["x"], 2 * np.eye(n))      # d(2x)/dx = 2 I
    r = invoke("jacobian", "x*y", "--x", "1,2", "--y", "3,4", "-o", out)
    assert r.exit_code == 0 and "wrote" in r.stderr
    saved = np.load(out)
    assert saved.files == ["x", "y"]
    assert np.array_equal(saved["x"], np.diag([3.0, 4.0])) and np.array_equal(saved["y"], np.diag([1.0, 2.0]))
    one_error(invoke("jacobian", "x*y", "--x", "1,2", "--y", "3,4", "-o", tmp_path / "j.npy"), 2, "use .npz")
    assert not (tmp_path / "j.npy").exists()
    one_error(invoke("jacobian", "x*y", "--x", "1,2", "--y", "3,4", "-o", tmp_path / "j.txt"), 2,
              "use .npz or .npy")
    r = invoke("jacobian", "sin(x)", "--x", "1,2", "-o", tmp_path / "one.npy")
    assert r.exit_code == 0 and np.allclose(np.load(tmp_path / "one.npy"), np.diag(np.cos([1.0, 2.0])), rtol=1e-15)


@pytest.mark.parametrize("backend", BOTH)
def test_jacobian_o_on_both_backends(tmp_path, backend):
    target = target_file(tmp_path, backend, "def f(x, W):\n    return torch.tanh(W @ x)\n")
    out = tmp_path / f"j_{backend}.npz"
    r = invoke("jacobian", target, "--x", "0.5,-1", "--W", "1,2;3,4", "--backend", backend, "-o", out)
    assert r.exit_code == 0, r.stderr
    x, W = np.array([0.5, -1.0]), np.array([[1.0, 2.0], [3.0, 4.0]])
    s = 1 - np.tanh(W @ x) ** 2                                    # d tanh(Wx) = diag(sech^2) (W dx + dW x)
    saved = np.load(out)
    assert np.allclose(saved["x"], s[:, None] * W, rtol=1e-12)
    assert np.allclose(saved["W"], np.einsum("i,ij,k->ijk", s, np.eye(2), x), rtol=1e-12)
