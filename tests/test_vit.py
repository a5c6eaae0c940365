"""Vision transformers: model families, Grad-CAM on the token grid and attention rollout, checked
against hand computations on 2-block ViTs (timm and torchvision)."""

import pytest
import torch
import torch.nn.functional as F
from captum.attr import GuidedGradCam as CaptumGuidedGradCam

from xaibench.methods.attention_rollout import AttentionRollout, rollout
from xaibench.methods.gradcam import GradCAM
from xaibench.methods.guided_gradcam import GuidedGradCAM
from xaibench.methods.layers import default_cam_layer, model_family, to_grid, token_grid
from xaibench.models.classifier import Classifier
from xaibench.models.families import arch_family
from xaibench.params import build
from xaibench.registry import METHODS

from .conftest import tiny_joint, tiny_net, tiny_resnet, tiny_vit

pytestmark = pytest.mark.usefixtures("one_thread")


def hand_vit(seed: int = 0):
    """The brief's ViT: timm VisionTransformer(img_size=32, patch_size=8, embed_dim=16, depth=2,
    num_heads=2, num_classes=2) with random weights, in the pixel-space wrapper."""
    return tiny_vit(seed=seed, img_size=32, patch_size=8)


def x32(n: int = 3, seed: int = 5) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def block_inputs(model, blocks):
    """The token input [B, N, 16] of each block, recorded by pre-hooks (removed afterwards)."""
    seen = []
    handles = [b.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach())) for b in blocks]
    try:
        with torch.no_grad():
            model(x32())
    finally:
        for h in handles:
            h.remove()
    return seen


def timm_attention_by_hand(model) -> list[torch.Tensor]:
    """softmax(q k^T / sqrt(d)) per head from each block's qkv weights, [B, 2, N, N]."""
    out = []
    for block, tokens in zip(model.net.blocks, block_inputs(model, model.net.blocks)):
        n = tokens.shape[1]  # 17: the class token and 4 x 4 patches
        h = F.layer_norm(tokens, (16,), block.norm1.weight, block.norm1.bias, block.norm1.eps)
        qkv = h @ block.attn.qkv.weight.T + block.attn.qkv.bias  # [B, N, 48]: q | k | v
        q = qkv[..., :16].reshape(-1, n, 2, 8).transpose(1, 2)  # [B, heads, N, 8]
        k = qkv[..., 16:32].reshape(-1, n, 2, 8).transpose(1, 2)
        out.append(torch.softmax(q @ k.transpose(-1, -2) / 8 ** 0.5, dim=-1))
    return out


def rollout_by_hand(attentions, fuse, prefix=1):
    """Loops over batch and blocks: Â = (fuse(A) + I) / rowsum, R = Â_2 Â_1; the class row over
    the patches (the ``prefix`` tokens dropped)."""
    rows = []
    n = attentions[0].shape[-1]
    for b in range(attentions[0].shape[0]):
        r = torch.eye(n, dtype=torch.float64)
        for a in attentions:
            a = fuse(a[b].double()) + torch.eye(n, dtype=torch.float64)
            a = a / a.sum(1, keepdim=True)
            r = a @ r
        rows.append(r[0, prefix:].reshape(4, 4))
    return torch.stack(rows)


@pytest.mark.parametrize("fusion,fuse", [("mean", lambda a: a.mean(0)), ("max", lambda a: a.max(0).values),
                                         ("min", lambda a: a.min(0).values)])
def test_attention_rollout_equals_hand_computation(fusion, fuse):
    model = hand_vit()
    assert all(block.attn.fused_attn for block in model.net.blocks)  # timm's default here: fused
    attentions = timm_attention_by_hand(model)
    grid = rollout_by_hand(attentions, fuse)
    if fusion == "mean":  # the paper's form: 0.5 A + 0.5 I, rows already sum to one
        a1, a2 = (0.5 * a.double().mean(1) + 0.5 * torch.eye(17, dtype=torch.float64) for a in attentions)
        torch.testing.assert_close((a2 @ a1)[:, 0, 1:].reshape(-1, 4, 4), grid)
    expected = F.interpolate(grid[:, None].float(), size=(32, 32), mode="bilinear", align_corners=False)[:, 0]
    ours = AttentionRollout(head_fusion=fusion).attribute(model, x32(), torch.tensor([0, 1, 0]))
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-6)
    assert all(block.attn.fused_attn for block in model.net.blocks), "fused attention not restored"
    assert grid.std() > 0.01  # far from uniform: the check has teeth


def test_attention_rollout_grid_is_the_class_row_before_upsampling():
    model = hand_vit()
    grid = rollout_by_hand(timm_attention_by_hand(model), lambda a: a.mean(0)).float()
    zeros = torch.zeros(3, dtype=torch.long)
    nearest = AttentionRollout(interpolation="nearest").attribute(model, x32(), zeros)
    blocks = nearest.reshape(3, 4, 8, 4, 8)  # each 8 x 8 image patch holds its grid cell's value
    assert torch.equal(blocks.amax((2, 4)), blocks.amin((2, 4)))
    torch.testing.assert_close(nearest[:, ::8, ::8], grid, rtol=1e-4, atol=1e-6)


def test_distilled_deit_drops_both_prefix_tokens():
    """DeiT's distilled model has a class and a distillation token before the patches."""
    from timm.models.deit import VisionTransformerDistilled

    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = VisionTransformerDistilled(img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2,
                                         num_classes=2)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    model = Classifier(net, cam_layer=None).eval()
    assert model_family(model) == "vit" and net.num_prefix_tokens == 2
    grid = rollout_by_hand(timm_attention_by_hand(model), lambda a: a.mean(0), prefix=2).float()
    zeros = torch.zeros(3, dtype=torch.long)
    ours = AttentionRollout(interpolation="nearest").attribute(model, x32(), zeros)
    torch.testing.assert_close(ours[:, ::8, ::8], grid, rtol=1e-4, atol=1e-6)
    assert GradCAM().attribute(model, x32(), zeros).abs().sum() > 0


def test_attention_rollout_rows_are_distributions():
    attn = torch.softmax(torch.randn(2, 3, 5, 5, generator=torch.Generator().manual_seed(0)), -1)
    for fusion in ("mean", "max", "min"):
        r = rollout([attn, attn.flip(-1)], fusion=fusion)
        torch.testing.assert_close(r.sum(-1), torch.ones(2, 5))
        assert (r >= 0).all()
    with pytest.raises(ValueError, match="at least one"):
        rollout([])


def test_attention_rollout_on_torchvision_vit_equals_its_attention_weights():
    model = tiny_vit(img_size=32, patch_size=8, source="torchvision")
    layers = list(model.net.encoder.layers)
    attentions = []
    for layer, tokens in zip(layers, block_inputs(model, layers)):
        h = layer.ln_1(tokens)
        with torch.no_grad():
            _, w = layer.self_attention(h, h, h, need_weights=True, average_attn_weights=False)
        attentions.append(w)
    grid = rollout_by_hand(attentions, lambda a: a.mean(0)).float()
    ours = AttentionRollout(interpolation="nearest").attribute(model, x32(), torch.zeros(3, dtype=torch.long))
    torch.testing.assert_close(ours[:, ::8, ::8], grid, rtol=1e-4, atol=1e-6)
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in model.modules())


def test_attention_rollout_leaves_the_model_as_it_came_when_the_forward_raises():
    model = hand_vit()
    for block in model.net.blocks:
        block.attn.fused_attn = True

    def explode(*args):
        raise RuntimeError("boom")

    handle = model.net.blocks[1].mlp.register_forward_hook(explode)
    with pytest.raises(RuntimeError, match="boom"):
        AttentionRollout().attribute(model, x32(), torch.zeros(3, dtype=torch.long))
    handle.remove()
    assert all(block.attn.fused_attn for block in model.net.blocks)
    assert all(not m._forward_hooks for m in model.modules())
    with pytest.raises(ValueError, match="no vision-transformer blocks"):
        AttentionRollout().attribute(tiny_net(), torch.rand(1, 3, 16, 16), torch.zeros(1, dtype=torch.long))


# -- families and default layers ---------------------------------------------------------------


def test_families_of_names_and_models():
    assert arch_family("resnet18") == arch_family("vgg16") == arch_family("joint_xml_vgg") == "cnn"
    for arch in ("timm:vit_small_patch16_224", "timm:deit_tiny_patch16_224", "timm:deit3_base_patch16_224",
                 "torchvision:vit_b_16"):
        assert arch_family(arch) == "vit", arch
    assert arch_family("torchvision:resnet50") == arch_family("timm:convnext_tiny") == "cnn"
    for arch in ("python:mymodels:build", "torchscript:model.pt", "timm:swin_tiny_patch4_window7_224",
                 "tiny"):
        assert arch_family(arch) is None, arch  # only the built model can tell
    for make in (tiny_net, tiny_resnet, tiny_joint):
        assert model_family(make()) == "cnn"
    assert model_family(tiny_vit()) == model_family(tiny_vit(source="torchvision")) == "vit"
    assert model_family(tiny_vit().net) == "vit"  # unwrapped too


def test_methods_say_which_families_they_explain():
    rollout_method = AttentionRollout()
    assert rollout_method.supports("timm:vit_small_patch16_224") and not rollout_method.supports("resnet18")
    assert rollout_method.supports("python:mine:build")  # decided on the built model
    assert not rollout_method.supports_family("cnn") and rollout_method.supports_family("vit")
    for name in ("deep_taylor", "lrp_epsilon_plus", "guided_backprop", "deconvolution", "inverse", "joint"):
        method = build(METHODS.get(name), {})
        assert not method.supports("timm:deit_small_patch16_224") and not method.supports_family("vit"), name
    for name in ("gradcam", "guided_gradcam", "saliency", "integrated_gradients", "occlusion", "rise"):
        method = build(METHODS.get(name), {})
        assert method.supports("timm:deit_small_patch16_224") and method.supports("resnet50"), name


def test_default_cam_layer_per_family():
    assert default_cam_layer(tiny_resnet()) == "net.layer4"  # the wrapper's cam_layer
    assert default_cam_layer(Classifier(tiny_net().net, cam_layer=None)) == "net.2"  # last Conv2d
    assert default_cam_layer(tiny_vit()) == "net.blocks.1.norm1"
    assert default_cam_layer(tiny_vit(source="torchvision")) == "net.encoder.layers.encoder_layer_1.ln_1"
    assert default_cam_layer(tiny_vit().net) == "blocks.1.norm1"
    with pytest.raises(ValueError, match="no Conv2d layer"):
        default_cam_layer(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3, 2)))


@pytest.mark.parametrize("source,layer", [("timm", "net.blocks.0.norm1"),
                                          ("torchvision", "net.encoder.layers.encoder_layer_0.ln_1")])
def test_token_grid_is_row_major_patches(source, layer):
    """Changing only the image patch at grid row 1, column 2 changes only that cell of the map
    (the first block's LayerNorm is per token)."""
    model = tiny_vit(img_size=32, patch_size=8, source=source)
    assert token_grid(model, (32, 32)) == (4, 4) and token_grid(tiny_net(), (32, 32)) is None
    x = x32(1)
    y = x.clone()
    y[:, :, 8:16, 16:24] = 1 - y[:, :, 8:16, 16:24]
    outputs = []
    handle = dict(model.named_modules())[layer].register_forward_hook(lambda m, i, o: outputs.append(o))
    with torch.no_grad():
        model(x), model(y)
    handle.remove()
    diff = (to_grid(outputs[1], (4, 4)) - to_grid(outputs[0], (4, 4))).abs().sum(1)[0]
    assert diff[1, 2] > 0 and diff.flatten().count_nonzero() == 1
    assert to_grid(outputs[0], (4, 4)).shape == (1, 16, 4, 4)
    with pytest.raises(ValueError, match="fewer than the 5x5 patch grid"):
        to_grid(outputs[0], (5, 5))


# -- Grad-CAM on the token grid -----------------------------------------------------------------


def test_gradcam_on_vit_equals_hand_computation():
    model = hand_vit()
    x, y = x32(), torch.tensor([0, 1, 1])
    tokens = []
    handle = model.net.blocks[1].norm1.register_forward_hook(lambda m, i, o: tokens.append(o))
    logits = model(x)
    handle.remove()
    (grad,) = torch.autograd.grad(logits[torch.arange(3), y].sum(), tokens[0])
    acts, grad = tokens[0][:, 1:].detach(), grad[:, 1:]  # class token dropped: [B, 16 patches, 16]
    weights = grad.mean(1, keepdim=True)  # [B, 1, C]: mean over the 16 patch positions
    cam = (acts * weights).sum(-1).clamp(min=0).reshape(3, 4, 4)
    expected = F.interpolate(cam[:, None], size=(32, 32), mode="bilinear", align_corners=False)[:, 0]
    ours = GradCAM().attribute(model, x, y)
    torch.testing.assert_close(ours, expected)
    assert ours.abs().sum() > 0
    model.zero_grad(set_to_none=True)


def test_gradcam_at_the_last_block_output_is_empty_on_a_class_token_vit():
    """Why the default is the last block's norm1: only the class token reaches the head."""
    model = hand_vit()
    x, y = x32(), torch.tensor([0, 1, 1])
    signed = GradCAM(layer="net.blocks.1", relu=False).attribute(model, x, y)
    assert torch.equal(signed, torch.zeros_like(signed))
    assert GradCAM().attribute(model, x, y).abs().sum() > 0


def test_gradcam_layer_override_and_errors():
    model = hand_vit()
    x, y = x32(), torch.tensor([0, 1, 1])
    a = GradCAM(layer="net.blocks.0.norm1").attribute(model, x, y)
    assert a.shape == (3, 32, 32) and not torch.equal(a, GradCAM().attribute(model, x, y))
    conv = GradCAM(layer="net.patch_embed.proj").attribute(model, x, y)  # a conv map [B, 16, 4, 4]
    assert conv.shape == (3, 32, 32)
    with pytest.raises(ValueError, match="layer 'net.nope' not found"):
        GradCAM(layer="net.nope").attribute(model, x, y)
    with pytest.raises(ValueError, match="cannot read a layer output of shape"):
        GradCAM(layer="net.head").attribute(model, x, y)  # logits [B, 2]: no map


def test_guided_gradcam_equals_direct_captum_on_a_cnn(images, labels):
    for model, layer in ((tiny_net(), "net.2"), (tiny_resnet(), "net.layer4")):
        ours = GuidedGradCAM().attribute(model, images[:4], labels[:4])
        module = dict(model.named_modules())[layer]
        ref = CaptumGuidedGradCam(model, module).attribute(images[:4].clone().requires_grad_(),
                                                           target=labels[:4])
        torch.testing.assert_close(ours, ref.detach().abs().sum(1))


def test_guided_gradcam_on_vit_is_gradient_times_gradcam():
    """No nn.ReLU to guide in a ViT: the guided factor is the plain input gradient."""
    model = hand_vit()
    x, y = x32(), torch.tensor([0, 1, 1])
    xg = x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(model(xg)[torch.arange(3), y].sum(), xg)
    cam = GradCAM().attribute(model, x, y)
    ours = GuidedGradCAM().attribute(model, x, y)
    torch.testing.assert_close(ours, (grad * cam[:, None]).abs().sum(1))


def test_hybrid_vit_grid_follows_its_conv_stem():
    """A ResNet-stem ViT (timm's R+ViT-Ti/S16 at 64 px): the token grid is the stem's feature map
    (64 / 4 / 8 = 2), not the image over the patch size (64 / 8 = 8)."""
    from timm.models.vision_transformer_hybrid import vit_tiny_r_s16_p8_224

    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = vit_tiny_r_s16_p8_224(pretrained=False, img_size=64, num_classes=3)
    model = Classifier(net, cam_layer=None).eval()
    assert model_family(model) == "vit" and token_grid(model, (64, 64)) == (2, 2)
    x, y = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 2])
    maps = AttentionRollout(interpolation="nearest").attribute(model, x, y)
    assert maps.shape == (2, 64, 64) and torch.equal(maps[:, :32, :32], maps[:, :1, :1].expand(2, 32, 32))
    assert GradCAM().attribute(model, x, y).shape == (2, 64, 64)
