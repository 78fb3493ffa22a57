"""expressions: math typed on the command line, compiled safely into engine calls.

`compile_expression(text)` returns a Program (`.variables`, `.run(values)`); `parse_value(text)`
reads a variable's value. Reads only the engine's public API and op registry.
"""
from .compiler import CONSTANTS, MAX_DEPTH, MAX_LENGTH, Program, compile_expression, functions  # noqa: F401
from .errors import ExpressionError, ValueSyntaxError  # noqa: F401
from .values import MAX_ELEMENTS, parse_value  # noqa: F401
