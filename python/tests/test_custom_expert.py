"""Your own expert class in Python, hosted by the C++ server as TorchScript.

The served expert must compute what the module computes in this process (forward and input
gradients within 1e-5), train, and be refused with a clear message when the C++ server could not
run it — before anything is overwritten or started.
"""

import functools
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

import hivemind_cpp as hivemind
from hivemind_cpp import expert_class

from conftest import HIDDEN, SEED, server_kwargs


class GatedMLP(nn.Module):
    """A block the zoo does not have: a gated residual MLP with a LayerNorm."""

    def __init__(self, hidden_dim: int):
        super().__init__()
        self.up = nn.Linear(hidden_dim, 2 * hidden_dim)
        self.gate = nn.Linear(hidden_dim, 2 * hidden_dim)
        self.down = nn.Linear(2 * hidden_dim, hidden_dim)
        self.norm = nn.LayerNorm(hidden_dim)

    def forward(self, x):
        return self.norm(x + self.down(torch.sigmoid(self.gate(x)) * torch.tanh(self.up(x))))


def _sample(batch_size, hidden_dim):
    return torch.empty(batch_size, hidden_dim)


@pytest.fixture(scope="module", autouse=True)
def gated_mlp_registered():
    if not expert_class.is_registered("test_gated_mlp"):
        hivemind.register_expert_class("test_gated_mlp", _sample)(GatedMLP)


def _compare(remote, reference, x):
    """Forward and input gradient of a RemoteExpert against an in-process callable."""
    x_remote = x.clone().requires_grad_(True)
    x_local = x.clone().requires_grad_(True)
    out_remote, out_local = remote(x_remote), reference(x_local)
    torch.testing.assert_close(out_remote, out_local, rtol=0, atol=1e-5)
    grad = torch.randn_like(out_local)
    out_remote.backward(grad)
    out_local.backward(grad)
    torch.testing.assert_close(x_remote.grad, x_local.grad, rtol=0, atol=1e-5)


def test_registered_class_is_hosted_and_matches_its_local_rebuild(tmp_path):
    torch.manual_seed(0)
    reference_file = expert_class.export_expert_class("test_gated_mlp", HIDDEN,
                                                      tmp_path / "reference.pt")
    kwargs = server_kwargs(expert_cls="test_gated_mlp", expert_uids=["mlp.0", "mlp.1"])
    with hivemind.Server.create(**kwargs) as server:
        outputs = []
        for uid in ("mlp.0", "mlp.1"):
            remote = hivemind.RemoteExpert(uid, server.endpoint)
            assert tuple(remote.info["forward_schema"][0]["shape"]) == (HIDDEN,)
            # reinit: the weights come from the seed and the uid, not from whichever random
            # module the export built, so an independently exported file rebuilds them.
            local = hivemind._C._LocalExpert("torchscript", HIDDEN, uid, SEED,
                                             module_path=str(reference_file), reinit=True)
            x = torch.randn(5, HIDDEN)
            _compare(remote, local.forward, x)
            outputs.append(remote(x).detach())
        assert not torch.allclose(outputs[0], outputs[1]), "two uids got the same weights"


def test_saved_module_keeps_its_weights_and_matches_eager_pytorch(tmp_path):
    torch.manual_seed(1)
    module = GatedMLP(HIDDEN)
    path = hivemind.save_expert_module(module, torch.randn(3, HIDDEN), tmp_path / "mlp.pt")
    kwargs = server_kwargs(expert_cls="torchscript", module_path=str(path),
                           expert_uids=["mlp.0"])
    with hivemind.Server.create(**kwargs) as server:
        _compare(hivemind.RemoteExpert("mlp.0", server.endpoint), module, torch.randn(7, HIDDEN))


def test_served_expert_trains(tmp_path):
    torch.manual_seed(2)
    kwargs = server_kwargs(expert_cls="test_gated_mlp", expert_uids=["mlp.0"],
                           optim_cls=functools.partial(torch.optim.SGD, lr=0.05))
    x, target = torch.randn(32, HIDDEN), torch.randn(32, HIDDEN)
    with hivemind.Server.create(**kwargs) as server:
        expert = hivemind.RemoteExpert("mlp.0", server.endpoint)
        losses = []
        for _ in range(15):
            loss = ((expert(x.requires_grad_(True)) - target) ** 2).mean()
            loss.backward()  # one server-side SGD step on the expert
            losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0], losses


CONTEXT, OUT = 3, 5


class ContextGated(nn.Module):
    """An expert of two inputs whose output has a width of its own: a projection of x, gated by a
    per-sample context c."""

    def __init__(self):
        super().__init__()
        self.down = nn.Linear(HIDDEN, OUT)
        self.gate = nn.Linear(CONTEXT, OUT)

    def forward(self, x, c):
        return self.down(x) * torch.sigmoid(self.gate(c))


def save_context_gated(path):
    torch.manual_seed(4)
    module = ContextGated()
    sample = (torch.randn(3, HIDDEN), torch.randn(3, CONTEXT))
    return module, hivemind.save_expert_module(module, sample, path)


def test_expert_of_two_inputs_gets_both_and_returns_both_gradients(tmp_path):
    module, path = save_context_gated(tmp_path / "context_gated.pt")
    kwargs = server_kwargs(expert_cls="torchscript", module_path=str(path), expert_uids=["ctx.0"])
    with hivemind.Server.create(**kwargs) as server:
        remote = hivemind.RemoteExpert("ctx.0", server.endpoint)
        schema = [tuple(t["shape"]) for t in remote.info["forward_schema"]]
        assert schema == [(HIDDEN,), (CONTEXT,)]
        x, c = torch.randn(6, HIDDEN), torch.randn(6, CONTEXT)
        x_remote, c_remote = x.clone().requires_grad_(True), c.clone().requires_grad_(True)
        x_local, c_local = x.clone().requires_grad_(True), c.clone().requires_grad_(True)
        out_remote, out_local = remote(x_remote, c_remote), module(x_local, c_local)
        assert out_remote.shape == (6, OUT), "the output's shape is the expert's outputs_schema"
        torch.testing.assert_close(out_remote, out_local, rtol=0, atol=1e-5)
        grad = torch.randn_like(out_local)
        out_remote.backward(grad)
        out_local.backward(grad)
        torch.testing.assert_close(x_remote.grad, x_local.grad, rtol=0, atol=1e-5)
        torch.testing.assert_close(c_remote.grad, c_local.grad, rtol=0, atol=1e-5)

        with pytest.raises(TypeError, match="takes 2 input"):
            remote(x)
        with pytest.raises(TypeError, match="input 1 is a list"):
            remote(x, [1.0, 2.0])
        with pytest.raises(ValueError, match="input 1 has batch size 4"):
            remote(x, torch.randn(4, CONTEXT))


class TwoHeads(nn.Module):
    """An expert of two outputs: a narrow projection and a squashed copy of the input's width."""

    def __init__(self):
        super().__init__()
        self.down = nn.Linear(HIDDEN, OUT)
        self.skip = nn.Linear(HIDDEN, HIDDEN)

    def forward(self, x):
        return self.down(x), torch.tanh(self.skip(x))


def save_two_heads(path):
    torch.manual_seed(5)
    module = TwoHeads()
    return module, hivemind.save_expert_module(module, (torch.randn(3, HIDDEN),), path)


def assert_acts_as_two_heads(remote, module, x, grad_rtol=0.0):
    """``remote(x)`` returns ``module(x)``'s two outputs, and a loss over both gives ``x`` the
    module's gradient."""
    x_remote, x_local = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    out_remote, out_local = remote(x_remote), module(x_local)
    assert isinstance(out_remote, tuple) and len(out_remote) == 2
    for got, want in zip(out_remote, out_local):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    grads = [torch.randn_like(o) for o in out_local]
    torch.autograd.backward(out_remote, grads)
    torch.autograd.backward(out_local, grads)
    torch.testing.assert_close(x_remote.grad, x_local.grad, rtol=grad_rtol, atol=1e-5)


def test_expert_of_two_outputs_returns_both_and_takes_both_gradients(tmp_path):
    module, path = save_two_heads(tmp_path / "two_heads.pt")
    kwargs = server_kwargs(expert_cls="torchscript", module_path=str(path), expert_uids=["two.0"])
    with hivemind.Server.create(**kwargs) as server:
        remote = hivemind.RemoteExpert("two.0", server.endpoint)
        assert [tuple(t["shape"]) for t in remote.info["outputs_schema"]] == [(OUT,), (HIDDEN,)]
        assert_acts_as_two_heads(remote, module, torch.randn(4, HIDDEN))


class SkipFirst(TwoHeads):
    """TwoHeads with its outputs the other way round: the input's width first, as a switch layer's
    residual needs."""

    def forward(self, x):
        narrow, wide = super().forward(x)
        return wide, narrow


def test_switch_layer_averages_both_outputs_and_adds_the_input_to_the_first(tmp_path):
    torch.manual_seed(9)
    module = SkipFirst()
    path = hivemind.save_expert_module(module, (torch.randn(3, HIDDEN),), tmp_path / "skip.pt")
    kwargs = server_kwargs(expert_cls="torchscript", module_path=str(path), expert_uids=["sw.0"])
    with hivemind.Server.create(**kwargs) as server:
        dht = hivemind.DHT(initial_peers=[server.dht.endpoint], listen_on="127.0.0.1:*",
                           client_mode=True)
        try:
            # One expert in a grid of one: its probability is 1, so the layer is exactly
            # (module(x)[0] + x, module(x)[1]).
            switch = hivemind.RemoteSwitchMixtureOfExperts(in_features=HIDDEN, grid_size=(1,),
                                                           dht=dht, uid_prefix="sw.").eval()
            x = torch.randn(4, HIDDEN)
            x_remote, x_local = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
            outputs, loss = switch(x_remote)
            assert isinstance(outputs, tuple) and len(outputs) == 2 and loss.dim() == 0
            wide, narrow = module(x_local)
            for got, want in zip(outputs, (wide + x_local, narrow)):
                torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
            grads = [torch.randn_like(o) for o in outputs]
            torch.autograd.backward(outputs, grads)
            torch.autograd.backward((wide + x_local, narrow), grads)
            torch.testing.assert_close(x_remote.grad, x_local.grad, rtol=0, atol=1e-5)
        finally:
            dht.shutdown()


def test_custom_module_path_registers_the_files_classes(tmp_path):
    source = tmp_path / "my_experts.py"
    source.write_text(textwrap.dedent("""
        import torch
        import hivemind_cpp

        @hivemind_cpp.register_expert_class("test_file_scaled", lambda b, h: torch.empty(b, h))
        class Scaled(torch.nn.Module):
            def __init__(self, hidden_dim):
                super().__init__()
                self.proj = torch.nn.Linear(hidden_dim, hidden_dim)

            def forward(self, x):
                return 2.0 * self.proj(x)
    """))
    kwargs = server_kwargs(expert_cls="test_file_scaled", expert_uids=["s.0"],
                           custom_module_path=str(source))
    with hivemind.Server.create(**kwargs) as server:
        out = hivemind.RemoteExpert("s.0", server.endpoint)(torch.randn(2, HIDDEN))
    assert out.shape == (2, HIDDEN)


def test_export_expert_command_writes_a_file_the_server_hosts(tmp_path):
    source = tmp_path / "cli_experts.py"
    source.write_text(textwrap.dedent("""
        import torch
        import hivemind_cpp

        @hivemind_cpp.register_expert_class("test_cli_mlp", lambda b, h: torch.empty(b, h))
        class Mlp(torch.nn.Module):
            def __init__(self, hidden_dim):
                super().__init__()
                self.layer = torch.nn.Linear(hidden_dim, hidden_dim)

            def forward(self, x):
                return torch.relu(self.layer(x))
    """))
    output = tmp_path / "cli_mlp.pt"
    command = [sys.executable, "-m", "hivemind_cpp.export_expert", str(source), "test_cli_mlp",
               "--hidden_dim", str(HIDDEN), "-o", str(output)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    kwargs = server_kwargs(expert_cls="torchscript", module_path=str(output), reinit=True,
                           expert_uids=["m.0"])
    with hivemind.Server.create(**kwargs) as server:
        out = hivemind.RemoteExpert("m.0", server.endpoint)(torch.randn(4, HIDDEN))
    assert out.shape == (4, HIDDEN) and bool((out >= 0).all())

    unknown = subprocess.run(command[:4] + ["no_such_class"] + command[5:], capture_output=True,
                             text=True, timeout=120)
    assert unknown.returncode == 2
    assert "no_such_class" in unknown.stderr and "not registered" in unknown.stderr


def test_registering_a_taken_name_is_refused():
    with pytest.raises(ValueError, match="built-in"):
        hivemind.register_expert_class("ffn", _sample)
    with pytest.raises(ValueError, match="already registered"):
        hivemind.register_expert_class("test_gated_mlp", _sample)
    with pytest.raises(TypeError, match="nn.Module"):
        hivemind.register_expert_class("test_not_a_module", _sample)(int)


class ReturnsAString(nn.Module):
    def forward(self, x):
        return "not a tensor"


class NeitherScriptableNorTraceable(nn.Module):
    def forward(self, x):
        if torch.jit.is_tracing():
            raise RuntimeError("this module refuses to be traced")
        apply = lambda t: t * 2  # noqa: E731  (TorchScript has no lambdas)
        return apply(x)


def test_a_module_the_server_cannot_run_is_refused_and_the_old_file_kept(tmp_path):
    path = tmp_path / "expert.pt"
    hivemind.save_expert_module(GatedMLP(HIDDEN), torch.randn(2, HIDDEN), path)
    before = path.read_bytes()

    with pytest.raises(Exception, match="expert.*(tensor|Tensor)"):
        hivemind.save_expert_module(ReturnsAString(), torch.randn(2, HIDDEN), path)
    with pytest.raises(ValueError, match="neither scripted nor traced"):
        hivemind.save_expert_module(NeitherScriptableNorTraceable(), torch.randn(2, HIDDEN), path)
    with pytest.raises(ValueError, match="float32"):
        hivemind.save_expert_module(GatedMLP(HIDDEN), torch.randn(2, HIDDEN).double(), path)
    with pytest.raises(ValueError, match="batch"):
        hivemind.save_expert_module(GatedMLP(HIDDEN), torch.tensor(1.0), path)

    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["expert.pt"], "a temporary file was left"


def test_server_options_for_torchscript_are_checked(tmp_path):
    missing = str(tmp_path / "x.pt")
    with pytest.raises(ValueError, match="sample_input_shape"):
        hivemind.Server.create(**server_kwargs(expert_cls="torchscript", module_path=missing,
                                               expert_uids=["x.0"], sample_input_shape=[0]))
    with pytest.raises(Exception, match="module_path"):
        hivemind.Server.create(**server_kwargs(expert_cls="torchscript", expert_uids=["x.0"]))
    with pytest.raises(Exception, match="x.pt"):  # the C++ loader names the missing file
        hivemind.Server.create(**server_kwargs(expert_cls="torchscript", module_path=missing,
                                               expert_uids=["x.0"]))


VOCAB, TOKENS = 11, 4


class TokenMixer(nn.Module):
    """An expert of token ids, a hidden state and a mask: the ids' embeddings summed into the
    kept samples' hidden state, plus the ids themselves back (an integer output)."""

    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, HIDDEN)
        self.proj = nn.Linear(HIDDEN, HIDDEN)

    def forward(self, ids, x, keep):
        y = self.proj(x) * keep.unsqueeze(1).to(x.dtype) + self.embedding(ids).sum(1)
        return y, ids + 1


def token_sample(batch):
    return (torch.randint(0, VOCAB, (batch, TOKENS)), torch.randn(batch, HIDDEN),
            torch.ones(batch, dtype=torch.bool))


def test_expert_of_ids_and_a_mask_is_served_and_trained_without_their_gradients(tmp_path):
    torch.manual_seed(6)
    module = TokenMixer()
    path = hivemind.save_expert_module(module, token_sample(3), tmp_path / "tokens.pt")
    kwargs = server_kwargs(expert_cls="torchscript", module_path=str(path),
                           expert_uids=["tok.0"],
                           optim_cls=functools.partial(torch.optim.SGD, lr=0.1))
    with hivemind.Server.create(**kwargs) as server:
        expert = hivemind.RemoteExpert("tok.0", server.endpoint)
        schema = expert.info["forward_schema"]
        assert [s["dtype"] for s in schema] == ["int64", "float32", "bool"], schema
        assert [s["dtype"] for s in expert.info["outputs_schema"]] == ["float32", "int64"]

        ids, x, keep = token_sample(5)
        keep[1] = False
        x_remote = x.clone().requires_grad_(True)
        x_local = x.clone().requires_grad_(True)
        y_remote, ids_back = expert(ids, x_remote, keep)
        y_local, _ = module(ids, x_local, keep)
        torch.testing.assert_close(y_remote, y_local, rtol=0, atol=1e-5)
        assert ids_back.dtype == torch.int64 and torch.equal(ids_back, ids + 1)
        assert not ids_back.requires_grad
        grad = torch.randn_like(y_local)
        y_remote.backward(grad)
        y_local.backward(grad)
        torch.testing.assert_close(x_remote.grad, x_local.grad, rtol=0, atol=1e-5)
        assert x_remote.grad[1].abs().sum() == 0, "a masked sample got a gradient"
        # Ids of the wrong dtype: the server's check, naming the tensor, the call named once.
        with pytest.raises(hivemind.HivemindError) as refused:
            expert(ids.to(torch.int32), x, keep)
        message = str(refused.value)
        assert "got int32[5, 4], expected int64[batch, 4]" in message, message
        assert message.count("forward of expert 'tok.0'") == 1, message

        # Training moves the embeddings: a regression on a fixed batch gets better.
        target = torch.randn(5, HIDDEN)
        losses = []
        for _ in range(10):
            y, _ = expert(ids, x, keep)
            loss = ((y - target) ** 2).mean()
            loss.backward()
            losses.append(loss.item())
        assert losses[-1] < 0.9 * losses[0], losses


def test_sample_input_dtype_describes_a_file_without_its_description(tmp_path):
    torch.manual_seed(7)
    bare = tmp_path / "bare.pt"
    torch.jit.save(torch.jit.script(TokenMixer()), str(bare))  # no hivemind_expert.json
    kwargs = server_kwargs(expert_cls="torchscript", module_path=str(bare), expert_uids=["tok.0"])
    with hivemind.Server.create(**kwargs, sample_input_shape=[(TOKENS,), (HIDDEN,), ()],
                                sample_input_dtype=[torch.int64, torch.float32, torch.bool]) \
            as server:
        info = hivemind.RemoteExpert("tok.0", server.endpoint).info
        assert [s["dtype"] for s in info["forward_schema"]] == ["int64", "float32", "bool"]
    with pytest.raises(ValueError, match="sample_input_dtype"):
        hivemind.Server.create(**kwargs, sample_input_shape=[(TOKENS,), (HIDDEN,)],
                               sample_input_dtype=[torch.int64])
    with pytest.raises(ValueError, match="sample_input_dtype"):
        hivemind.Server.create(**kwargs, sample_input_shape=(HIDDEN,),
                               sample_input_dtype=torch.float64)
    with pytest.raises(ValueError, match="sample_input_dtype is given without"):
        hivemind.Server.create(**kwargs, sample_input_dtype=torch.int64)
