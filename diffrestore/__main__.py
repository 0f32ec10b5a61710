"""``python -m diffrestore``: the command line (also ``torchrun -m diffrestore`` and ``accelerate launch -m``)."""

from .cli.commands import main

main()
