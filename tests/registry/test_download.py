"""Downloads without a network: a local HTTP server on 127.0.0.1 (with Range support) and a fake hub function."""

from __future__ import annotations

import hashlib
import http.server
import re
import threading
from pathlib import Path

import pytest

from diffrestore import registry as reg
from diffrestore.errors import EXIT_MODEL, ChecksumError, DownloadError

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB, not a multiple of any read size used inside


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        srv = self.server
        srv.requests.append({"path": self.path, "range": self.headers.get("Range")})
        body = srv.files.get(self.path.split("?")[0])
        if body is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start = 0
        match = re.match(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and not srv.ignore_range:
            start = int(match.group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        chunk = body[start:]
        self.send_header("Content-Length", str(len(chunk)))
        self.end_headers()
        if srv.truncate_next > 0:  # announce the full length, send part of it, drop the connection
            srv.truncate_next -= 1
            self.wfile.write(chunk[: len(chunk) // 3])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(chunk)
        srv.bytes_sent += len(chunk)


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.requests = {}, []
    httpd.ignore_range, httpd.truncate_next, httpd.bytes_sent = False, 0, 0
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("HF_HUB_OFFLINE", "DIFFRESTORE_OFFLINE", "DIFFRESTORE_TRUST_UNVERIFIED", "DIFFRESTORE_REGISTRY"):
        monkeypatch.delenv(var, raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv("DIFFRESTORE_CACHE", str(cache))
    monkeypatch.setattr(reg.download, "HUB_DOWNLOAD", _no_hub)  # the module that calls it
    return cache


def _no_hub(*args: object, **kwargs: object) -> str:
    raise AssertionError("the hub must not be called in this test")


def _write_registry(tmp_path: Path, body: str) -> reg.Registry:
    path = tmp_path / "models.toml"
    path.write_text("schema_version = 1\n" + body, encoding="utf-8")
    return reg.load_registry(path)


def _url_entry(tmp_path: Path, server, *, sha: str, size: int = 0, name: str = "m") -> reg.ModelEntry:
    body = f"""
[models.{name}]
family = "adm"
description = "test"
licence = "TEST-LICENCE-1.0"
licence_note = "read me first"
resolution = 16
tasks = ["any"]
verified = false
arch = {{ image_size = 16, num_channels = 32, num_res_blocks = 1 }}
[[models.{name}.files]]
path = "weights.pt"
sha256 = "{sha}"
size = {size}
[[models.{name}.sources]]
type = "url"
url = "{server.base}/weights.pt"
file = "weights.pt"
"""
    return _write_registry(tmp_path, body).get(name)


def _quiet(messages: list[str]):
    return messages.append


def test_url_download_verifies_caches_and_shows_licence_first(tmp_path: Path, server) -> None:
    server.files["/weights.pt"] = PAYLOAD
    entry = _url_entry(tmp_path, server, sha=_sha(PAYLOAD), size=len(PAYLOAD))
    messages: list[str] = []
    folder = reg.download_model(entry, echo=messages.append, sleep=lambda s: None)
    assert (folder / "weights.pt").read_bytes() == PAYLOAD
    assert folder == Path(tmp_path / "cache" / "models" / "m")
    assert "TEST-LICENCE-1.0" in messages[0] and "read me first" in messages[0]
    assert any("downloading weights.pt" in m for m in messages[1:])
    assert reg.read_lock(entry)["files"]["weights.pt"]["sha256"] == _sha(PAYLOAD)
    assert reg.cache_state(entry) == "yes"
    assert not list(folder.rglob("*.part"))


def test_cache_hit_needs_no_network_even_offline(tmp_path: Path, server) -> None:
    server.files["/weights.pt"] = PAYLOAD
    entry = _url_entry(tmp_path, server, sha=_sha(PAYLOAD), size=len(PAYLOAD))
    reg.download_model(entry, echo=_quiet([]))
    seen = len(server.requests)
    server.files.clear()  # a network call would now fail with 404
    messages: list[str] = []
    folder = reg.download_model(entry, echo=messages.append)
    assert reg.download_model(entry, offline=True, echo=messages.append) == folder
    assert len(server.requests) == seen
    assert messages == []  # no licence, no progress: nothing was downloaded


def test_sha_mismatch_is_an_error_and_leaves_no_poisoned_cache(tmp_path: Path, server) -> None:
    server.files["/weights.pt"] = PAYLOAD
    wrong = _sha(b"something else")
    entry = _url_entry(tmp_path, server, sha=wrong)
    with pytest.raises(ChecksumError) as info:
        reg.download_model(entry, echo=_quiet([]), sleep=lambda s: None)
    message = str(info.value)
    assert "weights.pt" in message and wrong in message and _sha(PAYLOAD) in message
    assert "deleted" in message
    assert info.value.exit_code == EXIT_MODEL
    folder = reg.model_dir(entry)
    assert not (folder / "weights.pt").exists()
    assert not list(folder.rglob("*.part"))
    assert reg.cache_state(entry) == "no"


def test_size_mismatch_is_a_checksum_error(tmp_path: Path, server) -> None:
    server.files["/weights.pt"] = PAYLOAD[:1000]
    entry = _url_entry(tmp_path, server, sha=_sha(PAYLOAD), size=len(PAYLOAD))
    with pytest.raises(ChecksumError, match="size 1000 bytes, expected"):
        reg.download_model(entry, echo=_quiet([]), sleep=lambda s: None)
    assert not (reg.model_dir(entry) / "weights.pt").exists()


def test_dropped_connection_is_resumed_with_a_range_request(tmp_path: Path, server) -> None:
    server.files["/weights.pt"] = PAYLOAD
    server.truncate_next = 1
    entry = _url_entry(tmp_path, server, sha=_sha(PAYLOAD), size=len(PAYLOAD))
    sleeps: list[float] = []
    folder = reg.download_model(entry, echo=_quiet([]), sleep=sleeps.append)
    assert (folder / "weights.pt").read_bytes() == PAYLOAD
    assert server.requests[0]["range"] is None
    assert server.requests[1]["range"] == f"bytes={len(PAYLOAD) // 3}-"
    assert server.bytes_sent == len(PAYLOAD) - len(PAYLOAD) // 3  # only the rest was sent again
    assert sleeps, "a retry waits (backoff) before asking again"


def test_leftover_part_file_is_resumed(tmp_path: Path, server) -> None:
    server.files["/weights.pt"] = PAYLOAD
    entry = _url_entry(tmp_path, server, sha=_sha(PAYLOAD), size=len(PAYLOAD))
    part = reg.model_dir(entry) / "weights.pt.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(PAYLOAD[:300_000])
    reg.download_model(entry, echo=_quiet([]))
    assert server.requests[0]["range"] == "bytes=300000-"
    assert (reg.model_dir(entry) / "weights.pt").read_bytes() == PAYLOAD
    assert not part.exists()


def test_server_without_range_support_restarts_from_zero(tmp_path: Path, server) -> None:
    server.files["/weights.pt"] = PAYLOAD
    server.ignore_range = True
    entry = _url_entry(tmp_path, server, sha=_sha(PAYLOAD), size=len(PAYLOAD))
    part = reg.model_dir(entry) / "weights.pt.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\xff" * 5000)  # garbage that must not end up in front of the file
    reg.download_model(entry, echo=_quiet([]))
    assert (reg.model_dir(entry) / "weights.pt").read_bytes() == PAYLOAD


def test_http_404_fails_at_once_with_the_url(tmp_path: Path, server) -> None:
    entry = _url_entry(tmp_path, server, sha=_sha(PAYLOAD))
    with pytest.raises(DownloadError, match=r"weights\.pt: HTTP 404"):
        reg.download_model(entry, echo=_quiet([]), sleep=lambda s: pytest.fail("404 must not be retried"))


def test_unpinned_url_is_refused_unless_trusted_then_recorded(tmp_path: Path, server) -> None:
    server.files["/weights.pt"] = PAYLOAD
    entry = _url_entry(tmp_path, server, sha="")
    with pytest.raises(DownloadError) as info:
        reg.download_model(entry, echo=_quiet([]))
    assert "refused" in str(info.value) and "--trust-unverified" in str(info.value)
    assert server.requests == []
    messages: list[str] = []
    reg.download_model(entry, trust_unverified=True, echo=messages.append)
    assert any(_sha(PAYLOAD) in m and "recorded" in m for m in messages)
    assert reg.read_lock(entry)["files"]["weights.pt"]["sha256"] == _sha(PAYLOAD)


@pytest.mark.parametrize("how", ["flag", "HF_HUB_OFFLINE", "DIFFRESTORE_OFFLINE"])
def test_offline_with_empty_cache_names_the_download_command(
    tmp_path: Path, server, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    from typer.testing import CliRunner

    from diffrestore.cli.models import models_app

    server.files["/weights.pt"] = PAYLOAD
    _url_entry(tmp_path, server, sha=_sha(PAYLOAD), name="ffhq-test")
    args = ["--registry", str(tmp_path / "models.toml"), "download", "ffhq-test"]
    if how == "flag":
        args.append("--offline")
    else:
        monkeypatch.setenv(how, "1")
    result = CliRunner().invoke(models_app, args)
    error = result.exception
    assert isinstance(error, DownloadError), result.output
    assert error.exit_code == 3
    assert "diffrestore models download ffhq-test" in str(error)
    assert "\n" not in str(error)
    assert server.requests == []


def test_offline_through_the_real_cli_exits_3(tmp_path: Path, server, monkeypatch, capsys) -> None:
    from diffrestore.cli import commands as cli

    if not any(group.name == "models" for group in cli.app.registered_groups):
        pytest.skip("cli.py does not mount models_app yet")
    _url_entry(tmp_path, server, sha=_sha(PAYLOAD), name="ffhq-test")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code = cli.main(["models", "--registry", str(tmp_path / "models.toml"), "download", "ffhq-test"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3
    assert len(err) == 1 and "diffrestore models download ffhq-test" in err[0]


# ------------------------------------------------------------------------------------------ fake hub ----
def _hf_registry(
    tmp_path: Path, server, *, sha_cfg: str, sha_w: str, revision: str = "a" * 40, url_fallback: bool = False
) -> reg.Registry:
    fallback = (
        f"""
[[models.h.sources]]
type = "url"
url = "{server.base}/w.bin"
file = "unet/w.bin"
"""
        if url_fallback
        else ""
    )
    return _write_registry(
        tmp_path,
        f"""
[models.h]
family = "pixel"
description = "test"
licence = "L"
resolution = 8
tasks = ["any"]
verified = false
[[models.h.files]]
path = "config.json"
sha256 = "{sha_cfg}"
size = 0
[[models.h.files]]
path = "unet/w.bin"
sha256 = "{sha_w}"
size = {len(PAYLOAD)}
[[models.h.sources]]
type = "hf"
repo = "owner/repo"
revision = "{revision}"
remote = {{ "unet/w.bin" = "remote_name.bin" }}
{fallback}""",
    )


class FakeHub:
    """Serves files of a fake repo like hf_hub_download(local_dir=...) does: writes them under local_dir."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.calls: list[tuple[str, str, str]] = []

    def __call__(self, repo_id: str, filename: str, *, revision: str, local_dir: str) -> str:
        self.calls.append((repo_id, filename, revision))
        target = Path(local_dir) / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(self.files[filename])
        return str(target)


def test_fake_hub_download_at_pinned_revision(tmp_path: Path, server) -> None:
    config = b'{"a": 1}'
    hub = FakeHub({"config.json": config, "remote_name.bin": PAYLOAD})
    entry = _hf_registry(tmp_path, server, sha_cfg="", sha_w=_sha(PAYLOAD)).get("h")
    messages: list[str] = []
    folder = reg.download_model(entry, hub_download=hub, echo=messages.append)
    assert hub.calls == [("owner/repo", "config.json", "a" * 40), ("owner/repo", "remote_name.bin", "a" * 40)]
    assert (folder / "config.json").read_bytes() == config
    assert (folder / "unet" / "w.bin").read_bytes() == PAYLOAD
    assert not (folder / ".staging").exists()
    # config.json had no pinned sha256: accepted (pinned commit), hashed, printed and recorded
    assert any(_sha(config) in m for m in messages)
    assert reg.read_lock(entry)["files"]["config.json"]["sha256"] == _sha(config)
    assert reg.download_model(entry, hub_download=hub, echo=messages.append) == folder
    assert len(hub.calls) == 2  # second call: cache hit


def test_hub_mismatch_falls_back_to_the_url_source(tmp_path: Path, server) -> None:
    server.files["/w.bin"] = PAYLOAD
    hub = FakeHub({"config.json": b"{}", "remote_name.bin": b"tampered" + PAYLOAD[8:]})
    entry = _hf_registry(tmp_path, server, sha_cfg=_sha(b"{}"), sha_w=_sha(PAYLOAD), url_fallback=True).get("h")
    messages: list[str] = []
    folder = reg.download_model(entry, hub_download=hub, echo=messages.append)
    assert (folder / "unet" / "w.bin").read_bytes() == PAYLOAD
    assert any("does not match" in m for m in messages)
    assert reg.read_lock(entry)["files"]["unet/w.bin"]["source"].startswith(server.base)


def test_hub_mismatch_without_fallback_cleans_up(tmp_path: Path, server) -> None:
    hub = FakeHub({"config.json": b"{}", "remote_name.bin": b"x" * len(PAYLOAD)})
    entry = _hf_registry(tmp_path, server, sha_cfg="", sha_w=_sha(PAYLOAD)).get("h")
    with pytest.raises(ChecksumError, match=r"model 'h': unet/w\.bin: no source delivered the pinned bytes"):
        reg.download_model(entry, hub_download=hub, echo=_quiet([]))
    folder = reg.model_dir(entry)
    assert not (folder / "unet" / "w.bin").exists() and not (folder / ".staging").exists()
    assert reg.cache_state(entry) == "partial"  # config.json is fine and kept


def test_hub_errors_become_one_line_download_errors(tmp_path: Path, server) -> None:
    def broken_hub(repo_id: str, filename: str, *, revision: str, local_dir: str) -> str:
        raise ConnectionError("Max retries exceeded\nlong traceback text")

    entry = _hf_registry(tmp_path, server, sha_cfg="", sha_w=_sha(PAYLOAD)).get("h")
    with pytest.raises(DownloadError) as info:
        reg.download_model(entry, hub_download=broken_hub, echo=_quiet([]))
    assert "owner/repo@aaaaaaaaaaaa/config.json: ConnectionError: Max retries exceeded" in str(info.value)
    assert "long traceback" not in str(info.value)


def test_unresolved_revision_needs_trust(tmp_path: Path, server) -> None:
    hub = FakeHub({"config.json": b"{}", "remote_name.bin": PAYLOAD})
    entry = _hf_registry(tmp_path, server, sha_cfg="", sha_w=_sha(PAYLOAD), revision="").get("h")
    with pytest.raises(DownloadError, match="no revision"):
        reg.download_model(entry, hub_download=hub, echo=_quiet([]))
    reg.download_model(entry, hub_download=hub, trust_unverified=True, echo=_quiet([]))
    assert {call[2] for call in hub.calls} == {"main"}


def test_verify_detects_later_corruption_of_recorded_files(tmp_path: Path, server) -> None:
    from typer.testing import CliRunner

    from diffrestore.cli.models import models_app

    hub = FakeHub({"config.json": b'{"a": 1}', "remote_name.bin": PAYLOAD})
    entry = _hf_registry(tmp_path, server, sha_cfg="", sha_w=_sha(PAYLOAD)).get("h")
    folder = reg.download_model(entry, hub_download=hub, echo=_quiet([]))
    assert {r.status for r in reg.verify_model(entry)} == {"ok"}
    (folder / "config.json").write_bytes(b'{"a": 2}')  # same size, other bytes: only a re-hash notices
    results = {r.path: r.status for r in reg.verify_model(entry)}
    assert results == {"config.json": "mismatch", "unet/w.bin": "ok"}
    result = CliRunner().invoke(models_app, ["--registry", str(tmp_path / "models.toml"), "verify", "h"])
    assert isinstance(result.exception, ChecksumError)
    assert "h/config.json" in str(result.exception) and "diffrestore models download --force h" in str(result.exception)
    assert "h/config.json: mismatch" in result.output


def test_cli_download_prints_the_folder(tmp_path: Path, server, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from diffrestore.cli.models import models_app

    server.files["/weights.pt"] = PAYLOAD
    _url_entry(tmp_path, server, sha=_sha(PAYLOAD), size=len(PAYLOAD))
    result = CliRunner().invoke(models_app, ["--registry", str(tmp_path / "models.toml"), "download", "m"])
    assert result.exit_code == 0, result.output
    assert str(tmp_path / "cache" / "models" / "m") in result.stdout
    path = CliRunner().invoke(models_app, ["--registry", str(tmp_path / "models.toml"), "path", "m"])
    assert path.stdout.strip() == str(tmp_path / "cache" / "models" / "m")


def test_recorded_hash_pins_later_downloads_until_force(tmp_path: Path, server) -> None:
    hub = FakeHub({"config.json": b'{"a": 1}', "remote_name.bin": PAYLOAD})
    entry = _hf_registry(tmp_path, server, sha_cfg="", sha_w=_sha(PAYLOAD)).get("h")
    folder = reg.download_model(entry, hub_download=hub, echo=_quiet([]))
    (folder / "config.json").unlink()
    hub.files["config.json"] = b'{"a": 2}'  # the source now serves other bytes than on first download
    with pytest.raises(ChecksumError, match=_sha(b'{"a": 1}')):
        reg.download_model(entry, hub_download=hub, echo=_quiet([]))
    assert not (folder / "config.json").exists()
    reg.download_model(entry, hub_download=hub, force=True, echo=_quiet([]))
    assert (folder / "config.json").read_bytes() == b'{"a": 2}'
    assert reg.read_lock(entry)["files"]["config.json"]["sha256"] == _sha(b'{"a": 2}')
