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


@needs_gpu
def test_expert_of_ids_and_a_mask_on_the_gpu(tmp_path):
    """Raw int64 and bool tensors decoded on the device beside floating ones, bfloat16 on the
    trainer's side: the answers come back on the device, in the trainer's precision."""
    from test_custom_expert import TokenMixer, token_sample
    torch.manual_seed(8)
    module = TokenMixer()
    path = hivemind.save_expert_module(module, token_sample(2), tmp_path / "tokens.pt")
    kwargs = server_kwargs(expert_cls="torchscript", module_path=str(path),
                           expert_uids=["tok.0"], device="cuda")
    with hivemind.Server.create(**kwargs) as s:
        expert = hivemind.RemoteExpert("tok.0", s.endpoint)
        ids, x, keep = (t.cuda() for t in token_sample(6))
        x = x.to(torch.bfloat16).requires_grad_(True)
        y, ids_back = expert(ids, x, keep)
        assert y.device.type == "cuda" and y.dtype == torch.bfloat16
        assert ids_back.device.type == "cuda" and torch.equal(ids_back, ids + 1)
        reference, _ = module.cuda()(ids, x.detach().float(), keep)
        torch.testing.assert_close(y.float(), reference, atol=5e-2, rtol=2e-2)
        y.float().sum().backward()
        assert x.grad is not None and x.grad.dtype == torch.bfloat16
        assert x.grad.device.type == "cuda"
