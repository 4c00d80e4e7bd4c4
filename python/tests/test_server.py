"""Server.create: hivemind's keywords, their validation, and a shutdown that leaves nothing behind."""

import functools
import inspect
import os

import pytest
import torch

import hivemind_cpp as hivemind
from conftest import HIDDEN, local_expert, server_kwargs


# LibTorch's own pools start threads lazily and keep them (how many depends on timing): not ours.
LIBTORCH_POOLS = {"PTThreadPool", "async"}


def os_threads() -> int:
    """Threads of this process, LibTorch's pools left out."""
    count = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as comm:
                count += comm.read().strip() not in LIBTORCH_POOLS
        except FileNotFoundError:  # exited meanwhile
            pass
    return count


def serve_once():
    with hivemind.Server.create(**server_kwargs(expert_uids=["ffn.0"])) as s:
        out = hivemind.RemoteExpert("ffn.0", s.endpoint)(torch.randn(2, HIDDEN))
        assert out.shape == (2, HIDDEN)
        assert s.is_alive
    assert not s.is_alive


def test_context_manager_shutdown_joins_every_thread():
    serve_once()  # warms LibTorch's own thread pools and the trainer's transport thread
    before = os_threads()
    serve_once()
    assert os_threads() == before


def test_shutdown_is_idempotent_and_the_endpoint_then_refuses(server):
    endpoint = server.endpoint
    server.shutdown()
    server.shutdown()
    with pytest.raises(ConnectionError):
        hivemind.RemoteExpert("ffn.0", endpoint, forward_timeout=10)(torch.randn(1, HIDDEN))
    with pytest.raises(RuntimeError, match="shut down"):
        server.stats()


def test_expert_pattern_num_experts_and_stats():
    with hivemind.Server.create(**server_kwargs(expert_pattern="g.[0:4].[0:4]", num_experts=5,
                                                seed=7)) as s:
        uids = s.expert_uids
        assert len(uids) == 5 and all(u.startswith("g.") for u in uids)
        hivemind.RemoteExpert(uids[0], s.endpoint)(torch.randn(3, HIDDEN))
        stats = {row["uid"]: row for row in s.stats()}
        assert stats[uids[0]]["forward_samples"] == 3
        assert "hivemind" in s.metrics_text()


def test_experts_are_declared_in_the_dht(server):
    found = server.dht.get_experts(["ffn.0", "ffn.1", "ffn.2"])
    assert [e.endpoint if e else None for e in found] == [server.endpoint] * 2 + [None]


def test_start_false_then_run_in_background():
    s = hivemind.Server.create(**server_kwargs(expert_uids=["ffn.0"], start=False))
    try:
        s.run_in_background()
        assert hivemind.RemoteExpert("ffn.0", s.endpoint)(torch.randn(1, HIDDEN)).shape == (1, HIDDEN)
    finally:
        s.shutdown()


@pytest.mark.parametrize("optim_cls", [torch.optim.SGD, functools.partial(torch.optim.SGD, lr=0.1,
                                       momentum=0.9), torch.optim.Adam,
                                       functools.partial(torch.optim.AdamW, lr=1e-4), None])
def test_supported_optimizers(optim_cls):
    kwargs = server_kwargs(expert_uids=["ffn.0"], optim_cls=optim_cls)
    sgd_lr = inspect.signature(torch.optim.SGD).parameters["lr"].default
    if optim_cls is torch.optim.SGD and not isinstance(sgd_lr, (int, float)):
        with pytest.raises(ValueError, match="lr"):  # PyTorch 1.x: SGD has no default lr
            hivemind.Server.create(**kwargs)
        return
    with hivemind.Server.create(**kwargs) as s:
        expert = hivemind.RemoteExpert("ffn.0", s.endpoint)
        out = expert(torch.randn(2, HIDDEN, requires_grad=True))
        out.sum().backward()


@pytest.mark.parametrize("optim", [torch.optim.Adam, torch.optim.AdamW])
def test_adams_betas_and_eps_reach_the_servers_optimizer(optim):
    # Two steps (betas only matter from the second) with hyperparameters far from the defaults:
    # the served expert's weights follow torch.optim's own step on an identical local expert.
    hyper = dict(lr=0.05, betas=(0.5, 0.8), eps=1e-2, weight_decay=0.1)
    kwargs = server_kwargs(expert_uids=["ffn.0"], optim_cls=functools.partial(optim, **hyper))
    local = local_expert("ffn.0")
    local_optimizer = optim(local.parameters(), **hyper)
    torch.manual_seed(5)
    with hivemind.Server.create(**kwargs) as s:
        expert = hivemind.RemoteExpert("ffn.0", s.endpoint)
        for _ in range(2):
            x, grad = torch.randn(4, HIDDEN), torch.randn(4, HIDDEN)
            expert(x.clone().requires_grad_(True)).backward(grad)
            local_optimizer.zero_grad()
            local.forward(x.clone().requires_grad_(True)).backward(grad)
            local_optimizer.step()
        probe = torch.randn(3, HIDDEN)
        with torch.no_grad():
            torch.testing.assert_close(expert(probe), local.forward(probe), rtol=1e-4, atol=1e-5)
            default = local_expert("ffn.0")
            assert not torch.allclose(expert(probe), default.forward(probe), atol=1e-3), \
                "two steps with lr=0.05 must move the weights"


def test_bad_arguments_name_what_is_wrong():
    with pytest.raises(TypeError):
        hivemind.Server.create(**server_kwargs(expert_uids=["ffn.0"], no_such_option=1))
    with pytest.raises(TypeError):
        hivemind.Server.create(expert_uids=["ffn.0"])  # start is required, as in hivemind
    with pytest.raises(ValueError, match="RMSprop"):
        hivemind.Server.create(**server_kwargs(expert_uids=["ffn.0"],
                                               optim_cls=torch.optim.RMSprop))
    with pytest.raises(ValueError, match="beta1"):
        hivemind.Server.create(**server_kwargs(
            expert_uids=["ffn.0"], optim_cls=functools.partial(torch.optim.Adam, betas=(1.5, 0.9))))
    with pytest.raises(ValueError, match="eps"):
        hivemind.Server.create(**server_kwargs(
            expert_uids=["ffn.0"], optim_cls=functools.partial(torch.optim.AdamW, eps=0.0)))
    with pytest.raises(ValueError, match="betas as two numbers"):
        hivemind.Server.create(**server_kwargs(
            expert_uids=["ffn.0"], optim_cls=functools.partial(torch.optim.Adam, betas=0.9)))
    with pytest.raises(ValueError, match="amsgrad"):
        hivemind.Server.create(**server_kwargs(
            expert_uids=["ffn.0"], optim_cls=functools.partial(torch.optim.Adam, amsgrad=True)))
    with pytest.raises(ValueError, match="max_batch_size"):
        hivemind.Server.create(**server_kwargs(expert_uids=["ffn.0"], min_batch_size=64,
                                               max_batch_size=8))
    with pytest.raises(ValueError, match="expert_cls|unknown"):
        hivemind.Server.create(**server_kwargs(expert_uids=["ffn.0"], expert_cls="nonexistent"))
    with pytest.raises(ValueError, match="scheduler"):
        hivemind.Server.create(**server_kwargs(expert_uids=["ffn.0"], scheduler="cosine"))
    with pytest.raises(ValueError, match="num_training_steps"):
        hivemind.Server.create(**server_kwargs(expert_uids=["ffn.0"], scheduler="linear"))
