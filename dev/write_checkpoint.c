/*
 * Interoperability, probmoe → PyTorch: writes a tiny probmoe model directory that the dev/
 * PyTorch reference must read (dev/check_interop.py --check DIR).
 *
 *   write_checkpoint DIR [SEED [FAMILY]]
 *
 * Creates the model of interop_config(FAMILY) (olmoe by default; qwen2_moe, mixtral, or
 * qwen2_moe_dense: qwen2_moe with dense MLP layers among its MoE layers),
 * initialises it with pm_model_init_weights(SEED) (default 20260607) and then sets every
 * vector (norm weights, biases) to 1 + 0.1·N(0, 1) (the initialiser sets them to 1 or 0, which
 * would not tell q_norm from k_norm or a layer's norms apart), saves it in the family's layout
 * (config.json + safetensors, Hugging Face names; qwen2_moe as BF16 in shards of 8 KiB, the
 * weights rounded to bf16 first so that the file holds the model exactly), runs an inference
 * forward on the fixed prompt interop_prompt and writes DIR/probmoe_logits.safetensors:
 *   "prompt" I32 (T), "logits" F32 (T, V); metadata "seed", "description".
 * DIR must not exist yet or be a directory pm_model_save may replace; its parent must exist.
 *
 * tests/test_interop.c includes this file with WRITE_CHECKPOINT_NO_MAIN defined, so the live
 * round trip there uses exactly this code path.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/bf16.h"
#include "core/error.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "probmoe.h"

#define INTEROP_PROMPT_LEN 12
#define INTEROP_DEFAULT_SEED 20260607u

/* Token ids below vocab_size 50, including both ends of the range and a repeat. */
static const int32_t interop_prompt[INTEROP_PROMPT_LEN] = {1, 17, 42, 3, 3, 29, 8, 49, 0, 23, 11, 36};

/* The interop cases: each family, and qwen2_moe once more with dense MLP layers. */
typedef struct {
    const char *name; /* the FAMILY argument; the fixtures' directory suffix */
    pm_arch arch;
    bool dense_layers; /* qwen2_moe's decoder_sparse_step and mlp_only_layers in use */
} interop_case;

static const interop_case interop_cases[] = {
    {"olmoe", PM_ARCH_OLMOE, false},
    {"qwen2_moe", PM_ARCH_QWEN2_MOE, false},
    {"mixtral", PM_ARCH_MIXTRAL, false},
    {"qwen2_moe_dense", PM_ARCH_QWEN2_MOE, true},
};
#define INTEROP_CASES (sizeof interop_cases / sizeof interop_cases[0])

/* The case called name, or NULL. */
static const interop_case *interop_find_case(const char *name) {
    for (size_t i = 0; i < INTEROP_CASES; i++)
        if (strcmp(interop_cases[i].name, name) == 0) return &interop_cases[i];
    return NULL;
}

/* Tiny and small on disk (~50 KB): head size 8, grouped-query attention (2 query heads share one
 * KV head), 6 experts of width 16, top-2 ProbMoE (deterministic top-k of softmax at inference,
 * weights π without renormalisation). initializer_range 0.3 makes the logits O(1). */
static pm_model_config interop_config(const interop_case *c) {
    pm_model_config cfg = pm_model_config_default();
    cfg.arch = c->arch;
    cfg.vocab_size = 50;
    cfg.hidden_size = 16;
    cfg.intermediate_size = 16;
    cfg.num_layers = 2;
    cfg.num_heads = 2;
    cfg.num_kv_heads = 1;
    cfg.num_experts = 6;
    cfg.experts_per_token = 2;
    cfg.max_position_embeddings = 32;
    cfg.initializer_range = 0.3f;
    cfg.router = pm_router_config_default(PM_ROUTER_PROBMOE, cfg.num_experts, cfg.experts_per_token);
    if (c->arch == PM_ARCH_QWEN2_MOE) { /* q/k/v biases, a shared expert, tied embeddings */
        cfg.qkv_bias = true;
        cfg.shared_expert_size = 12;
        cfg.dense_intermediate_size = 24; /* the dense layers' width, unlike the experts' and the shared one's */
        cfg.tie_word_embeddings = true;
    } else if (c->arch == PM_ARCH_MIXTRAL) { /* a window shorter than the prompt */
        cfg.sliding_window = 5;
        cfg.router.norm_topk_prob = true;
    }
    if (c->dense_layers) { /* dense 0, 2, 4 (off the step) and 3 (listed): two MoE layers, 1 and 5 */
        cfg.num_layers = 6;
        cfg.decoder_sparse_step = 2;
        cfg.mlp_only_layers[3] = true;
    }
    return cfg;
}

/* Rounds every weight to bf16, so that a BF16 file holds exactly this model. */
static void round_to_bf16(pm_model *model) {
    float *weights = pm_model_weights(model);
    for (size_t i = 0; i < pm_model_size(model); i++) weights[i] = bf16_to_float(bf16_from_float(weights[i]));
}

/* Vectors (norm weights, biases) 1 + 0.1·N(0, 1), one generator stream per tensor. */
static void perturb_norm_weights(pm_model *model, uint64_t seed) {
    float *weights = pm_model_weights(model);
    for (int i = 0; i < pm_model_num_params(model); i++) {
        const pm_param *param = pm_model_param(model, i);
        if (param->rank != 1) continue;
        pm_rng rng;
        pm_rng_init(&rng, seed, 0x2000000ull + (uint64_t)i);
        for (size_t j = 0; j < param->count; j++) {
            double u1 = pm_rng_uniform(&rng), u2 = pm_rng_uniform(&rng);
            double normal = sqrt(-2.0 * log(1.0 - u1)) * cos(6.283185307179586 * u2);
            weights[param->offset + j] = (float)(1.0 + 0.1 * normal);
        }
    }
}

/* Creates, saves and runs the model; writes dir/probmoe_logits.safetensors. If logits is not
 * NULL it receives the (T, V) logits (T·V floats). 0 or a negative pm_status. */
static int interop_write_checkpoint(const char *dir, uint64_t seed, const interop_case *c, float *logits) {
    const pm_arch arch = c->arch;
    const pm_model_config cfg = interop_config(c);
    pm_model *model = pm_model_create(&cfg, 1, INTEROP_PROMPT_LEN);
    if (!model) return PM_ERR_NOMEM; /* pm_model_create said why */
    pm_model_init_weights(model, seed);
    perturb_norm_weights(model, seed);
    const checkpoint_options options = {arch == PM_ARCH_QWEN2_MOE, arch == PM_ARCH_QWEN2_MOE ? 8192 : 0};
    if (options.bf16) round_to_bf16(model);
    int status = checkpoint_save(model, NULL, dir, &options);
    if (status == 0)
        status = pm_model_forward(model, interop_prompt, NULL, 1, INTEROP_PROMPT_LEN, false, 0, 0, NULL);
    st_writer *writer = status == 0 ? st_writer_create() : NULL;
    if (status == 0 && !writer) status = pm_fail(PM_ERR_NOMEM, "out of memory writing the logits");
    const int64_t prompt_shape[1] = {INTEROP_PROMPT_LEN};
    const int64_t logits_shape[2] = {INTEROP_PROMPT_LEN, cfg.vocab_size};
    if (status == 0) status = st_writer_add(writer, "prompt", ST_I32, prompt_shape, 1, interop_prompt);
    if (status == 0) status = st_writer_add(writer, "logits", ST_F32, logits_shape, 2, pm_model_logits(model));
    char text[256];
    snprintf(text, sizeof text, "%llu", (unsigned long long)seed);
    if (status == 0) status = st_writer_set_metadata(writer, "seed", text);
    if (status == 0)
        status = st_writer_set_metadata(writer, "description",
                                        "probmoe's inference logits (training = false) of this directory's "
                                        "model for the prompt; written by dev/write_checkpoint.c");
    char path[4096];
    if (status == 0 && (size_t)snprintf(path, sizeof path, "%s/probmoe_logits.safetensors", dir) >= sizeof path)
        status = pm_fail(PM_ERR_ARG, "the path '%s/probmoe_logits.safetensors' is too long", dir);
    if (status == 0) status = st_writer_write(writer, path);
    if (status == 0 && logits)
        memcpy(logits, pm_model_logits(model), sizeof(float) * INTEROP_PROMPT_LEN * (size_t)cfg.vocab_size);
    st_writer_free(writer);
    pm_model_free(model);
    return status;
}

#ifndef WRITE_CHECKPOINT_NO_MAIN
int main(int argc, char **argv) {
    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: %s DIR [SEED [FAMILY]]\n  writes a tiny probmoe model directory DIR of "
                        "FAMILY (olmoe, qwen2_moe, mixtral or qwen2_moe_dense) and "
                        "DIR/probmoe_logits.safetensors\n", argv[0]);
        return 2;
    }
    uint64_t seed = INTEROP_DEFAULT_SEED;
    const interop_case *c = interop_find_case(argc == 4 ? argv[3] : "olmoe");
    if (!c) {
        fprintf(stderr, "%s: FAMILY must be olmoe, qwen2_moe, mixtral or qwen2_moe_dense, not '%s'\n", argv[0],
                argv[3]);
        return 2;
    }
    if (argc >= 3) {
        char *end;
        seed = strtoull(argv[2], &end, 10);
        if (*argv[2] == '\0' || *end != '\0') {
            fprintf(stderr, "%s: SEED must be a whole number, not '%s'\n", argv[0], argv[2]);
            return 2;
        }
    }
    if (interop_write_checkpoint(argv[1], seed, c, NULL) < 0) {
        fprintf(stderr, "%s: %s\n", argv[0], pm_last_error());
        return 1;
    }
    printf("wrote %s (config.json, model.safetensors, probmoe_logits.safetensors), seed %llu\n", argv[1],
           (unsigned long long)seed);
    return 0;
}
#endif
