/*
 * Where NFC may change text: a code point is inert when its combining class is 0, it has no
 * canonical decomposition and it is never the second half of a canonical composition. NFC of a
 * text is then the NFC of each stretch between inert code points (an inert code point neither
 * reorders nor composes with what precedes it), so utf8proc needs to see only the stretches
 * around the other code points, and text made of inert ones (most CJK, Cyrillic, ASCII) is
 * copied. The table is derived from utf8proc's own data once, on first use.
 */
#ifndef PM_TOKENIZER_NFC_BOUNDARY_H
#define PM_TOKENIZER_NFC_BOUNDARY_H

#include <stdbool.h>
#include <stdint.h>

bool nfc_inert(int32_t codepoint);

#endif
