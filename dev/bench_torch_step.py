"""Times one training step (forward + backward + AdamW) of the PyTorch reference model, float32.

Example:
  /usr/bin/python3 dev/bench_torch_step.py --layers 4 --hidden 512 --heads 8 --kv-heads 8 \
      --experts 16 --k 4 --intermediate 1024 --seq 256 --batch 8 --vocab 256 --router probmoe \
      --threads 2
Prints tokens/s = batch*seq / (median step time over --steps steps after --warmup steps).
ProbMoE sampling and marginals enumerate every admissible subset exactly (C(16,4) = 1820).
"""
import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_model as rm  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--experts", type=int, default=16)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--intermediate", type=int, default=1024)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=256)
    ap.add_argument("--router", default="probmoe", choices=rm.ROUTERS)
    ap.add_argument("--k-min", type=int, default=None, help="probmoe-dyn (default max(1, k-2))")
    ap.add_argument("--k-max", type=int, default=None, help="probmoe-dyn (default k+2)")
    ap.add_argument("--soft-k", type=float, default=None, help="softmoe k (default k)")
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--tau", type=float, default=0.05)
    ap.add_argument("--cap", type=float, default=2.0)
    ap.add_argument("--norm-topk-prob", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    k_min = a.k_min if a.k_min is not None else max(1, a.k - 2)
    k_max = a.k_max if a.k_max is not None else min(a.experts, a.k + 2)
    cfg = rm.make_config(vocab=a.vocab, hidden=a.hidden, intermediate=a.intermediate,
                         layers=a.layers, heads=a.heads, kv_heads=a.kv_heads, experts=a.experts,
                         k=a.k, max_pos=max(a.seq, 64), norm_topk_prob=a.norm_topk_prob,
                         router=a.router, k_min=k_min, k_max=k_max,
                         soft_k=a.soft_k if a.soft_k is not None else float(a.k),
                         alpha=a.alpha, tau=a.tau, cap=a.cap)
    gen = torch.Generator().manual_seed(a.seed)
    P = {n: p.requires_grad_() for n, p in rm.init_params(cfg, gen).items()}
    ids = torch.randint(0, a.vocab, (a.batch, a.seq), generator=gen)
    tgt = torch.randint(0, a.vocab, (a.batch, a.seq), generator=gen)
    state = rm.adamw_init(P)
    nparams = sum(p.numel() for p in P.values())

    times, losses = [], []
    for step in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        out = rm.forward(P, cfg, ids, tgt, gen=gen)
        grads = dict(zip(P.keys(), torch.autograd.grad(out["loss"], list(P.values()))))
        rm.adamw_step(P, grads, state)
        dt = time.perf_counter() - t0
        losses.append(out["loss"].item())
        if step >= a.warmup:
            times.append(dt)
    med = statistics.median(times)
    tokens = a.batch * a.seq
    print(f"router {a.router}  params {nparams / 1e6:.2f}M  threads {a.threads}  "
          f"tokens/step {tokens}  median step {med * 1e3:.1f} ms  "
          f"(min {min(times) * 1e3:.1f}, max {max(times) * 1e3:.1f}, {len(times)} steps)  "
          f"loss {losses[0]:.4f} -> {losses[-1]:.4f}")
    print(f"tokens/s {tokens / med:.1f}")


if __name__ == "__main__":
    main()
