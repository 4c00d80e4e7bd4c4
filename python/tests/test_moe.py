"""RemoteMixtureOfExperts and RemoteSwitchMixtureOfExperts over real servers and a real DHT."""

import contextlib

import pytest
import torch

import hivemind_cpp as hivemind
from conftest import HIDDEN, server_kwargs


@pytest.fixture
def swarm(child_servers):
    """Two child-process servers, each hosting half of a 2x2 grid, and a trainer's DHT node."""
    first = child_servers(**server_kwargs(expert_uids=["moe.0.0", "moe.0.1"]))
    second = child_servers(**server_kwargs(expert_uids=["moe.1.0", "moe.1.1"],
                                           initial_peers=[first.dht_address]))
    dht = hivemind.DHT(initial_peers=[first.dht_address], listen_on="127.0.0.1:*",
                       client_mode=True)
    yield first, second, dht
    dht.shutdown()


def make_moe(dht, **kwargs):
    args = dict(in_features=HIDDEN, grid_size=(2, 2), dht=dht, k_best=4, uid_prefix="moe.")
    args.update(kwargs)
    return hivemind.RemoteMixtureOfExperts(**args)


def test_forward_backward_reach_every_expert_and_train_the_gate(swarm):
    _, _, dht = swarm
    moe = make_moe(dht)
    x = torch.randn(6, HIDDEN, requires_grad=True)
    out = moe(x)
    assert out.shape == (6, HIDDEN) and torch.isfinite(out).all()
    chosen, mask = moe.last_routing()
    assert all(len(c) == 4 for c in chosen) and mask.all()
    out.pow(2).mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert moe.proj.weight.grad is not None and moe.proj.weight.grad.abs().sum() > 0


def test_killed_server_is_masked_and_the_layer_goes_on(swarm):
    first, second, dht = swarm
    moe = make_moe(dht, k_min=1, forward_timeout=20, timeout_after_k_min=5)
    x = torch.randn(5, HIDDEN)
    assert moe(x).shape == (5, HIDDEN)
    second.kill()  # mid-training: its experts' connections break
    out = moe(x)
    assert torch.isfinite(out).all()
    chosen, mask = moe.last_routing()
    for sample_uids, sample_mask in zip(chosen, mask):
        for uid, answered in zip(sample_uids, sample_mask.tolist()):
            if uid.startswith("moe.1."):
                assert not answered, f"{uid} lives on the killed server but counted as answered"
            else:
                assert answered
    # Fewer than k_min answers per sample is an error unless allow_zero_outputs.
    strict = make_moe(dht, k_min=3, forward_timeout=20, timeout_after_k_min=5)
    with pytest.raises(hivemind.HivemindError, match="k_min"):
        strict(x)


def test_all_experts_dead_with_allow_zero_outputs_gives_zeros(swarm):
    first, second, dht = swarm
    moe = make_moe(dht, allow_zero_outputs=True, forward_timeout=20, timeout_after_k_min=5)
    x = torch.randn(3, HIDDEN)
    moe(x)  # routes are found while the servers live
    first.kill()
    second.kill()
    out = moe(x)
    assert out.shape == (3, HIDDEN)


def test_broadcasting_routes_every_position(swarm):
    _, _, dht = swarm
    moe = make_moe(dht, k_best=2)
    x = torch.randn(2, 3, HIDDEN)
    out = moe(x)
    assert out.shape == (2, 3, HIDDEN)
    chosen, _ = moe.last_routing()
    assert len(chosen) == 6


def test_switch_moe_returns_output_and_balancing_loss(swarm):
    _, _, dht = swarm
    moe = hivemind.RemoteSwitchMixtureOfExperts(in_features=HIDDEN, grid_size=(2, 2), dht=dht,
                                                uid_prefix="moe.")
    before = moe.grid_utilization.clone()
    x = torch.randn(8, HIDDEN, requires_grad=True)
    out, loss = moe(x)
    assert out.shape == x.shape and loss.dim() == 0
    (out.sum() + loss).backward()
    assert moe.proj.weight.grad is not None
    assert not torch.equal(before, moe.grid_utilization), "training mode updates the utilization"
    moe.eval()
    frozen = moe.grid_utilization.clone()
    moe(x)
    assert torch.equal(frozen, moe.grid_utilization)
    assert "grid_utilization" in moe.state_dict()


def test_bad_arguments(swarm):
    _, _, dht = swarm
    with pytest.raises(TypeError):
        make_moe(object())
    with pytest.raises(ValueError):
        make_moe(dht, grid_size=(0, 2))
    with pytest.raises(ValueError):
        make_moe(dht, k_best=2, k_min=3)
    with pytest.raises(ValueError):
        make_moe(dht, forward_timeout=0)
    with pytest.raises(TypeError):
        make_moe(dht, no_such_argument=1)
    with pytest.raises(ValueError, match="uid_prefix"):
        make_moe(dht, uid_prefix="")
    moe = make_moe(dht)
    with pytest.raises(ValueError, match="input must be"):
        moe(torch.randn(4, HIDDEN + 1))


@contextlib.contextmanager
def torchscript_swarm(child_servers, path, uids):
    """A child server hosting the TorchScript file ``path`` as ``uids`` (its own weights for each),
    and a client DHT joined to it."""
    server = child_servers(**server_kwargs(expert_cls="torchscript", module_path=str(path),
                                           expert_uids=uids))
    dht = hivemind.DHT(initial_peers=[server.dht_address], listen_on="127.0.0.1:*",
                       client_mode=True)
    try:
        yield dht
    finally:
        dht.shutdown()


def test_experts_of_two_outputs_average_each_output(child_servers, tmp_path):
    """Identical experts of two outputs (no reinit): each averaged output is the module's own, and
    a loss over both outputs gives the input the module's gradient."""
    from test_custom_expert import assert_acts_as_two_heads, save_two_heads
    module, path = save_two_heads(tmp_path / "two_heads.pt")
    uids = ["two.0.0", "two.0.1", "two.1.0", "two.1.1"]
    with torchscript_swarm(child_servers, path, uids) as dht:
        layer = make_moe(dht, uid_prefix="two.", k_best=3)
        assert_acts_as_two_heads(layer, module, torch.randn(5, HIDDEN), grad_rtol=1e-4)


@pytest.mark.parametrize("output_shape", [None, "given"])
def test_experts_of_two_inputs_get_every_input_flattened_alike(child_servers, tmp_path,
                                                               output_shape):
    """Every expert of the grid is the same two-input module (no reinit): the softmax-weighted
    average of identical answers is the module's own answer, and so are its input gradients (the
    gate's weights sum to one, so the gate adds nothing to them). The experts' output is narrower
    than their input: without ``output_shape`` the layer learns its width from their ``info``."""
    from test_custom_expert import CONTEXT, OUT, save_context_gated
    module, path = save_context_gated(tmp_path / "context_gated.pt")
    uids = ["ctx.0.0", "ctx.0.1", "ctx.1.0", "ctx.1.1"]
    with torchscript_swarm(child_servers, path, uids) as dht:
        layer = make_moe(dht, uid_prefix="ctx.", k_best=3,
                         output_shape=None if output_shape is None else (OUT,))
        x, c = torch.randn(2, 3, HIDDEN), torch.randn(2, 3, CONTEXT)  # [batch, seq, ...]
        x_remote, c_remote = x.clone().requires_grad_(True), c.clone().requires_grad_(True)
        x_local, c_local = x.clone().requires_grad_(True), c.clone().requires_grad_(True)
        out_remote, out_local = layer(x_remote, c_remote), module(x_local, c_local)
        assert out_remote.shape == (2, 3, OUT)
        torch.testing.assert_close(out_remote, out_local, rtol=0, atol=1e-5)
        grad = torch.randn_like(out_local)
        out_remote.backward(grad)
        out_local.backward(grad)
        torch.testing.assert_close(x_remote.grad, x_local.grad, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(c_remote.grad, c_local.grad, rtol=1e-4, atol=1e-5)
        assert layer.last_routing()[1].all()

        with pytest.raises(ValueError, match="leading dimensions"):
            layer(x, torch.randn(3, 2, CONTEXT))
        with pytest.raises(TypeError, match="input 1 is a float"):
            layer(x, 1.0)
        with pytest.raises(TypeError, match="keyword"):
            layer(x, context=c)
