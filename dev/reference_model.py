"""Plain-PyTorch reference of the probmoe model (OlmoeForCausalLM semantics, written from scratch).

Functional style: parameters live in a dict {HF name: tensor}; forward() runs the model in the
parameters' dtype (float32 for fixtures, float64 for the finite-difference self-check).
Subset enumeration, marginals, sampling probabilities and LapSum are always float64.
See dev/README.md for the conventions.
"""
import itertools
import json
import math

import torch
import torch.nn.functional as F

ROUTERS = ("topk", "probmoe", "probmoe-dyn", "densemixer", "softmoe")

PROBMOE_DEFAULTS = {"router": "probmoe", "k_min": 1, "k_max": 3, "soft_k": 1.5, "alpha": 1.0,
                    "tau": 0.05, "cap": 2.0, "soft_renormalize": False, "lb_coef": 0.0,
                    "z_coef": 0.0}


def make_config(vocab=61, hidden=32, intermediate=24, layers=2, heads=4, kv_heads=2, experts=4,
                k=2, max_pos=64, norm_topk_prob=False, **probmoe):
    pm = dict(PROBMOE_DEFAULTS)
    for key, val in probmoe.items():
        if key not in pm:
            raise KeyError(key)
        pm[key] = val
    return {"model_type": "olmoe", "architectures": ["OlmoeForCausalLM"], "vocab_size": vocab,
            "hidden_size": hidden, "intermediate_size": intermediate,
            "num_hidden_layers": layers, "num_attention_heads": heads,
            "num_key_value_heads": kv_heads, "num_experts": experts, "num_experts_per_tok": k,
            "max_position_embeddings": max_pos, "rope_theta": 10000.0, "rms_norm_eps": 1e-05,
            "norm_topk_prob": norm_topk_prob, "router_aux_loss_coef": 0.0,
            "tie_word_embeddings": False, "hidden_act": "silu", "attention_bias": False,
            "clip_qkv": None, "initializer_range": 0.02, "probmoe": pm}


def param_shapes(cfg):
    """Ordered list of (HF name, shape)."""
    V, H, I = cfg["vocab_size"], cfg["hidden_size"], cfg["intermediate_size"]
    nh, kvh, E = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["num_experts"]
    D = H // nh
    out = [("model.embed_tokens.weight", (V, H))]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out += [(p + "input_layernorm.weight", (H,)),
                (p + "self_attn.q_proj.weight", (H, H)),
                (p + "self_attn.k_proj.weight", (kvh * D, H)),
                (p + "self_attn.v_proj.weight", (kvh * D, H)),
                (p + "self_attn.o_proj.weight", (H, H)),
                (p + "self_attn.q_norm.weight", (H,)),
                (p + "self_attn.k_norm.weight", (kvh * D,)),
                (p + "post_attention_layernorm.weight", (H,)),
                (p + "mlp.gate.weight", (E, H))]
        for e in range(E):
            q = f"{p}mlp.experts.{e}."
            out += [(q + "gate_proj.weight", (I, H)), (q + "up_proj.weight", (I, H)),
                    (q + "down_proj.weight", (H, I))]
    out += [("model.norm.weight", (H,)), ("lm_head.weight", (V, H))]
    if cfg["probmoe"]["router"] == "softmoe":   # the learned budget (ROUTING.md section 3, "The learned budget")
        L = cfg["num_hidden_layers"]
        out += [(f"model.layers.{i}.mlp.gate.log_alpha", (1,)) for i in range(L)]
        out += [("model.soft_budget.eta", (L,))]
    return out


def is_budget(name):
    return name.endswith("mlp.gate.log_alpha") or name == "model.soft_budget.eta"


def init_params(cfg, gen, router_gain=1.5):
    """Embeddings N(0,1); norm weights 1 + 0.1 N(0,1); matrices N(0, 1/fan_in) except the router
    gate, N(0, router_gain^2/fan_in), so that router logits have std about router_gain."""
    params = {}
    # the budget from its own generator, so that the other tensors match the other routers'
    budget_gen = torch.Generator().manual_seed(12345)
    alpha = cfg["probmoe"]["alpha"]
    for name, shape in param_shapes(cfg):
        if name == "model.soft_budget.eta":
            t = 0.5 * torch.randn(shape, generator=budget_gen)
        elif is_budget(name):
            t = math.log(alpha) + 0.2 * torch.randn(shape, generator=budget_gen)
        elif len(shape) == 1:
            t = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        elif name == "model.embed_tokens.weight":
            t = torch.randn(shape, generator=gen)
        else:
            std = (router_gain if name.endswith("mlp.gate.weight") else 1.0) / math.sqrt(shape[1])
            t = std * torch.randn(shape, generator=gen)
        params[name] = t.float()
    return params


# ----------------------------------------------------------------------------- building blocks

def rms_norm(x, w, eps):
    xf = x.float() if x.dtype != torch.float64 else x
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (y * w).to(x.dtype)


def rope_cos_sin(S, D, theta, dtype):
    # angles in float64, then rounded to the model dtype
    inv_freq = 1.0 / theta ** (torch.arange(0, D, 2, dtype=torch.float64) / D)
    ang = torch.arange(S, dtype=torch.float64)[:, None] * inv_freq[None, :]
    emb = torch.cat([ang, ang], dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def attention(P, pre, cfg, h, B, S):
    H, nh, kvh = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    D = H // nh
    eps = cfg["rms_norm_eps"]
    q = rms_norm(h @ P[pre + "q_proj.weight"].t(), P[pre + "q_norm.weight"], eps)
    k = rms_norm(h @ P[pre + "k_proj.weight"].t(), P[pre + "k_norm.weight"], eps)
    v = h @ P[pre + "v_proj.weight"].t()
    q = q.view(B, S, nh, D).transpose(1, 2)      # (B, nh, S, D)
    k = k.view(B, S, kvh, D).transpose(1, 2)     # (B, kvh, S, D)
    v = v.view(B, S, kvh, D).transpose(1, 2)
    cos, sin = rope_cos_sin(S, D, cfg["rope_theta"], h.dtype)
    q = q * cos + rotate_half(q) * sin
    k = k * cos + rotate_half(k) * sin
    rep = nh // kvh
    k = k.repeat_interleave(rep, dim=1)          # query head hq uses kv head hq // rep
    v = v.repeat_interleave(rep, dim=1)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(D)
    causal = torch.ones(S, S, dtype=torch.bool).triu(1)
    scores = scores.masked_fill(causal, float("-inf"))
    att = torch.softmax(scores, dim=-1)
    o = (att @ v).transpose(1, 2).reshape(B * S, H)
    return o @ P[pre + "o_proj.weight"].t()


def expert(P, pre, e, x):
    q = f"{pre}experts.{e}."
    return (F.silu(x @ P[q + "gate_proj.weight"].t()) * (x @ P[q + "up_proj.weight"].t())) \
        @ P[q + "down_proj.weight"].t()


def combine(P, pre, E, h, sel, w):
    """y_t = sum_{j in sel_t} w_tj f_j(h_t); each expert runs only on its selected tokens."""
    y = torch.zeros_like(h)
    for e in range(E):
        idx = sel[:, e].nonzero().squeeze(1)
        if idx.numel() == 0:
            continue
        y = y.index_add(0, idx, expert(P, pre, e, h[idx]) * w[idx, e:e + 1])
    return y


def topk_mask(scores, k):
    """Boolean (T, E) mask of the k largest per row; ties go to the lower index (stable sort)."""
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices
    mask = torch.zeros_like(scores, dtype=torch.bool)
    return mask.scatter(1, order[:, :k], True)


# ----------------------------------------------------------------------------- ProbMoE subsets

_SUBSETS = {}


def subset_matrix(E, kmin, kmax):
    """(n_subsets, E) float64 0/1 matrix of all subsets with kmin <= |S| <= kmax."""
    key = (E, kmin, kmax)
    if key not in _SUBSETS:
        rows = []
        for m in range(kmin, kmax + 1):
            for c in itertools.combinations(range(E), m):
                r = [0.0] * E
                for i in c:
                    r[i] = 1.0
                rows.append(r)
        _SUBSETS[key] = torch.tensor(rows, dtype=torch.float64)
    return _SUBSETS[key]


def subset_dist(theta64, kmin, kmax):
    """Exact enumeration: returns (Zmat, probs (T, nS), marginals m (T, E)), differentiable."""
    Zmat = subset_matrix(theta64.shape[-1], kmin, kmax)
    scores = theta64 @ Zmat.t()
    probs = torch.softmax(scores, dim=-1)
    return Zmat, probs, probs @ Zmat


def probmoe_sample(theta, kmin, kmax, gen, forced=None):
    """z (T, E) sampled exactly from p(S) ∝ prod exp(theta_i); gate g = z + (m - stop(m)).
    forced: a (T, E) bool mask to use instead of sampling (replaying stored samples)."""
    Zmat, probs, m = subset_dist(theta.double(), kmin, kmax)
    if forced is None:
        idx = torch.multinomial(probs.detach(), 1, replacement=True, generator=gen).squeeze(1)
        z = Zmat[idx]
    else:
        z = forced.to(torch.float64)
        sizes = z.sum(-1)
        assert bool(((sizes >= kmin) & (sizes <= kmax)).all()), "forced subset size out of range"
    g = z + (m - m.detach())        # value exactly z
    return z.bool(), g


# ----------------------------------------------------------------------------- LapSum

def laplace_cdf(u):
    return torch.where(u <= 0, 0.5 * torch.exp(u.clamp(max=0.0)),
                       1.0 - 0.5 * torch.exp(-u.clamp(min=0.0)))


def lapsum(theta, k, alpha, iters=200):
    """p_i = F((theta_i - t)/alpha) with sum_i p_i = k, float64. t: bisection (no grad), then one
    Newton step from the detached root, which gives exactly the implicit-function gradients."""
    th = theta.double()
    with torch.no_grad():
        lo = th.min(-1, keepdim=True).values - 40.0 * alpha   # soft count ~ n > k
        hi = th.max(-1, keepdim=True).values + 40.0 * alpha   # soft count ~ 0 < k
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            above = laplace_cdf((th - mid) / alpha).sum(-1, keepdim=True) > k
            lo = torch.where(above, mid, lo)
            hi = torch.where(above, hi, mid)
        t0 = 0.5 * (lo + hi)
        gsum = (0.5 * torch.exp(-(th - t0).abs() / alpha)).sum(-1, keepdim=True)
    t1 = t0 + (laplace_cdf((th - t0) / alpha).sum(-1, keepdim=True) - k) * (alpha / gsum)
    return laplace_cdf((th - t1) / alpha)


# ----------------------------------------------------------------------------- MoE block

def soft_budget(P, cfg):
    """k_l = 1 + (K - L) softmax(eta)_l with K = probmoe.soft_budget or L * soft_k."""
    pm, L = cfg["probmoe"], cfg["num_hidden_layers"]
    K = pm.get("soft_budget") or L * pm["soft_k"]
    return 1.0 + (K - L) * torch.softmax(P["model.soft_budget.eta"].double(), 0)


def moe(P, pre, cfg, h, gen, record, forced=None, soft_k=None):
    """h: (T, H). Returns (y, aux_loss, selection mask (T, E)). soft_k: this layer's learned k_l
    (softmoe, a 0-d tensor); alpha is exp(P[pre + "gate.log_alpha"])."""
    E, k = cfg["num_experts"], cfg["num_experts_per_tok"]
    pm = cfg["probmoe"]
    router = pm["router"]
    theta = h @ P[pre + "gate.weight"].t()                   # (T, E)
    pi = torch.softmax(theta, dim=-1)
    if router in ("topk", "densemixer"):
        sel = topk_mask(pi.detach(), k)
        s = (pi * sel).sum(-1, keepdim=True)
        w = pi * sel / s if cfg["norm_topk_prob"] else pi * sel
        if router == "topk":
            y = combine(P, pre, E, h, sel, w)
        else:
            y_sparse = combine(P, pre, E, h, sel, w.detach())
            with torch.no_grad():
                f_all = torch.stack([expert(P, pre, e, h) for e in range(E)], dim=1)  # (T,E,H)
            if cfg["norm_topk_prob"]:
                wt = torch.where(sel, pi / s, pi / s.detach())
            else:
                wt = pi
            dense = (wt.unsqueeze(-1) * f_all).sum(1)
            y = y_sparse + (dense - dense.detach())            # value exactly y_sparse
    elif router in ("probmoe", "probmoe-dyn"):
        kmin, kmax = (k, k) if router == "probmoe" else (pm["k_min"], pm["k_max"])
        sel, g = probmoe_sample(theta, kmin, kmax, gen, forced)
        w = g.to(pi.dtype) * pi
        y = combine(P, pre, E, h, sel, w)
        if record is not None:
            record.append(sel.clone())
    elif router == "softmoe":
        alpha = torch.exp(P[pre + "gate.log_alpha"].double()[0])
        p = lapsum(theta, soft_k, alpha)
        cap = int(math.ceil(pm["cap"] * float(soft_k)))
        sel = topk_mask(p.detach(), min(cap, E)) & (p.detach() > pm["tau"])
        p = p.to(pi.dtype)
        if pm["soft_renormalize"]:
            w = p * sel / (p * sel).sum(-1, keepdim=True)
        else:
            w = p * sel
        y = combine(P, pre, E, h, sel, w)
    else:
        raise ValueError(f"unknown router {router}")
    aux = theta.new_zeros(())
    if pm["lb_coef"]:
        counts = sel.sum(0).to(pi.dtype)                     # combine pairs per expert
        f = counts / counts.sum()
        aux = aux + pm["lb_coef"] * E * (f * pi.mean(0)).sum()
    if pm["z_coef"]:
        aux = aux + pm["z_coef"] * torch.logsumexp(theta, dim=-1).pow(2).mean()
    return y, aux, sel


def forward(P, cfg, input_ids, targets, gen=None, record=None, routing=None, forced=None):
    """Returns dict(logits (B,S,V), loss (total), ce_loss, aux).
    gen: torch.Generator for ProbMoE sampling; record: list to which the sampled (T, E) masks of
    probmoe layers are appended; routing: list collecting every layer's selection mask;
    forced: per-layer list of (T, E) bool masks replacing ProbMoE sampling."""
    B, S = input_ids.shape
    eps = cfg["rms_norm_eps"]
    x = P["model.embed_tokens.weight"][input_ids.reshape(-1)]   # (T, H), batch-major
    aux_total = x.new_zeros(())
    ks = soft_budget(P, cfg) if cfg["probmoe"]["router"] == "softmoe" else None
    for i in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{i}."
        x = x + attention(P, pre + "self_attn.", cfg,
                          rms_norm(x, P[pre + "input_layernorm.weight"], eps), B, S)
        y, aux, sel = moe(P, pre + "mlp.", cfg,
                          rms_norm(x, P[pre + "post_attention_layernorm.weight"], eps), gen, record,
                          None if forced is None else forced[i], None if ks is None else ks[i])
        if routing is not None:
            routing.append(sel)
        x = x + y
        aux_total = aux_total + aux
    x = rms_norm(x, P["model.norm.weight"], eps)
    logits = x @ P["lm_head.weight"].t()                          # (T, V)
    tgt = targets.reshape(-1).long()
    valid = tgt >= 0
    lp = torch.log_softmax(logits, dim=-1)
    nll = -lp[valid].gather(1, tgt[valid].unsqueeze(1)).squeeze(1)
    ce = nll.mean()
    return {"logits": logits.view(B, S, -1), "loss": ce + aux_total, "ce_loss": ce,
            "aux": aux_total}


# ----------------------------------------------------------------------------- AdamW

ADAMW = {"lr": 3e-3, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weight_decay": 0.1}


def adamw_init(P):
    return {"t": 0, "m": {n: torch.zeros_like(p) for n, p in P.items()},
            "v": {n: torch.zeros_like(p) for n, p in P.items()}}


@torch.no_grad()
def adamw_step(P, grads, state, hp=ADAMW):
    """p <- p - lr*(mhat/(sqrt(vhat)+eps) + wd*p_old); wd only for tensors of rank >= 2.
    Bias corrections 1-beta^t computed in double, applied in the parameter dtype."""
    state["t"] += 1
    t = state["t"]
    b1, b2 = hp["beta1"], hp["beta2"]
    bc1, bc2 = 1.0 - b1 ** t, 1.0 - b2 ** t
    for n, p in P.items():
        g = grads[n]
        m, v = state["m"][n], state["v"][n]
        m.mul_(b1).add_(g, alpha=1.0 - b1)
        v.mul_(b2).addcmul_(g, g, value=1.0 - b2)
        upd = (m / bc1) / ((v / bc2).sqrt() + hp["eps"])
        if p.dim() >= 2:
            upd = upd + hp["weight_decay"] * p
        p.sub_(hp["lr"] * upd)


def config_json(cfg):
    return json.dumps(cfg)
