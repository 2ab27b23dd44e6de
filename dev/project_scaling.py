#!/usr/bin/env python3
"""Projects data-parallel step time and efficiency beyond this machine (docs/DISTRIBUTED.md).

A projection, not a measurement: it combines the cost model below with a per-rank throughput
measured here (bench/data_parallel.sh) and stated network assumptions. Usage:
  python3 dev/project_scaling.py [TOKENS_PER_S_OF_ONE_2_CORE_RANK]
"""
import sys

# the bench's model: L4 H512 8 heads, E16 k4, I1024, vocabulary 256, sequences of 256
L, H, HEADS, E, K, I, V, S = 4, 512, 8, 16, 4, 1024, 256, 256
TOKENS_PER_RANK = 8 * 256  # a rank's rows of the global batch each step (weak scaling)


def parameters():
    attention = 4 * H * H + 3 * H  # q, k, v, o; the norms
    experts = E * 3 * H * I
    layer = attention + E * H + experts + H
    return L * layer + 2 * V * H + H


def active_parameters():
    return L * (4 * H * H + E * H + K * 3 * H * I) + 2 * V * H


def flops_per_token():
    # 2 flops per weight and token forward, twice that backward; attention's scores and values
    return 6 * active_parameters() + L * 3 * 4 * S * H


def ring_allreduce_seconds(nbytes, ranks, bandwidth, latency, buckets):
    if ranks == 1:
        return 0.0
    return 2 * (ranks - 1) / ranks * nbytes / bandwidth + buckets * 2 * (ranks - 1) * latency


def main():
    measured = float(sys.argv[1]) if len(sys.argv) > 1 else 589.0  # bench/data_parallel.sh, 2026-12-02
    P = parameters()
    grad_bytes = 4 * P
    buckets = L + 3
    print(f"parameters {P / 1e6:.1f} M, active per token {active_parameters() / 1e6:.1f} M, "
          f"{flops_per_token() / 1e6:.0f} MFLOP per token (forward and backward)")
    print(f"all-reduce per step: {grad_bytes / 1e6:.0f} MB of float32 gradients in {buckets} buckets")
    print(f"expert parallelism instead (per token, 4 all-to-alls of k = {K} rows of {H} floats): "
          f"{4 * K * H * 4 / 1e3:.1f} kB per token")
    print()
    scenarios = [
        ("2-core ranks, 25 GB/s, 5 us", 1, 25e9, 5e-6),
        ("64-core ranks, 25 GB/s, 5 us", 32, 25e9, 5e-6),
        ("64-core ranks, 3 GB/s, 20 us (25 GbE)", 32, 3e9, 20e-6),
    ]
    print("| ranks | " + " | ".join(f"{name}: step s (efficiency)" for name, *_ in scenarios) + " |")
    print("|---" * (len(scenarios) + 1) + "|")
    for ranks in (8, 16, 32, 64, 128, 256, 512):
        cells = []
        for _, speedup, bandwidth, latency in scenarios:
            compute = TOKENS_PER_RANK / (measured * speedup)
            comm = ring_allreduce_seconds(grad_bytes, ranks, bandwidth, latency, buckets)
            step = compute + comm  # no overlap: the pessimistic bound
            cells.append(f"{step:.3f} ({compute / step:.0%})")
        print(f"| {ranks} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
