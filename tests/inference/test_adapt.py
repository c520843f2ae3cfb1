import numpy as np
import pytest
import torch
from PIL import Image

from cxr.data.images import load_grayscale
from cxr.data.transforms import normalise
from cxr.errors import CxrError
from cxr.inference.adapt import MIN_IMAGES, adapt_batchnorm
from cxr.inference.bundle import BUNDLE_FILE, Bundle
from tests.cli.helpers import assert_one_line_error, run_cli_inprocess
from tests.conftest import CODECADEMY, SHARED_DATA
from tests.inference.spread_bundles import codecademy_sample, make_bundle

pytestmark = pytest.mark.skipif(not CODECADEMY.is_dir(), reason=f"needs the shared datasets at {SHARED_DATA}")


def new_site(folder, per_class: int = 14):
    """Codecademy test films as another scanner would give them: darker, other gamma; plus one broken file."""
    folder.mkdir(parents=True)
    _, paths, images, _ = codecademy_sample("test", per_class, 64)
    for p, img in zip(paths, images):
        shifted = (255 * 0.7 * (img / 255.0) ** 1.8).astype(np.uint8)
        Image.fromarray(shifted).save(folder / f"{p.parent.name}-{p.stem}.png")  # stems repeat across classes
    (folder / "broken.png").write_bytes(b"not a png")
    return folder


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("adapt") / "run", image_size=64)


def test_batch_norm_statistics_become_the_new_sites_and_nothing_else_changes(source, tmp_path):
    site = new_site(tmp_path / "site")
    before = (source / BUNDLE_FILE).read_bytes()
    result = adapt_batchnorm(source, [site], tmp_path / "adapted", batch_size=64)  # one batch: exact statistics
    assert (source / BUNDLE_FILE).read_bytes() == before  # the source run is never changed
    assert result.images == 42 and len(result.skipped) == 1 and "broken.png" in result.skipped[0]

    old, new = Bundle.load(source, backend="torch"), Bundle.load(tmp_path / "adapted", backend="torch")
    assert new.meta.extra["adapted"]["images"] == 42 and new.meta.temperature == old.meta.temperature
    files = sorted(p for p in site.iterdir() if p.name != "broken.png")
    x = normalise(np.stack([load_grayscale(p, 64) for p in files]), old.meta.mean, old.meta.std)
    with torch.no_grad():
        h = old.model.features[0][0](x)  # first conv: the input of the first batch norm
    norm = new.model.features[0][1]
    torch.testing.assert_close(norm.running_mean, h.mean((0, 2, 3)), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(norm.running_var, h.var((0, 2, 3)), atol=1e-4, rtol=1e-3)
    assert (norm.running_mean - old.model.features[0][1].running_mean).abs().max() > 1e-2  # the site did differ

    old_state, new_state = old.model.state_dict(), new.model.state_dict()
    learned = [k for k in old_state if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert all(torch.equal(old_state[k], new_state[k]) for k in learned)  # weights untouched
    assert np.abs(new.predict(files).probabilities - old.predict(files).probabilities).max() > 1e-3


def test_too_few_images_or_an_existing_model_are_one_line_errors(source, tmp_path, capsys, monkeypatch):
    few = new_site(tmp_path / "few", per_class=3)
    with pytest.raises(CxrError, match=f"at least {MIN_IMAGES} readable images .* got 9"):
        adapt_batchnorm(source, [few], tmp_path / "out")
    assert not (tmp_path / "out" / BUNDLE_FILE).exists()
    proc = run_cli_inprocess(capsys, monkeypatch, "site", "adapt", source, few, "--out", source)
    assert_one_line_error(proc, "already holds a model")
