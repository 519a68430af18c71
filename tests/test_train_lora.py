"""The fused LoRA dropout computes what peft's dropout -> lora_A -> lora_B computes, for the same mask."""

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModel

from synthembed.testing.tiny import tiny_decoder
from synthembed.train.dropout import Dropout, draw_keep, replace_dropout
from synthembed.train.lora import DropoutLinear, LoraA, fuse_lora_dropout


def test_dropout_linear_matches_autograd_reference():
    torch.manual_seed(0)
    x = torch.randn(3, 5, 16, requires_grad=True)
    w = torch.randn(4, 16, requires_grad=True)
    keep = torch.rand(3, 5, 16) > 0.3
    y = DropoutLinear.apply(x, w, keep, 1 / 0.7, torch.float32)
    g = torch.randn_like(y)
    gx, gw = torch.autograd.grad((y * g).sum(), (x, w))
    xr, wr = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    ref = (xr * keep.float() / 0.7) @ wr.T  # dropout by hand, then the adapter's matmul
    rx, rw = torch.autograd.grad((ref * g).sum(), (xr, wr))
    torch.testing.assert_close(y, ref)
    torch.testing.assert_close(gx, rx)
    torch.testing.assert_close(gw, rw)


def test_keep_mask_rate_and_replay():
    x = torch.zeros(200, 500)
    torch.manual_seed(1)
    keep = draw_keep(x, 0.1)
    assert keep.dtype == torch.bool and abs(keep.float().mean().item() - 0.9) < 0.005
    torch.manual_seed(1)
    assert torch.equal(draw_keep(x, 0.1), keep)  # from the global RNG: checkpointing and the cache replay it


class FixedMask(torch.nn.Module):
    """peft's dropout with a given mask: the reference path (cast to fp32, dropout, lora_A, lora_B)."""

    def __init__(self, seed: int, p: float):
        super().__init__()
        self.seed, self.p = seed, p

    def forward(self, x):
        torch.manual_seed(self.seed)
        return x * draw_keep(x, self.p) / (1 - self.p)


def lora_model(path, dtype):
    torch.manual_seed(0)
    model = AutoModel.from_pretrained(path, dtype=dtype)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.25, target_modules="all-linear"),
                           autocast_adapter_dtype=True)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)  # B starts at 0, which would hide the adapter's path
    return model.train()


def run_with_masks(model, ids, autocast: bool):
    """Output and adapter gradients, each layer's mask drawn from its own seed (the same on every model)."""
    layers = [m for m in model.modules() if hasattr(m, "lora_A")]
    for i, layer in enumerate(layers):
        if isinstance(layer.lora_A["default"], LoraA):
            layer.lora_A["default"].forward = _seeded(layer.lora_A["default"], 100 + i)
        else:
            layer.lora_dropout["default"] = FixedMask(100 + i, 0.25)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = model(input_ids=ids).last_hidden_state.float()
    # a fixed random projection: the squared norm would be nearly constant behind the final RMSNorm
    (out * torch.randn(out.shape, generator=torch.Generator().manual_seed(7))).sum().backward()
    return out.detach(), {n: p.grad.float() for n, p in model.named_parameters() if p.requires_grad}


def test_fused_layer_equals_peft_path(tmp_path):
    """Same weights and masks: in fp32 the fused layer gives peft's output and adapter gradients; under a bf16
    backbone with bf16 autocast (the trainer's LoRA setting) it is as close to that fp32 result as peft is."""
    path = tiny_decoder(tmp_path / "dec")
    ids = torch.randint(10, 90, (2, 12))
    reference = run_with_masks(lora_model(path, torch.float32), ids, autocast=False)
    fused32 = lora_model(path, torch.float32)
    assert fuse_lora_dropout(fused32) > 0
    out, grads = run_with_masks(fused32, ids, autocast=False)
    torch.testing.assert_close(out, reference[0], atol=1e-5, rtol=1e-4)
    assert grads.keys() == reference[1].keys()
    for name in grads:
        torch.testing.assert_close(grads[name], reference[1][name], atol=1e-4, rtol=1e-4)
    assert sum(g.abs().sum() for g in grads.values()) > 0

    fused16 = lora_model(path, torch.bfloat16)
    fuse_lora_dropout(fused16)
    errors = {}
    for name, model in (("peft", lora_model(path, torch.bfloat16)), ("fused", fused16)):
        out, grads = run_with_masks(model, ids, autocast=True)
        flat, ref = torch.cat([g.flatten() for g in grads.values()]), torch.cat([g.flatten() for g in reference[1].values()])
        errors[name] = ((out - reference[0]).abs().max(), (flat - ref).norm() / ref.norm())
    assert errors["fused"][0] <= 2 * errors["peft"][0] + 1e-3
    assert errors["fused"][1] <= 2 * errors["peft"][1] + 1e-3


def _seeded(module: LoraA, seed: int):
    forward = LoraA.forward.__get__(module)

    def run(x):
        torch.manual_seed(seed)
        return forward(x)

    return run


def test_eval_mode_is_plain_lora(tmp_path):
    path = tiny_decoder(tmp_path / "dec")
    peft_model, fused = lora_model(path, torch.float32).eval(), lora_model(path, torch.float32).eval()
    fuse_lora_dropout(fused)
    ids = torch.randint(10, 90, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(fused(input_ids=ids).last_hidden_state, peft_model(input_ids=ids).last_hidden_state)
    assert fused.state_dict().keys() == peft_model.state_dict().keys()  # adapters save and merge as before


def test_dropout_module_matches_torch_math_for_the_same_mask():
    x = torch.randn(4, 7, 16, requires_grad=True)
    torch.manual_seed(3)
    y = Dropout(0.3).train()(x)
    torch.manual_seed(3)
    keep = draw_keep(x, 0.3)  # the mask the module drew
    g = torch.randn_like(y)
    (gx,) = torch.autograd.grad((y * g).sum(), x)
    torch.testing.assert_close(y, x.detach() * keep / 0.7)
    torch.testing.assert_close(gx, g * keep / 0.7)
    assert Dropout(0.3).eval()(x) is x


def test_replace_dropout_swaps_an_encoders_dropout(tmp_path):
    from synthembed.testing.tiny import tiny_encoder

    model = AutoModel.from_pretrained(tiny_encoder(tmp_path / "enc"))
    for m in model.modules():  # BERT's usual 0.1 everywhere
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.1
    ids = torch.randint(5, 90, (2, 9))
    before = model.eval()(input_ids=ids).last_hidden_state
    assert replace_dropout(model) > 0
    assert not any(type(m) is torch.nn.Dropout and m.p > 0 for m in model.modules())
    torch.testing.assert_close(model.eval()(input_ids=ids).last_hidden_state, before)  # eval: no dropout
    model.train()
    torch.manual_seed(0)
    a = model(input_ids=ids).last_hidden_state
    torch.manual_seed(0)
    assert torch.equal(model(input_ids=ids).last_hidden_state, a)  # replayable from the RNG state
    assert not torch.allclose(a, before)
