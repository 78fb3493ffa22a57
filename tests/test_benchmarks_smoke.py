"""Every benchmark workload runs once on tiny sizes, so the runner cannot rot (not a timing test)."""
import json

from benchmarks import __main__ as bench
from benchmarks import workloads


def test_every_workload_runs_on_tiny_sizes(capsys):
    names = [w for w in workloads.WORKLOADS if w != "startup"]
    assert bench.main(["--quick", "--json", "-w", ",".join(names), "-s", "ours,numpy"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc["results"]) == set(names)
    for name in names:
        assert any(k.startswith("ours") for k in doc["results"][name]["systems"])


def test_startup_workload_builds_and_runs_our_commands():
    """The start-up workload times the installed `autograd` script: it must find it (without
    it the workload would silently time the floor alone) and every command it times must run."""
    assert workloads.autograd_script(), "the autograd console script is not installed"
    fns = workloads.startup(workloads.QUICK, ["ours", "numpy"])
    ours = [k for k in fns if k.startswith("ours")]
    assert ours == ["ours: autograd grad (seed example)", "ours: autograd --help"]
    for name in ours:
        fns[name]()                      # subprocess.run(check=True): raises if the command fails


def test_markdown_rendering_of_a_saved_run(tmp_path, capsys):
    assert bench.main(["--quick", "--json", "-w", "dot_export", "-s", "ours"]) == 0
    saved = tmp_path / "run.json"
    saved.write_text(capsys.readouterr().out)
    assert bench.main(["--from-json", str(saved), "--markdown"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Measured on:") and "| dot_export | ours |" in out
