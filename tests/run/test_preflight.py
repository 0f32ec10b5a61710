"""diffrestore.run.preflight: a method works with one prior kind; a model of another kind is refused in one
line before anything loads (the command line and the Python API alike)."""

from __future__ import annotations

import numpy as np
import pytest
from cli_support import run_main, write_image

import diffrestore
from diffrestore.errors import UsageError


def test_a_latent_model_with_a_pixel_method_is_a_usage_error_before_loading(tmp_path, capsys, monkeypatch) -> None:
    import diffrestore.priors.load as load

    def must_not_load(*args, **kwargs):
        raise AssertionError("the model must not load")

    monkeypatch.setattr(load, "load_prior", must_not_load)
    image = write_image(tmp_path / "photo.png")
    result = run_main(["inpaint", image, "--box", "1,1,4,4", "--model", "tiny-latent-kl", "--device", "cpu",
                       "--method", "dps"], capsys)
    assert result.code == 2
    assert "method dps needs a pixel prior, but model 'tiny-latent-kl' is a latent prior" in result.err
    assert "use --method dwgf or latent-daps with this model" in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_a_loaded_prior_of_the_wrong_kind_is_refused_by_the_api() -> None:
    from diffrestore.priors.load import load_prior

    prior = load_prior("tiny-latent-vq", offline=True)
    with pytest.raises(UsageError, match="method dps needs a pixel prior"):
        diffrestore.restore(np.zeros((32, 32, 3), np.float32), task="denoise", method="dps", prior=prior, steps=2)


def test_a_discrete_model_with_daps_names_the_fitting_method(tmp_path, capsys) -> None:
    image = write_image(tmp_path / "photo.png")
    result = run_main(["inpaint", image, "--box", "1,1,4,4", "--model", "tiny-discrete-vq", "--device", "cpu"], capsys)
    assert result.code == 2
    assert "method daps needs a pixel prior, but model 'tiny-discrete-vq' is a discrete prior" in result.err
    assert "use --method g2d2 with this model" in result.err
