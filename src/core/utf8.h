/* UTF-8 validation, shared by every reader of text (corpora, tokenizer input, GSM8K lines,
 * safetensors headers). */
#ifndef PM_CORE_UTF8_H
#define PM_CORE_UTF8_H

#include <stddef.h>

/* The offset of the first byte of s[0..length) that does not start a well-formed UTF-8
 * character (RFC 3629: no overlong forms, surrogates or code points past U+10FFFF, as PCRE2
 * checks; a character cut short by the end is invalid), or length if all of it is valid. */
size_t utf8_invalid_at(const unsigned char *s, size_t length);

#endif
