"""FGVis: fine-grained per-pixel, per-channel masks optimised against adversarial evidence."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch

from xaibench.models.modelstate import eval_mode
from xaibench.plugins import Method, check_choice, check_range


def nonlinear_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The modules of ``model`` whose outputs the defense bounds: "activations after a
    nonlinearity" (functional calls such as torch.relu inside a forward cannot be hooked and are
    not bounded)."""
    nn = torch.nn
    kinds = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU,
             nn.SiLU, nn.Mish, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid)
    return [m for m in model.modules() if isinstance(m, kinds)]


def within_bounds(activation: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Bool mask: min(0, reference) <= activation <= max(0, reference), elementwise."""
    return (activation >= reference.clamp(max=0)) & (activation <= reference.clamp(min=0))


@contextmanager
def recorded_activations(model: torch.nn.Module) -> Iterator[dict[torch.nn.Module, list[torch.Tensor]]]:
    """Record, per nonlinearity module, its output at every call of the forward run inside.

    Yields a dict module -> list of detached outputs, one per call in call order (a module called
    twice per forward, such as the ReLU of a torchvision ResNet block, gets two entries). Run ONE
    forward inside the context. The hooks are removed on exit, also on error.
    """
    records: dict[torch.nn.Module, list[torch.Tensor]] = {}

    def hook(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        records.setdefault(module, []).append(output.detach().clone())

    handles = [m.register_forward_hook(hook) for m in nonlinear_modules(model)]
    try:
        yield records
    finally:
        for h in handles:
            h.remove()


class ActivationDefense:
    """State of the defense during one optimisation: the recorded clean activations, which images
    of the batch the current forward holds, and per-module call counters (reset at every forward
    of the model by a pre-hook)."""

    def __init__(self, records: dict[torch.nn.Module, list[torch.Tensor]], *, clip: bool) -> None:
        self.records = records
        self.clip = clip
        self.index: torch.Tensor | None = None  # rows of the recorded batch in the current forward
        self.calls: dict[torch.nn.Module, int] = {}

    def reference(self, module: torch.nn.Module) -> torch.Tensor:
        """The clean activation of ``module`` for its current call (rows selected by ``index``)."""
        k = self.calls.get(module, 0)
        self.calls[module] = k + 1
        recorded = self.records.get(module, [])
        if k >= len(recorded):
            raise RuntimeError(f"{type(module).__name__} was called {k + 1} times in this forward but "
                               f"{len(recorded)} times when the bounds were recorded")
        ref = recorded[k]
        return ref if self.index is None else ref[self.index]

    def hook(self, module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
        ref = self.reference(module)
        if self.clip:  # clamp's own backward zeroes the gradient where it clipped
            return torch.minimum(torch.maximum(output, ref.clamp(max=0)), ref.clamp(min=0))
        if output.requires_grad:
            keep = within_bounds(output.detach(), ref)
            output.register_hook(lambda grad: grad * keep)
        return None


@contextmanager
def activation_defense(
    model: torch.nn.Module, records: dict[torch.nn.Module, list[torch.Tensor]], *, clip: bool = False
) -> Iterator[ActivationDefense]:
    """Within this context every nonlinearity output of ``model``'s forward is defended against
    adversarial evidence (Wagner et al. 2019): its gradient is zeroed wherever the activation
    leaves [min(0, h(x)), max(0, h(x))] of the clean image's activation h(x) at the same call
    (``records`` from :func:`recorded_activations`), or, with ``clip``, the activation is clamped
    into those bounds in the forward. Set ``defense.index`` to the recorded rows when the
    forward holds a subset of the recorded batch. Hooks are removed on exit, also on error.
    """
    defense = ActivationDefense(records, clip=clip)

    def reset(module: torch.nn.Module, inputs: tuple) -> None:
        defense.calls.clear()

    handles = [model.register_forward_pre_hook(reset)]
    try:
        handles += [m.register_forward_hook(defense.hook) for m in nonlinear_modules(model)]
        yield defense
    finally:
        for h in handles:
            h.remove()


def _phi(logits: torch.Tensor, targets: torch.Tensor, *, game: str, phi: str) -> torch.Tensor:
    """Per-image objective [B] on the target class: lower is better for the game."""
    log_p = logits.float().log_softmax(1).gather(1, targets[:, None])[:, 0]
    if game == "preservation":  # keep the target: maximise its score
        return -log_p if phi == "cross_entropy" else -log_p.exp()
    # deletion: remove the target: minimise its score (cross-entropy towards "not the target")
    return -torch.log1p(-log_p.exp().clamp(max=1 - 1e-6)) if phi == "cross_entropy" else log_p.exp()


def fgvis_masks(
    model: torch.nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    *,
    game: Literal["deletion", "preservation"],
    phi: Literal["softmax", "cross_entropy"],
    sparsity: float,
    lr: float,
    noise: float,
    max_steps: int,
    clip: bool,
    generator: torch.Generator,
) -> torch.Tensor:
    """FGVis masks [B, 3, H, W] in [0, 1] for images [B, 3, H, W] in [0, 1] and targets [B].

    The explanation is e = x * m + (1 - m) * r with r = 0 (black in pixel space), the mask
    starts at ones and is optimised for the whole batch at once by SGD: per step, the loss
    ``sparsity * |m|_1 + phi(e)`` (preservation) or ``sparsity * |1 - m|_1 + phi(e)`` (deletion),
    summed over images, is differentiated w.r.t. the masks; each image's gradient is divided by
    its own max-abs, the mask moves by ``lr`` times that and is clamped to [0, 1]. Gaussian noise
    of std ``noise`` (pixel space) is added to e before every forward; the noise of step s is the
    s-th draw of ``generator`` (CPU), shared by the images, so that an image gets the same noise
    in any batch (as if each image had its own generator with the same seed). Every nonlinearity
    output is defended (:func:`activation_defense`) with bounds from the clean images.

    Per-image stopping: an image is finished (and frozen) at the first step where the top-1 class
    of its noisy explanation differs from the clean image's top-1. Deletion keeps the mask that
    flipped it; preservation keeps the mask of the step before (the last one that still kept the
    class; all ones when the very first step flips). The others run ``max_steps`` steps.
    Call inside ``eval_mode`` with gradients enabled; the model's parameters are not touched.
    """
    x = images.detach()
    b = x.shape[0]
    with recorded_activations(model) as records, torch.no_grad():
        clean_top1 = model(x).argmax(1)
    masks = torch.ones_like(x, dtype=torch.float32)
    previous = masks.clone()  # each image's mask of the step before (preservation rolls back)
    active = torch.arange(b, device=x.device)
    with activation_defense(model, records, clip=clip) as defense:
        for _ in range(max_steps):
            if active.numel() == 0:
                break
            eps = torch.randn(x.shape[1:], generator=generator).to(x.device)
            m = masks[active].requires_grad_(True)
            xa = x[active]
            e = xa * m.to(x.dtype) + noise * eps
            defense.index = active
            logits = model(e)
            objective = _phi(logits, targets[active], game=game, phi=phi)
            penalty = (m if game == "preservation" else 1 - m).abs().flatten(1).sum(1)
            (grad,) = torch.autograd.grad((sparsity * penalty + objective).sum(), m)
            flipped = logits.detach().argmax(1) != clean_top1[active]
            scale = grad.flatten(1).abs().amax(1).clamp(min=1e-12).view(-1, 1, 1, 1)
            updated = (m.detach() - lr * grad / scale).clamp(0.0, 1.0)
            stop = flipped.view(-1, 1, 1, 1)
            kept = m.detach() if game == "deletion" else previous[active]
            previous[active] = m.detach()
            masks[active] = torch.where(stop, kept, updated)
            active = active[~flipped]
    return masks


class FGVis(Method):
    """FGVis: per-pixel, per-channel masks optimised by SGD, defended against adversarial evidence.

    Wagner, Koehler, Gindele, Hetzel, Wiedemer and Behnke, "Interpretable and fine-grained visual
    explanations for convolutional neural networks", CVPR 2019. The explanation e = x * m with a
    mask m in [0, 1]^(3 x H x W) and the reference r = 0 (black in pixel space). The deletion
    game removes the target's evidence with a mask that keeps most pixels (the sparsity term
    pulls m towards ones); the preservation game keeps the smallest part of the image that keeps
    the target (pulls m towards zeros). phi is the target's softmax score or the cross-entropy
    (deletion: -log(1 - p_target)). Defense: the gradient is zeroed wherever an activation after
    a nonlinearity module leaves [min(0, h(x)), max(0, h(x))] of the clean image (bounds
    recorded per call, so a module called several times per forward is handled), or with
    ``clip`` those activations are clamped in the forward. Optimisation as a public
    re-implementation: SGD with lr 0.1 on the per-image max-abs-normalised gradient, the mask
    clamped to [0, 1], Gaussian noise (std 0.1) on the explanation each step, at most 500 steps,
    an image stops when its top-1 class flips (see :func:`fgvis_masks`). The whole batch is
    optimised at once; results do not depend on the batch. Map: 1 - mean_c(m) for the deletion
    game, mean_c(m) for the preservation game. Cost: up to ``max_steps`` forward+backward passes
    per image (fewer when the class flips earlier).

    Args:
        game: "deletion" or "preservation".
        phi: "softmax" (the target's softmax score) or "cross_entropy".
        sparsity: lambda, the weight of the L1 term (summed over the 3 x H x W mask elements).
        lr: SGD step on the max-abs-normalised gradient.
        noise: std of the Gaussian noise added to the explanation each step (0 disables it).
        max_steps: most optimisation steps per image.
        clip: clamp bounded activations in the forward instead of only filtering gradients.
        seed: seeds the noise generator.
    """

    reduction = "mean over channels of the per-channel mask (1 - mean for the deletion game)"
    passes_per_image = None  # at most max_steps: an image stops when its class flips

    def __init__(
        self,
        *,
        game: Literal["deletion", "preservation"] = "deletion",
        phi: Literal["softmax", "cross_entropy"] = "softmax",
        sparsity: float = 1e-4,
        lr: float = 0.1,
        noise: float = 0.1,
        max_steps: int = 500,
        clip: bool = False,
        seed: int = 0,
    ) -> None:
        check_choice("game", game, ("deletion", "preservation"))
        check_choice("phi", phi, ("softmax", "cross_entropy"))
        check_range("sparsity", sparsity, low=0.0)
        check_range("lr", lr, low=0.0)
        check_range("noise", noise, low=0.0)
        check_range("max_steps", max_steps, low=1)
        self.game = game
        self.phi = phi
        self.sparsity = sparsity
        self.lr = lr
        self.noise = noise
        self.max_steps = max_steps
        self.clip = clip
        self.seed = seed

    def attribute(
        self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """FGVis maps [B, H, W] in [0, 1] for images [B, 3, H, W] and targets [B]."""
        with eval_mode(model), torch.enable_grad():
            for p in model.parameters():
                p.requires_grad_(False)
            masks = fgvis_masks(
                model, images.detach(), targets, game=self.game, phi=self.phi,
                sparsity=self.sparsity, lr=self.lr, noise=self.noise, max_steps=self.max_steps,
                clip=self.clip, generator=torch.Generator(device="cpu").manual_seed(self.seed))
        mean = masks.mean(1)
        return (1 - mean if self.game == "deletion" else mean).float()
