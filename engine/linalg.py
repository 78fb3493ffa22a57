"""torch.linalg on the engine: engine.linalg.solve, inv, det, slogdet, cholesky, qr, svd, svdvals,
norm, vector_norm, matrix_norm and LinAlgError.

Nothing is defined here: the names are the op registry's `linalg.NAME` exports
(engine/ops/linalg.py), the same functions an expression calls as `linalg.det(A)`.
"""
from .ops import FUNCTIONS as _FUNCTIONS
from .ops.linalg import LinAlgError  # noqa: F401

globals().update({name[len("linalg."):]: e.fn for name, e in _FUNCTIONS.items() if name.startswith("linalg.")})
