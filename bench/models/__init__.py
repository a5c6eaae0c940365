"""Models: data-only configs of the trainable architectures, their networks and training loop,
the sources of models loaded from elsewhere, and the pixel-space classifier wrapper."""
