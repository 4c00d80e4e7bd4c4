"""RemoteExpert: results equal the local expert's, schema lookup, and every failure's class."""

import functools

import pytest
import torch

import hivemind_cpp as hivemind
from conftest import HIDDEN, local_expert, server_kwargs


def test_forward_and_backward_equal_the_local_expert(server):
    torch.manual_seed(0)
    expert = hivemind.RemoteExpert("ffn.1", server.endpoint)
    reference = local_expert("ffn.1")
    x = torch.randn(8, HIDDEN, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    grad = torch.randn(8, HIDDEN)

    out = expert(x)
    out.backward(grad)
    out_ref = reference.forward(x_ref)
    out_ref.backward(grad)

    assert out.shape == (8, HIDDEN)
    torch.testing.assert_close(out, out_ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(x.grad, x_ref.grad, atol=1e-5, rtol=0)


def test_endpoint_in_hivemind_form_and_info(server):
    host_port = server.endpoint.split("://", 1)[1]
    expert = hivemind.RemoteExpert("ffn.0", "tcp://" + host_port)
    info = expert.info
    assert info["uid"] == "ffn.0"
    assert info["expert_cls"] == "ffn"
    assert info["forward_schema"][0]["shape"] == (HIDDEN,)
    assert info["forward_schema"][0]["dtype"] == "float32"
    assert info["max_batch_size"] == 256
    # hivemind's bare host:port form dials TCP, which is what Server.create listens on by default.
    bare = hivemind.RemoteExpert("ffn.0", host_port)
    assert bare.endpoint == "tcp://" + host_port
    assert bare(torch.randn(2, HIDDEN)).shape == (2, HIDDEN)


def test_server_applies_the_optimizer_step_on_backward():
    with hivemind.Server.create(**server_kwargs(
            expert_uids=["ffn.0"], optim_cls=functools.partial(torch.optim.SGD, lr=0.5))) as s:
        expert = hivemind.RemoteExpert("ffn.0", s.endpoint)
        x = torch.randn(4, HIDDEN)
        before = expert(x)
        before.backward(torch.ones_like(before))
        after = expert(x)
        assert not torch.allclose(before, after), "an SGD step with lr=0.5 must change the output"


def test_bad_arguments_are_caught_before_sending(server):
    with pytest.raises(TypeError):
        hivemind.RemoteExpert(123, server.endpoint)
    with pytest.raises(ValueError, match="not host:port"):
        hivemind.RemoteExpert("ffn.0", "no-port-here")
    expert = hivemind.RemoteExpert("ffn.0", server.endpoint)
    with pytest.raises(TypeError, match="takes 1 input"):
        expert(torch.randn(2, HIDDEN), torch.randn(2, HIDDEN))
    with pytest.raises(TypeError, match="keyword"):
        expert(x=torch.randn(2, HIDDEN))
    with pytest.raises(TypeError):
        expert([1.0, 2.0])
    with pytest.raises(ValueError):
        expert(torch.randn(0, HIDDEN))
    with pytest.raises(ValueError):
        hivemind.RemoteExpert("ffn.0", server.endpoint, forward_timeout=-1)


def test_wrong_shape_is_refused_by_the_server_as_value_error(server):
    expert = hivemind.RemoteExpert("ffn.0", server.endpoint)
    with pytest.raises(ValueError, match="expected"):
        expert(torch.randn(2, HIDDEN + 1))


def test_failure_message_names_the_expert_not_moe_rules(server):
    expert = hivemind.RemoteExpert("ffn.99", server.endpoint)
    with pytest.raises(hivemind.HivemindError) as caught:
        expert(torch.randn(2, HIDDEN))
    assert "k_min" not in str(caught.value) and "ffn.99" in str(caught.value)


def test_unknown_expert_is_reported_with_its_uid(server):
    expert = hivemind.RemoteExpert("ffn.99", server.endpoint)
    with pytest.raises(hivemind.HivemindError, match="ffn.99"):
        expert(torch.randn(2, HIDDEN))


def test_unreachable_server_is_a_connection_error():
    with hivemind.Server.create(**server_kwargs(expert_uids=["ffn.0"])) as s:
        endpoint = s.endpoint
    expert = hivemind.RemoteExpert("ffn.0", endpoint, forward_timeout=10)
    with pytest.raises(ConnectionError) as caught:
        expert(torch.randn(2, HIDDEN))
    assert isinstance(caught.value, hivemind.HivemindError)


def test_late_answer_is_a_timeout_error():
    # The request waits for a batch of 64 that never fills: the forward times out.
    with hivemind.Server.create(**server_kwargs(expert_uids=["ffn.0"], min_batch_size=64,
                                                batch_timeout=3600, grace_period=0.5)) as s:
        expert = hivemind.RemoteExpert("ffn.0", s.endpoint, forward_timeout=0.3)
        with pytest.raises(TimeoutError) as caught:
            expert(torch.randn(2, HIDDEN))
        assert isinstance(caught.value, hivemind.HivemindTimeoutError)
        assert "ffn.0" in str(caught.value)


def test_no_grad_forward_builds_no_graph(server):
    expert = hivemind.RemoteExpert("ffn.0", server.endpoint)
    x = torch.randn(3, HIDDEN, requires_grad=True)
    with torch.no_grad():
        out = expert(x)
    assert out.grad_fn is None
