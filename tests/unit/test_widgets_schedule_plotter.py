"""SchedulePlotter's Python side: curves equal the schedule functions, log-SNR = −2 ln σ, errors shown."""

import math

import pytest
import torch

from difftech_lab.errors import InvalidArgumentError, UnknownNameError
from difftech_lab.models.parameterization import EpsDiscrete, betas_for
from difftech_lab.sampling.schedules import (
    exponential_sigmas,
    flow_sigmas,
    karras_sigmas,
    make_sigmas,
    polyexponential_sigmas,
)
from difftech_lab.widgets.schedule_plotter import SchedulePlotter


@pytest.fixture(scope="module")
def model_sampling():
    return EpsDiscrete.from_betas(betas_for("scaled_linear", 0.00085, 0.012, 1000))


def by_name(plotter):
    return {c["name"]: c for c in plotter.curves}


def test_curves_match_the_schedule_functions():
    p = SchedulePlotter(steps=8, sigma_min=0.1, sigma_max=10.0, rho=5.0, poly_rho=2.0, shift=2.0)
    curves = by_name(p)
    assert list(curves) == ["karras", "exponential", "polyexponential", "flow"]   # no model given: no "model"
    assert curves["karras"]["sigma"] == karras_sigmas(8, 0.1, 10.0, 5.0).tolist()
    assert curves["exponential"]["sigma"] == exponential_sigmas(8, 0.1, 10.0).tolist()
    assert curves["polyexponential"]["sigma"] == polyexponential_sigmas(8, 0.1, 10.0, 2.0).tolist()
    assert curves["flow"]["sigma"] == flow_sigmas(8, 2.0).tolist()


def test_log_snr_is_minus_two_log_sigma_and_null_at_zero():
    karras = by_name(SchedulePlotter(steps=4))["karras"]
    assert karras["log_snr"][-1] is None and karras["sigma"][-1] == 0.0
    for s, lam in zip(karras["sigma"][:-1], karras["log_snr"][:-1]):
        assert lam == pytest.approx(-2 * math.log(s))


def test_model_schedule_and_range_come_from_the_model(model_sampling):
    class FakeSession:
        pass
    session = FakeSession()
    session.model_sampling = model_sampling
    p = SchedulePlotter(session=session, steps=10, schedule="model")
    assert p.sigma_min == pytest.approx(model_sampling.sigma_min)
    assert torch.equal(p.sigmas, make_sigmas("default", model_sampling, 10))
    assert "model" in by_name(p)


def test_controls_recompute_the_chosen_sigmas():
    p = SchedulePlotter(steps=10)
    p.steps = 5
    assert len(p.sigmas) == 6 and len(by_name(p)["karras"]["sigma"]) == 6
    p.schedule = "exponential"
    assert torch.equal(p.sigmas, exponential_sigmas(5, p.sigma_min, p.sigma_max))
    with pytest.raises(UnknownNameError, match="karras"):
        p.schedule = "cosine"


def test_bad_control_value_is_shown_in_the_widget_and_raised():
    p = SchedulePlotter(steps=5)
    with pytest.raises(InvalidArgumentError, match="sigma_min=100"):
        p.sigma_min = 100.0
    assert "sigma_min=100" in p.error
    p.sigma_min = 0.05
    assert p.error == ""


def test_model_schedule_without_model_is_an_error():
    with pytest.raises(InvalidArgumentError, match="model_sampling="):
        SchedulePlotter(schedule="model").sigmas


def test_show_result_overlays_the_used_sigmas_in_order():
    class Result:
        sigmas_used = [10.0, 4.0, 6.0, 1.0, 0.0]      # a restart jump back up to 6
    p = SchedulePlotter(result=Result())
    assert p.used["sigma"] == [10.0, 4.0, 6.0, 1.0, 0.0]
    assert p.used["log_snr"][2] == pytest.approx(-2 * math.log(6.0)) and p.used["log_snr"][-1] is None
