"""ExpressionError: one message, plus where in the text it points (a column span)."""


class ExpressionError(Exception):
    """Bad expression or value text. `span` is (start, end) in `text`, or None."""

    def __init__(self, message, span=None, text=None):
        super().__init__(message)
        self.message = message
        self.span = span
        self.text = text

    def caret(self):
        """The text with a caret line under the span (what the CLI prints)."""
        if self.text is None or self.span is None:
            return None
        start, end = self.span
        line_start = self.text.rfind("\n", 0, start) + 1
        line_end = self.text.find("\n", start)
        line_end = len(self.text) if line_end < 0 else line_end
        line = self.text[line_start:line_end]
        width = max(1, min(end, line_end) - start)
        return line + "\n" + " " * (start - line_start) + "^" * width


class ValueSyntaxError(ExpressionError):
    """A variable's value text could not be read."""
