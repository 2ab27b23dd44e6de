/*
 * GPT-2's reversible map between bytes and printable Unicode characters, used by byte-level
 * BPE vocabularies (encoder.json, tokenizer.json): bytes that are printable Latin-1 map to
 * themselves, the other 68 bytes to U+0100.. in order. Token strings in those files are UTF-8
 * strings of these characters.
 */
#ifndef PM_TOKENIZER_BYTE_UNICODE_H
#define PM_TOKENIZER_BYTE_UNICODE_H

#include <stddef.h>
#include <stdint.h>

/* The code point byte b is written as. */
uint32_t byte_to_codepoint(uint8_t b);
/* Appends the UTF-8 of byte b's character to out (at most 2 bytes); returns the count. */
size_t byte_to_utf8(uint8_t b, char *out);
/* Decodes a vocabulary string (UTF-8 of mapped characters) back to raw bytes. Returns the
 * byte count, or -1 if a character is not one of the 256 mapped ones or the UTF-8 is bad. */
long utf8_to_bytes(const char *text, size_t length, uint8_t *out, size_t capacity);

#endif
