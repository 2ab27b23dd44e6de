#include "tokenizer/nfc_boundary.h"

#include <pthread.h>
#include <utf8proc.h>

enum { CODEPOINTS = 0x110000 };

static uint8_t second_half[CODEPOINTS / 8]; /* bit set: the last part of a composable decomposition */
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static bool has_canonical_decomposition(const utf8proc_property_t *p) {
    return p->decomp_seqindex != UINT16_MAX && p->decomp_type == 0;
}

/* Every character that canonical composition can produce (it decomposes canonically into two
 * or more and is not excluded) names the code point that composes onto what precedes it: the
 * last of its decomposition (Hangul's jamo compose algorithmically and are added by range). */
static void build_table(void) {
    for (utf8proc_int32_t cp = 0; cp < CODEPOINTS; cp++) {
        const utf8proc_property_t *p = utf8proc_get_property(cp);
        if (!has_canonical_decomposition(p) || p->comp_exclusion) continue;
        utf8proc_int32_t parts[8];
        int boundclass = 0;
        const utf8proc_ssize_t n = utf8proc_decompose_char(cp, parts, 8, UTF8PROC_DECOMPOSE, &boundclass);
        if (n >= 2 && n <= 8) second_half[parts[n - 1] / 8] |= (uint8_t)(1u << (parts[n - 1] % 8));
    }
    for (utf8proc_int32_t cp = 0x1161; cp <= 0x11C2; cp++) /* vowel and trailing jamo */
        second_half[cp / 8] |= (uint8_t)(1u << (cp % 8));
}

bool nfc_inert(int32_t codepoint) {
    if (codepoint < 0x300) return true; /* below the first combining mark nothing changes */
    if (codepoint >= CODEPOINTS) return false;
    pthread_once(&table_once, build_table);
    const utf8proc_property_t *p = utf8proc_get_property(codepoint);
    return p->combining_class == 0 && !has_canonical_decomposition(p) &&
           !(second_half[codepoint / 8] & (1u << (codepoint % 8)));
}
