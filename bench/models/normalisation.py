"""The input normalisation most pretrained image classifiers expect: ImageNet's per-channel mean and
standard deviation, the default of the pixel-space wrapper (:class:`xaibench.models.classifier.Classifier`)
and of models loaded from elsewhere (:mod:`xaibench.models.sources`). No torch here: config classes use
these as defaults."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
