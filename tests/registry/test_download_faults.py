"""Downloads under faults, without a network: a source that keeps sending, two downloads of one file at once, a stop
signal mid-download, a cache that is a file or read-only, and credentials in a source URL (docs/reliability.md:
downloads, signals, the cache folder, printing). A local HTTP server on 127.0.0.1 plays every source."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from diffrestore import registry as reg
from diffrestore.errors import EXIT_MODEL, EXIT_USAGE, ChecksumError, DownloadError

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
SECRET = "hunter2-secret"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.body`` the way ``server.mode`` says; records every request."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        srv = self.server
        srv.requests.append({"path": self.path, "range": self.headers.get("Range"),
                             "auth": self.headers.get("Authorization")})
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/weights.pt")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path.split("?")[0] != "/weights.pt":
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if srv.mode == "endless":  # no Content-Length: the body ends when the server closes (never, here)
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self._send(srv.endless_limit)
            self.close_connection = True
            return
        if srv.mode == "announces-huge":
            self.send_response(200)
            self.send_header("Content-Length", str(10**12))
            self.end_headers()
            self._send(2 << 20)
            self.close_connection = True
            return
        body = srv.body
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.mode == "stall":  # send the first ``stall_after`` bytes, hang until released, then the rest
            self.wfile.write(body[: srv.stall_after])
            self.wfile.flush()
            srv.stalled.set()
            srv.release.wait(30)
            with contextlib.suppress(OSError):  # the client may be gone (stopped by a signal)
                self.wfile.write(body[srv.stall_after:])
            self.close_connection = True
            return
        for start in range(0, len(body), 64 << 10):  # "slow": 16 pieces, ~0.4 s in all
            self.wfile.write(body[start:start + (64 << 10)])
            self.wfile.flush()
            if srv.mode == "slow":
                time.sleep(0.025)

    def _send(self, limit: int) -> None:
        block, sent = b"\x5a" * (64 << 10), 0
        try:
            while sent < limit:
                self.wfile.write(block)
                sent += len(block)
        except OSError:
            pass  # the client hung up: what a capped download does


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.requests, httpd.body, httpd.mode = [], PAYLOAD, "normal"
    httpd.endless_limit, httpd.stall_after = 20 << 20, 0
    httpd.stalled, httpd.release = threading.Event(), threading.Event()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.release.set()
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("HF_HUB_OFFLINE", "DIFFRESTORE_OFFLINE", "DIFFRESTORE_TRUST_UNVERIFIED", "DIFFRESTORE_REGISTRY",
                "DIFFRESTORE_MAX_DOWNLOAD_BYTES"):
        monkeypatch.delenv(var, raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv("DIFFRESTORE_CACHE", str(cache))
    return cache


def _entry(tmp_path: Path, url: str, *, sha: str, size: int = 0) -> reg.ModelEntry:
    path = tmp_path / "models.toml"
    path.write_text(f"""schema_version = 1
[models.m]
family = "adm"
description = "test"
licence = "L"
resolution = 16
tasks = ["any"]
verified = false
arch = {{ image_size = 16, num_channels = 32, num_res_blocks = 1 }}
[[models.m.files]]
path = "weights.pt"
sha256 = "{sha}"
size = {size}
[[models.m.sources]]
type = "url"
url = "{url}"
file = "weights.pt"
""", encoding="utf-8")
    return reg.load_registry(path).get("m")


class _WriteSpy:
    """Records the largest number of bytes any .part received: a cap must hold while writing, not only after."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.most = 0
        real_open = open
        spy = self

        class Counting:
            def __init__(self, handle) -> None:
                self.handle, self.count = handle, 0

            def write(self, data: bytes) -> int:
                self.count += len(data)
                spy.most = max(spy.most, self.count)
                return self.handle.write(data)

            def close(self) -> None:
                self.handle.close()

            def __enter__(self):
                return self

            def __exit__(self, *exc: object) -> None:
                self.handle.close()

        def counting_open(file, mode="r", *args, **kwargs):
            handle = real_open(file, mode, *args, **kwargs)
            return Counting(handle) if str(file).endswith(".part") else handle

        monkeypatch.setattr(reg.fetch, "open", counting_open, raising=False)


# ------------------------------------------------------------------------------------------------ caps ----
def test_a_source_that_keeps_sending_is_cut_at_the_pinned_size(tmp_path: Path, server, monkeypatch) -> None:
    server.mode = "endless"  # 20 MB without a Content-Length for a file pinned at 4096 bytes
    entry = _entry(tmp_path, f"{server.base}/weights.pt", sha=_sha(b"x" * 4096), size=4096)
    spy = _WriteSpy(monkeypatch)
    with pytest.raises(ChecksumError) as info:
        reg.download_model(entry, echo=lambda m: None, sleep=lambda s: None)
    assert "more than the pinned size of 4096 bytes" in str(info.value)
    assert spy.most <= 4096
    folder = reg.model_dir(entry)
    assert not list(folder.rglob("*.part")) and not (folder / "weights.pt").exists()


@pytest.mark.parametrize("mode", ["endless", "announces-huge"])
def test_a_file_of_unpinned_size_is_cut_at_the_documented_limit(tmp_path: Path, server, monkeypatch, mode) -> None:
    server.mode = mode
    monkeypatch.setenv("DIFFRESTORE_MAX_DOWNLOAD_BYTES", "100000")
    entry = _entry(tmp_path, f"{server.base}/weights.pt", sha="")
    spy = _WriteSpy(monkeypatch)
    with pytest.raises(DownloadError) as info:
        reg.download_model(entry, trust_unverified=True, echo=lambda m: None, sleep=lambda s: None)
    message = str(info.value)
    assert "limit of 100000 bytes" in message and "DIFFRESTORE_MAX_DOWNLOAD_BYTES" in message
    assert info.value.exit_code == EXIT_MODEL
    assert spy.most <= 100000
    assert not list(reg.model_dir(entry).rglob("*.part"))
    assert "weights.pt" not in reg.read_lock(entry).get("files", {})  # nothing unverified is pinned


def test_the_default_limit_applies_without_the_variable_and_a_bad_value_is_a_usage_error(
        tmp_path: Path, server, monkeypatch) -> None:
    assert reg.fetch.max_download_bytes() == 20_000_000_000
    monkeypatch.setenv("DIFFRESTORE_MAX_DOWNLOAD_BYTES", "lots")
    entry = _entry(tmp_path, f"{server.base}/weights.pt", sha="")
    with pytest.raises(Exception) as info:
        reg.download_model(entry, trust_unverified=True, echo=lambda m: None)
    assert getattr(info.value, "exit_code", None) == EXIT_USAGE
    assert "DIFFRESTORE_MAX_DOWNLOAD_BYTES" in str(info.value)
    assert server.requests == []


def test_a_full_disk_stops_at_once_and_frees_the_part(tmp_path: Path, server, monkeypatch) -> None:
    entry = _entry(tmp_path, f"{server.base}/weights.pt", sha=_sha(PAYLOAD), size=len(PAYLOAD))
    real_open = open

    class Full:
        def __init__(self, handle) -> None:
            self.handle = handle

        def write(self, data: bytes) -> int:
            raise OSError(28, "No space left on device")

        def close(self) -> None:
            self.handle.close()

        def __enter__(self):
            return self

        def __exit__(self, *exc: object) -> None:
            self.handle.close()

    monkeypatch.setattr(reg.fetch, "open", lambda f, mode="r", *a, **k: Full(real_open(f, mode, *a, **k)),
                        raising=False)
    with pytest.raises(DownloadError) as info:
        reg.download_model(entry, echo=lambda m: None, sleep=lambda s: None)
    assert "the disk is full" in str(info.value) and "DIFFRESTORE_CACHE" in str(info.value)
    assert len(server.requests) == 1  # not retried: the network is not at fault
    assert not list(reg.model_dir(entry).rglob("*.part"))


def test_a_download_the_disk_cannot_hold_is_refused_before_writing(tmp_path: Path, server, monkeypatch) -> None:
    entry = _entry(tmp_path, f"{server.base}/weights.pt", sha=_sha(PAYLOAD), size=len(PAYLOAD))
    monkeypatch.setattr(reg.fetch.shutil, "disk_usage", lambda path: type("U", (), {"free": 1000})())
    with pytest.raises(DownloadError, match=rf"needs {len(PAYLOAD)} more bytes in .* only 1000 are free"):
        reg.download_model(entry, echo=lambda m: None, sleep=lambda s: None)
    assert not list(reg.model_dir(entry).rglob("*.part"))


# ---------------------------------------------------------------------------------------- concurrency ----
@pytest.mark.parametrize("pinned", [True, False])
def test_two_downloads_of_one_file_at_once_share_one_verified_result(tmp_path: Path, server, pinned) -> None:
    server.mode = "slow"
    entry = _entry(tmp_path, f"{server.base}/weights.pt", sha=_sha(PAYLOAD) if pinned else "",
                   size=len(PAYLOAD) if pinned else 0)
    results: dict[str, object] = {}
    messages: dict[str, list[str]] = {"a": [], "b": []}

    def download(who: str) -> None:
        try:
            results[who] = reg.download_model(entry, trust_unverified=True, echo=messages[who].append,
                                               sleep=lambda s: None)
        except BaseException as exc:  # the test reports whatever the thread met
            results[who] = exc

    first = threading.Thread(target=download, args=("a",))
    first.start()
    deadline = time.monotonic() + 10
    while not server.requests and time.monotonic() < deadline:  # the first download is under way
        time.sleep(0.01)
    second = threading.Thread(target=download, args=("b",))
    second.start()
    first.join(30)
    second.join(30)
    folder = reg.model_dir(entry)
    assert results == {"a": folder, "b": folder}, results
    assert (folder / "weights.pt").read_bytes() == PAYLOAD
    assert reg.read_lock(entry)["files"]["weights.pt"]["sha256"] == _sha(PAYLOAD)
    assert len(server.requests) == 1  # the second one waited and used the first one's verified file
    assert any("waiting for another download" in m for m in messages["b"])
    assert not list(folder.rglob("*.part"))
    assert {r.status for r in reg.verify_model(entry)} == {"ok"}


def _start_download(tmp_path: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "diffrestore", "models", "--registry", str(tmp_path / "models.toml"), "download",
         "m", *extra], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_processes_downloading_one_file_wait_for_each_other(tmp_path: Path, server) -> None:
    server.mode, server.stall_after = "stall", 300_000  # the first process is mid-file until released
    entry = _entry(tmp_path, f"{server.base}/weights.pt", sha="")
    first = _start_download(tmp_path, "--trust-unverified")
    assert server.stalled.wait(60), "the first download never started"
    second = _start_download(tmp_path, "--trust-unverified")
    seen: list[str] = []
    for line in second.stderr:  # the second process says that it waits, and waits
        seen.append(line)
        if "waiting for another download of weights.pt" in line:
            break
    server.release.set()
    out_second, err_second = second.communicate(timeout=60)
    out_first, err_first = first.communicate(timeout=60)
    folder = str(reg.model_dir(entry))
    assert first.returncode == 0 and second.returncode == 0, (err_first, seen, err_second)
    assert out_first.strip() == folder and out_second.strip() == folder
    assert "by another process; using it" in err_second
    assert len(server.requests) == 1
    assert (reg.model_dir(entry) / "weights.pt").read_bytes() == PAYLOAD
    assert reg.read_lock(entry)["files"]["weights.pt"]["sha256"] == _sha(PAYLOAD)


# -------------------------------------------------------------------------------------------- signals ----


def _stop_when_stalled(process: subprocess.Popen, server, part: Path | None = None, size: int = 0) -> tuple[int, str]:
    assert server.stalled.wait(60), "the download never started"
    deadline = time.monotonic() + 30
    while part is not None and time.monotonic() < deadline and not (part.exists() and part.stat().st_size >= size):
        time.sleep(0.02)  # the client writes what it got before it is stopped
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    return process.returncode, err


def test_sigterm_mid_download_exits_143_with_one_line_and_leaves_no_empty_part(tmp_path: Path, server) -> None:
    server.mode, server.stall_after = "stall", 0  # headers, then nothing: the .part is still empty
    entry = _entry(tmp_path, f"{server.base}/weights.pt", sha="")
    process = _start_download(tmp_path, "--trust-unverified")
    code, err = _stop_when_stalled(process, server)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 143, err
    assert len(errors) == 1 and errors[0].startswith("error: interrupted (SIGTERM) while downloading m"), err
    assert "diffrestore models download m" in errors[0] and "Traceback" not in err
    folder = reg.model_dir(entry)
    assert not list(folder.rglob("*.part")) and not (folder / "weights.pt").exists()


def test_sigterm_keeps_a_resumable_part_of_a_pinned_file_and_the_next_download_resumes(
        tmp_path: Path, server) -> None:
    server.mode, server.stall_after = "stall", 300_000
    entry = _entry(tmp_path, f"{server.base}/weights.pt", sha=_sha(PAYLOAD), size=len(PAYLOAD))
    part = reg.model_dir(entry) / "weights.pt.part"
    code, err = _stop_when_stalled(_start_download(tmp_path), server, part, 300_000)
    assert code == 143, err
    assert part.stat().st_size == 300_000  # documented: kept, as the pinned sha256 checks the resumed file
    server.mode = "normal"
    server.requests.clear()
    folder = reg.download_model(entry, echo=lambda m: None)
    assert server.requests[0]["range"] == "bytes=300000-"
    assert (folder / "weights.pt").read_bytes() == PAYLOAD and not part.exists()


def test_an_unpinned_leftover_part_is_not_resumed(tmp_path: Path, server) -> None:
    entry = _entry(tmp_path, f"{server.base}/weights.pt", sha="")
    part = reg.model_dir(entry) / "weights.pt.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\xff" * 5000)  # maybe from another version of the source: nothing could tell
    reg.download_model(entry, trust_unverified=True, echo=lambda m: None)
    assert server.requests[0]["range"] is None
    assert (reg.model_dir(entry) / "weights.pt").read_bytes() == PAYLOAD
    assert reg.read_lock(entry)["files"]["weights.pt"]["sha256"] == _sha(PAYLOAD)


# -------------------------------------------------------------------------------------- the cache itself ----
def _cli(args: list[str], capsys) -> tuple[int, list[str]]:
    from diffrestore.cli import commands as cli

    code = cli.main(args)
    return code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("case", ["names-a-file", "under-a-file", "read-only"])
def test_an_unusable_cache_is_one_line_naming_the_setting(tmp_path: Path, server, monkeypatch, capsys, case) -> None:
    _entry(tmp_path, f"{server.base}/weights.pt", sha=_sha(PAYLOAD), size=len(PAYLOAD))
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    if case == "names-a-file":
        cache = blocker
    elif case == "under-a-file":
        cache = blocker / "cache"
    elif os.geteuid() != 0:
        cache = tmp_path / "ro"
        cache.mkdir(mode=0o555)
    elif Path("/sys/kernel").is_dir():
        cache = Path("/sys/diffrestore-test-cache")  # root writes anywhere, but sysfs takes no new folders
    else:
        pytest.skip("no read-only folder to test as root here")
    monkeypatch.setenv("DIFFRESTORE_CACHE", str(cache))
    code, err = _cli(["models", "--registry", str(tmp_path / "models.toml"), "download", "m"], capsys)
    assert code == EXIT_MODEL, err
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert "unexpected" not in err[0] and "DIFFRESTORE_CACHE" in err[0] and str(cache) in err[0]
    assert server.requests == []
    assert blocker.read_text() == "not a folder"


# -------------------------------------------------------------------------------------------- secrets ----
def test_credentials_in_a_source_url_are_sent_to_that_host_only_and_never_printed(
        tmp_path: Path, server, capsys) -> None:
    from typer.testing import CliRunner

    from diffrestore.cli.models import models_app

    host = server.base.split("//", 1)[1]
    entry = _entry(tmp_path, f"http://user:{SECRET}@{host}/weights.pt?token={SECRET}", sha=_sha(PAYLOAD),
                   size=len(PAYLOAD))
    registry = ["--registry", str(tmp_path / "models.toml")]
    runner = CliRunner()
    shown = [runner.invoke(models_app, [*registry, *args]).output
             for args in (["info", "m"], ["info", "m", "--json"], ["list"], ["list", "--json"])]
    assert all(SECRET not in out for out in shown), shown
    assert "http://***@" in shown[0] and "token=***" in shown[0]
    messages: list[str] = []
    folder = reg.download_model(entry, echo=messages.append)
    assert (folder / "weights.pt").read_bytes() == PAYLOAD
    expected = "Basic " + base64.b64encode(f"user:{SECRET}".encode()).decode()
    assert server.requests[0]["auth"] == expected
    assert messages and all(SECRET not in m for m in messages)
    assert SECRET not in (folder / reg.LOCK_NAME).read_text()
    after = runner.invoke(models_app, [*registry, "info", "m", "--json"]).output
    assert SECRET not in after and '"recorded"' in after
    # errors too: a 404 names the URL without the password
    server.body = b""
    (folder / "weights.pt").unlink()
    gone = _entry(tmp_path, f"http://user:{SECRET}@{host}/missing.pt", sha=_sha(PAYLOAD))
    with pytest.raises(DownloadError) as info:
        reg.download_model(gone, echo=messages.append, sleep=lambda s: None)
    assert "HTTP 404" in str(info.value) or "failed" in str(info.value)
    assert SECRET not in str(info.value) and all(SECRET not in m for m in messages)


def test_credentials_are_not_sent_on_after_a_redirect(tmp_path: Path, server) -> None:
    host = server.base.split("//", 1)[1]
    entry = _entry(tmp_path, f"http://user:{SECRET}@{host}/redirect", sha=_sha(PAYLOAD), size=len(PAYLOAD))
    reg.download_model(entry, echo=lambda m: None)
    assert [r["path"] for r in server.requests] == ["/redirect", "/weights.pt"]
    assert server.requests[0]["auth"] and server.requests[1]["auth"] is None
