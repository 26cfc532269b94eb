/*
 * secret.c - masking what looks like a credential in a line of text before it
 * reaches a log, an error message or a client (slm_mask_secrets()).
 *
 * One pass, in place: every rule replaces at least three bytes with "***", so
 * the write position never passes the read position and the text never
 * grows. Over-masking (a word after "Bearer" in prose) is accepted; a key that
 * reaches a log is not. Pure and reentrant.
 */
#include "slm/base.h"

#include <string.h>

#define MASK "***"
#define MASK_LEN 3
/* Shorter values are left alone: they cannot be a key, and masking them could
 * make the text longer. */
#define MIN_VALUE 3
/* A key-shaped token needs this many key characters after its prefix. */
#define MIN_KEY_TAIL 8

/* Prefixes of well-known API keys (OpenAI/Anthropic, Stripe-style, Groq,
 * xAI, Hugging Face, Google, GitHub, GitLab). */
static const char *const KEY_PREFIXES[] = {"sk-", "sk_",  "rk_",  "gsk_",   "xai-",
                                           "hf_", "AIza", "ghp_", "glpat-", "github_pat_"};
/* Parameter and header names whose value is a secret (case-insensitive). */
static const char *const SECRET_NAMES[] = {"x-api-key", "api-key",      "api_key", "apikey",
                                           "key",       "access_token", "token",   "password",
                                           "secret",    "client_secret"};
static const char *const SCHEMES[] = {"bearer", "basic"};

static bool is_alnum(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool is_key_char(char c) {
    return is_alnum(c) || c == '-' || c == '_' || c == '*';
}

/* Where a value ends: whitespace, quotes, separators of queries, lists and JSON. */
static bool ends_value(char c) {
    return c == '\0' || c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '"' || c == '\'' ||
           c == '&' || c == '#' || c == ',' || c == ';' || c == ')' || c == '}' || c == ']' ||
           c == '<' || c == '>';
}

static size_t prefix_nocase(const char *s, const char *word) {
    size_t n = strlen(word);
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z') {
            c = (char)(c - 'A' + 'a');
        }
        if (c != word[i]) {
            return 0;
        }
    }
    return n;
}

static size_t value_len(const char *s) {
    size_t n = 0;
    while (!ends_value(s[n])) {
        n++;
    }
    return n;
}

/* "Bearer TOKEN" / "Basic TOKEN": bytes kept (scheme and spaces), value length. */
static bool match_scheme(const char *s, size_t *keep, size_t *value) {
    for (size_t i = 0; i < SLM_ARRAY_LEN(SCHEMES); i++) {
        size_t n = prefix_nocase(s, SCHEMES[i]);
        if (n == 0 || (s[n] != ' ' && s[n] != '\t')) {
            continue;
        }
        while (s[n] == ' ' || s[n] == '\t') {
            n++;
        }
        size_t v = value_len(s + n);
        if (v >= MIN_VALUE) {
            *keep = n;
            *value = v;
            return true;
        }
    }
    return false;
}

/* NAME=VALUE, NAME: VALUE, "NAME": "VALUE" for the secret names. */
static bool match_param(const char *s, size_t *keep, size_t *value) {
    for (size_t i = 0; i < SLM_ARRAY_LEN(SECRET_NAMES); i++) {
        size_t n = prefix_nocase(s, SECRET_NAMES[i]);
        if (n == 0) {
            continue;
        }
        if (s[n] == '"' || s[n] == '\'') {
            n++;
        }
        if (s[n] != '=' && s[n] != ':') {
            continue;
        }
        n++;
        while (s[n] == ' ' || s[n] == '\t') {
            n++;
        }
        if (s[n] == '"' || s[n] == '\'') {
            n++;
        }
        size_t v = value_len(s + n);
        if (v >= MIN_VALUE) {
            *keep = n;
            *value = v;
            return true;
        }
    }
    return false;
}

/* A token that starts like a well-known key: keeps the prefix. */
static bool match_key_shape(const char *s, size_t *keep, size_t *value) {
    for (size_t i = 0; i < SLM_ARRAY_LEN(KEY_PREFIXES); i++) {
        size_t n = strlen(KEY_PREFIXES[i]);
        if (strncmp(s, KEY_PREFIXES[i], n) != 0) {
            continue;
        }
        size_t v = 0;
        while (is_key_char(s[n + v])) {
            v++;
        }
        if (v >= MIN_KEY_TAIL) {
            *keep = n;
            *value = v;
            return true;
        }
    }
    return false;
}

/* A key hint as clouds print them ("zz-plain****abcd": the ends of a key around a run of
 * asterisks), whatever the key's shape: the whole token goes. */
static bool match_hint(const char *s, size_t *keep, size_t *value) {
    size_t n = 0;
    bool stars = false;
    while (is_key_char(s[n])) {
        stars = stars || strncmp(s + n, "****", 4) == 0;
        n++;
    }
    if (!stars || n < MIN_KEY_TAIL) {
        return false;
    }
    *keep = 0;
    *value = n;
    return true;
}

/* One of the configured keys at `s`: its length, else 0. */
static size_t match_key(const char *s, const char *const *keys, size_t n_keys) {
    for (size_t i = 0; i < n_keys; i++) {
        size_t n = keys[i] ? strlen(keys[i]) : 0;
        if (n > MASK_LEN && strncmp(s, keys[i], n) == 0) {
            return n;
        }
    }
    return 0;
}

/* A rule that starts at `s`, at the start of a word: bytes to keep, bytes to mask. */
static bool match_rule(const char *s, size_t *keep, size_t *value) {
    return match_scheme(s, keep, value) || match_param(s, keep, value) ||
           match_key_shape(s, keep, value) || match_hint(s, keep, value);
}

size_t slm_mask_secrets(char *s, const char *const *keys, size_t n_keys) {
    size_t r = 0, w = 0;
    char prev = '\0'; /* the byte before s[r] as it was read (s[r - 1] may be rewritten) */
    while (s[r]) {
        size_t keep = 0, value = 0, key = match_key(s + r, keys, n_keys);
        bool word_start = !is_alnum(prev) && prev != '_' && prev != '-';
        if (key == 0 && !(word_start && match_rule(s + r, &keep, &value))) {
            prev = s[r];
            s[w++] = s[r++];
            continue;
        }
        size_t span = key ? key : keep + value;
        prev = s[r + span - 1];
        memmove(s + w, s + r, keep); /* the name or prefix kept before the mask */
        memcpy(s + w + keep, MASK, MASK_LEN);
        w += keep + MASK_LEN;
        r += span;
    }
    s[w] = '\0';
    return w;
}
