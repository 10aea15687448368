"""What finite-difference forecasting gets exactly right, and the known lag error of the Taylor form."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from stepper_models import PolynomialDenoiser, stepper_facts

from flashbench.denoiser import Cond
from flashbench.schedule import flow_match_sigmas
from flashbench.settings import steppers
from flashbench.steppers.alp import ALP
from flashbench.steppers.taylorseer import TaylorSeer

SHAPE = (1, 2, 2, 2, 2)


def polynomial(seed: int, degree: int, layers: int = 3, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coefficients = torch.randn(layers, degree + 1, *SHAPE, generator=g, dtype=torch.float64)
    # Keep the leading coefficient away from zero so a degree-d polynomial really is degree d.
    coefficients[:, degree] += torch.sign(coefficients[:, degree]) * 0.5
    return coefficients * scale ** -torch.arange(degree + 1, dtype=torch.float64).view(
        1, -1, 1, 1, 1, 1, 1
    )


def walk(stepper, model, sigmas):
    """The stepper's velocity at every step, its action, and the exact velocity there."""
    x = torch.zeros(SHAPE, dtype=torch.float64)
    cache: dict = {}
    rows = []
    for step in range(len(sigmas) - 1):
        v, action = stepper.velocity(model, x, sigmas, step, Cond(), cache)
        rows.append((step, v, action))
    return rows


def linear_sigmas(steps: int) -> torch.Tensor:
    return torch.linspace(1, 0, steps + 1, dtype=torch.float64)


@given(
    seed=st.integers(0, 1000),
    degree=st.integers(0, 1),
    order=st.integers(1, 3),
    interval=st.integers(2, 5),
    warmup=st.integers(1, 4),
    level=st.sampled_from(["layer", "output"]),
)
def test_taylorseer_is_exact_for_features_of_degree_at_most_one(
    seed, degree, order, interval, warmup, level
):
    steps = 16
    model = PolynomialDenoiser(polynomial(seed, degree), "step", steps)
    stepper = TaylorSeer(interval=interval, order=order, warmup=warmup, level=level)
    predicted = 0
    for step, v, action in walk(stepper, model, linear_sigmas(steps)):
        computed_before = min(step, warmup) + max(0, (step - warmup + 1) // interval) if step else 0
        if action == "predict" and (degree == 0 or computed_before >= 2):
            torch.testing.assert_close(v, model.exact(step), rtol=1e-9, atol=1e-9)
            predicted += 1
    assert predicted > 0


@given(
    seed=st.integers(0, 1000),
    spacing_h=st.integers(2, 4),
    level=st.sampled_from(["layer", "output"]),
)
def test_taylorseer_misses_a_quadratic_by_minus_k_h_f2_over_2(seed, spacing_h, level):
    steps = 4 * spacing_h
    coefficients = polynomial(seed, 2)
    model = PolynomialDenoiser(coefficients, "step", steps)
    # Full passes at 0, h, 2h, 3h: from 2h on, the last three full points are equally spaced.
    stepper = TaylorSeer(interval=spacing_h, order=2, warmup=1, level=level)
    second_derivative = 2 * coefficients[:, 2].sum(0)
    checked = 0
    for step, v, action in walk(stepper, model, linear_sigmas(steps)):
        if action == "predict" and step > 2 * spacing_h:
            k = step - spacing_h * (step // spacing_h)
            exact = model.exact(step)
            torch.testing.assert_close(
                v - exact, -k * spacing_h * second_derivative / 2, rtol=1e-8, atol=1e-8
            )
            assert (v - exact).abs().max() > 1e-3
            checked += 1
    assert checked == 2 * (spacing_h - 1)


@given(
    seed=st.integers(0, 1000),
    order=st.integers(1, 3),
    data=st.data(),
    interval=st.integers(2, 5),
    level=st.sampled_from(["layer", "output"]),
)
def test_newton_form_is_exact_for_degree_at_most_order_on_equal_spacing(
    seed, order, data, interval, level
):
    degree = data.draw(st.integers(0, order))
    steps = (order + 2) * interval
    model = PolynomialDenoiser(polynomial(seed, degree, scale=interval), "step", steps)
    stepper = TaylorSeer(interval=interval, order=order, warmup=1, form="newton", level=level)
    checked = 0
    for step, v, action in walk(stepper, model, linear_sigmas(steps)):
        if action == "predict" and step > order * interval:
            torch.testing.assert_close(v, model.exact(step), rtol=1e-7, atol=1e-7)
            checked += 1
    assert checked > 0


def test_newton_form_equals_the_binomial_backward_difference_formula():
    h, n = 3, 3
    values = torch.tensor([math.sin(0.3 * j) for j in range(0, 13)], dtype=torch.float64)
    full = values[[0, 3, 6, 9]]
    backward = [full]
    for _ in range(n):
        backward.append(backward[-1][1:] - backward[-1][:-1])
        stepper = TaylorSeer(interval=h, order=n, warmup=1, form="newton", level="output")
    cache: dict = {}
    factors = torch.zeros(n + 1, 1, 1, dtype=torch.float64)
    for i, u in enumerate([0, 3, 6, 9]):
        distances = stepper.distances(cache, float(u))
        stepper.update_factors(factors[:, 0], full[i].view(1), distances)
        stepper.commit(cache, factors, distances, float(u))
    for k in (1, 2):
        binomial = sum(
            math.prod((k / h + i - 1 - j) for j in range(i))
            / math.factorial(i)
            * float(backward[i][-1])
            for i in range(n + 1)
        )
        assert float(stepper.forecast(cache, 9.0 + k)) == pytest.approx(binomial, rel=1e-12)


@given(seed=st.integers(0, 1000), order=st.integers(1, 3))
def test_sigma_spacing_is_exact_for_polynomials_in_sigma_on_a_shifted_schedule(seed, order):
    sigmas = flow_match_sigmas(20, shift=5.0).double()
    model = PolynomialDenoiser(polynomial(seed, order), "sigma")
    newton = ALP(interval=4, order=order, form="newton", spacing="sigma", dynamic=False)
    by_step = ALP(interval=4, order=order, form="newton", spacing="step", dynamic=False)
    worst_sigma = worst_step = 0.0
    for (step, v, action), (_, w, _) in zip(
        walk(newton, model, sigmas), walk(by_step, model, sigmas), strict=True
    ):
        if action == "predict":
            exact = model.exact(float(sigmas[step]))
            worst_sigma = max(worst_sigma, float((v - exact).abs().max()))
            worst_step = max(worst_step, float((w - exact).abs().max()))
    assert worst_sigma < 1e-6
    assert worst_step > 100 * worst_sigma


EXACT = [name for name in steppers.names() if stepper_facts(name, 12).exact is not None]


@pytest.mark.parametrize("name", EXACT)
@given(seed=st.integers(0, 1000), data=st.data())
def test_declared_exactness_holds_on_polynomial_features(name, seed, data):
    facts = stepper_facts(name, 12)
    degree = data.draw(st.integers(0, facts.exact_degree))
    interval = facts.exact["interval"]
    steps = (facts.exact_degree + 2) * interval
    model = PolynomialDenoiser(polynomial(seed, degree, scale=interval), "step", steps)
    stepper = steppers.build(name, **facts.exact)
    checked = 0
    for step, v, action in walk(stepper, model, linear_sigmas(steps)):
        if action != "compute" and step > facts.exact_degree * interval:
            torch.testing.assert_close(v, model.exact(step), rtol=1e-7, atol=1e-7)
            checked += 1
    assert checked > 0
