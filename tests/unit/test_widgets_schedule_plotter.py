"""SchedulePlotter's Python side: curves equal the schedule table's, log-SNR = −2 ln σ, errors shown."""

import math

import pytest
import torch

from difftech_lab.errors import InvalidArgumentError, UnknownNameError
from difftech_lab.models.parameterization import EpsDiscrete, FlowMatch, betas_for
from difftech_lab.sampling.schedules import (
    SCHEDULES,
    exponential_sigmas,
    karras_sigmas,
    make_sigmas,
    polyexponential_sigmas,
)
from difftech_lab.widgets.schedule_plotter import SD_MODEL_SAMPLING, SchedulePlotter

MODEL_SCHEDULES = ["default", "leading", "linspace", "trailing", "sgm_uniform", "uniform", "simple"]


@pytest.fixture(scope="module")
def model_sampling():
    return EpsDiscrete.from_betas(betas_for("linear", 0.0001, 0.02, 1000), timestep_spacing="trailing")


def by_name(plotter):
    return {c["name"]: c for c in plotter.curves}


def test_without_a_model_every_vp_schedule_is_plotted_over_sd1():
    p = SchedulePlotter(steps=8, sigma_min=0.1, sigma_max=10.0, rho=5.0, poly_rho=2.0)
    curves = by_name(p)
    assert list(curves) == [name for name in SCHEDULES if name != "flow"]   # table order, one name each
    assert curves["karras"]["sigma"] == karras_sigmas(8, 0.1, 10.0, 5.0).tolist()
    assert curves["exponential"]["sigma"] == exponential_sigmas(8, 0.1, 10.0).tolist()
    assert curves["polyexponential"]["sigma"] == polyexponential_sigmas(8, 0.1, 10.0, 2.0).tolist()
    for name in MODEL_SCHEDULES:
        assert curves[name]["sigma"] == make_sigmas(name, SD_MODEL_SAMPLING, 8).tolist(), name


def test_default_range_is_sd1s():
    p = SchedulePlotter()
    assert (p.sigma_min, p.sigma_max) == pytest.approx((0.0292, 14.6146), abs=1e-4)


def test_each_schedule_keeps_one_colour_whichever_are_shown():
    every = by_name(SchedulePlotter(steps=4))
    assert len({c["color"] for c in every.values()}) == len(every)
    for c in SchedulePlotter(steps=4, shown=["trailing", "karras"]).curves:
        assert c["color"] == every[c["name"]]["color"]


def test_log_snr_is_minus_two_log_sigma_and_null_at_zero():
    karras = by_name(SchedulePlotter(steps=4))["karras"]
    assert karras["log_snr"][-1] is None and karras["sigma"][-1] == 0.0
    for s, lam in zip(karras["sigma"][:-1], karras["log_snr"][:-1]):
        assert lam == pytest.approx(-2 * math.log(s))


def test_model_schedules_and_range_come_from_the_session(model_sampling):
    class FakeSession:
        pass
    session = FakeSession()
    session.model_sampling = model_sampling
    p = SchedulePlotter(session=session, steps=10, schedule="default")
    assert p.sigma_min == pytest.approx(model_sampling.sigma_min)
    assert torch.equal(p.sigmas, make_sigmas("default", model_sampling, 10))
    assert by_name(p)["trailing"]["sigma"] == make_sigmas("trailing", model_sampling, 10).tolist()
    assert "flow" not in by_name(p)


def test_flow_model_adds_the_flow_schedule_with_its_shift():
    sd3 = FlowMatch(shift=3.0)
    p = SchedulePlotter(sd3, steps=6)
    assert p.shift == 3.0 and (p.sigma_min, p.sigma_max) == (sd3.sigma_min, sd3.sigma_max)
    assert list(by_name(p)) == list(SCHEDULES)
    assert by_name(p)["flow"]["sigma"] == by_name(p)["default"]["sigma"] == make_sigmas("default", sd3, 6).tolist()
    p.shift = 1.0
    assert by_name(p)["flow"]["sigma"] == make_sigmas("flow", sd3, 6, shift=1.0).tolist()
    assert by_name(p)["default"]["sigma"] == make_sigmas("default", sd3, 6).tolist()


def test_size_dependent_flow_model_is_shown_at_its_largest_image():
    flux = FlowMatch(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15)
    p = SchedulePlotter(flux, steps=6, schedule="flow")
    assert p.shift == pytest.approx(math.exp(1.15))
    assert by_name(p)["default"]["sigma"] == make_sigmas("default", flux, 6, image_seq_len=4096).tolist()
    assert torch.allclose(p.sigmas, make_sigmas("default", flux, 6, image_seq_len=4096))


def test_schedule_options_reproduce_the_plotted_sigmas():
    p = SchedulePlotter(steps=7, rho=4.0, sigma_min=0.5)
    for name in p.shown:
        assert torch.equal(make_sigmas(name, SD_MODEL_SAMPLING, 7, **p.schedule_options(name)), p.schedule_sigmas(name))
    assert p.schedule_options("karras") == {"sigma_min": 0.5, "sigma_max": p.sigma_max, "rho": 4.0}
    assert p.schedule_options("leading") == {}


def test_controls_recompute_the_chosen_sigmas():
    p = SchedulePlotter(steps=10)
    p.steps = 5
    assert len(p.sigmas) == 6 and len(by_name(p)["karras"]["sigma"]) == 6
    p.schedule = "exponential"
    assert torch.equal(p.sigmas, exponential_sigmas(5, p.sigma_min, p.sigma_max))
    p.schedule = "sgm_uniform"
    assert torch.equal(p.sigmas, make_sigmas("sgm_uniform", SD_MODEL_SAMPLING, 5))


def test_unknown_and_inapplicable_schedules_are_refused():
    p = SchedulePlotter(steps=5)
    with pytest.raises(UnknownNameError, match="cosine.*karras"):
        p.schedule = "cosine"
    with pytest.raises(UnknownNameError, match="'model'.*default"):   # the model's own schedule is "default"
        p.schedule = "model"
    with pytest.raises(InvalidArgumentError, match="'flow' does not apply to this plotter's EpsDiscrete.*flow model"):
        p.schedule = "flow"
    assert p.schedule == "karras"


def test_bad_control_value_is_shown_in_the_widget_and_raised():
    p = SchedulePlotter(steps=5)
    with pytest.raises(InvalidArgumentError, match="sigma_min=100"):
        p.sigma_min = 100.0
    assert "sigma_min=100" in p.error
    p.sigma_min = 0.05
    assert p.error == ""
    with pytest.raises(InvalidArgumentError, match="1000 training timesteps"):
        p.steps = 1001
    assert "1000 training timesteps" in p.error


def test_show_result_overlays_the_used_sigmas_in_order():
    class Result:
        sigmas_used = [10.0, 4.0, 6.0, 1.0, 0.0]      # a restart jump back up to 6
    p = SchedulePlotter(result=Result())
    assert p.used["sigma"] == [10.0, 4.0, 6.0, 1.0, 0.0] and p.used["color"] == "#000"
    assert p.used["log_snr"][2] == pytest.approx(-2 * math.log(6.0)) and p.used["log_snr"][-1] is None


def test_flow_log_snr_is_two_log_of_signal_over_noise():
    p = SchedulePlotter(FlowMatch(shift=3.0), steps=4)
    assert p.flow and not SchedulePlotter(steps=4).flow
    flow = by_name(p)["flow"]
    assert flow["sigma"][0] == 1.0 and flow["log_snr"][0] is None and flow["log_snr"][-1] is None
    for s, lam in zip(flow["sigma"][1:-1], flow["log_snr"][1:-1]):
        assert lam == pytest.approx(2 * math.log((1 - s) / s))

    class Result:
        sigmas_used = [1.0, 0.5, 0.0]
    p.show_result(Result())
    assert p.used["log_snr"] == [None, 0.0, None]
