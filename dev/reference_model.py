"""Plain-PyTorch reference of the probmoe model, written from scratch with the semantics of three
Hugging Face families (config.json's model_type):
- olmoe (OlmoeForCausalLM): RMSNorm over the whole projected q and k, no biases, untied lm_head;
- qwen2_moe (Qwen2MoeForCausalLM): biases on q, k and v (qkv_bias), no q/k norms, a shared SwiGLU
  expert of width shared_expert_intermediate_size scaled by sigmoid(shared_expert_gate(h)) added
  to the routed output, the experts' width moe_intermediate_size, tied or untied embeddings, and
  dense SwiGLU MLP layers (width intermediate_size, no router) where decoder_sparse_step and
  mlp_only_layers say so (is_moe_layer);
- mixtral (MixtralForCausalLM): block_sparse_moe.gate and experts w1 (gate), w3 (up), w2 (down),
  top-k weights always renormalised, num_local_experts, and a sliding window (query i sees keys
  i - W < j <= i) when sliding_window is set.

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
                k=2, max_pos=64, norm_topk_prob=False, family="olmoe", shared=20, dense=40,
                tie=False, sliding_window=None, decoder_sparse_step=1, mlp_only_layers=(),
                **probmoe):
    pm = dict(PROBMOE_DEFAULTS)
    for key, val in probmoe.items():
        if key not in pm:
            raise KeyError(key)
        pm[key] = val
    if family != "qwen2_moe" and (decoder_sparse_step != 1 or mlp_only_layers):
        raise ValueError("dense MLP layers are qwen2_moe's only")
    common = {"vocab_size": vocab, "hidden_size": hidden, "num_hidden_layers": layers,
              "num_attention_heads": heads, "num_key_value_heads": kv_heads,
              "num_experts_per_tok": k, "max_position_embeddings": max_pos, "rope_theta": 10000.0,
              "rms_norm_eps": 1e-05, "router_aux_loss_coef": 0.0, "tie_word_embeddings": tie,
              "hidden_act": "silu", "initializer_range": 0.02}
    if family == "olmoe":   # the fields in the order of the files written before the other families
        return {"model_type": "olmoe", "architectures": ["OlmoeForCausalLM"], "vocab_size": vocab,
                "hidden_size": hidden, "intermediate_size": intermediate,
                "num_hidden_layers": layers, "num_attention_heads": heads,
                "num_key_value_heads": kv_heads, "num_experts": experts, "num_experts_per_tok": k,
                "max_position_embeddings": max_pos, "rope_theta": 10000.0, "rms_norm_eps": 1e-05,
                "norm_topk_prob": norm_topk_prob, "router_aux_loss_coef": 0.0,
                "tie_word_embeddings": tie, "hidden_act": "silu", "attention_bias": False,
                "clip_qkv": None, "initializer_range": 0.02, "probmoe": pm}
    if family == "qwen2_moe":
        return {"model_type": "qwen2_moe", "architectures": ["Qwen2MoeForCausalLM"], **common,
                "intermediate_size": dense, "moe_intermediate_size": intermediate,
                "shared_expert_intermediate_size": shared, "num_experts": experts,
                "norm_topk_prob": norm_topk_prob, "qkv_bias": True,
                "decoder_sparse_step": decoder_sparse_step,
                "mlp_only_layers": sorted(mlp_only_layers), "use_sliding_window": False,
                "probmoe": pm}
    if family == "mixtral":
        return {"model_type": "mixtral", "architectures": ["MixtralForCausalLM"], **common,
                "intermediate_size": intermediate, "num_local_experts": experts,
                "sliding_window": sliding_window, "router_jitter_noise": 0.0, "probmoe": pm}
    raise ValueError(f"unknown family {family}")


def family(cfg):
    return cfg.get("model_type", "olmoe")


def num_experts(cfg):
    return cfg["num_local_experts"] if family(cfg) == "mixtral" else cfg["num_experts"]


def expert_width(cfg):
    return cfg["moe_intermediate_size"] if family(cfg) == "qwen2_moe" else cfg["intermediate_size"]


def norm_topk(cfg):
    """Whether the top-k weights are renormalised: Mixtral always does."""
    return True if family(cfg) == "mixtral" else cfg["norm_topk_prob"]


def is_moe_layer(cfg, i):
    """Qwen2MoeDecoderLayer's rule (HF defaults 1 and []); the other families: every layer."""
    if family(cfg) != "qwen2_moe":
        return True
    return (i not in cfg.get("mlp_only_layers", []) and cfg["num_experts"] > 0
            and (i + 1) % cfg.get("decoder_sparse_step", 1) == 0)


def moe_layers(cfg):
    """Decoder numbers of the MoE layers, increasing; per-layer routing state (aux losses,
    samples, the softmoe budget) is indexed by the position m in this list."""
    return [i for i in range(cfg["num_hidden_layers"]) if is_moe_layer(cfg, i)]


def moe_index(cfg):
    """{decoder number: m} of the MoE layers."""
    return {i: m for m, i in enumerate(moe_layers(cfg))}


def moe_prefix(cfg, i):
    return f"model.layers.{i}." + ("block_sparse_moe." if family(cfg) == "mixtral" else "mlp.")


EXPERT_NAMES = {"olmoe": ("gate_proj", "up_proj", "down_proj"),
                "qwen2_moe": ("gate_proj", "up_proj", "down_proj"),
                "mixtral": ("w1", "w3", "w2")}


def param_shapes(cfg):
    """Ordered list of (HF name, shape)."""
    V, H, I = cfg["vocab_size"], cfg["hidden_size"], expert_width(cfg)
    nh, kvh, E = cfg["num_attention_heads"], cfg["num_key_value_heads"], num_experts(cfg)
    fam = family(cfg)
    D = H // nh
    out = [("model.embed_tokens.weight", (V, H))]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out += [(p + "input_layernorm.weight", (H,)),
                (p + "self_attn.q_proj.weight", (H, H)),
                (p + "self_attn.k_proj.weight", (kvh * D, H)),
                (p + "self_attn.v_proj.weight", (kvh * D, H)),
                (p + "self_attn.o_proj.weight", (H, H))]
        if fam == "qwen2_moe" and cfg["qkv_bias"]:
            out += [(p + "self_attn.q_proj.bias", (H,)), (p + "self_attn.k_proj.bias", (kvh * D,)),
                    (p + "self_attn.v_proj.bias", (kvh * D,))]
        if fam == "olmoe":
            out += [(p + "self_attn.q_norm.weight", (H,)),
                    (p + "self_attn.k_norm.weight", (kvh * D,))]
        out += [(p + "post_attention_layernorm.weight", (H,))]
        if not is_moe_layer(cfg, i):
            out += dense_mlp_shapes(cfg, i)
            continue
        m = moe_prefix(cfg, i)
        out += [(m + "gate.weight", (E, H))]
        if fam == "qwen2_moe":
            Sh = cfg["shared_expert_intermediate_size"]
            out += [(m + "shared_expert.gate_proj.weight", (Sh, H)),
                    (m + "shared_expert.up_proj.weight", (Sh, H)),
                    (m + "shared_expert.down_proj.weight", (H, Sh)),
                    (m + "shared_expert_gate.weight", (1, H))]
        g, u, d = EXPERT_NAMES[fam]
        for e in range(E):
            q = f"{m}experts.{e}."
            out += [(q + g + ".weight", (I, H)), (q + u + ".weight", (I, H)),
                    (q + d + ".weight", (H, I))]
    out += [("model.norm.weight", (H,))]
    if not cfg["tie_word_embeddings"]:
        out += [("lm_head.weight", (V, H))]
    if cfg.get("probmoe", {}).get("router") == "softmoe":   # the learned budget (ROUTING.md section 3, "The learned budget")
        layers = moe_layers(cfg)
        out += [(moe_prefix(cfg, i) + "gate.log_alpha", (1,)) for i in layers]
        out += [("model.soft_budget.eta", (len(layers),))]
    return out


def dense_mlp_shapes(cfg, i):
    H, I = cfg["hidden_size"], cfg["intermediate_size"]
    p = f"model.layers.{i}.mlp."
    return [(p + "gate_proj.weight", (I, H)), (p + "up_proj.weight", (I, H)),
            (p + "down_proj.weight", (H, I))]


def is_budget(name):
    return name.endswith(".gate.log_alpha") or name == "model.soft_budget.eta"


def init_params(cfg, gen, router_gain=1.5):
    """Embeddings N(0,1); norm weights 1 + 0.1 N(0,1); biases 0.1 N(0,1); matrices N(0, 1/fan_in)
    except the router gate, N(0, router_gain^2/fan_in), so that router logits have std about
    router_gain."""
    params = {}
    # the budget from its own generator, so that the other tensors match the other routers'
    budget_gen = torch.Generator().manual_seed(12345)
    alpha = cfg["probmoe"]["alpha"]
    for name, shape in param_shapes(cfg):
        if name == "model.soft_budget.eta":
            t = 0.5 * torch.randn(shape, generator=budget_gen)
        elif is_budget(name):
            t = math.log(alpha) + 0.2 * torch.randn(shape, generator=budget_gen)
        elif name.endswith(".bias"):
            t = 0.1 * torch.randn(shape, generator=gen)
        elif len(shape) == 1:
            t = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        elif name == "model.embed_tokens.weight":
            t = torch.randn(shape, generator=gen)
        else:
            std = (router_gain if name.endswith(".gate.weight") else 1.0) / math.sqrt(shape[1])
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
    q = h @ P[pre + "q_proj.weight"].t()
    k = h @ P[pre + "k_proj.weight"].t()
    v = h @ P[pre + "v_proj.weight"].t()
    if pre + "q_proj.bias" in P:                 # qwen2_moe's qkv_bias
        q = q + P[pre + "q_proj.bias"]
        k = k + P[pre + "k_proj.bias"]
        v = v + P[pre + "v_proj.bias"]
    if family(cfg) == "olmoe":                   # norms over the whole projections
        q = rms_norm(q, P[pre + "q_norm.weight"], eps)
        k = rms_norm(k, P[pre + "k_norm.weight"], eps)
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
    masked = torch.ones(S, S, dtype=torch.bool).triu(1)
    window = cfg.get("sliding_window") if family(cfg) == "mixtral" else None
    if window:                                   # keys j <= i - window are out of sight
        masked = masked | torch.ones(S, S, dtype=torch.bool).tril(-window)
    scores = scores.masked_fill(masked, float("-inf"))
    att = torch.softmax(scores, dim=-1)
    o = (att @ v).transpose(1, 2).reshape(B * S, H)
    return o @ P[pre + "o_proj.weight"].t()


def swiglu_mlp(P, q, names, x):
    g, u, d = names
    return (F.silu(x @ P[q + g + ".weight"].t()) * (x @ P[q + u + ".weight"].t())) @ P[q + d + ".weight"].t()


def expert(P, pre, e, x, names=EXPERT_NAMES["olmoe"]):
    return swiglu_mlp(P, f"{pre}experts.{e}.", names, x)


def dense_mlp(P, i, x):
    """qwen2_moe's dense layer i: SwiGLU of width intermediate_size, every token, no router."""
    return swiglu_mlp(P, f"model.layers.{i}.mlp.", EXPERT_NAMES["qwen2_moe"], x)


def shared_expert(P, pre, x):
    """qwen2_moe: sigmoid(shared_expert_gate(x)) * shared_expert(x), every token."""
    y = swiglu_mlp(P, pre + "shared_expert.", EXPERT_NAMES["qwen2_moe"], x)
    return torch.sigmoid(x @ P[pre + "shared_expert_gate.weight"].t()) * y


def combine(P, pre, E, h, sel, w, names=EXPERT_NAMES["olmoe"]):
    """y_t = sum_{j in sel_t} w_tj f_j(h_t); each expert runs only on its selected tokens."""
    y = torch.zeros_like(h)
    for e in range(E):
        idx = sel[:, e].nonzero().squeeze(1)
        if idx.numel() == 0:
            continue
        y = y.index_add(0, idx, expert(P, pre, e, h[idx], names) * w[idx, e:e + 1])
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
    """k_m = 1 + (K - M) softmax(eta)_m over the M MoE layers, K = probmoe.soft_budget or
    M * soft_k."""
    pm, M = cfg["probmoe"], len(moe_layers(cfg))
    K = pm.get("soft_budget") or M * pm["soft_k"]
    return 1.0 + (K - M) * torch.softmax(P["model.soft_budget.eta"].double(), 0)


def moe(P, pre, cfg, h, gen, record, forced=None, soft_k=None):
    """h: (T, H). Returns (y, aux_loss, selection mask (T, E)). soft_k: this layer's learned k_l
    (softmoe, a 0-d tensor); alpha is exp(P[pre + "gate.log_alpha"])."""
    E, k = num_experts(cfg), cfg["num_experts_per_tok"]
    pm = cfg["probmoe"]
    router = pm["router"]
    names = EXPERT_NAMES[family(cfg)]
    norm = norm_topk(cfg)
    theta = h @ P[pre + "gate.weight"].t()                   # (T, E)
    pi = torch.softmax(theta, dim=-1)
    if router in ("topk", "densemixer"):
        sel = topk_mask(pi.detach(), k)
        s = (pi * sel).sum(-1, keepdim=True)
        w = pi * sel / s if norm else pi * sel
        if router == "topk":
            y = combine(P, pre, E, h, sel, w, names)
        else:
            y_sparse = combine(P, pre, E, h, sel, w.detach(), names)
            with torch.no_grad():
                f_all = torch.stack([expert(P, pre, e, h, names) for e in range(E)], dim=1)  # (T,E,H)
            if norm:
                wt = torch.where(sel, pi / s, pi / s.detach())
            else:
                wt = pi
            dense = (wt.unsqueeze(-1) * f_all).sum(1)
            y = y_sparse + (dense - dense.detach())            # value exactly y_sparse
    elif router in ("probmoe", "probmoe-dyn"):
        kmin, kmax = (k, k) if router == "probmoe" else (pm["k_min"], pm["k_max"])
        sel, g = probmoe_sample(theta, kmin, kmax, gen, forced)
        w = g.to(pi.dtype) * pi
        y = combine(P, pre, E, h, sel, w, names)
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
        y = combine(P, pre, E, h, sel, w, names)
    else:
        raise ValueError(f"unknown router {router}")
    aux = theta.new_zeros(())
    if pm["lb_coef"]:
        counts = sel.sum(0).to(pi.dtype)                     # combine pairs per expert
        f = counts / counts.sum()
        aux = aux + pm["lb_coef"] * E * (f * pi.mean(0)).sum()
    if pm["z_coef"]:
        aux = aux + pm["z_coef"] * torch.logsumexp(theta, dim=-1).pow(2).mean()
    if family(cfg) == "qwen2_moe":
        y = y + shared_expert(P, pre, h)
    return y, aux, sel


def forward(P, cfg, input_ids, targets, gen=None, record=None, routing=None, forced=None):
    """Returns dict(logits (B,S,V), loss (total), ce_loss, aux).
    gen: torch.Generator for ProbMoE sampling; record: list to which the sampled (T, E) masks of
    probmoe layers are appended; routing: list collecting every MoE layer's selection mask;
    forced: list of (T, E) bool masks replacing ProbMoE sampling, one per MoE layer (index m).
    Dense layers (qwen2_moe) route nothing and add no aux loss."""
    B, S = input_ids.shape
    eps = cfg["rms_norm_eps"]
    x = P["model.embed_tokens.weight"][input_ids.reshape(-1)]   # (T, H), batch-major
    aux_total = x.new_zeros(())
    ks = soft_budget(P, cfg) if cfg["probmoe"]["router"] == "softmoe" else None
    index = moe_index(cfg)
    for i in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{i}."
        x = x + attention(P, pre + "self_attn.", cfg,
                          rms_norm(x, P[pre + "input_layernorm.weight"], eps), B, S)
        h = rms_norm(x, P[pre + "post_attention_layernorm.weight"], eps)
        if i not in index:
            x = x + dense_mlp(P, i, h)
            continue
        m = index[i]
        y, aux, sel = moe(P, moe_prefix(cfg, i), cfg, h, gen, record,
                          None if forced is None else forced[m], None if ks is None else ks[m])
        if routing is not None:
            routing.append(sel)
        x = x + y
        aux_total = aux_total + aux
    x = rms_norm(x, P["model.norm.weight"], eps)
    head = P["model.embed_tokens.weight" if cfg["tie_word_embeddings"] else "lm_head.weight"]
    logits = x @ head.t()                                         # (T, V)
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
