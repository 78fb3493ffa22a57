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
        col = start - line_start
        width = max(1, min(end, line_end) - start)
        if len(line) > WINDOW:
            # a long text is shown around the span only (a 130 KB expression was echoed whole)
            left = max(0, col - WINDOW // 3)
            right = min(len(line), max(col + min(width, WINDOW // 3) + WINDOW // 3, left + WINDOW))
            pre, post = ("..." if left else ""), ("..." if right < len(line) else "")
            line = pre + line[left:right] + post
            col = col - left + len(pre)
            width = max(1, min(width, right - (start - line_start)))
        return line + "\n" + " " * col + "^" * width


WINDOW = 120       # characters of a long line shown around the caret


class ValueSyntaxError(ExpressionError):
    """A variable's value text could not be read."""
