import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from flashbench.denoiser import Cond
from flashbench.flops import FlopCounter, count_flops, declare_flops, replayed_passes
from flashbench.models.toy import ToyDenoiser

SIZES = st.integers(1, 9)


@given(SIZES, SIZES, SIZES, st.booleans())
def test_linear_counts_two_flops_per_multiply_add(tokens, width_in, width_out, bias):
    layer = torch.nn.Linear(width_in, width_out, bias=bias)
    _, flops = count_flops(layer, torch.randn(tokens, width_in))
    assert flops == 2 * tokens * width_in * width_out


@given(SIZES, st.integers(1, 4), SIZES, SIZES, SIZES)
def test_cpu_attention_counts_both_products(batch, heads, queries, keys, head_dim):
    q = torch.randn(batch, heads, queries, head_dim)
    k = torch.randn(batch, heads, keys, head_dim)
    _, flops = count_flops(F.scaled_dot_product_attention, q, k, k)
    # QK^T and (softmax) V: two products of queries x keys x head_dim multiply-adds per head.
    assert flops == 2 * (2 * batch * heads * queries * keys * head_dim)


def test_convolution_is_counted():
    conv = torch.nn.Conv3d(2, 5, kernel_size=(1, 2, 2), stride=(1, 2, 2))
    _, flops = count_flops(conv, torch.randn(1, 2, 3, 4, 4))
    # 3 x 2 x 2 outputs of 5 channels, each 2 x 1 x 2 x 2 multiply-adds.
    assert flops == 2 * (3 * 2 * 2 * 5) * (2 * 1 * 2 * 2)


def test_declared_flops_count_only_under_a_counter():
    x = torch.randn(3)
    declare_flops(7, x)  # outside: nothing to count, nothing fails
    with FlopCounter() as counter:
        declare_flops(7, x)
        declare_flops(5, x)
    assert counter.total == 12


def test_total_reads_inside_and_nested_counters_each_count():
    a, b = torch.randn(3, 4), torch.randn(4, 5)
    with FlopCounter() as outer:
        torch.mm(a, b)
        before = outer.total
        with FlopCounter() as inner:
            torch.mm(a, b)
        assert outer.total - before == inner.total == 2 * 3 * 4 * 5
    assert outer.total == 2 * inner.total


def test_reentering_starts_from_zero():
    counter = FlopCounter()
    for _ in range(2):
        with counter:
            torch.mm(torch.randn(2, 2), torch.randn(2, 2))
        assert counter.total == 16


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_declaring_a_non_count_is_refused(bad):
    with pytest.raises(ValueError, match="must be an integer >= 0"):
        declare_flops(bad, torch.zeros(1))


@given(
    frames=st.integers(1, 4),
    side=st.integers(1, 3),
    depth=st.integers(1, 3),
    temporal=st.booleans(),
    motion=st.booleans(),
)
def test_toy_pass_counts_its_linear_layers_and_temporal_convolutions(
    frames, side, depth, temporal, motion
):
    channels, dim, motion_dim = 3, 8, 2
    model = ToyDenoiser(channels, dim, depth, temporal, motion_dim=motion_dim).eval()
    cond = Cond(temporal={"motion": torch.randn(1, frames, motion_dim)} if motion else {})
    x = torch.randn(1, channels, frames, side, side)
    with torch.no_grad():
        _, flops = count_flops(model, x, torch.tensor([0.5]), cond)
    pixels = frames * side * side
    embed = 2 * pixels * channels * dim + 2 * 2 * dim * dim  # proj_in, the time MLP
    embed += 2 * frames * motion_dim * dim if motion else 0
    # Per block: modulation (dim -> 2 dim, once), MLP dim -> 2 dim -> dim, and a width-3
    # convolution over time (dim -> dim) at every pixel.
    block = 2 * dim * 2 * dim + 2 * pixels * (2 * dim * dim) * 2
    block += 2 * pixels * dim * dim * 3 if temporal else 0
    head = 2 * pixels * dim * channels
    assert flops == embed + depth * block + head


class _ValueDependent(torch.nn.Module):
    """A pass whose cost follows its input's values: as many matmuls as x's first entry says."""

    def __init__(self, follows_shapes: bool) -> None:
        super().__init__()
        self.flops_follow_shapes = follows_shapes
        self.weight = torch.nn.Parameter(torch.eye(3))

    def forward(self, x):
        for _ in range(int(x[0, 0])):
            x = x @ self.weight
        return x


def test_replay_counts_a_pass_once_per_shape_and_adds_it_to_every_counter():
    model = _ValueDependent(follows_shapes=True)
    one = 2 * 2 * 3 * 3  # one [2, 3] @ [3, 3] product
    with replayed_passes(model), FlopCounter() as outer:
        with FlopCounter() as inner:
            model(torch.full((2, 3), 2.0))  # counted: two products
            model(torch.full((2, 3), 5.0))  # same shape: replayed as two products
            model(torch.full((4, 3), 1.0))  # another shape: counted
        assert inner.total == outer.total == (2 + 2) * one + 2 * one
    assert "forward" not in vars(model)
    assert model(torch.full((2, 3), 1.0)).shape == (2, 3)  # the class's forward is back


def test_a_model_that_does_not_declare_shape_following_is_counted_op_by_op():
    model = _ValueDependent(follows_shapes=False)
    with replayed_passes(model), FlopCounter() as counter:
        model(torch.full((2, 3), 2.0))
        model(torch.full((2, 3), 5.0))
    assert counter.total == (2 + 5) * 2 * 2 * 3 * 3


def test_replay_restores_the_model_when_the_pass_fails():
    model = _ValueDependent(follows_shapes=True)
    with pytest.raises(RuntimeError), replayed_passes(model), FlopCounter():
        model(torch.full((2, 4), 1.0))  # [2, 4] @ [3, 3]: a shape error inside the pass
    assert "forward" not in vars(model)


def test_the_small_dit_replays_the_count_of_its_first_pass():
    from reference_model.dit import build_model, make_cond

    model = build_model("tiny").eval()
    cfg = model.config
    x = torch.randn(1, cfg.latent_channels, 2, cfg.latent_size, cfg.latent_size)
    ref = torch.randn(1, cfg.latent_channels, cfg.latent_size, cfg.latent_size)
    expr = torch.randn(1, 2 * cfg.frames_per_latent, cfg.expr_dim)
    cond = make_cond(ref, expr, cfg.frames_per_latent)
    sigma = torch.tensor([0.3])
    one = count_flops(model, x, sigma, cond)[1]
    with torch.no_grad(), replayed_passes(model), FlopCounter() as counter:
        first = model(x, sigma, cond)
        again = model(x, sigma, cond)
    assert counter.total == 2 * one > 0
    assert torch.equal(first, again)
