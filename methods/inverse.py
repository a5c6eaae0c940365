"""Inverse-based explanations: invert a sequential CNN layer by layer, from the logits to the input.

The network is read as a chain of blocks (:func:`model_blocks`): a conv or linear block is its
conv / linear layer with what follows it up to the next one (batch norm, ReLU, the constant gate
of a joint model) and the reshaping before it (adaptive average pool, flatten); a max-pool block
is a max-pool. Each block is inverted by :func:`invert_block` (max-unpooling, or the projected
gradient solver :func:`projected_descent` on the block's objective).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import torch

from xaibench.models.modelstate import eval_mode
from xaibench.plugins import Method, check_range


def supports_arch(arch: str) -> bool:
    """Whether ``arch`` is a built-in VGG architecture (a registered name with "vgg" in it: vgg16,
    joint_vgg16, joint_xml_vgg), the sequential networks this method inverts."""
    return ":" not in arch and "vgg" in arch


def supported_archs() -> list[str]:
    """The registered architectures this method inverts (names from the model registry)."""
    from xaibench.registry import MODELS

    return [name for name in MODELS.names() if supports_arch(name)]


def _leaf_kind(module: torch.nn.Module) -> str | None:
    """The op kind of a leaf module of an exact supported type, else None."""
    nn = torch.nn
    kinds = {nn.Conv2d: "conv", nn.Linear: "linear", nn.BatchNorm2d: "bn", nn.BatchNorm1d: "bn",
             nn.ReLU: "relu", nn.MaxPool2d: "maxpool", nn.AdaptiveAvgPool2d: "avgpool",
             nn.AvgPool2d: "avgpool", nn.Flatten: "flatten", nn.Dropout: "identity", nn.Identity: "identity"}
    return kinds.get(type(module))


class UnsupportedModel(TypeError):
    """A model the layer-wise inverse cannot follow (the message names what is supported)."""


@dataclass(frozen=True)
class Op:
    """One step of the model's forward: ``kind`` in conv, linear, bn, relu, maxpool, avgpool,
    flatten, identity, gate; ``module`` the module run (None for flatten)."""

    name: str
    kind: str
    module: torch.nn.Module | None


@dataclass(frozen=True)
class Block:
    """A layer of the inverse: ``kind`` conv, linear or maxpool; ``name`` its main module's
    dotted name (in the model); ``ops`` everything it runs, in order."""

    name: str
    kind: Literal["conv", "linear", "maxpool"]
    ops: tuple[Op, ...]

    @property
    def has_relu(self) -> bool:
        return any(op.kind == "relu" for op in self.ops)


@dataclass
class LayerInverse:
    """The inverse at one layer (a block's input), for a batch.

    Attributes:
        name: the block's main module (``"input"`` marks the normalised image, the first block's
            input).
        forward: the forward activation at that point [B, ...].
        inverse: its inverse [B, ...] (same shape).
        steps: solver steps each image took [B] (0 for max-unpooling).
        logits: the inverse fed through the rest of the network [B, classes] (None unless asked).
    """

    name: str
    forward: torch.Tensor
    inverse: torch.Tensor
    steps: torch.Tensor
    logits: torch.Tensor | None = None


def _walk(module: torch.nn.Module, name: str) -> list[Op]:
    from torchvision.models import VGG

    from xaibench.methods.joint.model import XMLVGG, Gate

    def child(attr: str) -> list[Op]:
        return _walk(getattr(module, attr), f"{name}.{attr}" if name else attr)

    if isinstance(module, Gate):
        return [*child("inner"), Op(name, "gate", module)]
    if isinstance(module, VGG):
        return [*child("features"), *child("avgpool"), Op(f"{name}.flatten", "flatten", None),
                *child("classifier")]
    if isinstance(module, XMLVGG):
        return [*child("features"), *child("classifier")]
    if isinstance(module, torch.nn.Sequential) and type(module).forward is torch.nn.Sequential.forward:
        return [op for key, sub in module.named_children()
                for op in _walk(sub, f"{name}.{key}" if name else key)]
    kind = _leaf_kind(module)
    if kind is None:
        raise UnsupportedModel(
            f"the inverse-based method cannot follow {type(module).__name__} at {name or 'the model'}: "
            f"it supports sequential conv/ReLU/max-pool/linear networks ({', '.join(supported_archs())}: "
            f"torchvision VGG16, the xML VGG, joint VGG models with constant gates)")
    return [Op(name, kind, module)]


def model_blocks(model: torch.nn.Module) -> list[Block]:
    """The blocks of a pixel-space Classifier around a sequential backbone, input to logits.

    Raises:
        UnsupportedModel: for anything but a chain of conv / linear / batch-norm / ReLU / max-pool /
            average-pool / flatten / dropout layers (and joint gates), ending in a linear layer.
    """
    net = getattr(model, "net", None)
    if not isinstance(net, torch.nn.Module) or not isinstance(getattr(model, "mean", None), torch.Tensor):
        raise UnsupportedModel(f"the inverse-based method needs a pixel-space Classifier, got "
                               f"{type(model).__name__}")
    blocks: list[list[Op]] = []
    pending: list[Op] = []
    for op in _walk(net, "net"):
        if op.kind in ("conv", "linear", "maxpool"):
            if op.kind == "maxpool" and pending:
                raise UnsupportedModel(f"a {pending[-1].kind} right before the max-pool {op.name}")
            blocks.append([*pending, op])
            pending = []
        elif op.kind in ("avgpool", "flatten"):
            pending.append(op)
        elif op.kind == "identity":
            (pending if pending or not blocks else blocks[-1]).append(op)
        elif not blocks or pending or blocks[-1][0].kind == "maxpool":
            raise UnsupportedModel(f"the inverse-based method expects {op.kind} ({op.name}) right "
                                   f"after a conv or linear layer")
        else:
            blocks[-1].append(op)
    main = [next(op for op in ops if op.kind in ("conv", "linear", "maxpool")) for ops in blocks]
    if pending or not blocks or main[-1].kind != "linear" or any(op.kind == "relu" for op in blocks[-1]):
        raise UnsupportedModel("the inverse-based method needs a network that ends in a linear "
                               "layer producing the logits")
    return [Block(m.name, m.kind, tuple(ops)) for m, ops in zip(main, blocks)]  # type: ignore[arg-type]


def run_block(
    block: Block, x: torch.Tensor, gate: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(output, max-pool indices or None) of ``block`` on ``x``; ``gate`` [B, 1, H, W] is the
    joint model's explanation (a constant), average-pooled onto gated outputs."""
    indices = None
    for op in block.ops:
        if op.kind == "maxpool":
            m = op.module
            x, indices = torch.nn.functional.max_pool2d(x, m.kernel_size, m.stride, m.padding, m.dilation,
                                                        m.ceil_mode, return_indices=True)
        elif op.kind == "relu":
            x = torch.relu(x)
        elif op.kind == "flatten":
            x = x.flatten(1)
        elif op.kind == "gate":
            if gate is None:
                raise RuntimeError(f"gate {op.name} needs the joint model's explanation")
            x = x * torch.nn.functional.adaptive_avg_pool2d(gate, x.shape[-2:])
        elif op.kind != "identity":
            x = op.module(x)
    return x, indices


def project(x: torch.Tensor, forward: torch.Tensor, *, is_input: bool) -> torch.Tensor:
    """The projection of the inverse: 0 <= x <= max(0, forward) for hidden layers; at the input,
    the same sign as ``forward`` and |x| <= |forward|."""
    if is_input:
        sign = forward.sign()
        return sign * torch.minimum((x * sign).clamp(min=0), forward.abs())
    return torch.minimum(x.clamp(min=0), forward.clamp(min=0))


def initial_guess(forward: torch.Tensor) -> torch.Tensor:
    """Solver init: the 5 x 5 average pool (stride 1, same size) of a spatial forward input; a
    vector input as it is."""
    if forward.dim() == 4:
        return torch.nn.functional.avg_pool2d(forward, 5, stride=1, padding=2, count_include_pad=False)
    return forward.clone()


def _per_image_norm(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).norm(dim=1).view(-1, *[1] * (x.dim() - 1))


def rescale(inverse: torch.Tensor, forward_output: torch.Tensor) -> torch.Tensor:
    """``inverse`` rescaled per image to the L2 norm of the forward output (zero stays zero)."""
    norm = _per_image_norm(inverse)
    return torch.where(norm > 0, inverse * _per_image_norm(forward_output) / norm.clamp(min=1e-30),
                       torch.zeros_like(inverse))


def location_weights(target: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """M = 1 - S / max(S) [B, 1, h, w] with S the channel sum of |target| [B, C, H, W], resized
    (nearest) to ``size``: weak upper-layer locations are penalised more (M = 1 where S = 0)."""
    s = target.abs().sum(1, keepdim=True)
    m = 1 - s / s.flatten(1).amax(1).clamp(min=1e-30).view(-1, 1, 1, 1)
    return torch.nn.functional.interpolate(m, size=size, mode="nearest") if m.shape[-2:] != size else m


@dataclass(frozen=True)
class Solver:
    """The layer objectives' penalty weight ``lam`` and the settings of
    :func:`projected_descent` (see :class:`Inverse` for their meaning)."""

    lam: float
    step: float
    momentum: float
    max_steps: int
    window: int
    tol: float


def projected_descent(
    cost: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x0: torch.Tensor,
    project_rows: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    solver: Solver,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Projected gradient descent with momentum for a batch, each image stopping on its own.

    ``cost(x_rows, rows)`` gives the per-image cost [n] of the rows ``rows`` of the batch; the
    gradient of each image is divided by its max-abs, accumulated with ``solver.momentum`` and
    ``x <- project_rows(x - solver.step * velocity, rows)``. An image stops (and is frozen) when
    the std of its last ``solver.window`` costs is below ``solver.tol``, or after
    ``solver.max_steps`` steps.

    Returns:
        (solution like x0, steps taken per image [B] long).
    """
    step, momentum, window, tol = solver.step, solver.momentum, solver.window, solver.tol
    b = x0.shape[0]
    rows = torch.arange(b, device=x0.device)
    x = project_rows(x0.detach(), rows).clone()
    velocity = torch.zeros_like(x)
    history = torch.zeros(b, window, device=x0.device)
    steps = torch.zeros(b, dtype=torch.long, device=x0.device)
    for s in range(solver.max_steps):
        if rows.numel() == 0:
            break
        xa = x[rows].requires_grad_(True)
        c = cost(xa, rows)
        (g,) = torch.autograd.grad(c.sum(), xa)
        history[rows, s % window] = c.detach().float()
        steps[rows] += 1
        g = g / g.flatten(1).abs().amax(1).clamp(min=1e-30).view(-1, *[1] * (g.dim() - 1))
        v = momentum * velocity[rows] + g
        velocity[rows] = v
        x[rows] = project_rows(xa.detach() - step * v, rows)
        if s + 1 >= window:
            rows = rows[history[rows].std(1) >= tol]
    return x, steps


def invert_block(
    block: Block,
    forward_input: torch.Tensor,
    forward_output: torch.Tensor,
    inverse_output: torch.Tensor,
    *,
    indices: torch.Tensor | None,
    gate: torch.Tensor | None,
    targets: torch.Tensor,
    is_input: bool,
    is_last: bool,
    solver: Solver,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The inverse at ``block``'s input: (inverse like forward_input, solver steps [B]).

    The inverse at the output is first rescaled to the forward output's L2 norm (per image).
    Max-pool: unpooled to the forward argmax positions. The last (logit) layer: minimise
    max_{j != c} z_j(x) - z_c(x) for the target c. Other linear blocks:
    ||y - f(x)||_2 + lam ||x||_2; conv blocks: ||y - f(x)||_2 + lam ||M * x||_2 with
    M = :func:`location_weights` of y. Every solution is projected (:func:`project`).
    """
    b = forward_input.shape[0]
    if block.kind == "maxpool":
        m = block.ops[0].module
        y = rescale(inverse_output, forward_output)
        x = torch.nn.functional.max_unpool2d(y, indices, m.kernel_size, m.stride, m.padding,
                                             output_size=forward_input.shape[-2:])
        return project(x, forward_input, is_input=is_input), torch.zeros(b, dtype=torch.long,
                                                                        device=x.device)
    y = rescale(inverse_output, forward_output)
    weights = (location_weights(y, tuple(forward_input.shape[-2:]))
               if block.kind == "conv" and y.dim() == 4 else None)

    def cost(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        out, _ = run_block(block, x, None if gate is None else gate[rows])
        if is_last:
            z = out.float()
            c = targets[rows][:, None]
            others = z.scatter(1, c, float("-inf")).amax(1)
            return others - z.gather(1, c)[:, 0]
        fit = (y[rows] - out).flatten(1).norm(dim=1)
        penalty = x if weights is None else weights[rows] * x
        return fit + solver.lam * penalty.flatten(1).norm(dim=1)

    return projected_descent(
        cost, initial_guess(forward_input),
        lambda x, rows: project(x, forward_input[rows], is_input=is_input), solver)


def explanation_gate(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor | None:
    """The joint model's explanation (a constant for the inverse), or None for a plain model."""
    explain = getattr(model, "explain", None)
    return explain(images).detach() if callable(explain) else None


def invert(
    model: torch.nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    solver: Solver,
    *,
    keep: Literal["input", "all"] = "all",
) -> list[LayerInverse]:
    """Per-layer inverses of ``model`` for images [B, 3, H, W] in [0, 1] and targets [B].

    Starts from the one-hot vector of the target class at the logits and inverts block by block
    (:func:`invert_block`) down to the normalised image (x - mean) / std, the first conv's input.
    Returns the inverse at every block's input, from the input (named ``"input"``) up to the
    last linear layer's input (``keep="all"``), or only at the input (``keep="input"``). Call in
    eval mode with gradients enabled (and a joint model's gates constant).

    Raises:
        UnsupportedModel: for models :func:`model_blocks` cannot read.
        RuntimeError: when the block chain does not reproduce the model's logits.
    """
    blocks = model_blocks(model)
    x = ((images - model.mean) / model.std).detach()
    gate = explanation_gate(model, images)
    inputs, indices = [], []
    with torch.no_grad():
        for block in blocks:
            inputs.append(x)
            x, idx = run_block(block, x, gate)
            indices.append(idx)
        logits = model(images)
        atol = 1e-4 * (1 + logits.abs().max().item())
        if not torch.allclose(x.float(), logits.float(), rtol=1e-3, atol=atol):
            raise RuntimeError("the inverse-based method could not reproduce the model's logits with "
                               f"its layer chain ({' -> '.join(b.name for b in blocks)})")
    outputs = [*inputs[1:], x]
    inverse = torch.nn.functional.one_hot(targets, x.shape[1]).to(x.dtype)
    layers = []
    for k in reversed(range(len(blocks))):
        inverse, steps = invert_block(
            blocks[k], inputs[k], outputs[k], inverse, indices=indices[k], gate=gate, targets=targets,
            is_input=k == 0, is_last=k == len(blocks) - 1, solver=solver)
        if keep == "all" or k == 0:
            layers.append(LayerInverse("input" if k == 0 else blocks[k].name, inputs[k], inverse, steps))
    return layers[::-1]


def logits_from(
    model: torch.nn.Module, images: torch.Tensor, layer: int, x: torch.Tensor
) -> torch.Tensor:
    """Logits [B, C] of ``x`` fed in at block ``layer``'s input through the rest of the network
    (the joint model's gates from ``images``, constant). Call in eval mode."""
    blocks = model_blocks(model)
    gate = explanation_gate(model, images)
    with torch.no_grad():
        for block in blocks[layer:]:
            x, _ = run_block(block, x, gate)
    return x


def inverse_map(inverse: torch.Tensor, forward: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """H = sum_c |x_inv| / (|x| + eps), divided by its max per image: [B, H, W] in [0, 1]."""
    h = (inverse.abs() / (forward.abs() + eps)).sum(1)
    return h / h.flatten(1).amax(1).clamp(min=1e-30).view(-1, 1, 1)


@contextlib.contextmanager
def _inverse_context(model: torch.nn.Module) -> Iterator[None]:
    gates = getattr(model, "constant_gates", contextlib.nullcontext)
    with eval_mode(model), gates(), torch.enable_grad():
        for p in model.parameters():
            p.requires_grad_(False)
        yield


class Inverse(Method):
    """Inverse-based explanation: the network inverted layer by layer from the target's one-hot.

    Kwon, Koo, Soh and Cho, "Inverse-based approach to explaining and visualizing convolutional
    neural networks", IEEE TNNLS 2021. From the one-hot vector of the target class at the logits,
    each layer's inverse is rescaled to the L2 norm of that layer's forward output and inverted:
    the last linear layer by minimising max_{j != c} z_j - z_c, the other linear layers by
    ||y - ReLU(Wx + b)||_2 + lam ||x||_2, conv layers by ||y - ReLU(conv(x))||_2 + lam ||M x||_2
    (M = 1 - S / max S, S the channel sum of |y|), max-pools by unpooling to the forward argmax.
    Every solution is projected into 0 <= x <= max(0, x_forward) (at the input: same sign and
    |x| <= |x_input|). Solver: projected gradient with momentum from the 5 x 5 average pool of
    the forward input, step ``step`` / max|g|, until the std of the last ``window`` costs is below
    ``tol`` or ``max_steps``; the whole batch at once, each image stopping on its own. Batch
    norms and a joint model's gates (constants) belong to the layer before them; torchvision
    VGG's adaptive average pool and the flatten are part of the first linear layer. The input is
    the normalised image (x - mean) / std. Map: H = sum_c |x_inv| / (|x| + 1e-6), divided by its
    max. :meth:`layers` returns the inverse at every layer (the trade-off plot's points).
    Channel reduction: sum over channels of the ratio |x_inv| / |x|. The solver's fixed,
    max-abs-normalised steps on non-smooth objectives end within about one step of the optimum,
    so float-level differences (batch size, device) can move a result at that resolution: maps
    are deterministic for given inputs, not bitwise batch-independent. Cost: per layer up to
    ``max_steps`` forward+backward passes of that layer.

    Args:
        lam: weight of the (location-weighted) L2 penalty.
        step: the solver's step on the max-abs-normalised gradient.
        momentum: the solver's momentum.
        max_steps: most solver steps per layer.
        window: how many last costs the stopping criterion looks at.
        tol: an image stops when the std of its last ``window`` costs is below this.
    """

    reduction = "sum over channels of |x_inv| / (|x| + 1e-6), divided by its max"
    requirement = ("a sequential conv/ReLU/max-pool/linear network: arch vgg16, joint_vgg16 or "
                   "joint_xml_vgg (joint gates treated as constants); residual networks such as "
                   "resnet18, resnet50 and joint_resnet* cannot be inverted layer by layer, nor can "
                   "vision transformers")
    families = ("cnn",)
    passes_per_image = None  # per layer, as many solver steps as the stopping criterion takes

    def __init__(
        self,
        *,
        lam: float = 0.7,
        step: float = 0.125,
        momentum: float = 0.9,
        max_steps: int = 3000,
        window: int = 10,
        tol: float = 0.1,
    ) -> None:
        check_range("lam", lam, low=0.0)
        check_range("step", step, low=0.0)
        check_range("momentum", momentum, low=0.0, high=1.0)
        check_range("max_steps", max_steps, low=1)
        check_range("window", window, low=2)
        check_range("tol", tol, low=0.0)
        self.lam = lam
        self.step = step
        self.momentum = momentum
        self.max_steps = max_steps
        self.window = window
        self.tol = tol

    def supports(self, arch: str) -> bool:
        return supports_arch(arch)

    def _invert(self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor,
                keep: Literal["input", "all"]) -> list[LayerInverse]:
        solver = Solver(lam=self.lam, step=self.step, momentum=self.momentum,
                        max_steps=self.max_steps, window=self.window, tol=self.tol)
        return invert(model, images.detach(), targets, solver, keep=keep)

    def layers(
        self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor
    ) -> list[LayerInverse]:
        """The inverse at every layer (input first), each with ``logits``: the inverse fed through
        the rest of the network. The model leaves as it came."""
        with _inverse_context(model):
            layers = self._invert(model, images, targets, "all")
            for k, layer in enumerate(layers):
                layer.logits = logits_from(model, images, k, layer.inverse).detach()
        for layer in layers:
            layer.inverse = layer.inverse.detach()
        return layers

    def attribute(
        self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """Inverse maps [B, H, W] in [0, 1] for images [B, 3, H, W] and targets [B].

        Raises:
            UnsupportedModel: for a model that is not a sequential conv/ReLU/pool/linear network.
        """
        with _inverse_context(model):
            (layer,) = self._invert(model, images, targets, "input")
        return inverse_map(layer.inverse.detach(), layer.forward).float()
