"""CUDA tensors through the Python layers: inputs stay on the device, gradients come back there."""

import pytest
import torch

import hivemind_cpp as hivemind
from conftest import HIDDEN, local_expert, server_kwargs

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(),
                               reason="no CUDA device: torch.cuda.is_available() is False")


@needs_gpu
def test_cuda_input_gets_cuda_output_and_gradient():
    with hivemind.Server.create(**server_kwargs(expert_uids=["ffn.0"], device="cuda")) as s:
        expert = hivemind.RemoteExpert("ffn.0", s.endpoint)
        x = torch.randn(8, HIDDEN, device="cuda", requires_grad=True)
        out = expert(x)
        assert out.device.type == "cuda"
        out.sum().backward()
        assert x.grad is not None and x.grad.device.type == "cuda"
        reference = local_expert("ffn.0")
        x_ref = x.detach().cpu().requires_grad_(True)
        reference.forward(x_ref).sum().backward()
        torch.testing.assert_close(out.detach().cpu(), reference.forward(x_ref.detach()),
                                   atol=1e-4, rtol=0)
        torch.testing.assert_close(x.grad.cpu(), x_ref.grad, atol=1e-4, rtol=0)


@needs_gpu
def test_moe_on_cuda_inputs():
    with hivemind.Server.create(**server_kwargs(expert_pattern="e.[0:2].[0:2]")) as s:
        dht = hivemind.DHT(initial_peers=[s.dht.endpoint], listen_on="127.0.0.1:*",
                           client_mode=True)
        moe = hivemind.RemoteMixtureOfExperts(in_features=HIDDEN, grid_size=(2, 2), dht=dht,
                                              k_best=2, uid_prefix="e.").cuda()
        x = torch.randn(4, HIDDEN, device="cuda", requires_grad=True)
        out = moe(x)
        assert out.device.type == "cuda"
        out.sum().backward()
        assert x.grad.device.type == "cuda" and moe.proj.weight.grad is not None
        dht.shutdown()
