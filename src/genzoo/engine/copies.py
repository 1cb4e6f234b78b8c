"""Independent copies of one model trained as one program: seeds of Triple-GAN, the extra seeds of `compare`.

`Copies(models, seeds)` is trained by the one fit() like any model. Each step runs every copy's own `train_step`
on its own minibatch, with its own optimizers and its own random stream, so N copies trained together are N
copies trained apart (bit for bit on a CPU: tests/test_copies.py). Why one program: on a GPU the engine captures
the whole step, every copy's, as one CUDA graph, so the copies cost one launch per step instead of N; there the
copies draw from the device's one random stream in turn (the same distributions, not the separate runs' draws).

What each copy gets, as fit() would give it alone:
- its weights and buffers, as built with its seed (the caller builds them);
- its batch order: fit()'s permutation of the training rows for its own seed and epoch (`draw_batch`);
- its training set, when the copies have sets of their own (AnoGAN's one-class models: `fit(copies, {"<i>/x": ...})`,
  run by `fit(steps=...)` so that every copy gets the updates it gets alone; its epochs are its own set's);
- its random stream: the CPU generator as `torch.manual_seed(seed)` leaves it, swapped in around its step
  (a buffer: saved in checkpoints with the weights);
- its optimizers and their schedules: `configure_optimizers` names them "<i>/<name>".
Losses and validation numbers come back as "<i>/<name>" (`split_history` sorts a fit's history by copy). The
copies share one config (the section: batch size, epochs, schedule) and one training split or one set each.
Validation is isolated from training as in fit(); a model whose `validate` draws random numbers draws them in
another order than alone (the same distribution).
"""

from __future__ import annotations

import torch
from torch import nn

SEP = "/"


class Copies(nn.Module):
    def __init__(self, models: list[nn.Module], seeds: list[int]):
        super().__init__()
        if not models or len(models) != len(seeds):
            raise ValueError(f"Copies: one seed per model, got {len(models)} models and {len(seeds)} seeds")
        first = models[0]
        self.copies = nn.ModuleList(models)
        self.seeds = list(seeds)
        self.config = first.config
        self.batches_per_step = getattr(first, "batches_per_step", 1)
        self._orders: dict[int, tuple[int, torch.Tensor]] = {}  # copy -> (epoch, its permutation of that epoch)
        for i, seed in enumerate(seeds):  # each copy's CPU stream, saved and resumed with the weights, starting
            with torch.random.fork_rng(devices=[]):  # where manual_seed(seed) puts it, as in fit()
                torch.manual_seed(seed)
                self.register_buffer(f"rng_{i}", torch.get_rng_state())

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        opts = {}
        for i, model in enumerate(self.copies):
            own = model.configure_optimizers()
            opts.update({f"{i}{SEP}{name}": opt for name, opt in own.items()})
        return opts

    def own_sets(self, train: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Each copy's training set: its own ("<i>/x", ...) or, for keys without a copy, the one they share."""
        if not any(copy_of(f"train/{k}")[0] is not None for k in train):
            return [train] * len(self.copies)
        sets = [self._own(train, i) for i in range(len(self.copies))]
        if not all(sets) or sum(map(len, sets)) != len(train):
            raise ValueError(f"Copies: give every one of the {len(self.copies)} copies its own set ('<i>/x') or "
                             f"none of them; got keys {sorted(train)}")
        return sets

    def rows(self, train: dict[str, torch.Tensor]) -> int:
        """fit()'s rows per epoch: the shared split's, or the smallest own set's (its epochs set fit()'s count when
        the run is not given in steps; each copy still goes through its own set in its own epochs)."""
        from genzoo.engine.training import rows

        sizes = [rows(own) for own in self.own_sets(train)]
        if len(set(sizes)) > 1 and self.config.lr_schedule == "burda":
            raise ValueError("Copies: the burda schedule counts its stages in epochs, and copies with sets of "
                             f"different sizes ({sizes}) have epochs of different lengths")
        return min(sizes)

    def draw_batch(self, train: dict[str, torch.Tensor], step: int, steps_per_epoch: int,
                   batch_size: int) -> dict[str, torch.Tensor]:
        """Each copy's minibatch of `step`, in its own seed's order of its own epoch (fit()'s `_permutation`), as
        large as fit() makes it alone (a set smaller than the batch is one batch)."""
        from genzoo.engine.training import _permutation, rows

        batch = {}
        for i, (own, seed) in enumerate(zip(self.own_sets(train), self.seeds)):
            n = rows(own)
            size = min(self.config.batch_size * self.batches_per_step, n)  # a shared split: fit()'s batch_size
            epoch, offset = divmod(step, n // size)  # with a shared split: fit()'s steps_per_epoch
            if self._orders.get(i, (None,))[0] != epoch:
                self._orders[i] = (epoch, _permutation(n, seed, epoch, next(iter(own.values())).device))
            idx = self._orders[i][1][offset * size:(offset + 1) * size]
            batch.update({f"{i}{SEP}{k}": v[idx] for k, v in own.items()})
        return batch

    def _own(self, mapping: dict, i: int) -> dict:
        prefix = f"{i}{SEP}"
        return {k[len(prefix):]: v for k, v in mapping.items() if k.startswith(prefix)}

    def train_step(self, batch: dict[str, torch.Tensor], opt: dict) -> dict[str, torch.Tensor]:
        out = {}
        swap = self.rng_0.device.type == "cpu"  # on a GPU the copies draw from the device's stream in turn
        outer = torch.get_rng_state()
        for i, model in enumerate(self.copies):
            state = getattr(self, f"rng_{i}")
            if swap:
                torch.set_rng_state(state)
            losses = model.train_step(self._own(batch, i), self._own(opt, i))
            if swap:
                state.copy_(torch.get_rng_state())
            out.update({f"{i}{SEP}{k}": v for k, v in losses.items()})  # fit() logs it as "train/<i>/<k>"
        if swap:
            torch.set_rng_state(outer)
        return out

    @torch.no_grad()
    def validate(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for i, model in enumerate(self.copies):
            out.update({f"{i}{SEP}{k}": v for k, v in model.validate(batch).items()})
        return out


def own_sets_as_one(sets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Copy i's own training set under "<i>/<key>": what fit(copies, ...) takes when every copy has its own."""
    return {f"{i}{SEP}{k}": v for i, own in enumerate(sets) for k, v in own.items()}


def copy_of(key: str) -> tuple[int | None, str]:
    """Which copy a logged number belongs to and its name in that copy: "train/<i>/loss" -> (i, "train/loss");
    what the copies share ("train/steps_per_s") -> (None, key). The inverse of copy_key under fit()'s prefix."""
    group, _, rest = key.partition("/")
    i, sep, metric = rest.partition(SEP)
    return (int(i), f"{group}/{metric}") if sep and i.isdigit() else (None, key)


def split_history(history: list[dict[str, float]], copies: int) -> list[list[dict[str, float]]]:
    """A fit(Copies) history as each copy's own: rows keep their step, "train/<i>/loss" becomes "train/loss", and
    what the copies share ("train/steps_per_s") goes to each; a row with nothing of a copy is left out of its."""
    own: list[list[dict[str, float]]] = [[] for _ in range(copies)]
    for row in history:
        values: list[dict[str, float]] = [{} for _ in range(copies)]
        shared = {}
        for key, value in row.items():
            if key == "step":
                continue
            i, name = copy_of(key)
            (shared if i is None else values[i])[name] = value
        for i, mine in enumerate(values):
            if mine:
                own[i].append({"step": row["step"], **mine, **shared})
    return own


def copy_key(key: str, i: int) -> str:
    """Copy i's name for a number: "modes/kl" -> "modes/<i>/kl", as fit() adds "train/" or "val/" before it."""
    group, sep, rest = key.partition("/")
    return f"{group}/{i}{SEP}{rest}" if sep else f"{i}{SEP}{key}"


def for_each_copy(fns: list):
    """One callable per copy (fit()'s `monitor`, which takes the model) as one for the Copies: each runs on its
    copy from the stream seed 0 starts, as fit() runs it alone, its numbers named by copy_key."""
    def run(copies: Copies) -> dict[str, float]:
        out = {}
        for i, (fn, model) in enumerate(zip(fns, copies.copies)):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                out.update({copy_key(k, i): v for k, v in fn(model).items()})
        return out

    return run
