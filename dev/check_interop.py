"""Checkpoint interoperability between probmoe and the PyTorch reference (dev/README.md).

  --check DIR        probmoe → PyTorch. DIR is a model directory written by probmoe
                     (dev/write_checkpoint DIR [SEED FAMILY]): config.json, model.safetensors or
                     shards with model.safetensors.index.json (Hugging Face names, F32, BF16 or
                     F16) and probmoe_logits.safetensors ("prompt" I32 (T), "logits" F32 (T, V)).
                     Builds the reference model from the files alone (read with safetensors_io,
                     no safetensors package), runs the prompt at inference and compares with
                     probmoe's logits: max|torch − probmoe| / max|probmoe| <= 1e-4. On success
                     writes DIR/torch_logits.safetensors (its own logits, same layout), which
                     tests/test_interop.c compares with the model it loads from DIR.
  --write-torch DIR [--family F]
                     PyTorch → probmoe. Writes a model directory the PyTorch way: config.json
                     (olmoe: OLMoE config + "probmoe" object; qwen2_moe, mixtral: the family's
                     Hugging Face config alone, so its own top-k routing; qwen2_moe_dense:
                     qwen2_moe with dense MLP layers, decoder_sparse_step 2 and
                     mlp_only_layers [3] of 6 layers), model.safetensors (HF
                     names; the embedding and lm_head as F16, the rest F32) and
                     torch_logits.safetensors (prompt + the reference's inference logits).
                     tests/test_interop.c loads it with pm_model_load and must reproduce the
                     logits.

Inference rule (what probmoe's routers do with training = false): topk, densemixer, probmoe:
the top-k experts of π = softmax(θ) (ties to the lower index) with weights π, divided by their
sum only with norm_topk_prob. Other routers are refused.

Exit status 0 on success, 1 on a mismatch or a bad directory.
Run: /usr/bin/python3 dev/check_interop.py --check DIR | --write-torch DIR
"""
import argparse
import copy
import hashlib
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_model as rm  # noqa: E402
import safetensors_io as st  # noqa: E402

TOLERANCE = 1e-4          # max-norm relative error between the two implementations
TORCH_SEED = 20260608     # weights of the --write-torch model
TORCH_PROMPT = [5, 60, 0, 33, 33, 12, 47, 2, 59, 18, 7, 41]    # token ids < vocab 61
INFERENCE_TOPK = ("topk", "densemixer", "probmoe")
F16_TENSORS = ("model.embed_tokens.weight", "lm_head.weight")


class InteropError(Exception):
    pass


def read_weights(path):
    """Every tensor of model.safetensors, or of the shards model.safetensors.index.json names."""
    single = os.path.join(path, "model.safetensors")
    if os.path.exists(single):
        return st.read(single)[0]
    with open(os.path.join(path, "model.safetensors.index.json"), encoding="utf-8") as f:
        weight_map = json.load(f)["weight_map"]
    tensors = {}
    for shard in sorted(set(weight_map.values())):
        for name, array in st.read(os.path.join(path, shard))[0].items():
            if weight_map.get(name) != shard:
                raise InteropError(f"{path}/{shard}: {name} is not mapped to this shard by the index")
            tensors[name] = array
    if set(tensors) != set(weight_map):
        raise InteropError(f"{path}: the index names tensors its shards lack")
    return tensors


def load_model_dir(path):
    """(cfg, params {HF name: float32 tensor}) from config.json + the weights; every tensor the
    config implies must be there with its shape, and nothing else."""
    with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    tensors = read_weights(path)
    expected = rm.param_shapes(cfg)
    missing = [n for n, _ in expected if n not in tensors]
    unknown = sorted(set(tensors) - {n for n, _ in expected})
    if missing or unknown:
        raise InteropError(f"{path}: weights missing {missing[:5]}, unknown {unknown[:5]}")
    params = {}
    for name, shape in expected:
        if tuple(tensors[name].shape) != tuple(shape):
            raise InteropError(f"{path}: {name} has shape "
                               f"{list(tensors[name].shape)}, config.json implies {list(shape)}")
        params[name] = torch.from_numpy(tensors[name].astype(np.float32))
    return cfg, params


def inference_config(cfg):
    """The config whose training-mode reference forward is probmoe's inference forward."""
    pm = cfg.get("probmoe", {})
    router = pm.get("router", "topk")   # no probmoe object: the family's own top-k
    if router not in INFERENCE_TOPK:
        raise InteropError(f"router {router!r}: only {', '.join(INFERENCE_TOPK)} are supported here "
                           "(their inference rule is top-k of softmax)")
    if router == "topk" and pm.get("bias_rate", 0.0):
        raise InteropError("topk with bias_rate > 0: the selection bias is not in the checkpoint")
    out = copy.deepcopy(cfg)
    full = dict(rm.PROBMOE_DEFAULTS)
    full.update({k: v for k, v in pm.items() if k in full})
    full["router"] = "topk"
    out["probmoe"] = full
    out["norm_topk_prob"] = bool(cfg.get("norm_topk_prob", False))
    out.setdefault("tie_word_embeddings", False)
    out.setdefault("num_key_value_heads", cfg["num_attention_heads"])
    out.setdefault("rope_theta", 10000.0)
    out.setdefault("rms_norm_eps", 1e-5)
    return out


@torch.no_grad()
def inference_logits(cfg, params, prompt):
    """(T, V) float32 logits and the smallest top-k margin π_(k) − π_(k+1) over layers/tokens."""
    icfg = inference_config(cfg)
    ids = torch.tensor([prompt], dtype=torch.int64)
    out = rm.forward(params, icfg, ids, torch.zeros_like(ids))
    margin = routing_margin(icfg, params, ids)
    return out["logits"][0].numpy().astype(np.float32), margin


def routing_margin(cfg, P, ids):
    eps, k = cfg["rms_norm_eps"], cfg["num_experts_per_tok"]
    margins = []
    x = P["model.embed_tokens.weight"][ids.reshape(-1)]
    for i in range(cfg["num_hidden_layers"]):
        pre, moe = f"model.layers.{i}.", rm.moe_prefix(cfg, i)
        x = x + rm.attention(P, pre + "self_attn.", cfg,
                             rm.rms_norm(x, P[pre + "input_layernorm.weight"], eps), *ids.shape)
        h = rm.rms_norm(x, P[pre + "post_attention_layernorm.weight"], eps)
        if not rm.is_moe_layer(cfg, i):        # qwen2_moe's dense layers route nothing
            x = x + rm.dense_mlp(P, i, h)
            continue
        if k < rm.num_experts(cfg):
            pi = torch.softmax(h @ P[moe + "gate.weight"].t(), -1).sort(-1, descending=True).values
            margins.append((pi[:, k - 1] - pi[:, k]).min().item())
        y, _, _ = rm.moe(P, moe, cfg, h, None, None)
        x = x + y
    return min(margins) if margins else float("inf")


def dense_text(cfg):
    """' (MoE layers [1, 5] of 6)' when some layers are dense MLPs, else ''."""
    moe, n = rm.moe_layers(cfg), cfg["num_hidden_layers"]
    return "" if len(moe) == n else f" (MoE layers {moe} of {n})"


def relative_error(got, want):
    scale = float(np.abs(want).max())
    diff = float(np.abs(got.astype(np.float64) - want.astype(np.float64)).max())
    return diff / scale if scale > 0 else diff


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def write_logits(path, prompt, logits, description, model_path):
    st.write(path, {"prompt": np.asarray(prompt, dtype=np.int32),
                    "logits": np.ascontiguousarray(logits, dtype=np.float32)},
             {"description": description, "model_sha256": sha256(model_path),
              "torch": torch.__version__})


def check(path):
    cfg, params = load_model_dir(path)
    tensors, _ = st.read(os.path.join(path, "probmoe_logits.safetensors"))
    prompt = [int(t) for t in tensors["prompt"].reshape(-1)]
    want = tensors["logits"].astype(np.float32)
    got, margin = inference_logits(cfg, params, prompt)
    if want.shape != got.shape:
        raise InteropError(f"probmoe_logits has shape {list(want.shape)}, expected {list(got.shape)}")
    err = relative_error(got, want)
    ok = err <= TOLERANCE
    print(f"{path}: {rm.family(cfg)} {cfg.get('probmoe', {}).get('router', 'topk')} model"
          f"{dense_text(cfg)}, {len(params)} tensors, prompt of "
          f"{len(prompt)} tokens: max|torch - probmoe| / max|probmoe| = {err:.2e} "
          f"(tolerance {TOLERANCE:g}); smallest top-k margin {margin:.1e}; "
          f"{'OK' if ok else 'MISMATCH'}")
    if not ok:
        return False
    weights = os.path.join(path, "model.safetensors")
    if not os.path.exists(weights):   # sharded: the index stands for the weights
        weights = os.path.join(path, "model.safetensors.index.json")
    write_logits(os.path.join(path, "torch_logits.safetensors"), prompt, got,
                 "The PyTorch reference's inference logits (dev/check_interop.py --check) of this "
                 "directory's model, read from its config.json and safetensors files.", weights)
    return True


# the families' own parts on: qwen2_moe with tied embeddings (and q/k/v biases, a shared expert,
# no renormalisation, as Qwen1.5-MoE), mixtral with a window shorter than the prompt
FAMILY_OPTIONS = {"olmoe": dict(norm_topk_prob=True),
                  "qwen2_moe": dict(shared=10, dense=20, tie=True),
                  "mixtral": dict(sliding_window=5)}
# case: (family, make_config options); qwen2_moe_dense has dense MLP layers 0, 2, 4 (off the
# step) and 3 (listed) among MoE layers 1 and 5, the layout of dev/write_checkpoint.c's case
CASES = {**{f: (f, options) for f, options in FAMILY_OPTIONS.items()},
         "qwen2_moe_dense": ("qwen2_moe", dict(FAMILY_OPTIONS["qwen2_moe"], layers=6,
                                               decoder_sparse_step=2, mlp_only_layers=(3,)))}


def write_torch(path, case="olmoe"):
    family, options = CASES[case]
    options = dict(dict(vocab=61, hidden=16, intermediate=12, layers=2, heads=4, kv_heads=2,
                        experts=4, k=2, max_pos=32, router="topk", lb_coef=0.01), **options)
    cfg = rm.make_config(family=family, **options)
    params = rm.init_params(cfg, torch.Generator().manual_seed(TORCH_SEED))
    if family != "olmoe":
        del cfg["probmoe"]   # a Hugging Face config as the family's tools write it
    arrays = {}
    for name, _ in rm.param_shapes(cfg):
        a = params[name].numpy()
        arrays[name] = a.astype(np.float16) if name in F16_TENSORS else a   # lm_head when untied
        params[name] = torch.from_numpy(arrays[name].astype(np.float32))   # what the file holds
    logits, margin = inference_logits(cfg, params, TORCH_PROMPT)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    model_path = os.path.join(path, "model.safetensors")
    st.write(model_path, arrays, {"format": "pt"})
    write_logits(os.path.join(path, "torch_logits.safetensors"), TORCH_PROMPT, logits,
                 "The PyTorch reference's inference logits (dev/check_interop.py --write-torch) "
                 "of this directory's model for the prompt.", model_path)
    # the directory alone must reproduce them
    cfg2, params2 = load_model_dir(path)
    again, _ = inference_logits(cfg2, params2, TORCH_PROMPT)
    if not np.array_equal(again, logits):
        raise InteropError(f"{path}: reading the directory back does not reproduce the logits")
    print(f"{path}: {case} topk model{dense_text(cfg)} written by the reference, "
          f"{len(arrays)} tensors "
          f"({', '.join(n for n in F16_TENSORS if n in arrays)} as F16); logits max |.| "
          f"{np.abs(logits).max():.2f}; "
          f"smallest top-k margin {margin:.1e}")
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--check", metavar="DIR", help="check a probmoe-written model directory")
    group.add_argument("--write-torch", metavar="DIR", help="write a model directory from PyTorch")
    parser.add_argument("--family", default="olmoe", choices=sorted(CASES),
                        help="the family --write-torch writes (or qwen2_moe_dense)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    try:
        ok = check(args.check) if args.check else write_torch(args.write_torch, args.family)
    except (InteropError, OSError, ValueError, KeyError) as e:
        print(f"check_interop.py: {e}", file=sys.stderr)
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
