"""PyTorch's names in the reprs of the engine's helper objects, so code written as
`import engine as torch` prints what PyTorch prints: `print(x.register_hook(f))` shows
`<torch.utils.hooks.RemovableHandle object at 0x...>`. Only the instance's repr changes; the
class keeps its own module (pickling, and the checks that tell engine objects from PyTorch's,
read that)."""


def torch_repr(path):
    """Class decorator: instances print as `<path object at 0x...>`, PyTorch's default repr."""
    def deco(cls):
        def __repr__(self):
            return f"<{path} object at {id(self):#x}>"
        __repr__.__qualname__ = f"{cls.__qualname__}.__repr__"
        cls.__repr__ = __repr__
        return cls
    return deco

