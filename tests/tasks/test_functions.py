import math

import pytest
import torch

from distmeta.tasks import EVALUATION, TRAIN, VALIDATION, FunctionFamily, SineFamily, assign, task_seed


def test_task_is_a_pure_function_of_seed_step_index():
    f = SineFamily()
    whole = f.sample(7, TRAIN, 3, range(10))
    again = f.sample(7, TRAIN, 3, range(10))
    part = f.sample(7, TRAIN, 3, [4, 9])
    for a, b in zip(whole.tensors(), again.tensors()):
        assert torch.equal(a, b)
    for a, b in zip(whole.slice(4, 5).tensors(), part.slice(0, 1).tensors()):
        assert torch.equal(a, b)
    for a, b in zip(whole.slice(9, 10).tensors(), part.slice(1, 2).tensors()):
        assert torch.equal(a, b)


def test_steps_streams_and_seeds_give_different_tasks():
    f = SineFamily()
    base = f.sample(0, TRAIN, 0, [0]).support_y
    assert not torch.equal(base, f.sample(0, TRAIN, 1, [0]).support_y)
    assert not torch.equal(base, f.sample(1, TRAIN, 0, [0]).support_y)
    assert not torch.equal(base, f.sample(0, VALIDATION, 0, [0]).support_y)
    assert len({task_seed(0, s, 0, 0) for s in (TRAIN, VALIDATION, EVALUATION)}) == 3


def test_sine_values_follow_amplitude_and_phase_ranges():
    f = SineFamily(shots=5, query=50)
    b = f.sample(0, TRAIN, 0, range(200))
    assert b.support_x.shape == (200, 5, 1) and b.query_x.shape == (200, 50, 1)
    assert b.query_x.min() >= -5 and b.query_x.max() <= 5
    amp = b.query_y.abs().amax(dim=(1, 2))
    assert amp.max() <= 5.0 + 1e-6 and amp.min() >= 0.0
    # the data is y = A sin(x - phi): refit A, phi by least squares on one task and check exactly
    x, y = b.query_x[0, :, 0].double(), b.query_y[0, :, 0].double()
    design = torch.stack([torch.sin(x), torch.cos(x)], 1)
    coef = torch.linalg.lstsq(design, y.unsqueeze(1)).solution.squeeze()
    assert torch.allclose(design @ coef, y, atol=1e-5)
    assert 0.1 - 1e-4 <= math.hypot(*coef.tolist()) <= 5.0 + 1e-4


def test_shots_and_query_override_per_call():
    f = SineFamily()
    b = f.sample(0, EVALUATION, 0, range(3), shots=20, query=100)
    assert b.support_x.shape == (3, 20, 1) and b.query_x.shape == (3, 100, 1)


def test_assign_splits_contiguously_and_covers_all():
    assert assign(25, 2) == [range(0, 13), range(13, 25)]
    assert assign(25, 0) == [range(0, 25)]
    plan = assign(10, 3)
    assert [len(r) for r in plan] == [4, 3, 3]
    assert [i for r in plan for i in r] == list(range(10))


def _draws(seed, stream, step, index, n):
    """The uniforms a task draws: its parameters first, then its inputs (independent code)."""
    g = torch.Generator().manual_seed(task_seed(seed, stream, step, index))
    return torch.rand(n, generator=g, dtype=torch.float64)


@pytest.mark.parametrize(
    "kind, formula",
    [
        ("sine", lambda p, x: p[0] * torch.sin(x - p[1])),
        ("linear", lambda p, x: p[0] * x + p[1]),
        ("quadratic", lambda p, x: p[0] * x * x + p[1] * x + p[2]),
        ("harmonic", lambda p, x: p[0] * torch.sin(p[1] * x + p[2]) + p[3] * torch.sin(p[4] * x + p[5])),
        ("parabola", lambda p, x: (1.0 if p[0] > 0 else -1.0) * p[1] * (x - p[2]) ** 2 + p[3]),
        ("tanh", lambda p, x: p[0] * torch.tanh(x - p[1]) + p[2]),
        ("l1", lambda p, x: p[0] * (x - p[1]).abs() + p[2]),
    ],
)
def test_each_kind_is_its_formula_with_parameters_in_their_ranges(kind, formula):
    f = FunctionFamily(kind, shots=4, query=6)
    b = f.sample(3, TRAIN, 5, [2, 7])
    ranges = f.param_ranges()
    for row, index in enumerate([2, 7]):
        u = _draws(3, TRAIN, 5, index, len(ranges) + 10)
        p = [lo + (hi - lo) * u[i] for i, (lo, hi) in enumerate(ranges)]
        x = -5 + 10 * u[len(ranges) :]
        y = formula(p, x).float()
        torch.testing.assert_close(torch.cat([b.support_y[row, :, 0], b.query_y[row, :, 0]]), y)
        torch.testing.assert_close(torch.cat([b.support_x[row, :, 0], b.query_x[row, :, 0]]), x.float())


def test_ranges_override_by_name_and_bad_ones_are_named():
    f = FunctionFamily("linear", ranges=(("slope", (2.0, 2.0)),), name="steep")
    assert f.name == "steep" and f.param_ranges() == [(2.0, 2.0), (-3.0, 3.0)]
    b = f.sample(0, TRAIN, 0, range(3))
    x, y = b.query_x[:, :, 0], b.query_y[:, :, 0]
    slopes = (y[:, 1] - y[:, 0]) / (x[:, 1] - x[:, 0])
    torch.testing.assert_close(slopes, torch.full((3,), 2.0), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="linear has no parameter 'amplitude'; its parameters: slope, intercept"):
        FunctionFamily("linear", ranges=(("amplitude", (0.0, 1.0)),))
    with pytest.raises(ValueError, match="unknown function family 'cubic'"):
        FunctionFamily("cubic")


def test_target_noise_is_gaussian_of_the_given_spread_drawn_after_the_task_and_its_inputs():
    """MMAML's benchmark: N(0, 0.3^2) on every target. The task (its parameters and inputs) is the
    noiseless one's; the residuals are the task's own normal draws, taken after its uniforms."""
    clean, noisy = FunctionFamily("tanh", shots=5, query=5), FunctionFamily("tanh", shots=5, query=5, noise=0.3)
    a, b = clean.sample(1, TRAIN, 2, range(400)), noisy.sample(1, TRAIN, 2, range(400))
    torch.testing.assert_close(a.support_x, b.support_x)
    residual = torch.cat([b.support_y - a.support_y, b.query_y - a.query_y], 1).flatten()
    assert abs(residual.mean()) < 0.03 and abs(residual.std() - 0.3) < 0.02
    g = torch.Generator().manual_seed(task_seed(1, TRAIN, 2, 7))
    torch.rand(3 + 10, generator=g, dtype=torch.float64)
    eps = torch.randn(10, generator=g, dtype=torch.float64)
    torch.testing.assert_close(torch.cat([b.support_y[7, :, 0] - a.support_y[7, :, 0], b.query_y[7, :, 0] - a.query_y[7, :, 0]]),
                               (0.3 * eps).float(), atol=1e-5, rtol=0)  # fmt: skip
    again = noisy.sample(1, TRAIN, 2, [7])
    torch.testing.assert_close(again.query_y[0], b.query_y[7])
    with pytest.raises(ValueError, match="noise is a standard deviation"):
        FunctionFamily("tanh", noise=-0.1)
