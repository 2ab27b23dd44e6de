#!/usr/bin/env python3
"""Projects step time and efficiency beyond this machine (docs/DISTRIBUTED.md), for data
parallelism alone and with the experts split over groups of G ranks (--expert-parallel G).

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


def expert_parameters():
    return L * E * 3 * H * I


def ring_allreduce_seconds(nbytes, ranks, bandwidth, latency, buckets):
    if ranks == 1:
        return 0.0
    return 2 * (ranks - 1) / ranks * nbytes / bandwidth + buckets * 2 * (ranks - 1) * latency


def alltoall_seconds(group, bandwidth, latency):
    """The four all-to-alls of rows per layer and step (forward: rows out, outputs back; backward:
    output gradients out, input gradients back), k rows of H floats per token, (G-1)/G of them to
    other ranks; pairwise exchange: G-1 latency steps each."""
    if group == 1:
        return 0.0
    nbytes = TOKENS_PER_RANK * L * 4 * K * H * 4 * (group - 1) / group
    return nbytes / bandwidth + L * 4 * (group - 1) * latency


def step_seconds(ranks, group, compute, bandwidth, latency):
    """No overlap (the pessimistic bound, and what was measured here); equal load on every
    owner (a router that balances its experts)."""
    shared = 4 * (parameters() - expert_parameters())
    experts = 4 * expert_parameters() / group
    replicas = ranks // group
    if group == 1:
        comm = ring_allreduce_seconds(shared + experts, ranks, bandwidth, latency, L + 3)
    else:
        comm = (ring_allreduce_seconds(shared, ranks, bandwidth, latency, L + 3)
                + ring_allreduce_seconds(experts, replicas, bandwidth, latency, L)
                + alltoall_seconds(group, bandwidth, latency))
    return compute + comm


def main():
    measured = float(sys.argv[1]) if len(sys.argv) > 1 else 589.0  # bench/data_parallel.sh, 2026-12-02
    P = parameters()
    grad_bytes = 4 * P
    buckets = L + 3
    print(f"parameters {P / 1e6:.1f} M, active per token {active_parameters() / 1e6:.1f} M, "
          f"{flops_per_token() / 1e6:.0f} MFLOP per token (forward and backward)")
    print(f"all-reduce per step: {grad_bytes / 1e6:.0f} MB of float32 gradients in {buckets} buckets")
    print(f"expert parallelism: per token and layer, 4 all-to-alls of k = {K} rows of {H} floats: "
          f"{4 * K * H * 4 / 1e3:.1f} kB ({L * 4 * K * H * 4 / 1e3:.1f} kB a token for {L} layers), times (G-1)/G")
    print()
    scenarios = [
        ("2-core ranks, 25 GB/s, 5 us", 1, 25e9, 5e-6, 1),
        ("64-core ranks, 25 GB/s, 5 us", 32, 25e9, 5e-6, 1),
        ("64-core ranks, 3 GB/s, 20 us (25 GbE)", 32, 3e9, 20e-6, 1),
        ("64-core ranks, 3 GB/s, 20 us, --expert-parallel 8", 32, 3e9, 20e-6, 8),
        ("64-core ranks, 3 GB/s, 20 us, --expert-parallel 16", 32, 3e9, 20e-6, 16),
    ]
    print("| ranks | " + " | ".join(f"{name}" for name, *_ in scenarios) + " |")
    print("|---" * (len(scenarios) + 1) + "|")
    for ranks in (8, 16, 32, 64, 128, 256, 512):
        cells = []
        for _, speedup, bandwidth, latency, group in scenarios:
            if ranks % group or group > E:
                cells.append("—")
                continue
            compute = TOKENS_PER_RANK / (measured * speedup)
            step = step_seconds(ranks, group, compute, bandwidth, latency)
            cells.append(f"{step:.3f} s ({compute / step:.0%})")
        print(f"| {ranks} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
