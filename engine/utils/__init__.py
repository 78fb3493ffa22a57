"""torch.utils: the data-loading part tutorials use (engine.utils.data)."""
