"""One module per command; each exposes `<name>_command` and registers nothing itself."""
