"""``python -m diffrestore.cli``: the same as ``python -m diffrestore`` and the ``diffrestore`` command."""

from .commands import main

main()
