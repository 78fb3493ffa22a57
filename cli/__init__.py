"""autograd-cli: the `autograd` command (cli.app) and, from Python, the same gradient check:
`from cli import check, assert_gradients` (cli/api.py). Nothing is imported until used, so the
command starts as fast as before and `import cli` imports no torch."""

__all__ = ["check", "assert_gradients", "Report", "graph"]


def __getattr__(name):
    if name in __all__:
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module 'cli' has no attribute {name!r}")
