/*
 * store/name.c - model names: parsing and validation (a name can never reach
 * outside the store), formatting, the alias table, local-path detection.
 *
 * Pure functions over strings (slm_name_is_local_path also stats a file);
 * no allocation, reentrant.
 */
#include "slm/store.h"

#include <string.h>

/* The one alias table (DESIGN.md). Targets are hf.co names that `slm pull`
 * understands; a pinned sha256 is checked on download. */
static const struct slm_alias g_aliases[] = {
    {"stories260k", "hf.co/ggml-org/models/tinyllamas/stories260K.gguf",
     "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d",
     "TinyStories 260K-parameter llama (a test model, 1.1 MB)"},
    {"smollm2:135m", "hf.co/bartowski/SmolLM2-135M-Instruct-GGUF:Q4_K_M", NULL,
     "SmolLM2 135M Instruct, Q4_K_M"},
    {"smollm2:360m", "hf.co/bartowski/SmolLM2-360M-Instruct-GGUF:Q4_K_M", NULL,
     "SmolLM2 360M Instruct, Q4_K_M"},
    {"qwen2.5:0.5b", "hf.co/Qwen/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M", NULL,
     "Qwen2.5 0.5B Instruct, Q4_K_M"},
    {"qwen2.5:1.5b", "hf.co/Qwen/Qwen2.5-1.5B-Instruct-GGUF:Q4_K_M", NULL,
     "Qwen2.5 1.5B Instruct, Q4_K_M"},
    {NULL, NULL, NULL, NULL},
};

const struct slm_alias *slm_alias_table(void) {
    return g_aliases;
}

/* Splits "name[:tag]" at the last ':' that comes after the last '/'. */
static void split_tag(struct slm_str text, struct slm_str *name, struct slm_str *tag) {
    size_t colon = SIZE_MAX;
    for (size_t i = 0; i < text.len; i++) {
        if (text.ptr[i] == '/') {
            colon = SIZE_MAX;
        } else if (text.ptr[i] == ':') {
            colon = i;
        }
    }
    if (colon == SIZE_MAX) {
        *name = text;
        *tag = SLM_STR_NULL;
    } else {
        *name = slm_str_sub(text, 0, colon);
        *tag = slm_str_sub(text, colon + 1, text.len - colon - 1);
    }
}

const struct slm_alias *slm_alias_find(const char *text) {
    if (!text) {
        return NULL;
    }
    struct slm_str full = slm_str_c(text), name, tag;
    split_tag(full, &name, &tag);
    bool latest = tag.ptr == NULL || slm_str_eq_nocase(tag, SLM_STR("latest"));
    for (const struct slm_alias *a = g_aliases; a->alias; a++) {
        struct slm_str an, at;
        split_tag(slm_str_c(a->alias), &an, &at);
        if (!slm_str_eq_nocase(an, name)) {
            continue;
        }
        /* "stories260k" and "stories260k:latest" both find the untagged alias. */
        if (at.ptr == NULL ? latest : (tag.ptr && slm_str_eq_nocase(at, tag))) {
            return a;
        }
    }
    return NULL;
}

static bool name_char_ok(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

static int check_component(struct slm_str c, const char *text, const char *what,
                           struct slm_err *err) {
    if (c.len == 0) {
        return slm_err_set(err, SLM_E_INVALID, "invalid model name '%.200s': empty %s", text, what);
    }
    if (c.ptr[0] == '.') {
        return slm_err_set(err, SLM_E_INVALID,
                           "invalid model name '%.200s': a %s may not start with '.'", text, what);
    }
    for (size_t i = 0; i < c.len; i++) {
        if (!name_char_ok(c.ptr[i])) {
            unsigned char ch = (unsigned char)c.ptr[i];
            if (ch >= 0x21 && ch < 0x7f) {
                return slm_err_set(err, SLM_E_INVALID,
                                   "invalid model name '%.200s': character '%c' is not allowed "
                                   "(use letters, digits, '.', '_', '-', '/')",
                                   text, ch);
            }
            return slm_err_set(err, SLM_E_INVALID,
                               "invalid model name: byte 0x%02x is not allowed (use letters, "
                               "digits, '.', '_', '-', '/')",
                               ch);
        }
    }
    return SLM_OK;
}

int slm_name_parse(const char *text, struct slm_name *out, struct slm_err *err) {
    memset(out, 0, sizeof(*out));
    if (!text || !text[0]) {
        return slm_err_set(err, SLM_E_INVALID, "invalid model name: empty");
    }
    struct slm_str full = slm_str_c(text), name, tag;
    if (full.len >= SLM_NAME_MAX + sizeof(out->tag)) {
        return slm_err_set(err, SLM_E_INVALID, "invalid model name '%.40s...': too long", text);
    }
    split_tag(full, &name, &tag);
    if (name.len > 0 && name.ptr[0] == '/') {
        return slm_err_set(err, SLM_E_INVALID,
                           "invalid model name '%.200s': it may not start with '/'", text);
    }
    if (name.len >= SLM_NAME_MAX) {
        return slm_err_set(err, SLM_E_INVALID,
                           "invalid model name '%.40s...': too long (%zu "
                           "bytes, at most %d)",
                           text, name.len, SLM_NAME_MAX - 1);
    }
    size_t start = 0;
    for (;;) {
        size_t slash = slm_str_find_char(name, '/', start);
        size_t end = slash == SIZE_MAX ? name.len : slash;
        int rc = check_component(
            slm_str_sub(name, start, end - start), text,
            slash == SIZE_MAX && start > 0 ? "last path component" : "path component", err);
        if (rc != SLM_OK) {
            return rc;
        }
        if (slash == SIZE_MAX) {
            break;
        }
        start = slash + 1;
    }
    if (tag.ptr) {
        if (tag.len >= sizeof(out->tag)) {
            return slm_err_set(err, SLM_E_INVALID,
                               "invalid model name '%.200s': tag too long "
                               "(at most %zu bytes)",
                               text, sizeof(out->tag) - 1);
        }
        int rc = check_component(tag, text, "tag", err);
        if (rc != SLM_OK) {
            return rc;
        }
    } else {
        tag = SLM_STR("latest");
    }
    memcpy(out->name, name.ptr, name.len);
    out->name[name.len] = '\0';
    memcpy(out->tag, tag.ptr, tag.len);
    out->tag[tag.len] = '\0';
    return SLM_OK;
}

size_t slm_name_format(const struct slm_name *n, char *out, size_t cap) {
    int len = snprintf(out, cap, "%s:%s", n->name, n->tag);
    return len < 0 ? 0 : (size_t)len;
}

bool slm_name_looks_like_path(const char *text) {
    if (!text || !text[0]) {
        return false;
    }
    struct slm_str s = slm_str_c(text);
    return text[0] == '/' || text[0] == '.' || text[0] == '~' ||
           slm_str_ends_with(s, SLM_STR(".gguf")) || slm_str_ends_with(s, SLM_STR(".GGUF")) ||
           slm_name_is_local_path(text);
}

bool slm_name_is_local_path(const char *text) {
    if (!text || !text[0]) {
        return false;
    }
    struct slm_str s = slm_str_c(text);
    if (text[0] == '/' || slm_str_starts_with(s, SLM_STR("./")) ||
        slm_str_starts_with(s, SLM_STR("../")) || slm_str_eq_c(s, ".") || slm_str_eq_c(s, "..")) {
        return true;
    }
    if (slm_str_ends_with(s, SLM_STR(".gguf")) || slm_str_ends_with(s, SLM_STR(".GGUF"))) {
        return slm_file_exists(text);
    }
    return false;
}
