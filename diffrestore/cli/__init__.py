"""The command line: the Typer app and its commands (``commands``), the restoration flags declared once
(``flags``), and the ``models`` and ``summary`` command groups. Nothing here imports torch at module level."""

from .commands import app, main

__all__ = ["app", "main"]
