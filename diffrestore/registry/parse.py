"""Reading and validating ``models.toml``: every mistake is a one-line RegistryError naming file, entry and key.

Unknown keys are errors (they are usually typos), so the checks below are the schema; the comments at the top
of ``models.toml`` document the same rules for people.
"""

from __future__ import annotations

import math
import os
import re
import urllib.parse
from pathlib import Path
from typing import Any

from ..errors import RegistryError
from .schema import (
    ADM_ARCH_KEYS,
    ADM_DIFFUSION_KEYS,
    DOWNLOADED_FAMILIES,
    FAMILIES,
    LATENT_FAMILIES,
    PACKAGE_DIR,
    SCHEMA_VERSION,
    SHA256_RE,
    TEXT_FAMILIES,
    FileSpec,
    ModelEntry,
    Registry,
    Source,
    redact_url,
)

try:  # Python >= 3.11
    import tomllib as _toml
except ImportError:  # pragma: no cover - Python 3.10 needs the tomli backport
    import tomli as _toml  # type: ignore[no-redef]

DEFAULT_REGISTRY = PACKAGE_DIR / "models.toml"

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_REV_RE = re.compile(r"^[0-9a-f]{40}$")
_REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
#: control characters (a NUL makes every file call raise ValueError) and, in URLs, white space
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_URL_BAD_RE = re.compile(r"[\x00-\x20\x7f]")
#: architecture keys that count something (the rest may be -1 = "derive it", as in guided-diffusion)
_ADM_POSITIVE = ("image_size", "num_channels", "num_res_blocks", "in_channels")
#: where a malformed registry file can be fixed from
_FIX = "fix the file (the comments at the top of the shipped models.toml describe every key), or point " \
    "--registry / DIFFRESTORE_REGISTRY at another models.toml"

_ENTRY_KEYS = {
    "aliases", "family", "description", "licence", "licence_note", "resolution", "tasks", "prompt",
    "verified", "notes", "download_size", "variant", "latent_scale", "arch", "diffusion", "path", "of", "seed",
    "config", "files", "sources",
}
#: keys that older files had: refused with the reason, not with the generic "unknown key"
_RETIRED_KEYS = {
    "solvers": "no longer part of the schema: the methods that fit a model follow from its family "
    "(its prior kind, see `diffrestore models info NAME`); remove this key",
}


class _Checker:
    """Reads one entry's keys with precise errors ("entry 'x': key 'sources[1].revision': ...")."""

    def __init__(self, registry_path: Path, name: str, table: dict[str, Any]) -> None:
        self.registry_path = registry_path
        self.name = name
        self.table = table

    def fail(self, key: str, problem: str) -> RegistryError:
        return RegistryError(f"{self.registry_path}: entry '{self.name}': key '{key}': {problem}")

    def get(self, key: str, kind: type | tuple[type, ...], *, required: bool, default: Any = None,
            table: dict[str, Any] | None = None, prefix: str = "") -> Any:
        table = self.table if table is None else table
        full = f"{prefix}{key}"
        if key not in table:
            if required:
                raise self.fail(full, "missing (required)")
            return default
        value = table[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # TOML booleans are ints to Python; an int where a float is wanted is fine.
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if not ok and float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            wanted = " or ".join(k.__name__ for k in kinds)
            raise self.fail(full, f"must be {wanted}, got {type(value).__name__} {value!r}")
        return value

    def string_list(self, key: str, *, required: bool) -> list[str]:
        value = self.get(key, list, required=required, default=[])
        if not all(isinstance(v, str) and v for v in value):
            raise self.fail(key, f"must be a list of non-empty strings, got {value!r}")
        return list(value)

    def no_unknown(self, table: dict[str, Any], allowed: set[str], prefix: str = "") -> None:
        unknown = sorted(set(table) - allowed)
        if unknown:
            raise self.fail(f"{prefix}{unknown[0]}", f"unknown key (allowed: {', '.join(sorted(allowed))})")


def _is_local_host(host: str | None) -> bool:
    return host in ("127.0.0.1", "localhost", "::1")


def _read_fields(c: _Checker, name: str) -> ModelEntry:
    """The scalar keys of an entry, type-checked; files and sources are added later."""
    for key, why in _RETIRED_KEYS.items():
        if key in c.table:
            raise c.fail(key, why)
    c.no_unknown(c.table, _ENTRY_KEYS)
    family = c.get("family", str, required=True)
    if family not in FAMILIES:
        raise c.fail("family", f"unknown family {family!r} (one of {', '.join(FAMILIES)})")
    return ModelEntry(
        name=name,
        family=family,
        description=c.get("description", str, required=True),
        licence=c.get("licence", str, required=True),
        resolution=c.get("resolution", int, required=True),
        tasks=c.string_list("tasks", required=True),
        verified=c.get("verified", bool, required=True),
        aliases=c.string_list("aliases", required=False),
        licence_note=c.get("licence_note", str, required=False, default=""),
        prompt=c.get("prompt", str, required=False, default=""),
        notes=c.get("notes", str, required=False, default=""),
        download_size=c.get("download_size", int, required=False, default=0),
        variant=c.get("variant", str, required=False, default=""),
        latent_scale=c.get("latent_scale", float, required=False),
        arch=c.get("arch", dict, required=False, default={}),
        diffusion=c.get("diffusion", dict, required=False, default={}),
        path=c.get("path", str, required=False, default=""),
        of=c.get("of", str, required=False, default=""),
        seed=c.get("seed", int, required=False, default=0),
        config=c.get("config", dict, required=False, default={}),
    )


def _check_family_rules(c: _Checker, entry: ModelEntry) -> None:
    """The keys each family requires or forbids (a tiny model follows the rules of the family it imitates)."""
    family, lf = entry.family, entry.loader_family
    if not entry.licence.strip():
        raise c.fail("licence", "must not be empty")
    if entry.resolution < 0:
        raise c.fail("resolution", f"must be >= 0 (0 = any size), got {entry.resolution}")
    if entry.download_size < 0:
        raise c.fail("download_size", "must be >= 0")
    if family == "tiny":
        if entry.of not in DOWNLOADED_FAMILIES:
            raise c.fail("of", f"a tiny model needs of = one of {', '.join(DOWNLOADED_FAMILIES)}, got {entry.of!r}")
        if lf != "adm" and not entry.config:
            raise c.fail("config", "missing (required for tiny models: the component configs)")
    elif entry.of or entry.config:
        raise c.fail("of" if entry.of else "config", "only tiny models have this key")
    if lf in TEXT_FAMILIES and not entry.prompt.strip():
        raise c.fail("prompt", f"missing (required for {lf} models: the default text prompt)")
    if lf in LATENT_FAMILIES:
        if entry.latent_scale is None:
            raise c.fail("latent_scale", f"missing (required for {lf} models)")
        if not (math.isfinite(entry.latent_scale) and entry.latent_scale > 0):  # nan <= 0 is False
            raise c.fail("latent_scale", f"must be a finite number > 0, got {entry.latent_scale}")
    elif entry.latent_scale is not None:
        raise c.fail("latent_scale", f"only latent-kl / latent-vq models have this key (family {lf})")
    if lf == "adm":
        _check_adm(c, entry)
    elif entry.arch or entry.diffusion:
        raise c.fail("arch" if entry.arch else "diffusion", f"only adm models have this key (family {lf})")
    if family == "builtin":
        if not entry.path:
            raise c.fail("path", "missing (required for builtin models: folder inside the package)")
        if Path(entry.path).is_absolute() or ".." in Path(entry.path).parts:
            raise c.fail("path", f"must be relative to the package folder, got {entry.path!r}")
    elif entry.path:
        raise c.fail("path", "only builtin models have this key")


def _check_adm(c: _Checker, entry: ModelEntry) -> None:
    if not entry.arch:
        raise c.fail("arch", "missing (required for adm models: the guided-diffusion flags)")
    c.no_unknown(entry.arch, set(ADM_ARCH_KEYS), prefix="arch.")
    for key, kind in ADM_ARCH_KEYS.items():
        if key in entry.arch:
            c.get(key, kind, required=True, table=entry.arch, prefix="arch.")
    for key in ("image_size", "num_channels", "num_res_blocks"):
        c.get(key, int, required=True, table=entry.arch, prefix="arch.")
    for key in _ADM_POSITIVE:
        if key in entry.arch and entry.arch[key] < 1:
            raise c.fail(f"arch.{key}", f"must be a whole number >= 1, got {entry.arch[key]}")
    dropout = float(entry.arch.get("dropout", 0.0))
    if not 0.0 <= dropout < 1.0:  # also refuses nan
        raise c.fail("arch.dropout", f"must be a number in [0, 1), got {dropout}")
    c.no_unknown(entry.diffusion, set(ADM_DIFFUSION_KEYS), prefix="diffusion.")
    for key, kind in ADM_DIFFUSION_KEYS.items():
        c.get(key, kind, required=False, table=entry.diffusion, prefix="diffusion.")
    schedule = entry.diffusion.get("noise_schedule", "linear")
    if schedule not in ("linear", "cosine"):
        raise c.fail("diffusion.noise_schedule", f"must be 'linear' or 'cosine', got {schedule!r}")


def _parse_files(c: _Checker, raw_files: list[Any]) -> list[FileSpec]:
    files: list[FileSpec] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_files):
        prefix = f"files[{i}]."
        if not isinstance(raw, dict):
            raise c.fail(f"files[{i}]", "must be a table with path, sha256, size")
        c.no_unknown(raw, {"path", "sha256", "size"}, prefix=prefix)
        path = c.get("path", str, required=True, table=raw, prefix=prefix)
        parts = Path(path).parts
        if (not path or Path(path).is_absolute() or ".." in parts or path.startswith(".")
                or _CONTROL_RE.search(path)):
            raise c.fail(f"{prefix}path", "must be a plain relative path (no leading '/' or '.', no '..', no "
                         f"control characters), got {path!r}")
        if path in seen:
            raise c.fail(f"{prefix}path", f"duplicate file {path!r}")
        seen.add(path)
        sha = c.get("sha256", str, required=True, table=raw, prefix=prefix)
        if sha and not SHA256_RE.match(sha):
            raise c.fail(f"{prefix}sha256", f"must be 64 lower-case hex digits or \"\" (unverified), got {sha!r}")
        size = c.get("size", int, required=True, table=raw, prefix=prefix)
        if size < 0:
            raise c.fail(f"{prefix}size", f"must be >= 0 (0 = unknown), got {size}")
        files.append(FileSpec(path=path, sha256=sha, size=size))
    return files


def _parse_source(c: _Checker, i: int, raw: Any, file_paths: set[str]) -> Source:
    prefix = f"sources[{i}]."
    if not isinstance(raw, dict):
        raise c.fail(f"sources[{i}]", "must be a table")
    kind = c.get("type", str, required=True, table=raw, prefix=prefix)
    note = c.get("note", str, required=False, default="", table=raw, prefix=prefix)
    if kind == "hf":
        c.no_unknown(raw, {"type", "repo", "revision", "remote", "note"}, prefix=prefix)
        repo = c.get("repo", str, required=True, table=raw, prefix=prefix)
        if not _REPO_RE.match(repo):
            raise c.fail(f"{prefix}repo", f"must look like 'owner/name', got {repo!r}")
        revision = c.get("revision", str, required=True, table=raw, prefix=prefix)
        if revision and not _REV_RE.match(revision):
            raise c.fail(
                f"{prefix}revision",
                f"must be a full 40-character commit hash, or \"\" if unresolved; got {revision!r}",
            )
        remote = c.get("remote", dict, required=False, default={}, table=raw, prefix=prefix)
        for local, remote_path in remote.items():
            if local not in file_paths:
                raise c.fail(f"{prefix}remote", f"{local!r} is not one of this model's files")
            if not isinstance(remote_path, str) or not remote_path:
                raise c.fail(f"{prefix}remote", f"remote path for {local!r} must be a non-empty string")
        return Source(type="hf", repo=repo, revision=revision, remote=dict(remote), note=note)
    if kind == "url":
        c.no_unknown(raw, {"type", "url", "file", "note"}, prefix=prefix)
        url = c.get("url", str, required=True, table=raw, prefix=prefix)
        if _URL_BAD_RE.search(url):
            raise c.fail(f"{prefix}url", f"contains white space or a control character: {redact_url(url)!r} "
                         "(write a space as %20)")
        try:
            parts = urllib.parse.urlsplit(url)
            # each raises ValueError on e.g. an unclosed IPv6 host "[::1" or a port like 99999 or "abc"
            scheme, host, _port = parts.scheme, parts.hostname, parts.port
        except ValueError as exc:
            raise c.fail(f"{prefix}url", f"is not a valid URL ({exc}): {redact_url(url)!r}") from None
        if not host:
            raise c.fail(f"{prefix}url", f"names no host: {redact_url(url)!r}")
        if not (scheme == "https" or (scheme == "http" and _is_local_host(host))):
            raise c.fail(f"{prefix}url", f"must be an https:// URL, got {redact_url(url)!r}")
        target = c.get("file", str, required=True, table=raw, prefix=prefix)
        if target not in file_paths:
            raise c.fail(f"{prefix}file", f"{target!r} is not one of this model's files")
        return Source(type="url", url=url, file=target, note=note)
    raise c.fail(f"{prefix}type", f"must be 'hf' or 'url', got {kind!r}")


def _parse_entry(registry_path: Path, name: str, table: Any) -> ModelEntry:
    if not NAME_RE.match(name):
        raise RegistryError(
            f"{registry_path}: entry '{name}': invalid name (use lower-case letters, digits, '.', '_', '-')"
        )
    if not isinstance(table, dict):
        raise RegistryError(f"{registry_path}: entry '{name}': must be a table ([models.{name}])")
    c = _Checker(registry_path, name, table)
    entry = _read_fields(c, name)
    _check_family_rules(c, entry)

    raw_files = c.get("files", list, required=False, default=[])
    raw_sources = c.get("sources", list, required=False, default=[])
    if entry.downloadable:
        if not raw_files:
            raise c.fail("files", "missing (a downloaded model lists its files with sha256 and size)")
        if not raw_sources:
            raise c.fail("sources", "missing (a downloaded model needs at least one source)")
    elif raw_files or raw_sources:
        raise c.fail("files" if raw_files else "sources", f"{entry.family} models are not downloaded: remove this key")
    entry.files = _parse_files(c, raw_files)
    file_paths = {spec.path for spec in entry.files}
    entry.sources = [_parse_source(c, i, raw, file_paths) for i, raw in enumerate(raw_sources)]
    for spec in entry.files:
        if not any(s.delivers(spec.path) for s in entry.sources):
            raise c.fail("sources", f"no source delivers the file {spec.path!r}")
    return entry


def registry_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The models.toml in use: ``path``, else DIFFRESTORE_REGISTRY, else the one shipped in the package."""
    if path:
        return Path(path).expanduser()
    env = os.environ.get("DIFFRESTORE_REGISTRY", "").strip()
    return Path(env).expanduser() if env else DEFAULT_REGISTRY


def load_registry(path: str | os.PathLike[str] | None = None) -> Registry:
    """Read and validate a models.toml; RegistryError names the file, the entry and the key at fault."""
    path = registry_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RegistryError(
            f"cannot read model registry '{path}': {exc.strerror or exc}",
            hint="point --registry / DIFFRESTORE_REGISTRY at a readable models.toml file, or unset it to use "
            "the shipped one",
        ) from None
    except UnicodeDecodeError as exc:
        raise RegistryError(f"{path}: not UTF-8 text (byte {exc.start} cannot be decoded)",
                            hint="TOML files are UTF-8; re-save it as UTF-8") from None
    text = text.removeprefix("\ufeff")  # a byte-order mark (Windows editors): UTF-8 all the same
    try:
        data = _toml.loads(text)
    except _toml.TOMLDecodeError as exc:
        raise RegistryError(f"{path}: not valid TOML: {exc}", hint=_FIX) from None
    except RecursionError:  # arrays or tables nested thousands deep
        raise RegistryError(f"{path}: not valid TOML: nested too deeply to read", hint=_FIX) from None
    version = data.get("schema_version")
    if type(version) is not int or version != SCHEMA_VERSION:  # not 1.0, not true: both equal 1 in Python
        raise RegistryError(f"{path}: key 'schema_version': must be {SCHEMA_VERSION}, got {version!r}",
                            hint=f"start the file with `schema_version = {SCHEMA_VERSION}`, the version this "
                            "diffrestore reads")
    unknown = sorted(set(data) - {"schema_version", "models"})
    if unknown:
        raise RegistryError(f"{path}: key '{unknown[0]}': unknown top-level key (allowed: schema_version, models)")
    models = data.get("models")
    if not isinstance(models, dict) or not models:
        raise RegistryError(f"{path}: key 'models': missing or empty (add [models.NAME] tables)")
    entries = {name: _parse_entry(path, name, table) for name, table in models.items()}
    owners: dict[str, str] = {}
    for entry in entries.values():
        for alias in entry.aliases:
            if not NAME_RE.match(alias) or alias in entries or alias in owners:
                clash = "an invalid name" if not NAME_RE.match(alias) else "already a model name or alias"
                raise RegistryError(f"{path}: entry '{entry.name}': key 'aliases': {alias!r} is {clash}")
            owners[alias] = entry.name
    return Registry(path=path, models=entries)
