"""Where a demo-model training step goes, and what a second torch thread buys (issue #19 point 1).

For each demo architecture (sd15, sdxl U-Nets; sd3 DiT) and each thread count, one process builds the seeded
random pipeline, calibrates its VAE scale and runs ``--steps`` denoiser training steps exactly as
:func:`diffact.models.train.train_unet` / ``train_dit`` do (batch 16, 64 px): random crops, the frozen VAE's
posterior sample, noising, forward, backward, gradient clipping, AdamW. Per phase it records the process CPU time
(user + system, ``resource.getrusage``) and, per step, the wall time; the first ``--warmup`` steps are left out.

  crops / vae / forward / backward / clip / adamw   CPU seconds per step of each phase
  cpu_s          their sum: CPU seconds per step
  wall_s         wall seconds per step
  cpu_ratio      cpu_s / cpu_s of 1 thread for the same architecture, from this same run

On a 2-core machine the question is whether 2 threads per model beat 1 thread per model with the models side by
side: when ``cpu_ratio`` of 2 threads is well above 1 (the second thread costs more CPU than it saves), the
three models finish sooner on one core each. Wall times on a shared machine carry its load; CPU times much less.
Results depend on the thread count bit for bit (docs/determinism.md): the benchmark does not check numerics.

    python benchmarks/bench_demo_training.py --steps 8 --threads 1 2 [--archs sd15 sdxl sd3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `diffact` sets it: idle OpenMP threads sleep

PHASES = ("crops", "vae", "forward", "backward", "clip", "adamw")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(arch: str, threads: int, steps: int, warmup: int) -> dict:
    """Phase CPU seconds and wall seconds per denoiser training step of ``arch`` on ``threads`` torch threads."""
    import torch
    import torch.nn.functional as F

    from diffact.models.demo import random_init_pipeline
    from diffact.models.loading import scaled_latents
    from diffact.models.train import (DemoTrainSettings, calibrate_latent_scale, expand_conditioning, flow_sigmas,
                                      is_dit, load_training_images, sample_crops, text_conditioning)
    from diffact.utils.seeding import torch_generator

    settings = DemoTrainSettings(num_threads=threads)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    images = load_training_images(settings.image_size, settings.context_scale)
    pipe = random_init_pipeline(arch, settings.seed)
    calibrate_latent_scale(pipe.vae, images, settings)
    dit = is_dit(pipe)
    model = pipe.transformer if dit else pipe.unet
    cond = expand_conditioning(pipe, text_conditioning(pipe, settings.prompt, settings.image_size),
                               settings.batch_size)
    crops_gen, latent_gen, noise_gen = (torch_generator(0, "bench", k) for k in ("crops", "posterior", "noise"))
    abar_table = None if dit else pipe.scheduler.alphas_cumprod.to(torch.float32)
    model.train().requires_grad_(True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr)
    totals = dict.fromkeys(PHASES, 0.0)
    wall = 0.0
    for step in range(warmup + steps):
        started, marks = time.perf_counter(), [_cpu()]
        x = sample_crops(images, settings.batch_size, settings.image_size, crops_gen)
        marks.append(_cpu())
        with torch.no_grad():
            z0 = scaled_latents(pipe.vae, pipe.vae.encode(x).latent_dist.sample(generator=latent_gen))
        marks.append(_cpu())
        eps = torch.randn(z0.shape, generator=noise_gen)
        if dit:
            timesteps, sigmas = flow_sigmas(pipe.scheduler, settings.batch_size, noise_gen)
            sigma = sigmas.view(-1, 1, 1, 1)
            pred = model(hidden_states=(1 - sigma) * z0 + sigma * eps, timestep=timesteps, return_dict=False,
                         **cond)[0]
            loss = F.mse_loss(pred, eps - z0)
        else:
            t = torch.randint(len(abar_table), (settings.batch_size,), generator=noise_gen)
            abar = abar_table[t].view(-1, 1, 1, 1)
            loss = F.mse_loss(model(abar.sqrt() * z0 + (1 - abar).sqrt() * eps, t, **cond).sample, eps)
        marks.append(_cpu())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        marks.append(_cpu())
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        marks.append(_cpu())
        optimizer.step()
        marks.append(_cpu())
        if step >= warmup:
            wall += time.perf_counter() - started
            for phase, (a, b) in zip(PHASES, zip(marks, marks[1:])):
                totals[phase] += b - a
    row = {"arch": arch, "threads": threads, "steps": steps}
    row.update({phase: round(value / steps, 4) for phase, value in totals.items()})
    row["cpu_s"] = round(sum(totals.values()) / steps, 4)
    row["wall_s"] = round(wall / steps, 4)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--archs", nargs="+", default=["sd15", "sdxl", "sd3"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--one", nargs=2, metavar=("ARCH", "THREADS"), help=argparse.SUPPRESS)  # child process
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]), args.steps, args.warmup)))
        return 0
    rows = []
    for arch in args.archs:
        for threads in args.threads:  # one process each: torch's thread pool is sized once per process
            out = subprocess.run([sys.executable, __file__, "--one", arch, str(threads), "--steps", str(args.steps),
                                  "--warmup", str(args.warmup)], capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = {r["arch"]: r["cpu_s"] for r in rows if r["threads"] == min(args.threads)}
    columns = ["arch", "threads", *PHASES, "cpu_s", "wall_s", "cpu_ratio"]
    print(" ".join(f"{c:>9}" for c in columns))
    for row in rows:
        row["cpu_ratio"] = round(row["cpu_s"] / base[row["arch"]], 2)
        print(" ".join(f"{row[c]:>9}" for c in columns))
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (CPU times are per process; wall times carry the load)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
