"""The ``joint`` method: the xML joint model's own explanation."""

from __future__ import annotations

import torch

from xaibench.models.modelstate import eval_mode
from xaibench.plugins import Method


class Joint(Method):
    """The in-model explanation of an xML joint model: its explainer's map at input resolution.

    Rio-Torto, Fernandes and Teixeira, "Understanding the decisions of CNNs: an in-model
    approach", Pattern Recognition Letters 2020. The map is the explainer's single-channel
    output in [0, 1) (no channel reduction); it does not depend on the target class. Only
    joint models (arch joint_*) have one.
    """

    reduction = "none: the explainer outputs one channel"
    requirement = "a joint model (arch joint_resnet18, joint_resnet50, joint_vgg16 or joint_xml_vgg)"
    families = ("cnn",)
    passes_per_image = 1

    def __init__(self) -> None:
        pass

    def supports(self, arch: str) -> bool:
        return arch.startswith("joint_")

    def attribute(self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The explanation [B, H, W] of a JointClassifier."""
        from .model import JointClassifier  # a torch.nn.Module: imported once a model runs

        if not isinstance(model, JointClassifier):
            raise TypeError(f"method 'joint' needs {self.requirement}; got {type(model).__name__}")
        with eval_mode(model), torch.no_grad():
            return model.explain(images)[:, 0].float()
