"""Train a built-in diffusion prior (an EDM-preconditioned denoiser, see priors/builtin.py) on a folder of images.

Recipe (Karras et al. 2022, arXiv:2206.00364): random crops of the images (optionally downscaled first, so one
crop sees more structure), the 8 flips/rotations, ``ln sigma ~ N(p_mean, p_std^2)``, loss
``lambda(sigma) * |D(x0 + sigma * eps; sigma) - x0|^2`` with ``lambda = (sigma^2 + sd^2) / (sigma * sd)^2``, Adam
with a short warm-up, and an exponential moving average (EMA) of the weights, which is what gets saved.

Complex (2-channel, MRI) priors: images scaled by the 99th percentile of their magnitude (``imageio.training``,
``operators.mri_phase``), never clipped; each crop also gets a uniform random global phase (the phase of an MR
image is arbitrary), and with ``random_phase`` a magnitude image gets a smooth random phase map per crop
(``mri_phase.smooth_phase``), drawn from the same generator.

Every ``checkpoint_every`` steps ``OUT_DIR/checkpoint.pt`` (model, EMA, optimizer, step, RNG state) and the model
directory files (``config.json`` + ``model.safetensors`` of the EMA weights) are written atomically. Running the
same command again after a kill resumes from the checkpoint; all random numbers come from one CPU
``torch.Generator`` whose state is in the checkpoint, so a resumed run draws the same crops and noise as an
uninterrupted one.

This module is imported lazily by the CLI; torch is imported inside functions.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InputError, OutputError, UsageError
from .imageio.training import check_data_dir, load_training_images

if TYPE_CHECKING:
    import torch

CHECKPOINT_NAME = "checkpoint.pt"
#: what a checkpoint of ours holds (``train``'s ``checkpoint()``)
CHECKPOINT_KEYS = frozenset({"model", "ema", "optimizer", "rng", "step", "elapsed_s", "losses", "recipe"})
#: config.json's model_type in a model folder ``train`` writes (priors/builtin.MODEL_TYPE, kept torch-free here)
BUILTIN_MODEL_TYPE = "diffrestore-edm-unet"

#: the posterior-rms table (priors/posterior_rms.training_table) is measured on at most this many training images
TABLE_IMAGES = 64
#: progress(done, total, what): called after every step; ``what`` carries the running loss.
TrainProgress = Callable[[int, int, str], None]


def _sample_batch(images: list, size: int, batch_size: int, max_downscale: float, gen: torch.Generator,
                  permute_channels: bool = False, dihedral: bool = True, complex_channels: bool = False):
    """Random crops (optionally of a downscaled region) with a random one of the 8 flips/rotations.

    ``permute_channels`` also shuffles the colour channels of each crop: with few colour images it stops the
    prior from tying structure to the hues of those particular photos. ``complex_channels``: crops become
    (2, size, size) complex images (module doc) and are not clipped.
    """
    import torch
    import torch.nn.functional as F

    idx = torch.randint(len(images), (batch_size,), generator=gen).tolist()
    u = torch.rand(batch_size, 3, generator=gen).tolist()
    transforms = torch.randint(8, (batch_size,), generator=gen).tolist() if dihedral else [0] * batch_size
    perms = [torch.randperm(images[0].shape[0], generator=gen) for _ in range(batch_size)] if permute_channels else None
    crops = []
    for i, (a, b, c), d in zip(idx, u, transforms, strict=True):
        img = images[i]
        h, w = img.shape[1:]
        # A region of side size*f (f in [1, max_downscale], limited by the image) resized to size: more context.
        f = 1.0 + (max_downscale - 1.0) * a
        side = max(size, min(round(size * f), h, w))
        top = int(b * (h - side + 1))
        left = int(c * (w - side + 1))
        crop = img[:, top : top + side, left : left + side]
        if side != size:
            crop = F.interpolate(crop[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
        if d & 4:
            crop = crop.flip(-1)
        crop = torch.rot90(crop, d & 3, dims=(-2, -1))
        if perms is not None:
            crop = crop[perms[len(crops)]]
        if complex_channels:
            crop = _complex_crop(crop, gen)
        crops.append(crop)
    batch = torch.stack(crops)
    return batch if complex_channels else batch.clamp(-1, 1)


def _complex_crop(crop: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A magnitude crop (1, H, W) times a smooth random phase, or a complex crop (2, H, W) times a random global
    phase: (2, H, W) real/imaginary channels."""
    import torch

    from .operators.mri_phase import smooth_phase

    if crop.shape[0] == 1:
        phase = smooth_phase(crop.shape[1], crop.shape[2], generator=gen)
        return torch.stack([crop[0] * torch.cos(phase), crop[0] * torch.sin(phase)])
    angle = 2 * math.pi * float(torch.rand((), generator=gen))
    c, s = math.cos(angle), math.sin(angle)
    return torch.stack([c * crop[0] - s * crop[1], s * crop[0] + c * crop[1]])


def check_recipe(*, size: int, steps: int, batch_size: int, checkpoint_every: int, base_channels: int,
                 ema_decay: float, max_downscale: float, channels: int | None, channel_mults: tuple[int, ...],
                 lr_drops: tuple[int, ...], pixel_unshuffle: int, lr: float, device: str) -> tuple[int, ...]:
    """UsageError for a training setting no run can use, without torch; returns ``lr_drops`` as whole numbers."""
    from .run.runtime import check_device_name

    for name, value, low in (("size", size, 8), ("steps", steps, 1), ("batch_size", batch_size, 1),
                             ("checkpoint_every", checkpoint_every, 1), ("base_channels", base_channels, 1)):
        if int(value) < low:
            raise UsageError(f"--{name.replace('_', '-')} must be at least {low}, got {value}")
    # A NaN passes every comparison, so finiteness is asked first; torch's optimiser would only say "Invalid
    # learning rate" after the data is read, and an infinite one trains to NaN weights.
    if not (math.isfinite(lr) and lr > 0):
        raise UsageError(f"--lr must be a finite number above 0, got {lr}", hint="for example --lr 1e-3")
    if not 0.0 <= ema_decay < 1.0:
        raise UsageError(f"ema_decay must be in [0, 1), got {ema_decay}")
    if not (math.isfinite(max_downscale) and max_downscale >= 1.0):
        raise UsageError(f"--max-downscale must be a finite number of at least 1, got {max_downscale}",
                         hint="1 takes plain crops")
    if channels not in (None, 1, 2, 3):
        raise UsageError(f"--channels must be 1, 2 (complex) or 3, got {channels}")
    if not channel_mults or min(channel_mults) < 1:
        raise UsageError(f"--channel-mults needs one positive number per level, got {channel_mults}",
                         hint="for example --channel-mults 1,2,4,6")
    lr_drops = tuple(int(s) for s in lr_drops)
    if any(s < 1 for s in lr_drops) or list(lr_drops) != sorted(set(lr_drops)):
        raise UsageError(f"--lr-drop-at needs increasing positive step numbers, got {','.join(map(str, lr_drops))}",
                         hint="for example --lr-drop-at 30000")
    if pixel_unshuffle not in (1, 2, 4):
        raise UsageError(f"--pixel-unshuffle must be 1, 2 or 4, got {pixel_unshuffle}")
    if size % (multiple := pixel_unshuffle * 2 ** (len(channel_mults) - 1)):
        raise UsageError(f"--size {size} is not a multiple of {multiple} (the network works on blocks of {multiple} "
                         "pixels)", hint=f"use --size {max(multiple, size - size % multiple)}")
    check_device_name(device)
    return lr_drops


def check_out_dir(out_dir: Path) -> None:
    """OutputError for an ``--out`` that cannot become the model folder: a file, a path under a file, a folder
    that cannot be written or created (probed by creating and removing a temporary file or folder: unlike
    ``os.access`` this holds for root, read-only mounts and ACLs), or one whose config.json is not ours."""
    import tempfile

    existing = out_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "is a file" if existing == out_dir else f"cannot be created: '{existing}' is a file"
        raise OutputError(f"--out '{out_dir}' {where}, not a folder", hint="name a new or existing folder")
    config = out_dir / "config.json"
    if config.exists() and _json_object(config).get("model_type") != BUILTIN_MODEL_TYPE:
        raise OutputError(f"--out folder '{out_dir}' holds a config.json that diffrestore train did not write; "
                          "training would replace it", hint="choose a new or empty folder for --out")
    try:
        if existing == out_dir:
            fd, probe = tempfile.mkstemp(prefix=".diffrestore-probe-", dir=existing)
            os.close(fd)
            os.unlink(probe)
        else:
            os.rmdir(tempfile.mkdtemp(prefix=".diffrestore-probe-", dir=existing))
    except OSError as error:
        where = "" if existing == out_dir else f" (its parent '{existing}' refuses a new folder)"
        raise OutputError(f"--out '{out_dir}' is not writable{where}: {error.strerror or error}",
                          hint="choose another --out, or fix the folder's permissions") from None


def _json_object(path: Path) -> dict[str, Any]:
    """A JSON file's object, or {} when it is unreadable or holds something else."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _read_checkpoint(path: Path, device: Any, recipe: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint to resume, read with tensors only (never unpickling code); InputError naming the file and
    what to do when it cannot be (pickled objects, damage, another program's file), UsageError for another
    recipe's."""
    import pickle

    import torch

    start_over = "delete it, or use --no-resume or another --out to start over"
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as error:
        # torch's message advises weights_only=False, which would run whatever code the file holds: never give
        # it; a refused global (a class, a function) is pickled code, any other failure a damaged file.
        detail = " ".join(str(error).split())
        if "unsupported global" in detail.lower() or "unsupported class" in detail.lower():
            raise InputError(f"'{path}' holds pickled Python objects besides tensors, which are never loaded (they "
                             "could run code), so training cannot resume from it", hint=start_over) from None
        detail = "" if "weights_only" in detail or not detail else f" ({detail[:120]})"
        raise InputError(f"'{path}' cannot be read as a training checkpoint: it is truncated or corrupt{detail}",
                         hint=start_over) from None
    try:
        written = json.loads(ckpt["recipe"]) if isinstance(ckpt, dict) and set(ckpt) >= CHECKPOINT_KEYS else None
    except (TypeError, ValueError):
        written = None
    if written is None:
        raise InputError(f"'{path}' is not a diffrestore training checkpoint", hint=start_over)
    if written != recipe:
        raise UsageError(f"'{path}' was written by a different training recipe (data, size, batch size, seed or "
                         "architecture differ), so it cannot be resumed",
                         hint="use another --out folder, or --no-resume to start over")
    return ckpt


def _atomic_torch_save(obj: Any, path: Path) -> None:
    import torch

    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(obj, tmp)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a half-written temporary is no checkpoint
        raise


def train(
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    size: int = 48,
    steps: int = 10000,
    batch_size: int = 16,
    seed: int = 0,
    device: str = "cpu",
    lr: float = 1e-3,
    checkpoint_every: int = 250,
    progress: TrainProgress | None = None,
    channels: int | None = None,
    base_channels: int = 32,
    channel_mults: tuple[int, ...] = (1, 2, 2, 4),
    num_res_blocks: int = 1,
    pixel_unshuffle: int = 2,
    ema_decay: float = 0.999,
    max_downscale: float = 1.0,
    permute_channels: bool = False,
    dihedral: bool = True,
    p_mean: float = -1.0,
    p_std: float = 1.4,
    warmup_steps: int = 200,
    lr_drops: tuple[int, ...] = (),
    resume: bool = True,
    random_phase: bool = False,
) -> Path:
    """Train a prior on random ``size`` x ``size`` crops of the images in ``data_dir``; returns ``out_dir``.

    ``out_dir`` becomes a model directory (config.json + model.safetensors of the EMA weights, loadable by
    ``priors.builtin.load_model_dir`` and accepted as ``--model``) and holds ``checkpoint.pt``. If a checkpoint
    from the same recipe is there and ``resume`` is true, training continues from it up to ``steps`` total.
    ``channels=None``: 3 if any image is colour (grey images are replicated), else 1.
    ``lr_drops``: step counts after which the learning rate is divided by 10 (each); they are absolute step
    numbers, not fractions of ``steps``, so a run resumed with a larger ``steps`` follows the same schedule.
    ``channels=2``: a complex prior (module doc); magnitude images in its folder need ``random_phase``.
    """
    # Every check that needs no torch first, so that a mistyped flag or folder fails at once.
    lr_drops = check_recipe(size=size, steps=steps, batch_size=batch_size, checkpoint_every=checkpoint_every,
                            base_channels=base_channels, ema_decay=ema_decay, max_downscale=max_downscale,
                            channels=channels, channel_mults=channel_mults, lr_drops=lr_drops,
                            pixel_unshuffle=pixel_unshuffle, lr=lr, device=device)
    check_data_dir(Path(data_dir))
    out_dir = Path(out_dir)
    check_out_dir(out_dir)
    import torch

    from .priors.builtin import BuiltinPrior, DenoiserUNet, UNetConfig, apply_denoiser, count_parameters, save_model_dir
    from .priors.posterior_rms import training_table
    from .run.runtime import resolve_device

    dev = resolve_device(device)
    images, channels, skipped = load_training_images(data_dir, size, channels)
    complex_channels = channels == 2
    if complex_channels and permute_channels:
        raise UsageError("--permute-channels shuffles colour channels; a complex (2-channel) prior has none")
    magnitudes = sum(img.shape[0] == 1 for img in images) if complex_channels else 0
    if magnitudes and not random_phase:
        raise UsageError(f"{magnitudes} of the {len(images)} training images are magnitudes (no phase), which a "
                         "complex prior cannot learn from as they are", hint="add --random-phase to give each crop "
                         "a smooth random phase, or give complex .npy arrays")

    config = UNetConfig(channels=channels, base_channels=base_channels, channel_mults=tuple(channel_mults),
                        num_res_blocks=num_res_blocks, pixel_unshuffle=pixel_unshuffle)
    # Everything that changes what a step computes: a checkpoint from a different recipe must not be resumed.
    recipe = {
        "size": size, "batch_size": batch_size, "seed": seed, "lr": lr, "ema_decay": ema_decay,
        "max_downscale": max_downscale, "permute_channels": permute_channels, "dihedral": dihedral, "p_mean": p_mean,
        "p_std": p_std, "warmup_steps": warmup_steps, "architecture": config.to_json_dict(), "num_images": len(images),
    }
    if lr_drops:  # only when set, so checkpoints written before the option existed still resume
        recipe["lr_drops"] = list(lr_drops)
    if random_phase:
        recipe["random_phase"] = True
    with torch.random.fork_rng(devices=[]):  # seed the weight initialisation without touching the caller's RNG
        torch.manual_seed(seed)
        net = DenoiserUNet(config).to(dev)
    ema = DenoiserUNet(config).to(dev)
    ema.load_state_dict(net.state_dict())
    ema.requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    gen = torch.Generator(device="cpu")
    gen.manual_seed(seed)
    step, elapsed_before, losses = 0, 0.0, []

    ckpt_path = out_dir / CHECKPOINT_NAME
    if resume and ckpt_path.is_file():
        ckpt = _read_checkpoint(ckpt_path, dev, recipe)
        try:
            net.load_state_dict(ckpt["model"])
            ema.load_state_dict(ckpt["ema"])
            opt.load_state_dict(ckpt["optimizer"])
            gen.set_state(ckpt["rng"])
            step = int(ckpt["step"])
            elapsed_before = float(ckpt["elapsed_s"])
            losses = list(ckpt["losses"].tolist())
        except (RuntimeError, ValueError, TypeError, KeyError, AttributeError) as error:
            raise InputError(f"'{ckpt_path}' matches this recipe but its contents are damaged ("
                             f"{' '.join(str(error).split())[:120]})",
                             hint="delete it, or use --no-resume to start over") from None
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # the probe passed, but the file system changed since (or a race)
        raise OutputError(f"cannot create --out '{out_dir}': {error.strerror or error}") from None

    def metadata() -> dict[str, Any]:
        return {
            "steps": step, "requested_steps": steps, "train_seconds": round(elapsed_before + time.time() - t0, 1),
            "data_dir": str(data_dir), "num_images": len(images), "skipped_small_images": skipped,
            "size": size, "batch_size": batch_size, "seed": seed, "lr": lr, "ema_decay": ema_decay,
            "max_downscale": max_downscale, "permute_channels": permute_channels, "dihedral": dihedral,
            "p_mean": p_mean, "p_std": p_std, "warmup_steps": warmup_steps, "lr_drops": list(lr_drops),
            "parameters": count_parameters(net), "device": str(dev), "torch": torch.__version__,
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "threads": torch.get_num_threads(), "random_phase": random_phase,
            "final_loss_ema": round(loss_avg, 5) if loss_avg is not None else None,
        }

    def checkpoint() -> None:
        try:
            _atomic_torch_save(
                {"model": net.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(),
                 "rng": gen.get_state(), "step": step, "elapsed_s": elapsed_before + time.time() - t0,
                 "losses": torch.tensor(losses, dtype=torch.float32), "recipe": json.dumps(recipe)},
                ckpt_path,
            )
            save_model_dir(ema, out_dir, metadata=metadata())
        except OSError as error:  # a full disk, a mount gone read-only: the last complete checkpoint stays
            raise OutputError(f"cannot write the checkpoint in --out '{out_dir}' at step {step}: "
                              f"{error.strerror or error}",
                              hint="free space or fix the folder, then run the same command again to resume "
                              "from the last checkpoint") from None

    t0 = time.time()
    loss_avg: float | None = losses[-1] if losses else None
    sd = config.sigma_data
    net.train()
    while step < steps:
        x0 = _sample_batch(images, size, batch_size, max_downscale, gen, permute_channels, dihedral,
                           complex_channels).to(dev)
        ln_sigma = p_mean + p_std * torch.randn(batch_size, generator=gen)
        sigma = ln_sigma.exp().to(dev)
        noise = torch.randn(x0.shape, generator=gen).to(dev)
        weight = (sigma**2 + sd**2) / (sigma * sd) ** 2
        denoised = apply_denoiser(net, x0 + sigma[:, None, None, None] * noise, sigma)
        loss = (weight[:, None, None, None] * (denoised - x0) ** 2).mean()
        # Linear warm-up, then lr / 10 after each drop: the last steps at a small rate settle the weights
        # (the EMA alone averages over ~1 / (1 - ema_decay) steps of noisy updates at the full rate).
        step_lr = lr * min(1.0, (step + 1) / max(1, warmup_steps)) * 0.1 ** sum(step >= s for s in lr_drops)
        for group in opt.param_groups:
            group["lr"] = step_lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        # EMA with a warm-up ((1 + n) / (10 + n)) so short runs are not dominated by the random initial weights.
        decay = min(ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pn in zip(ema.parameters(), net.parameters(), strict=True):
                pe.lerp_(pn, 1 - decay)
            for be, bn in zip(ema.buffers(), net.buffers(), strict=True):
                be.copy_(bn)
        step += 1
        value = float(loss.detach())
        if not math.isfinite(value):
            raise UsageError(f"training diverged at step {step} (loss {value})", hint="lower --lr")
        losses.append(value)
        loss_avg = value if loss_avg is None else 0.98 * loss_avg + 0.02 * value
        if progress is not None:
            progress(step, steps, f"loss {loss_avg:.4f}")
        if step % checkpoint_every == 0 or step == steps:
            checkpoint()
    # A resumed run that had already reached `steps` (or a run killed between a checkpoint and the model files):
    # make sure the model directory describes the final step, and carries the finished network's posterior
    # spread by sigma (DAPS's r_t="mmse"), measured on crops of the training images.
    written = json.loads((out_dir / "config.json").read_text()) if (out_dir / "config.json").is_file() else {}
    final = (out_dir / "model.safetensors").is_file() and written.get("training", {}).get("steps") == step
    if not final or "posterior_rms" not in written:
        table = training_table(BuiltinPrior(ema, device=dev), _table_images(images, seed, complex_channels), seed=seed)
        ema.config.extra["posterior_rms"] = table.to_json_dict()
        # only the model files change: checkpoint.pt already holds this step (written in the loop or resumed)
        save_model_dir(ema, out_dir, metadata=metadata())
    return out_dir


def _table_images(images: list, seed: int, complex_channels: bool) -> list:
    """The training images the posterior-rms table is measured on (at most TABLE_IMAGES, evenly spaced), as the
    prior sees them: for a complex prior, magnitudes get one seeded smooth phase."""
    import torch

    if len(images) > TABLE_IMAGES:  # evenly spaced: the table is an average, and each image costs 50 calls
        images = [images[round(i * (len(images) - 1) / (TABLE_IMAGES - 1))] for i in range(TABLE_IMAGES)]
    if not complex_channels:
        return images
    gen = torch.Generator(device="cpu")
    gen.manual_seed(seed)
    return [_complex_crop(img, gen) if img.shape[0] == 1 else img for img in images]


def training_losses(out_dir: str | Path) -> list[float]:
    """Per-step losses recorded in ``out_dir/checkpoint.pt`` (for tests and plots)."""
    import torch

    ckpt = torch.load(Path(out_dir) / CHECKPOINT_NAME, map_location="cpu", weights_only=True)
    return [float(v) for v in ckpt["losses"]]
