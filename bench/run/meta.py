"""Compute the meta-evaluation's cells ([meta] in a config) after the run's own cells.

For each model and each (MetaQuantus test, iteration), the K perturbed models (weights times
N(1, sigma) noise) or perturbed inputs (uniform noise, clipped to [0, 1]) are drawn from seeds
derived from the model's seed (the run's, or its training seed), the test, the iteration and k
(the same draws for every metric);
every method of the model re-explains through its batched ``attribute`` and every
meta-evaluated metric scores those maps through its own ``evaluate`` (curve metrics through the
shared engine), on the perturbed model and inputs, with the targets the run explains. A cell
holds one metric's [K, methods, images] scores and the [K, images] perturbed predictions, cached
under its key (a killed run recomputes only the missing cells). Sweep cells score the run's
cached maps with each setting of a metric's knobs. Runs on the main process only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from xaibench.io import from_half, load_checked, save_checked
from xaibench.meta.consistency import kept
from xaibench.meta.perturb import noisy_inputs, noisy_model
from xaibench.models.modelstate import eval_mode
from xaibench.run.execute import Results, save_record, score_shard
from xaibench.run.plan import META_TESTS, Cell, Plan, is_cached
from xaibench.seeding import derive_seed, seeded_global_rng


@dataclass
class MetaScored:
    """A meta cell: scores [K, M, N] of the metric's main column for the methods ``methods`` (K = 1
    for a sweep cell), the predictions [K, N] under each perturbation (a sweep cell: the
    unperturbed ones)."""

    cell: Cell
    scores: torch.Tensor
    predictions: torch.Tensor
    methods: list[str]
    computed: bool
    base: torch.Tensor  # [N] the unperturbed model's predictions on the unperturbed images


def meta_images(plan: Plan, n_test: int) -> int:
    """How many test images (the first ones) the meta-evaluation uses."""
    wanted = plan.config.meta.images
    return min(wanted, n_test) if wanted else n_test


def run_targets(plan: Plan, model: torch.nn.Module, images: torch.Tensor,
                labels: torch.Tensor) -> torch.Tensor:
    """The classes the run explains: the labels, or the unperturbed model's predictions."""
    if plan.config.run.target == "label":
        return labels
    with torch.no_grad():
        return model(images).argmax(1)


def predictions(model: torch.nn.Module, images: torch.Tensor, bs: int) -> torch.Tensor:
    with eval_mode(model), torch.no_grad():
        return torch.cat([model(images[i:i + bs]).argmax(1) for i in range(0, len(images), bs)]).cpu()


def perturbed(test: str, noise: float, seed: int, model: torch.nn.Module,
              images: torch.Tensor) -> tuple[torch.nn.Module, torch.Tensor]:
    """The model and images of one perturbation of ``test`` (one of them unchanged)."""
    if test.startswith("model"):
        return noisy_model(model, noise, seed), images
    return model, noisy_inputs(images, noise, seed)


def explain_cells(plan: Plan, model_id: str) -> list[Cell]:
    """The run's explain cells of one model, in the run's method order."""
    return [c for c in plan.of_kind("explain") if c.parts[0] == model_id]


def explain_all(plan: Plan, model_id: str, model: torch.nn.Module, images: torch.Tensor,
                targets: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
    """Every method of the model on ``images`` (batches of the run's batch size): {method: [N,H,W]}."""
    bs, out = plan.config.run.batch_size, {}
    for cell in explain_cells(plan, model_id):
        method = plan.method_of(cell)
        parts = []
        for i in range(0, len(images), bs):
            with seeded_global_rng(derive_seed(seed, cell.parts[1], i), images.device):
                parts.append(method.attribute(model, images[i:i + bs], targets[i:i + bs]).detach().float())
        out[cell.parts[1]] = torch.cat(parts)
    return out


def metric_scores(plan: Plan, metric: object, plugin: str, method: object, model: torch.nn.Module,
                  images: torch.Tensor, targets: torch.Tensor, maps: torch.Tensor,
                  masks: torch.Tensor | None) -> torch.Tensor:
    """The metric's main column ([N], float32 on the CPU) for one method's maps, in batches."""
    bs, parts = plan.config.run.batch_size, []
    extra = {"method": method} if getattr(metric, "needs_method", False) else {}
    with eval_mode(model):
        for i in range(0, len(images), bs):
            part = slice(i, i + bs)
            out = score_shard(metric, model, images[part], targets[part], maps[part],
                              None if masks is None else masks[part], shard=i, curves={}, extra=extra)
            parts.append(out.scores[plugin].detach().float().cpu())
    return torch.cat(parts)


def _save(cell: Cell, scores: torch.Tensor, preds: torch.Tensor, methods: list[str],
          base: torch.Tensor) -> MetaScored:
    save_checked(cell.path, {"scores": scores, "predictions": preds, "methods": methods, "base": base})
    save_record(cell)
    return MetaScored(cell, scores, preds, methods, True, base)


def _load(cell: Cell) -> MetaScored:
    c = load_checked(cell.path)
    return MetaScored(cell, c["scores"], c["predictions"], list(c["methods"]), False, c["base"])


def spec_of(plan: Plan, metric_id: str) -> object:
    return next(s for s in plan.config.metrics if s.id == metric_id)


def perturbation_group(plan: Plan, cells: list[Cell], model: torch.nn.Module, batch: tuple,
               seed: int) -> list[MetaScored]:
    """The cells of one (model, test, iteration) not yet cached: K perturbations, every method
    explained once per perturbation, every metric of ``cells`` scored on those maps, on the
    images the test keeps (:func:`~xaibench.meta.consistency.kept`; the others' scores are NaN,
    never read: MetaQuantus scores them and then drops them)."""
    images, targets, masks = batch
    base = predictions(model, images, plan.config.run.batch_size)
    test, it = cells[0].parts[2], int(cells[0].parts[3])
    noise, k_count = cells[0].record["noise"], cells[0].record["perturbations"]
    methods = [c.parts[1] for c in explain_cells(plan, cells[0].parts[0])]
    scores = {c.name: torch.full((k_count, len(methods), len(images)), float("nan")) for c in cells}
    preds = []
    for k in range(k_count):
        draw = derive_seed(seed, "meta", test, it, k)
        model_k, images_k = perturbed(test, noise, draw, model, images)
        preds.append(predictions(model_k, images_k, plan.config.run.batch_size))
        keep = torch.from_numpy(kept(base.numpy(), preds[-1][None].numpy(), test)[0])  # [N], CPU
        if not keep.any():  # the test discards every image of this perturbation
            continue
        maps = explain_all(plan, cells[0].parts[0], model_k, images_k, targets, draw)
        here = keep.to(images.device)
        for c in cells:
            spec = spec_of(plan, c.parts[1])
            for i, m in enumerate(methods):
                scores[c.name][k, i, keep] = metric_scores(
                    plan, spec.instance, spec.plugin, plan.methods[m], model_k, images_k[here],
                    targets[here], maps[m][here], None if masks is None else masks[here])
    return [_save(c, scores[c.name], torch.stack(preds), methods, base) for c in cells]


def cached_maps(plan: Plan, model_id: str, n: int) -> dict[str, torch.Tensor]:
    """The run's maps of the first ``n`` test images for every method of the model (explain cache)."""
    bs, out = plan.config.run.batch_size, {}
    for cell in explain_cells(plan, model_id):
        shards = [from_half(load_checked(cell.path / f"{i:05d}.pt")) for i in range((n + bs - 1) // bs)]
        out[cell.parts[1]] = torch.cat(shards)[:n]
    return out


def sweep_cell(plan: Plan, cell: Cell, model: torch.nn.Module, batch: tuple,
               maps: dict[str, torch.Tensor]) -> MetaScored:
    """One setting of a metric's knob sweep, scored on the run's own maps."""
    images, targets, masks = batch
    spec = spec_of(plan, cell.parts[1])
    metric = plan.config.meta.variants[spec.id][int(cell.parts[3])][1]
    methods = list(maps)
    scores = torch.stack([metric_scores(plan, metric, spec.plugin, plan.methods[m], model, images,
                                        targets, maps[m].to(images.device), masks) for m in methods])
    base = predictions(model, images, plan.config.run.batch_size)
    return _save(cell, scores[None], base[None], methods, base)


def run_meta(plan: Plan, results: Results, device: torch.device) -> list[MetaScored]:
    """Every meta cell of ``plan``: read when cached, else computed (main process)."""
    out: list[MetaScored] = []
    cells = plan.of_kind("meta")
    if not cells:
        return out
    n = meta_images(plan, len(results.splits.test))
    for m in results.models:
        model, mine = m.trained.model, [c for c in cells if c.parts[0] == m.cell.name]
        images, labels, masks = results.splits.test.batch(slice(0, n), device)
        with eval_mode(model):
            batch = (images, run_targets(plan, model, images, labels), masks)
        todo = [c for c in mine if not is_cached(c)]
        out += [_load(c) for c in mine if c not in todo]
        for test, it in ((t, str(i)) for t in META_TESTS for i in range(plan.config.meta.iterations)):
            group = [c for c in todo if c.parts[2] == test and c.parts[3] == it]
            out += perturbation_group(plan, group, model, batch, m.cell.seed) if group else []
        sweep = [c for c in todo if c.parts[2] == "sweep"]
        maps = cached_maps(plan, m.cell.name, n) if sweep else {}
        out += [sweep_cell(plan, c, model, batch, maps) for c in sweep]
    return out
