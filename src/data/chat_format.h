/*
 * Chat formats for supervised examples (GSM8K): how one (user, assistant) exchange becomes a
 * prompt and a completion, so that the answer-only loss mask covers the assistant's turn and
 * evaluation decodes from the same prompt.
 *   plain   "Answer the following question.\n\nQuestion: {user}\nAnswer:" + " {assistant}", eos
 *   chatml  "<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n" + "{assistant}<|im_end|>"
 *           (Qwen's; the turn ends with <|im_end|>)
 *   llama2  "<s>[INST] {user} [/INST]" + " {assistant} </s>" (Llama-2-chat's, one turn)
 *   tulu    "<|user|>\n{user}\n<|assistant|>\n" + "{assistant}", eos (Tülu's, the format of the
 *           ProbMoE paper's GSM8K runs; its markers are plain text)
 * Markers the format writes as special tokens must be single tokens of the tokenizer (added
 * tokens, which its encoder maps from their text): chat_format_check refuses a tokenizer
 * without them, naming the missing token.
 */
#ifndef PM_DATA_CHAT_FORMAT_H
#define PM_DATA_CHAT_FORMAT_H

#include <stdbool.h>
#include <stdint.h>

#include "tokenizer/tokenizer.h"

typedef enum { CHAT_PLAIN, CHAT_CHATML, CHAT_LLAMA2, CHAT_TULU, CHAT_FORMATS } chat_format;

/* "plain", "chatml", "llama2", "tulu"; false for another name. */
bool chat_format_parse(const char *name, chat_format *out);
const char *chat_format_name(chat_format format);
/* "plain, chatml, llama2, tulu" (for messages). */
const char *chat_format_list(void);

/* The prompt and the completion of one exchange (malloc'd; free both). 0 or PM_ERR_NOMEM. */
int chat_format_render(chat_format format, const char *user, const char *assistant, char **prompt,
                       char **completion);

/* Whether the completion is followed by the tokenizer's eos (else the format's own marker,
 * part of the completion, ends the turn). */
bool chat_format_appends_eos(chat_format format);

/* 0, or PM_ERR_ARG naming the marker this tokenizer lacks as a single token (or its missing
 * eos) and what to do. */
int chat_format_check(chat_format format, const tokenizer *tok);

/* The token that ends the assistant's turn, where decoding stops: the format's end marker,
 * else the tokenizer's eos (-1 if it has none). Call after chat_format_check. */
int32_t chat_format_stop_token(chat_format format, const tokenizer *tok);

#endif
