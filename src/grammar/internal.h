/*
 * grammar/internal.h - what the grammar module's files share (schema_check.c,
 * json_schema.c, regex_gbnf.c, schema_validate.c); never included outside
 * src/grammar/. The module needs no model: base, jansson and PCRE2 only.
 */
#ifndef SLM_GRAMMAR_INTERNAL_H
#define SLM_GRAMMAR_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "slm/base.h"
#include "slm/grammar.h"

/* ---------------------------------------------------------------- pointers */

/* A JSON pointer being built while walking a schema or a value, as a URI
 * fragment ("#/properties/age"). Segments past the buffer are dropped and the
 * pointer ends in "..." so messages stay readable. */
struct slm__jptr {
    char buf[200];
    size_t len;
};

void slm__jptr_init(struct slm__jptr *p);
/* Appends "/seg" (escaping ~ and / as RFC 6901 says); returns the old length
 * to give back to slm__jptr_pop(). */
size_t slm__jptr_push(struct slm__jptr *p, const char *seg, size_t n);
size_t slm__jptr_push_c(struct slm__jptr *p, const char *seg);
size_t slm__jptr_push_index(struct slm__jptr *p, size_t i);
void slm__jptr_pop(struct slm__jptr *p, size_t old_len);
/* Replaces the pointer with `s` (a $ref target) and returns the old content
 * through `save` so it can be restored with slm__jptr_restore(). */
void slm__jptr_set(struct slm__jptr *p, const char *s, size_t n, struct slm__jptr *save);
void slm__jptr_restore(struct slm__jptr *p, const struct slm__jptr *save);

/* ---------------------------------------------------------------- schemas */

/* Checks the whole schema tree once: every keyword known, every keyword's
 * value of the right shape, every $ref resolvable, every pattern a valid
 * PCRE2 regex, depth within SLM_SCHEMA_MAX_DEPTH. After it passes, the
 * converter and the validator may trust the shapes. */
int slm__schema_check(const json_t *root, struct slm_err *err);

/* Resolves a local $ref ("#", "#/$defs/x", any "#/..." JSON pointer with ~0 ~1
 * and %XX escapes) against `root`; NULL when it does not resolve. */
const json_t *slm__schema_resolve_ref(const json_t *root, const char *ref, size_t len);

/* True for keywords that only annotate (description, title, ...). */
bool slm__schema_is_annotation(const char *key);

/* A non-negative integer keyword value (3 or 3.0); false when absent. The
 * check pass has made sure present ones are valid. */
bool slm__schema_uint(const json_t *schema, const char *key, uint64_t *out);

/* JSON Schema equality: numbers compare by value (1 == 1.0), objects ignore
 * key order. */
bool slm__json_equal(const json_t *a, const json_t *b, int depth);

/* The JSON types a schema's "type" allows, as a bit set of SLM__T_*; all
 * bits when "type" is absent. */
enum {
    SLM__T_NULL = 1,
    SLM__T_BOOLEAN = 2,
    SLM__T_OBJECT = 4,
    SLM__T_ARRAY = 8,
    SLM__T_NUMBER = 16,
    SLM__T_STRING = 32,
    SLM__T_INTEGER = 64, /* integer only (number includes it) */
    SLM__T_ALL = 127,
};
unsigned slm__schema_types(const json_t *schema);
/* Which of those bits a value has (an integral real counts as integer). */
unsigned slm__value_types(const json_t *v);
/* "string", "integer", ... for one bit. */
const char *slm__type_name(unsigned bit);

/* String formats both sides understand. */
enum slm__format {
    SLM__FMT_NONE = 0,
    SLM__FMT_DATE,
    SLM__FMT_TIME,
    SLM__FMT_DATE_TIME,
    SLM__FMT_UUID,
    SLM__FMT_UNKNOWN,
};
enum slm__format slm__format_parse(const char *s);

/* ---------------------------------------------------------------- regex */

/* Builtin grammar rules a regex translation refers to. */
#define SLM__RX_USES_CHAR 1u /* `char`: any JSON string character (unanchored ends) */

/*
 * Translates a JSON Schema `pattern` (ECMAScript-flavoured regex, UTF-8) into
 * a GBNF expression for the *JSON-encoded content* of a string that matches
 * it (no surrounding quotes), appended to `out`. Supported: literals, escapes
 * (\d \w \s \D \W \S \n \t \r \f \v \0 \xHH \uHHHH and escaped punctuation),
 * classes with ranges and negation, `.`, groups ( (...) (?:...) (?<name>...) ),
 * alternation, quantifiers ? * + {n} {n,} {n,m} (lazy forms accepted), and
 * the anchors ^ and $ at the ends of the pattern's top-level alternatives
 * (an unanchored end may be followed or preceded by any text, as JSON Schema
 * says). Everything else fails with SLM_E_UNSUPPORTED naming the construct
 * and its offset, or SLM_E_INVALID for a malformed regex. `*uses` receives
 * SLM__RX_USES_* bits for builtin rules the expression names.
 */
int slm__regex_to_gbnf(const char *pattern, size_t len, struct slm_buf *out, unsigned *uses,
                       struct slm_err *err);

/* GBNF escapes, shared by the converter and the regex translator. */
/* Appends code point `cp` JSON-encoded ("\"" for a quote, "\n" for a
 * newline, UTF-8 otherwise) and then escaped for a GBNF "..." literal. */
int slm__gbnf_put_json_cp(struct slm_buf *out, uint32_t cp) SLM_NODISCARD;
/* Appends `n` bytes escaped for a GBNF "..." literal (no quotes added). */
int slm__gbnf_put_literal_bytes(struct slm_buf *out, const char *p, size_t n) SLM_NODISCARD;
/* Appends `cp` as it may appear inside a GBNF [...] class. */
int slm__gbnf_put_class_cp(struct slm_buf *out, uint32_t cp) SLM_NODISCARD;
/* Decodes one UTF-8 code point from p[0..n); returns bytes used (0 when
 * invalid). */
size_t slm__utf8_decode(const char *p, size_t n, uint32_t *cp);

#endif
