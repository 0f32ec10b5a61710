"""benchmarks/training_photos.toml and `default_prior.py export-train-photos` (the stronger-prior training run): the
photo list is well formed, keeps the evaluation images out, and the export checks its sources before writing
anything."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("default_prior")


@pytest.fixture(scope="module")
def photos(bench):
    return bench.load_photos(bench.PHOTOS_TOML)


def _fake_toml(tmp_path: Path, source: Path, sha256: str, package: str = "fake-photos") -> Path:
    toml = tmp_path / "photos.toml"
    toml.write_text(
        f'[[photo]]\nname = "fake"\npackage = "{package}"\nversion = "1.0-1"\npath = "{source}"\n'
        f'width = 1200\nheight = 600\nsha256 = "{sha256}"\nlicence = "CC0-1.0"\ncredit = "nobody"\n'
    )
    return toml


def test_the_list_parses_and_every_entry_is_complete(bench, photos):
    assert len(photos) >= 20
    for p in photos:
        assert set(bench.PHOTO_KEYS) <= set(p), p
        assert all(str(p[k]).strip() for k in bench.PHOTO_KEYS), p
        assert len(p["sha256"]) == 64 and int(p["sha256"], 16) >= 0
        assert p["path"].startswith("/usr/share/")
        assert isinstance(p["width"], int) and isinstance(p["height"], int)


def test_no_photo_is_listed_twice(photos):
    for key in ("path", "sha256", "name"):
        values = [p[key] for p in photos]
        assert len(values) == len(set(values)), key


def test_the_held_out_images_stay_out(bench, photos):
    assert set(bench.HELD_OUT) == {"astronaut", "coffee", "chelsea", "rocket"}
    for p in photos:
        text = " ".join(str(p[k]) for k in ("name", "path", "package")).lower()
        assert not any(held in text for held in bench.HELD_OUT), p
        assert p["name"] not in bench.TRAIN_IMAGES  # a photo must not replace a skimage image in DEST


def test_missing_keys_are_reported(bench, tmp_path):
    toml = tmp_path / "photos.toml"
    toml.write_text('[[photo]]\nname = "x"\npath = "/nowhere.jpg"\n')
    with pytest.raises(bench.PhotoError, match="lacks package, version"):
        bench.load_photos(toml)


def test_a_wrong_sha256_stops_the_export_before_it_writes(bench, tmp_path):
    from PIL import Image

    source = tmp_path / "photo.jpg"
    Image.new("RGB", (1200, 600), (10, 120, 200)).save(source)
    dest = tmp_path / "train"
    with pytest.raises(bench.PhotoError, match=r"photo\.jpg: sha256 differs"):
        bench.export_train_photos(dest, _fake_toml(tmp_path, source, "0" * 64))
    assert not dest.exists()


def test_a_missing_package_gives_one_line_with_the_apt_command(bench, tmp_path, capsys):
    toml = _fake_toml(tmp_path, tmp_path / "absent.jpg", "0" * 64, package="no-such-wallpapers")
    assert bench.main(["export-train-photos", str(tmp_path / "train"), "--photos", str(toml)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "apt-get install -y --no-install-recommends no-such-wallpapers" in err
    assert not (tmp_path / "train").exists()


def test_export_downscales_and_never_overwrites_a_different_file(bench, tmp_path):
    from PIL import Image

    source = tmp_path / "photo.jpg"
    Image.new("RGB", (1200, 600), (10, 120, 200)).save(source)
    toml = _fake_toml(tmp_path, source, hashlib.sha256(source.read_bytes()).hexdigest())
    dest = tmp_path / "train"
    written = bench.export_train_photos(dest, toml)
    assert len(written) == len(bench.TRAIN_IMAGES) + 1
    with Image.open(dest / "fake.png") as img:
        assert img.size == (1024, 512)
    assert bench.export_train_photos(dest, toml) == written  # identical files: skipped, no error
    (dest / "fake.png").write_bytes(b"someone else's file")
    with pytest.raises(bench.PhotoError, match=r"fake\.png exists and differs"):
        bench.export_train_photos(dest, toml)
    assert (dest / "fake.png").read_bytes() == b"someone else's file"


def test_export_of_the_real_photos(bench, photos, tmp_path):
    missing = sorted({p["package"] for p in photos if not Path(p["path"]).is_file()})
    if missing:
        pytest.skip(f"wallpaper packages not installed (needs: {bench.apt_command(missing)})")
    from PIL import Image

    dest = tmp_path / "train"
    bench.export_train_photos(dest)
    names = {p["name"] for p in photos}
    pngs = sorted(dest.glob("*.png"))
    assert len(pngs) == len(photos) + len(bench.TRAIN_IMAGES)
    for png in pngs:
        if png.stem in names:
            with Image.open(png) as img:
                assert max(img.size) <= bench.MAX_SIDE
