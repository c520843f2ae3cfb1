import numpy as np
from PIL import Image

import cxr.data.cache as cache
from cxr.data.cache import decode_cached


def test_decodes_once_then_reads_cache(tmp_path, monkeypatch):
    paths = []
    for i in range(3):
        p = tmp_path / "ds" / f"{i}.png"
        p.parent.mkdir(exist_ok=True)
        Image.fromarray(np.full((40, 50), 40 * i, np.uint8)).save(p)
        paths.append(p)
    (tmp_path / "ds" / "bad.png").write_bytes(b"garbage")
    paths.insert(1, tmp_path / "ds" / "bad.png")

    first = decode_cached(paths, 16, tmp_path / "cache")
    assert first.images.shape == (3, 16, 16)
    assert first.kept.tolist() == [0, 2, 3]
    assert len(first.errors) == 1 and "bad.png" in first.errors[0]
    assert list((tmp_path / "cache" / "decoded").glob("*.npz"))
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == ["0.png", "1.png", "2.png", "bad.png"]

    def boom(*a, **k):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(cache, "load_grayscale", boom)
    second = decode_cached(paths, 16, tmp_path / "cache")
    np.testing.assert_array_equal(second.images, first.images)
    assert second.errors == first.errors


def test_changed_file_invalidates_cache(tmp_path):
    p = tmp_path / "a.png"
    Image.fromarray(np.full((8, 8), 10, np.uint8)).save(p)
    assert decode_cached([p], 8, tmp_path / "c").images[0, 0, 0] == 10
    Image.fromarray(np.full((8, 8), 200, np.uint8)).save(p)
    import os

    os.utime(p, ns=(1, 10**18))
    assert decode_cached([p], 8, tmp_path / "c").images[0, 0, 0] == 200


def test_an_unwritable_cache_warns_once_and_still_decodes(tmp_path, monkeypatch):
    p = tmp_path / "a.png"
    Image.fromarray(np.full((8, 8), 10, np.uint8)).save(p)
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    warnings = []
    monkeypatch.setattr(cache.log, "warning", warnings.append)  # the CLI stops "cxr" records reaching caplog's root
    for _ in range(2):
        assert decode_cached([p], 8, not_a_dir).images[0, 0, 0] == 10
    assert len(warnings) == 1 and str(not_a_dir) in warnings[0] and "not writable" in warnings[0]
    assert not_a_dir.read_text() == "x"


def test_a_listed_file_that_is_gone_is_reported_unreadable_not_raised(tmp_path):
    present = tmp_path / "a.png"
    Image.fromarray(np.full((8, 8), 100, np.uint8)).save(present)
    decoded = decode_cached([present, tmp_path / "gone.png"], 8, tmp_path / "cache")
    assert decoded.kept.tolist() == [0] and len(decoded.errors) == 1 and "gone.png" in decoded.errors[0]
