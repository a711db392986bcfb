"""``python -m hamgrad`` runs the command line (as ``torchrun -m hamgrad`` does)."""

from hamgrad.cli import main

main()
