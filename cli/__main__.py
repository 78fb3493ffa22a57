"""`python -m cli check f.py ...`: the `autograd` program, as the console script runs it."""
from .entry import main

main()
