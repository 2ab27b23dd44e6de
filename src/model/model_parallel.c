/* Expert parallelism in the model (model_internal.h): which experts are this rank's, the
 * ranges a rank touches, releasing the memory of the others, and bringing rank 0's copy of
 * every expert up to date. */
#define _DEFAULT_SOURCE /* madvise */
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/error.h"
#include "model/model_internal.h"

int model_set_expert_parallel(pm_model *model, const batch_comm *comm, int max_tokens) {
    const pm_model_config *cfg = &model->cfg;
    const int G = comm->expert_size, E = cfg->num_experts, H = cfg->hidden_size, I = cfg->intermediate_size;
    if (G < 2 || G > E)
        return pm_fail(PM_ERR_ARG, "expert parallelism: groups of %d processes cannot split %d experts; give "
                       "--expert-parallel between 2 and %d (at least one expert a process)", G, E, E);
    const int per_token = model_pairs_per_token(&cfg->router);
    const int64_t capacity = moe_owner_capacity(G, max_tokens, per_token, E);
    if (capacity >= INT32_MAX)
        return pm_fail(PM_ERR_ARG, "expert parallelism: %lld expert rows may arrive at one process (more than %d); "
                       "use a smaller batch or sequence", (long long)capacity, INT32_MAX);
    int status = PM_OK;
    for (int m = 0; status == 0 && m < model->num_moe; m++)
        status = moe_owner_init(&moe_layer(model, m)->owner, H, I, E, G, comm->expert_rank, (int)capacity);
    if (status == 0)
        status = moe_owner_scratch_init(&model->owner_scratch, H, I, (int)capacity,
                                        moe_layer(model, 0)->moe.capacity_pairs);
    /* bf16: the owner's expert products take up to `capacity` rows, more than a local batch
     * has pairs; their inputs' copies are reserved now rather than grown mid-run */
    const uint64_t owned = model_bf16_owner_elements(cfg, (uint64_t)capacity);
    if (status == 0 && model->weights16 && (owned > SIZE_MAX / 2 || !matmul_bf16_reserve(model->bf16, (size_t)owned)))
        status = pm_fail(PM_ERR_NOMEM, "expert parallelism: out of memory for the bf16 copies of %llu expert rows' "
                         "inputs; use a smaller batch or sequence", (unsigned long long)capacity);
    if (status < 0) return status;
    model->expert_comm = comm;
    model_release_other_experts(model, model->weights);
    model_release_other_experts(model, model->grads);
    return PM_OK;
}

/* The expert (or -1) and layer of parameter index. */
static int expert_of(const pm_model *model, int index, int *layer) {
    const int E = model->cfg.num_experts;
    for (int m = 0; m < model->num_moe; m++) {
        const int first = model->layer_params[model->moe_layers[m]].expert0;
        if (index >= first && index < first + 3 * E) {
            *layer = model->moe_layers[m];
            return (index - first) / 3;
        }
    }
    return -1;
}

bool model_param_local(const pm_model *model, int index) {
    if (!model->expert_comm) return true;
    int layer, expert = expert_of(model, index, &layer);
    const moe_owner *owner = &moe_layer(model, 0)->owner;
    return expert < 0 || (expert >= owner->first && expert < owner->first + owner->count);
}

bool model_param_kept(const pm_model *model, int index) {
    return !model->expert_comm || model->expert_comm->rank == 0 || model_param_local(model, index);
}

void model_for_local_ranges(const pm_model *model, void (*each)(void *user, size_t offset, size_t count), void *user) {
    if (!model->expert_comm) {
        each(user, 0, model->size);
        return;
    }
    size_t at = 0; /* the start of the shared tensors not given yet */
    for (int m = 0; m < model->num_moe; m++) {
        const int l = model->moe_layers[m];
        size_t offset, count;
        model_local_experts(model, l, &offset, &count);
        const pm_param *first = &model->params[model->layer_params[l].expert0];
        const pm_param *last = first + 3 * model->cfg.num_experts - 1;
        each(user, at, first->offset - at);
        if (count) each(user, offset, count);
        at = last->offset + last->count;
    }
    each(user, at, model->size - at);
}

/* The whole pages inside values[offset, offset + count) go back to the system. */
static void release(float *values, size_t offset, size_t count) {
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t begin = ((uintptr_t)(values + offset) + page - 1) / page * page;
    const uintptr_t end = (uintptr_t)(values + offset + count) / page * page;
    if (end > begin) madvise((void *)begin, end - begin, MADV_DONTNEED);
}

void model_release_other_experts(const pm_model *model, float *values) {
    if (!model->expert_comm || model->expert_comm->rank == 0) return;
    const int E = model->cfg.num_experts;
    for (int m = 0; m < model->num_moe; m++) {
        const int l = model->moe_layers[m];
        const moe_owner *owner = &model->layers[l].owner;
        const pm_param *first = &model->params[model->layer_params[l].expert0];
        const pm_param *mine = first + 3 * owner->first, *after = first + 3 * (owner->first + owner->count);
        const pm_param *last = first + 3 * E - 1;
        release(values, first->offset, mine->offset - first->offset); /* the experts before this rank's */
        if (owner->first + owner->count < E) release(values, after->offset, last->offset + last->count - after->offset);
    }
}

void model_local_experts(const pm_model *model, int l, size_t *offset, size_t *count) {
    const moe_owner *owner = &model->layers[l].owner;
    const int first = model->layer_params[l].expert0 + 3 * owner->first;
    *offset = model->params[first].offset;
    *count = 0;
    for (int i = 0; i < 3 * owner->count; i++) *count += model->params[first + i].count;
}

void model_collect_experts(pm_model *model, float *values) {
    const batch_comm *comm = model->expert_comm;
    if (!comm) return;
    const int E = model->cfg.num_experts;
    for (int m = 0; m < model->num_moe; m++)
        for (int j = 1; j < comm->expert_size; j++) {
            const int l = model->moe_layers[m];
            int first, count;
            batch_comm_rows(E, j, comm->expert_size, &first, &count);
            const int index = model->layer_params[l].expert0 + 3 * first;
            const pm_param *last = &model->params[index + 3 * count - 1];
            const size_t offset = model->params[index].offset;
            comm->collect_floats(comm, values + offset, last->offset + last->count - offset, j);
        }
}

void model_expert_traffic(const pm_model *model, int64_t *pair_rows, int64_t *rank_rows) {
    *pair_rows = *rank_rows = 0;
    for (int m = 0; model->expert_comm && m < model->num_moe; m++) {
        *pair_rows += moe_layer(model, m)->owner.pair_rows;
        *rank_rows += moe_layer(model, m)->owner.rank_rows;
    }
}
