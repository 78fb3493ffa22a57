"""Files the commands write (graph -o, grad --dot), shared below the commands.

A path is checked before any work (format, Graphviz present, its folder exists and is
writable, it is not a folder) and resolved then, so a target's os.chdir cannot move it. The
file is written to a temporary file beside it and renamed into place only when complete: a
full disk, a failing or timed-out `dot`, Ctrl-C, SIGTERM or SIGHUP leaves the previous file as
it was and no partial file. Graphviz runs with a timeout and dies with us.
"""
import os
import pathlib
import shutil
import subprocess

from .errors import CliError

RENDERED = (".svg", ".png", ".pdf", ".html")      # .html: the SVG in a page (cli/htmlpage.py)
TEXT = (".dot", ".gv", ".mmd")
DOT_TIMEOUT = 60.0         # seconds; --dot-timeout changes it


class Output:
    """A checked output path: `path` (absolute) and `suffix`."""

    def __init__(self, path, suffix):
        self.path, self.suffix = path, suffix


def prepare(text, graph=True, formats=None):
    """Check an output path now, before any work; None stays None (stdout). formats: the
    suffixes allowed (default: the graph formats)."""
    if text is None:
        return None
    path = pathlib.Path(text).expanduser()
    suffix = path.suffix.lower()
    if formats is not None:
        if suffix not in formats:
            raise CliError(f"cannot tell the format of '{text}': use {' or '.join(formats)}")
    elif suffix not in RENDERED + TEXT:
        raise CliError(f"cannot tell the format of '{text}': use .dot, .gv, .svg, .png, .pdf, .html or .mmd")
    if graph and suffix in RENDERED and shutil.which("dot") is None:
        raise CliError(f"writing {suffix} needs Graphviz's 'dot' program, which is not on PATH. Install it "
                       "(Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz), or write "
                       ".dot and render it elsewhere")
    path = path.absolute()
    limit = _name_max(path.parent)          # first: is_dir() itself fails on a name too long
    if len(os.fsencode(path.name)) > limit:
        raise CliError(f"cannot write '{text}': its name is {len(os.fsencode(path.name))} bytes, longer than the "
                       f"{limit} bytes a file name may have here: give a shorter name")
    if path.is_dir():
        raise CliError(f"'{text}' is a folder: give a file name, like {text.rstrip('/')}/graph{suffix}")
    folder = path.parent
    if not folder.is_dir():
        raise CliError(f"cannot write '{text}': the folder '{folder}' does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CliError(f"cannot write '{text}': no permission to write in '{folder}'")
    if path.exists() and not os.access(path, os.W_OK):
        raise CliError(f"cannot write '{text}': the file is read-only")
    return Output(path, suffix)


def write_graph(outs, tensors, output, *, rankdir="TB", timeout=None, **options):
    """The graph of `outs` as DOT/Mermaid text to the real stdout (output None), or to a file."""
    from engine import dotgraph

    from . import render
    names = {id(t): n for n, t in tensors.items()}
    options.setdefault("constants", [(n, t) for n, t in tensors.items() if not t.requires_grad])
    if options.get("view", 0) is None:
        del options["view"]                    # the engine's own graph
    if output is not None and output.suffix == ".mmd":
        text = dotgraph.to_mermaid(list(outs), names, rankdir=rankdir, **options)
    else:
        g = dotgraph.build(list(outs), names, **options)
        text = dotgraph.dot_text(g, rankdir)
    if output is None:
        render.out().write(text)
    elif output.suffix == ".html":
        from .htmlpage import page

        def make(tmp):
            svg = _run_dot(text, "svg", output.path.name, timeout or DOT_TIMEOUT).decode("utf-8", errors="replace")
            tmp.write_text(page(g, svg, _rules(g, names)))
        _atomic(output, make)
    elif output.suffix in RENDERED:
        _atomic(output, lambda tmp: tmp.write_bytes(_run_dot(text, output.suffix[1:], output.path.name,
                                                             timeout or DOT_TIMEOUT)))
    else:
        _atomic(output, lambda tmp: tmp.write_text(text))
    return output


def write_with(output, make):
    """make(tmp_path) writes the file; then it replaces output.path atomically."""
    _atomic(output, make)
    return output


def write_text(output, text):
    """Text (an SVG) to a checked output path, atomically."""
    _atomic(output, lambda tmp: tmp.write_text(text))
    return output


def _rules(g, names):
    """{node id: its local rule in plain math} for the page's panel: an engine node's from its
    registry entry, a PyTorch node's from the entry with the same node name (MulBackward0 is
    mul), a custom Function's "your backward"; a node whose rule cannot be read shows none."""
    from .commands.explain import _forward_cls, _is_leaf_node, _node_rule, _op_word, registry_op
    rules = {}
    for nid, node in g.objects.items():
        nexts = [n for n, _ in node.next_functions]
        inputs = [names.get(id(n.variable), f"input{k}") if n is not None and _is_leaf_node(n)
                  else ("input" if len(nexts) == 1 else f"input{k}") for k, n in enumerate(nexts)]
        on_torch = not type(node).__module__.startswith("engine")
        try:
            text = _node_rule(node, inputs, on_torch)
        except Exception:  # noqa: BLE001 - a rule is a courtesy; the page is still right without it
            text = ""
        fwd = _op_word(node) if registry_op(node) is not None or _forward_cls(node) is not None else ""
        if fwd:
            text = f"forward: {fwd}" + (f"\n{text}" if text else "")
        if text:
            rules[nid] = text
    return rules


def _name_max(folder):
    """The longest file name (in bytes) the file system holding `folder` takes."""
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):      # no pathconf (Windows), or it cannot tell
        return 255


# what a temporary name adds to its stem: "." before, mkstemp's ".XXXXXXXX" and ".tmp" after, and
# room for the ".svg" that an .html output's SVG temporary puts before ".tmp"
_TMP_EXTRA = len(".") + len(".XXXXXXXX") + len(".svg") + len(".tmp")


def _tmp_stem(name, folder):
    """The output's name cut so that its temporary names fit wherever the name itself fits: the
    temporary file beside `a*251.dot` was `.a*251.dot.XXXXXXXX.tmp`, past NAME_MAX (ENAMETOOLONG)."""
    room = max(_name_max(folder) - _TMP_EXTRA, 1)
    while len(os.fsencode(name)) > room:        # cut characters, not bytes: a name stays valid UTF-8
        name = name[:-1]
    return name


def _atomic(output, make):
    """make(tmp_path) writes the whole file; then it replaces output.path in one rename."""
    import tempfile                # here, not at start-up: most runs write no file
    from .interrupts import blocked
    tmp = None
    try:
        with blocked():            # a signal now would leave a temporary file nobody knows of
            fd, name = tempfile.mkstemp(prefix=f".{_tmp_stem(output.path.name, output.path.parent)}.", suffix=".tmp",
                                        dir=output.path.parent)
            tmp = pathlib.Path(name)
        os.close(fd)
        make(tmp)
        # mkstemp makes the file 0600: give it the mode a plain open() would (or the old file's)
        if output.path.exists():
            mode = output.path.stat().st_mode & 0o777
        else:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, output.path)
    except OSError as e:
        raise CliError(f"could not write '{output.path}': {e.strerror or e}") from None
    finally:                       # also on Ctrl-C, SIGTERM or SIGHUP (cli/interrupts.py)
        if tmp is not None and tmp.exists():
            tmp.unlink()


def _die_with_parent():
    """In the child, before exec: get SIGKILL when autograd dies (Linux), so no `dot` is left."""
    try:
        import ctypes
        import signal
        ctypes.CDLL(None).prctl(1, int(signal.SIGKILL))      # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort off Linux
        pass


def _run_dot(text, fmt, name, timeout):
    """The graph rendered by `dot -T<fmt>`, as bytes. dot writes to a pipe and we write the file:
    a full disk is then our own write's error ("No space left on device"), not Graphviz's
    "gvwrite_no_z problem 8" -- nor a PDF cut short that dot reported as done."""
    try:
        r = subprocess.run(["dot", f"-T{fmt}"], input=text.encode(), capture_output=True, timeout=timeout,
                           preexec_fn=_die_with_parent)
    except subprocess.TimeoutExpired:
        raise CliError(f"Graphviz did not finish rendering {name} within {timeout:g} s (it was "
                       "stopped): write .dot instead, cut the graph with --max-nodes, or raise "
                       "--dot-timeout") from None
    if r.returncode != 0 or not r.stdout:
        said = r.stderr.decode(errors="replace").strip().splitlines() if r.stderr else []
        raise CliError(f"Graphviz could not render {name}: {said[0] if said else 'exit ' + str(r.returncode)}")
    return r.stdout
