"""Writes tests/fixtures/reference_<router>.safetensors (OLMoE) and
reference_<family>_<router>.safetensors (qwen2_moe, qwen2_moe_dense, mixtral) (see dev/README.md)
and runs self-checks.

Run: /usr/bin/python3 dev/make_fixtures.py [FAMILY...] [--out DIR]
"""
import argparse
import copy
import json
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_model as rm  # noqa: E402
import safetensors_io as st  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(ROOT, "tests", "fixtures")

INIT_SEED = 20260601      # weights and batch (identical in every file)
SAMPLE_SEED = 7           # torch.Generator for ProbMoE subset sampling (per file)
B, S, STEPS = 2, 7, 10
SOFTMOE_TAU = 0.3

ROUTER_OPTS = {
    "topk": dict(norm_topk_prob=True, router="topk", lb_coef=0.01, z_coef=0.001),
    "probmoe": dict(router="probmoe"),
    "probmoe-dyn": dict(router="probmoe-dyn", k_min=1, k_max=3),
    "densemixer": dict(router="densemixer"),
    "softmoe": dict(router="softmoe", tau=SOFTMOE_TAU),
}

# the other families' tiny models: smaller (their files stay small), with each family's parts on:
# qwen2_moe tied embeddings, q/k/v biases and a shared expert; qwen2_moe_dense the same with dense
# MLP layers among the MoE ones (MoE layers 1 and 5: 0, 2 and 4 by the step, 3 as mlp_only);
# mixtral a sliding window shorter than the sequence
QWEN2_MOE = dict(vocab=37, hidden=16, intermediate=12, shared=10, dense=24, tie=True)
FAMILIES = {
    "olmoe": {},
    "qwen2_moe": QWEN2_MOE,
    "qwen2_moe_dense": dict(QWEN2_MOE, layers=6, decoder_sparse_step=2, mlp_only_layers=[3]),
    "mixtral": dict(vocab=37, hidden=16, intermediate=12, sliding_window=4),
}
MODEL_TYPE = {"qwen2_moe_dense": "qwen2_moe"}   # fixture family -> model_type; default itself
# the routers a family's files cover (default all): for the dense layers three suffice
FAMILY_ROUTERS = {"qwen2_moe_dense": ("topk", "probmoe", "softmoe")}

DESCRIPTIONS = {
    "topk": "Reference forward, gradients and 10 AdamW steps of a tiny OLMoE-style model with the "
            "conventional top-k router (norm_topk_prob, Switch load-balancing and z-loss on).",
    "probmoe": "Reference forward, gradients and 10 AdamW steps of a tiny OLMoE-style model with "
               "the ProbMoE exact-k router; the sampled subsets of every forward are stored.",
    "probmoe-dyn": "Reference forward, gradients and 10 AdamW steps of a tiny OLMoE-style model "
                   "with the ProbMoE dynamic-k router (1..3); the sampled subsets are stored.",
    "densemixer": "Reference forward, gradients and 10 AdamW steps of a tiny OLMoE-style model with "
                  "the DenseMixer router (top-k forward, dense router gradient).",
    "softmoe": "Reference forward, gradients and 10 AdamW steps of a tiny OLMoE-style model with the "
               "SoftMoE LapSum soft top-k router (fixed tau and cap; the learned budget: eta and log alpha are parameters).",
}


def model_type(family):
    return MODEL_TYPE.get(family, family)


def make_config(router, family="olmoe"):
    opts = dict(ROUTER_OPTS[router])
    norm = opts.pop("norm_topk_prob", False)
    return rm.make_config(norm_topk_prob=norm, family=model_type(family), **FAMILIES[family],
                          **opts)


def fixture_path(router, family, out_dir=OUT_DIR):
    name = router if family == "olmoe" else f"{family}_{router}"
    return os.path.join(out_dir, f"reference_{name}.safetensors")


def description(router, family):
    text = DESCRIPTIONS[router]
    if family == "olmoe":
        return text
    parts = {"qwen2_moe": "Qwen2-MoE-style (q/k/v biases, a sigmoid-gated shared expert, tied embeddings)",
             "qwen2_moe_dense": "Qwen2-MoE-style (q/k/v biases, a sigmoid-gated shared expert, tied "
                                "embeddings; 6 layers, decoder_sparse_step 2, mlp_only_layers [3]: "
                                "MoE layers 1 and 5, the others dense SwiGLU MLPs)",
             "mixtral": "Mixtral-style (w1/w3/w2 experts, renormalised top-k, sliding window 4)"}
    return text.replace("OLMoE-style", parts[family])


def initial_state(cfg):
    gen = torch.Generator().manual_seed(INIT_SEED)
    params = rm.init_params(cfg, gen)
    V = cfg["vocab_size"]
    ids = torch.randint(0, V, (B, S), generator=gen, dtype=torch.int64)
    tgt = torch.randint(0, V, (B, S), generator=gen, dtype=torch.int64)
    drop = torch.randperm(B * S, generator=gen)[:3]
    tgt.view(-1)[drop] = -1
    return params, ids, tgt


def gradients(loss, P):
    """{name: d loss / d P[name]}; zeros for a tensor the forward did not use (an expert that no
    token chose, which the 6-layer dense family's samples do produce)."""
    grads = torch.autograd.grad(loss, list(P.values()), allow_unused=True)
    return {n: torch.zeros_like(p) if g is None else g for (n, p), g in zip(P.items(), grads)}


def csr(mask):
    """(T, E) bool -> offsets [T+1], experts (increasing within a token), int32."""
    m = mask.numpy()
    counts = m.sum(1)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    experts = np.concatenate([np.nonzero(row)[0] for row in m]).astype(np.int32)
    return offsets, experts


def routing_margin(cfg, P, ids):
    """Smallest decision margin of the deterministic routers at these weights (float32)."""
    pm = cfg["probmoe"]
    margins = []
    with torch.no_grad():
        theta_list, budget = [], []
        ks = rm.soft_budget(P, cfg) if pm["router"] == "softmoe" else None
        index = rm.moe_index(cfg)
        eps = cfg["rms_norm_eps"]
        x = P["model.embed_tokens.weight"][ids.reshape(-1)]
        for i in range(cfg["num_hidden_layers"]):
            pre, moe = f"model.layers.{i}.", rm.moe_prefix(cfg, i)
            x = x + rm.attention(P, pre + "self_attn.", cfg,
                                 rm.rms_norm(x, P[pre + "input_layernorm.weight"], eps), *ids.shape)
            h = rm.rms_norm(x, P[pre + "post_attention_layernorm.weight"], eps)
            if i not in index:
                x = x + rm.dense_mlp(P, i, h)
                continue
            m = index[i]
            theta_list.append(h @ P[moe + "gate.weight"].t())
            if ks is not None:
                budget.append((ks[m], torch.exp(P[moe + "gate.log_alpha"].double()[0])))
            y, _, _ = rm.moe(P, moe, cfg, h, None, None, None, None if ks is None else ks[m])
            x = x + y
        for layer, theta in enumerate(theta_list):
            if pm["router"] in ("topk", "densemixer"):
                pi = torch.softmax(theta, -1).sort(-1, descending=True).values
                k = cfg["num_experts_per_tok"]
                margins.append((pi[:, k - 1] - pi[:, k]).min().item())
            elif pm["router"] == "softmoe":
                soft_k, alpha = budget[layer]
                p = rm.lapsum(theta, soft_k, alpha)
                margins.append((p - pm["tau"]).abs().min().item())
                cap = int(math.ceil(pm["cap"] * float(soft_k)))
                if cap < rm.num_experts(cfg):
                    ps = p.sort(-1, descending=True).values
                    margins.append((ps[:, cap - 1] - ps[:, cap]).min().item())
    return min(margins) if margins else float("nan")


def run_router(router, family="olmoe", out_dir=OUT_DIR):
    cfg = make_config(router, family)
    params, ids, tgt = initial_state(cfg)
    init = {n: p.clone() for n, p in params.items()}
    P = {n: p.clone().requires_grad_() for n, p in params.items()}
    gen = torch.Generator().manual_seed(SAMPLE_SEED)
    state = rm.adamw_init(P)
    step_losses, samples, kept = [], {}, []
    first = None
    min_margin = float("inf")
    for s in range(STEPS):
        record, routing = [], []
        out = rm.forward(P, cfg, ids, tgt, gen=gen, record=record, routing=routing)
        grads = gradients(out["loss"], P)
        if s == 0:
            first = (out, grads)
        step_losses.append(out["loss"].item())
        kept += [m.sum(1) for m in routing]
        for layer, mask in enumerate(record):   # layer = m, the index among MoE layers
            samples[(s, layer)] = csr(mask)
        if router in ("topk", "densemixer", "softmoe"):
            min_margin = min(min_margin, routing_margin(cfg, {n: p.detach() for n, p in P.items()}, ids))
        rm.adamw_step(P, grads, state)
    out, grads = first

    tensors = {}
    for n, p in init.items():
        tensors[n] = p.numpy().astype(np.float32)
    tensors["batch.input_ids"] = ids.numpy().astype(np.int32)
    tensors["batch.targets"] = tgt.numpy().astype(np.int32)
    tensors["expected.logits"] = out["logits"].detach().numpy().astype(np.float32)
    tensors["expected.loss"] = np.array([out["loss"].item()], dtype=np.float32)
    tensors["expected.ce_loss"] = np.array([out["ce_loss"].item()], dtype=np.float32)
    for n in init:
        tensors["grad." + n] = grads[n].numpy().astype(np.float32)
    tensors["expected.step_losses"] = np.array(step_losses, dtype=np.float32)
    for (s, layer), (off, exp) in sorted(samples.items()):
        tensors[f"samples.step{s}.layer{layer}.offsets"] = off
        tensors[f"samples.step{s}.layer{layer}.experts"] = exp
    adamw = dict(rm.ADAMW, steps=STEPS)
    meta = {"config": json.dumps(cfg), "adamw": json.dumps(adamw),
            "description": description(router, family)}
    path = fixture_path(router, family, out_dir)
    st.write(path, tensors, meta)

    # round trip
    back, meta_back = st.read(path)
    assert meta_back == meta, "metadata round trip"
    assert list(back.keys()) == list(tensors.keys()), "tensor names/order round trip"
    for n, a in tensors.items():
        b = back[n]
        assert b.dtype == a.dtype and b.shape == a.shape and np.array_equal(a, b), n
    assert json.loads(meta_back["config"]) == cfg

    kept = torch.cat(kept)
    hist = torch.bincount(kept, minlength=rm.num_experts(cfg) + 1).tolist()
    print(f"{family:9s} {router:12s} {os.path.getsize(path):8d} bytes  loss {step_losses[0]:.6f} "
          f"(ce {out['ce_loss'].item():.6f}) -> {step_losses[-1]:.6f}  "
          f"experts/token histogram {hist}"
          + (f"  min routing margin {min_margin:.2e}" if min_margin < float("inf") else ""))
    return path


def replay_fixture(path):
    """Recomputes a fixture from the file alone (config, AdamW settings, initial weights, batch,
    stored ProbMoE samples) and returns the largest absolute difference to its expectations."""
    tensors, meta = st.read(path)
    cfg = json.loads(meta["config"])
    hp = json.loads(meta["adamw"])
    names = [n for n, _ in rm.param_shapes(cfg)]
    P = {n: torch.from_numpy(tensors[n].copy()).requires_grad_() for n in names}
    ids = torch.from_numpy(tensors["batch.input_ids"].astype(np.int64))
    tgt = torch.from_numpy(tensors["batch.targets"].astype(np.int64))
    T, E = ids.numel(), rm.num_experts(cfg)
    state = rm.adamw_init(P)
    worst = 0.0

    def diff(a, b):
        return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())

    for s in range(hp["steps"]):
        forced = None
        if cfg["probmoe"]["router"] in ("probmoe", "probmoe-dyn"):
            forced = []
            for layer in range(len(rm.moe_layers(cfg))):   # m, not the decoder number
                off = tensors[f"samples.step{s}.layer{layer}.offsets"]
                exp = tensors[f"samples.step{s}.layer{layer}.experts"]
                mask = torch.zeros(T, E, dtype=torch.bool)
                for t in range(T):
                    mask[t, torch.from_numpy(exp[off[t]:off[t + 1]].astype(np.int64))] = True
                forced.append(mask)
        out = rm.forward(P, cfg, ids, tgt, forced=forced)
        grads = gradients(out["loss"], {n: P[n] for n in names})
        if s == 0:
            worst = max(worst, diff(out["logits"].detach(), tensors["expected.logits"]),
                        diff([out["loss"].item()], tensors["expected.loss"]),
                        diff([out["ce_loss"].item()], tensors["expected.ce_loss"]),
                        max(diff(grads[n], tensors["grad." + n]) for n in names))
        worst = max(worst, diff([out["loss"].item()], tensors["expected.step_losses"][s:s + 1]))
        rm.adamw_step(P, grads, state, hp)
    return worst


# ----------------------------------------------------------------------------- self-checks

# the tensors fd_check samples, by family (their names differ)
FD_TENSORS = {
    "olmoe": ["model.embed_tokens.weight", "model.layers.0.input_layernorm.weight",
              "model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_norm.weight",
              "model.layers.0.mlp.gate.weight", "model.layers.1.mlp.gate.weight",
              "model.layers.0.mlp.experts.1.down_proj.weight",
              "model.layers.1.mlp.experts.3.gate_proj.weight", "lm_head.weight"],
    "qwen2_moe": ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.bias",
                  "model.layers.1.self_attn.k_proj.bias", "model.layers.0.self_attn.v_proj.bias",
                  "model.layers.0.mlp.gate.weight", "model.layers.1.mlp.shared_expert.up_proj.weight",
                  "model.layers.0.mlp.shared_expert.down_proj.weight",
                  "model.layers.1.mlp.shared_expert_gate.weight",
                  "model.layers.0.mlp.experts.1.down_proj.weight"],
    # dense layers 0 and 4 (and 3, the mlp_only one) next to MoE layers 1 and 5
    "qwen2_moe_dense": ["model.embed_tokens.weight", "model.layers.0.mlp.gate_proj.weight",
                        "model.layers.4.mlp.down_proj.weight", "model.layers.3.mlp.up_proj.weight",
                        "model.layers.2.self_attn.q_proj.bias", "model.layers.1.mlp.gate.weight",
                        "model.layers.5.mlp.gate.weight",
                        "model.layers.5.mlp.shared_expert.down_proj.weight",
                        "model.layers.1.mlp.experts.2.up_proj.weight"],
    "mixtral": ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
                "model.layers.1.self_attn.k_proj.weight", "model.layers.0.block_sparse_moe.gate.weight",
                "model.layers.1.block_sparse_moe.experts.2.w1.weight",
                "model.layers.0.block_sparse_moe.experts.1.w3.weight",
                "model.layers.1.block_sparse_moe.experts.3.w2.weight", "lm_head.weight"],
}


def fd_check(router, family="olmoe", h=1e-4, per_tensor=3):
    """Autograd vs central finite differences, model in float64 (fixed routing decisions)."""
    cfg = make_config(router, family)
    params, ids, tgt = initial_state(cfg)
    P = {n: p.double().requires_grad_() for n, p in params.items()}
    out = rm.forward(P, cfg, ids, tgt)
    grads = gradients(out["loss"], P)
    gen = torch.Generator().manual_seed(99)
    names = list(FD_TENSORS[family])
    names += [n for n in P if rm.is_budget(n)]   # softmoe's learned budget
    worst = 0.0
    count = 0
    with torch.no_grad():
        for n in names:
            p = P[n]
            flat = p.view(-1)
            if n == "model.embed_tokens.weight":
                rows = ids.reshape(-1)[torch.randint(0, ids.numel(), (per_tensor,), generator=gen)]
                cols = torch.randint(0, p.shape[1], (per_tensor,), generator=gen)
                idxs = (rows * p.shape[1] + cols).tolist()
            elif rm.is_budget(n):
                idxs = list(range(flat.numel()))
            else:
                idxs = torch.randint(0, flat.numel(), (per_tensor,), generator=gen).tolist()
            for i in idxs:
                old = flat[i].item()
                flat[i] = old + h
                lp = rm.forward(P, cfg, ids, tgt)["loss"].item()
                flat[i] = old - h
                lm = rm.forward(P, cfg, ids, tgt)["loss"].item()
                flat[i] = old
                fd = (lp - lm) / (2 * h)
                ag = grads[n].view(-1)[i].item()
                err = abs(fd - ag) / max(abs(fd), abs(ag), 1e-3)
                if os.environ.get("FD_VERBOSE"):
                    print(f"  {n}[{i}] autograd {ag:+.10e} fd {fd:+.10e} rel {err:.1e}")
                worst = max(worst, err)
                count += 1
    print(f"FD check ({family} {router}, float64, {count} entries in {len(names)} tensors): "
          f"max |fd - autograd| / max(|autograd|, 1e-3) = {worst:.2e}")
    assert worst < 1e-6, "finite-difference check failed"


def worked_example_check():
    """ROUTING.md section 5: marginals and the ProbMoE router gradient for a fixed sample."""
    th = torch.logit(torch.tensor([0.8, 0.6, 0.4, 0.2], dtype=torch.float64)).requires_grad_()
    _, probs, m = rm.subset_dist(th[None], 2, 2)
    m = m[0]
    z = torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    c = torch.tensor([0.7, -0.4, 0.2, 0.9], dtype=torch.float64)
    g = z + (m - m.detach())
    (g * torch.softmax(th, -1) * c * z).sum().backward()
    want_m = torch.tensor([0.862454, 0.657993, 0.342007, 0.137546], dtype=torch.float64)
    want_d = torch.tensor([0.277408, -0.208736, -0.047815, -0.020856], dtype=torch.float64)
    em = (m.detach() - want_m).abs().max().item()
    ed = (th.grad - want_d).abs().max().item()
    print(f"ROUTING.md worked example: marginals err {em:.1e}, ProbMoE dtheta err {ed:.1e}")
    assert em < 1e-6 and ed < 1e-6


def densemixer_check():
    """DenseMixer (no norm) has topk's forward value and topk's expert-parameter gradients."""
    cfg_d = make_config("densemixer")
    cfg_t = copy.deepcopy(cfg_d)
    cfg_t["probmoe"]["router"] = "topk"
    params, ids, tgt = initial_state(cfg_d)
    res = []
    for cfg in (cfg_t, cfg_d):
        P = {n: p.double().requires_grad_() for n, p in params.items()}
        out = rm.forward(P, cfg, ids, tgt)
        res.append((out["logits"].detach(), gradients(out["loss"], P)))
    (lt, gt), (ld, gd) = res
    assert torch.equal(lt, ld)
    last = f"model.layers.{cfg_d['num_hidden_layers'] - 1}."
    names = [n for n in gt if n.startswith(last) and ".experts." in n]
    err = max((gt[n] - gd[n]).abs().max().item() for n in names)
    rdiff = (gt[last + "mlp.gate.weight"] - gd[last + "mlp.gate.weight"]).abs().max().item()
    print(f"DenseMixer vs topk (last layer): logits identical, expert grads diff {err:.1e}, "
          f"router grads differ by {rdiff:.2e}")
    assert err < 1e-12 and rdiff > 1e-6


def layout_check():
    """The dense family's layer layout, as Qwen2MoeDecoderLayer decides it, and its tensors."""
    cfg = make_config("softmoe", "qwen2_moe_dense")
    assert rm.moe_layers(cfg) == [1, 5], rm.moe_layers(cfg)
    assert rm.moe_layers(make_config("softmoe", "qwen2_moe")) == [0, 1]
    shapes = dict(rm.param_shapes(cfg))
    assert shapes["model.layers.3.mlp.down_proj.weight"] == (16, 24)
    assert "model.layers.3.mlp.gate.weight" not in shapes
    assert "model.layers.2.mlp.gate.log_alpha" not in shapes
    assert shapes["model.soft_budget.eta"] == (2,)
    print("qwen2_moe_dense layout: MoE layers [1, 5], dense 0, 2, 3, 4")


def parse_args():
    ap = argparse.ArgumentParser(description="self-checks, then the reference fixtures")
    ap.add_argument("families", nargs="*", metavar="FAMILY",
                    help=f"only these families' files ({', '.join(FAMILIES)}; default all)")
    ap.add_argument("--out", default=OUT_DIR, help="output directory (default tests/fixtures)")
    args = ap.parse_args()
    unknown = [f for f in args.families if f not in FAMILIES]
    if unknown:
        ap.error(f"unknown family {unknown[0]!r} (known: {', '.join(FAMILIES)})")
    return args


def main():
    args = parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    worked_example_check()
    densemixer_check()
    layout_check()
    fd_check("topk")
    fd_check("softmoe")
    for family in ("qwen2_moe", "qwen2_moe_dense", "mixtral"):
        fd_check("topk", family)
        fd_check("softmoe", family)
    families = args.families or list(FAMILIES)   # e.g. "qwen2_moe mixtral": only those files
    total = 0
    for family in families:
        for router in FAMILY_ROUTERS.get(family, rm.ROUTERS):
            path = run_router(router, family, args.out)
            total += os.path.getsize(path)
            worst = replay_fixture(path)
            print(f"  replay from the file alone: max abs difference {worst:.1e}")
            assert worst < 1e-5, "replay does not reproduce the fixture"
    print(f"total fixture size {total} bytes")


if __name__ == "__main__":
    main()
