"""The ``[meta]`` section of a config: the meta-evaluation's settings, checked like every other
section (one-line errors naming the key), and the sweeps of metric knobs built once, here.

    [meta]
    perturbations = 5          # K perturbations per test and iteration
    iterations = 1
    images = 16                # the first N test images (0: all)
    model_resilience = 0.001   # sigma of the multiplicative weight noise N(1, sigma)
    model_adversary = 0.5
    input_resilience = 0.001   # bound of the uniform input noise [-b, b], clipped to [0, 1]
    input_adversary = 5.0
    metrics = ["aopc"]         # the run's metrics to meta-evaluate (default: all of them)

    [meta.sweep.aopc]          # rank stability: every combination of the listed values
    substrate = ["black", "blur"]
    patch_size = [4, 8]
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from xaibench.errors import ConfigError, ParamError
from xaibench.params import build, resolved


@dataclass(frozen=True, kw_only=True)
class MetaConfig:
    """The ``[meta]`` section.

    Attributes:
        perturbations: K, the perturbations drawn per test and iteration.
        iterations: how often each test is repeated (each with its own K draws).
        images: the first ``images`` test images are meta-evaluated (0: every test image).
        model_resilience: sigma of the weight noise N(1, sigma) that should not change the scores.
        model_adversary: sigma of the weight noise N(1, sigma) that should make them worse.
        input_resilience: bound b of the uniform input noise [-b, b] that should not change them.
        input_adversary: bound b of the uniform input noise that should make them worse (the
            noisy images are clipped to the pixel range [0, 1]).
        metrics: the ids of the run's metrics to meta-evaluate (empty: every metric).
    """

    perturbations: int = 5
    iterations: int = 1
    images: int = 0
    model_resilience: float = 0.001
    model_adversary: float = 0.5
    input_resilience: float = 0.001
    input_adversary: float = 5.0
    metrics: tuple[str, ...] = ()
    sweep: tuple[tuple[str, tuple[tuple[str, tuple[Any, ...]], ...]], ...] = ()
    variants: dict[str, list[tuple[dict[str, Any], Any]]] = field(default_factory=dict, compare=False,
                                                                   repr=False)

    def __post_init__(self) -> None:
        for key in ("perturbations", "iterations"):
            if getattr(self, key) < 1:
                raise ParamError(key, f"must be >= 1, got {getattr(self, key)}")
        if self.images < 0:
            raise ParamError("images", f"must be >= 0 (0: every test image), got {self.images}")
        for key in ("model_resilience", "model_adversary", "input_resilience", "input_adversary"):
            if not getattr(self, key) > 0:
                raise ParamError(key, f"must be > 0, got {getattr(self, key)}")

    def noise(self, test: str) -> float:
        """The noise level of a test ("model_resilience", ...)."""
        return float(getattr(self, test))

    def resolved(self) -> dict[str, Any]:
        """Every setting as plain data (for keys and the manifest)."""
        out = {k: v for k, v in asdict(self).items() if k not in ("sweep", "variants")}
        out["metrics"] = list(self.metrics)
        out["sweep"] = {m: {k: list(v) for k, v in knobs} for m, knobs in self.sweep}
        return out


def _sweep(raw: Any, metrics: dict[str, Any], image_size: tuple[int, int], where: Any) -> tuple[tuple, dict]:
    """The checked ``[meta.sweep.<metric>]`` tables and every combination's metric, built once."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where.at('meta', 'sweep')}: [meta] sweep: must be a table of "
                          f"[meta.sweep.<metric>] tables")
    sweep, variants = [], {}
    for mid, knobs in raw.items():
        if mid not in metrics:
            raise ConfigError(f"{where.at('meta.sweep', mid)}: [meta.sweep.{mid}]: not a metric of this "
                              f"run; "
                              f"metrics: {', '.join(metrics)}")
        if not isinstance(knobs, dict) or not knobs:
            raise ConfigError(f"{where.at('meta.sweep', mid)}: [meta.sweep.{mid}]: must list at least one "
                              f"key = [values]")
        for key, values in knobs.items():
            if not isinstance(values, list) or not values:
                at = where.at(f"meta.sweep.{mid}", key)
                raise ConfigError(f"{at}: [meta.sweep.{mid}] {key}: must be a non-empty list of values")
        spec = metrics[mid]
        variants[mid] = []
        for combo in itertools.product(*knobs.values()):
            setting = dict(zip(knobs, combo))
            try:
                built = build(type(spec.instance), {**spec.as_dict(), **setting})
                built.check_image_size(*image_size)
            except ParamError as exc:
                at = where.at(f"meta.sweep.{mid}", exc.key)
                raise ConfigError(f"{at}: [meta.sweep.{mid}] {exc}") from None
            variants[mid].append((resolved(type(built), {**spec.as_dict(), **setting}), built))
        sweep.append((mid, tuple((k, tuple(v)) for k, v in knobs.items())))
    return tuple(sweep), variants


def parse_meta(raw: Any, metrics: dict[str, Any], image_size: tuple[int, int],
               where: Any) -> MetaConfig | None:
    """The ``[meta]`` section checked against the run's metrics ({id: PluginSpec}) and the
    dataset's image size; None when the config has none. ``where``: the config's
    :class:`~xaibench.config.Where` (the file, or the ``--set`` argument that set a key). Raises
    :class:`ConfigError` naming the key."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError(f"{where.at('meta')}: [meta]: must be a table")
    values = {k: v for k, v in raw.items() if k != "sweep"}
    if "variants" in values:
        raise ConfigError(f"{where.at('meta', 'variants')}: [meta] variants: unknown key; use "
                          f"[meta.sweep.<metric>] tables")
    try:
        meta = build(MetaConfig, values)
    except ParamError as exc:
        raise ConfigError(f"{where.at('meta', exc.key)}: [meta] {exc}") from None
    unknown = [m for m in meta.metrics if m not in metrics]
    if unknown:
        raise ConfigError(f"{where.at('meta', 'metrics')}: [meta] metrics: {', '.join(unknown)} not among "
                          f"the run's metrics "
                          f"({', '.join(metrics)})")
    unranked = [m for m, spec in metrics.items() if (not meta.metrics or m in meta.metrics)
                and spec.instance.direction(spec.plugin) is None]
    if unranked:
        raise ConfigError(f"{where.at('meta', 'metrics')}: [meta] metrics: {', '.join(unranked)} rank no "
                          f"method (no better direction); list the metrics to meta-evaluate")
    sweep, variants = _sweep(raw.get("sweep", {}), metrics, image_size, where)
    return replace(meta, sweep=sweep, variants=variants)
