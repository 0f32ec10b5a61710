"""The error tree: every failure a user can cause or meet, each with an exit code and a one-line message.

The CLI prints ``str(error)`` on one line and exits with ``error.exit_code``; ``DIFFRESTORE_DEBUG=1`` shows the
traceback as well. Messages name the file or value at fault and, through ``hint``, the fix.

Exit codes (documented in ``diffrestore --help``):
    0  everything done
    1  some items failed (the others were written)
    2  usage error: bad flags, unreadable or invalid input, impossible combination
    3  model or download error: unknown model, checksum mismatch, offline with an empty cache; an optional extra
       that is not installed (pydicom for DICOM, transformers for prompts)
  130  interrupted (Ctrl-C; 143 after SIGTERM, 129 after SIGHUP); finished outputs are kept, unfinished ones are
       not written
  141  the reader of stdout went away (``| head``): the run finished its files and stopped printing (run/streams.py)
"""

from __future__ import annotations

from typing import Any

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2
EXIT_MODEL = 3
EXIT_INTERRUPTED = 130


class DiffrestoreError(Exception):
    """Base class. ``message`` says what is wrong; ``hint`` (optional) says how to fix it."""

    exit_code: int = EXIT_SOME_FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        one_line = " ".join(self.message.split())
        if self.hint:
            one_line = f"{one_line} ({' '.join(self.hint.split())})"
        return one_line


class UsageError(DiffrestoreError):
    """Bad flags or an impossible combination of options."""

    exit_code = EXIT_USAGE


class InputError(DiffrestoreError):
    """An input file (image, mask, kernel) that cannot be used."""

    exit_code = EXIT_USAGE


class ImageReadError(InputError):
    """An image or mask file that cannot be decoded (empty, truncated, not an image, too large)."""


class SizeMismatchError(InputError):
    """A mask or kernel whose size does not fit the image."""


class OutputError(DiffrestoreError):
    """An output that cannot be written, or would overwrite something the user owns."""

    exit_code = EXIT_USAGE


class DeviceError(UsageError):
    """A device or dtype that is not available here (e.g. fp16 on the CPU, cuda without a GPU)."""


class ModelError(DiffrestoreError):
    """An unknown model, or weights that cannot be loaded."""

    exit_code = EXIT_MODEL


class MissingExtraError(DiffrestoreError):
    """An optional dependency (an extra such as ``dicom`` or ``text``) that this input or option needs and that
    is not installed: exit 3 like a model that cannot be had, with the pip command in the hint."""

    exit_code = EXIT_MODEL


def import_extra(module: str, what: str, hint: str) -> Any:
    """``module`` imported, or MissingExtraError (exit 3) in one line: "``what`` needs the <package> package, which
    is not installed" (the package is the module's top level), with ``hint`` (the pip command)."""
    import sys

    try:
        __import__(module)  # the import statement's own hook (what an install without the extra makes fail)
    except ImportError as error:
        package = module.split(".")[0]
        raise MissingExtraError(f"{what} needs the {package} package, which is not installed", hint=hint) from error
    return sys.modules[module]


class RegistryError(ModelError):
    """A malformed models.toml entry."""


class DownloadError(ModelError):
    """A download that failed (network, HTTP status, offline mode with an empty cache)."""


class ChecksumError(DownloadError):
    """Downloaded bytes whose sha256 does not match the pinned one."""


def short_error(error: BaseException) -> str:
    """One line for any error: ours as they are, others with their type name."""
    if isinstance(error, DiffrestoreError):
        return str(error)
    return f"{type(error).__name__}: {' '.join(str(error).split())}"
