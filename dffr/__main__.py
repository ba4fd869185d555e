"""`python -m dffr` runs the command line."""

from dffr.cli import main

main()
