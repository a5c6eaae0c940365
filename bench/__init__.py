"""xaibench: an explainability evaluation benchmark for image classifiers."""

__version__ = "0.1.0"
