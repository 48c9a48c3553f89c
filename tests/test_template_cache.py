"""Template frames from PNGs: decoded once into a tile cache, then memory-mapped; a broken
cache is rebuilt; an unwritable one falls back to RAM with one warning; racing builders agree."""
from __future__ import annotations

import errno
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from runtime.render import template_cache
from runtime.render.bundle import BundleError, load_bundle
from runtime.render.tile_template import TOLERANCE, TileTemplate
from runtime.system.paths import cache_dir
from tools.avatar.png import write_png
from tools.export.make_fixtures import write_avatar_fixture

REPO = Path(__file__).resolve().parent.parent
FRAMES = 6
SIZE = (96, 160)  # width, height


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def png_source(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A fixture bundle whose template is frames/%04d.png (with sha256 entries for them)."""
    bundle = write_avatar_fixture(tmp_path_factory.mktemp("png") / "bundle", SIZE, FRAMES)
    template = np.load(bundle / "template.npy")
    (bundle / "frames").mkdir()
    for k, frame in enumerate(template):
        write_png(bundle / "frames" / f"{k:04d}.png", frame)
    (bundle / "template.npy").unlink()
    doc = yaml.safe_load((bundle / "avatar.yaml").read_text())
    doc["template"]["frames"] = "frames/%04d.png"
    doc["template"]["sha256"] = {"crop_boxes.npy": _sha(bundle / "crop_boxes.npy"),
                                 **{f"frames/{k:04d}.png": _sha(bundle / "frames" / f"{k:04d}.png")
                                    for k in range(FRAMES)}}
    (bundle / "avatar.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return bundle, template


@pytest.fixture
def bundle(png_source, tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("EDGEMATE_CACHE_DIR", str(tmp_path / "cache"))
    return Path(shutil.copytree(png_source[0], tmp_path / "bundle"))


def _close(frames, expected: np.ndarray) -> bool:
    """Every pixel within the tile tolerance of the decoded frames (tile_template.py)."""
    have = np.asarray(frames).astype(np.int16)
    return have.shape == expected.shape and int(np.abs(have - expected).max()) <= TOLERANCE


def _caches(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cache" / "templates").glob("*"))


def test_cache_dir_order(monkeypatch, tmp_path):
    for name in ("EDGEMATE_CACHE_DIR", "CACHE_DIRECTORY", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "edgemate"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/is/ignored")
    assert cache_dir() == tmp_path / "home" / ".cache" / "edgemate"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "edgemate"
    monkeypatch.setenv("CACHE_DIRECTORY", "/var/cache/edgemate:/var/cache/other")  # systemd
    assert cache_dir() == Path("/var/cache/edgemate")
    monkeypatch.setenv("EDGEMATE_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"


def test_first_load_builds_the_cache_and_the_second_maps_it(bundle, png_source, tmp_path, monkeypatch):
    first = load_bundle(bundle)
    [cache] = _caches(tmp_path)
    assert isinstance(first.frames, TileTemplate) and first.frames.source == str(cache)
    assert isinstance(first.frames.tiles, np.memmap) and not first.frames.tiles.flags.writeable
    assert _close(first.frames, png_source[1])
    inode = cache.stat().st_ino

    def no_decoding(*args, **kwargs):
        raise AssertionError("a cached load must not decode a frame")
    monkeypatch.setattr(template_cache, "decode_frame", no_decoding)
    second = load_bundle(bundle)
    assert second.frames.source == str(cache)
    assert np.asarray(second.frames).tobytes() == np.asarray(first.frames).tobytes()
    assert _caches(tmp_path) == [cache] and cache.stat().st_ino == inode  # not rewritten


def test_the_key_follows_the_frames(bundle, tmp_path):
    load_bundle(bundle)
    # Without sha256 entries the files themselves are hashed: an edited frame is a new key.
    doc = yaml.safe_load((bundle / "avatar.yaml").read_text())
    doc["template"]["sha256"] = {"crop_boxes.npy": doc["template"]["sha256"]["crop_boxes.npy"]}
    (bundle / "avatar.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    load_bundle(bundle)
    assert len(_caches(tmp_path)) == 1  # same files, same key
    edited = np.full((SIZE[1], SIZE[0], 3), 200, np.uint8)
    write_png(bundle / "frames" / "0003.png", edited)
    frames = load_bundle(bundle).frames
    assert len(_caches(tmp_path)) == 2 and int(np.abs(frames[3].astype(int) - edited).max()) <= TOLERANCE


@pytest.mark.parametrize("damage", ["truncated", "padded", "garbage", "empty", "other_count",
                                    "other_tolerance", "index_out_of_range"])
def test_a_broken_cache_is_rebuilt_not_trusted(bundle, png_source, tmp_path, caplog, damage):
    load_bundle(bundle)
    [cache] = _caches(tmp_path)
    raw = cache.read_bytes()
    head = template_cache.HEADER_BYTES
    header = json.loads(raw[len(template_cache.MAGIC):head].decode())
    if damage == "truncated":
        os.truncate(cache, cache.stat().st_size - 1000)
    elif damage == "padded":
        cache.write_bytes(raw + bytes(4))
    elif damage == "garbage":
        cache.write_bytes(os.urandom(5000))
    elif damage == "empty":
        cache.write_bytes(b"")
    elif damage in ("other_count", "other_tolerance"):
        key = "count" if damage == "other_count" else "tolerance"
        header[key] += 1
        text = template_cache.MAGIC + json.dumps(header).encode()
        cache.write_bytes(text.ljust(head, b" ") + raw[head:])
    else:  # the last index of the map names a tile past the store
        cache.write_bytes(raw[:-4] + np.int32(header["versions"]).tobytes())
    with caplog.at_level(logging.WARNING, logger="runtime.render.template_cache"):
        frames = load_bundle(bundle).frames
    assert "rebuilding" in caplog.text
    assert frames.source == str(cache) and _close(frames, png_source[1])
    assert _caches(tmp_path) == [cache]


@pytest.mark.parametrize("failure", ["not_a_directory", "disk_full", "low_space"])
def test_an_unwritable_cache_falls_back_to_ram_with_one_warning(
        bundle, png_source, tmp_path, monkeypatch, caplog, failure):
    if failure == "not_a_directory":
        (tmp_path / "blocker").write_text("a file where the cache directory would be")
        monkeypatch.setenv("EDGEMATE_CACHE_DIR", str(tmp_path / "blocker" / "cache"))
    elif failure == "disk_full":  # found out while writing
        def full(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        monkeypatch.setattr(template_cache.os, "fsync", full)
    else:  # known before decoding: the cache would eat the space the system keeps free
        usage = shutil.disk_usage(tmp_path)
        monkeypatch.setattr(template_cache.shutil, "disk_usage",
                            lambda path: usage._replace(free=template_cache.KEEP_FREE_BYTES))
    with caplog.at_level(logging.WARNING):
        frames = load_bundle(bundle).frames
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "decoding 6 frames into RAM" in warnings[0].getMessage()
    assert frames.source is None and not isinstance(frames.tiles, np.memmap)
    assert _close(frames, png_source[1])
    if failure != "not_a_directory":
        reason = "No space left" if failure == "disk_full" else "MB kept free"
        assert reason in warnings[0].getMessage()
        assert _caches(tmp_path) == []  # no temp file left behind


def _build(root: str, bundle: str, start, results) -> None:
    start.wait(10)
    frames = template_cache.load_image_frames(Path(bundle), "frames/%04d.png", FRAMES, SIZE, {},
                                              root=Path(root))
    results.put((frames.source, hashlib.sha256(np.asarray(frames).tobytes()).hexdigest()))


def test_racing_builders_both_get_a_complete_cache(bundle, tmp_path):
    root = tmp_path / "cache" / "templates"
    context = multiprocessing.get_context("fork")
    start, results = context.Barrier(3), context.Queue()
    workers = [context.Process(target=_build, args=(str(root), str(bundle), start, results))
               for _ in range(3)]
    for worker in workers:
        worker.start()
    got = [results.get(timeout=30) for _ in workers]
    for worker in workers:
        worker.join(10)
        assert worker.exitcode == 0
    assert len(set(got)) == 1  # one name, the same bytes
    assert [p.suffix for p in root.iterdir()] == [".tiles"]  # no temp files left


def test_dead_builders_temp_files_and_old_caches_are_tidied(bundle, tmp_path, monkeypatch):
    root = tmp_path / "cache" / "templates"
    root.mkdir(parents=True)
    old = time.time() - 3600
    for n in range(4):
        (root / f"old{n}.tiles").write_bytes(b"x")
        os.utime(root / f"old{n}.tiles", (old + n, old + n))
    (root / "format1.npy").write_bytes(b"x")  # the whole-frame caches of format 1: all go
    os.utime(root / "format1.npy", (old + 10, old + 10))
    (root / "dead.123.abcd.tmp").write_bytes(b"x")
    os.utime(root / "dead.123.abcd.tmp", (old, old))
    (root / "live.456.abcd.tmp").write_bytes(b"x")  # a builder at work right now
    frames = load_bundle(bundle).frames
    kept = sorted(p.name for p in root.iterdir())
    assert kept == sorted(["old2.tiles", "old3.tiles", Path(frames.source).name, "live.456.abcd.tmp"])


def test_bad_patterns_and_frames_get_one_line_errors(bundle):
    doc = yaml.safe_load((bundle / "avatar.yaml").read_text())
    doc["template"]["frames"] = "frames/all.png"
    (bundle / "avatar.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(BundleError, match=r"avatar.yaml: template.frames: 'frames/all.png' must be "
                                          r"a .npy file or an image pattern"):
        load_bundle(bundle)
    doc["template"]["frames"] = "frames/%04d.png"
    del doc["template"]["sha256"]["frames/0002.png"]
    (bundle / "avatar.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    write_png(bundle / "frames" / "0002.png", np.zeros((10, 20, 3), np.uint8))
    with pytest.raises(BundleError, match=r"0002.png: template frame is 20x10, frame_size is 96x160"):
        load_bundle(bundle)
    (bundle / "frames" / "0002.png").unlink()
    with pytest.raises(BundleError, match=r"0002.png: cannot read template frame"):
        load_bundle(bundle)


def test_the_unit_gives_the_service_a_cache_directory():
    unit = (REPO / "systemd" / "edgemate.service").read_text().splitlines()
    assert "CacheDirectory=edgemate" in unit


def test_a_pingpong_loop_plays_forward_and_back_without_storing_a_frame_twice(bundle):
    """template.loop: pingpong (tools/make_avatar/loop.py picks it for a stretch that does
    not join itself): 0..N-1, then N-2..1, then 0 again; every step moves one frame."""
    import dataclasses
    bundle_dir = bundle
    loaded = load_bundle(bundle_dir)
    n = loaded.frame_count
    assert n >= 3 and [loaded.loop_index(k) for k in range(n + 1)] == [*range(n), 0]  # forward: default
    ping = dataclasses.replace(loaded, loop="pingpong")
    played = [ping.loop_index(k) for k in range(3 * (2 * n - 2) + 1)]
    assert played[:2 * n - 1] == [*range(n), *range(n - 2, -1, -1)]
    assert set(np.abs(np.diff(played))) == {1} and sorted(set(played)) == list(range(n))
    doc = yaml.safe_load((bundle_dir / "avatar.yaml").read_text())
    doc["template"]["loop"] = "pingpong"
    (bundle_dir / "avatar.yaml").write_text(yaml.safe_dump(doc))
    assert load_bundle(bundle_dir).loop == "pingpong"
    doc["template"]["loop"] = "backwards"
    (bundle_dir / "avatar.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(BundleError, match=r"template.loop: must be one of forward, pingpong \(got 'backwards'\)"):
        load_bundle(bundle_dir)


def test_tools_can_ask_for_the_exact_frames(bundle, png_source, tmp_path):
    """tools/renderer/evaluate compares with the generator's own pixels: tolerance 0, its own
    cache file (the key holds the tolerance), the runtime's cache left as it is."""
    loose = load_bundle(bundle).frames
    exact = load_bundle(bundle, exact_template=True).frames
    assert exact.tolerance == 0 and np.array_equal(np.asarray(exact), png_source[1])
    assert loose.tolerance == TOLERANCE and exact.source != loose.source
    assert len(_caches(tmp_path)) == 2
