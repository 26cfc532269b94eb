/*
 * store/hf.c - what `slm pull` fetches: pull names (aliases, hf.co names,
 * URLs) into sources, Hugging Face tree listings into file lists, and the
 * choice of one .gguf for a ":QUANT" tag.
 *
 * Everything here is pure parsing over untrusted text (a user's name, a
 * server's JSON) and is fuzzed (tests/fuzz/fuzz_name.c, fuzz_hf_tree.c).
 */
#include "slm/store.h"

#include <stdlib.h>
#include <string.h>

#include "slm/json.h"

/* ---------------------------------------------------------------- sources */

static bool is_url(const char *s) {
    return strncmp(s, "https://", 8) == 0 || strncmp(s, "http://", 7) == 0;
}

/* A store name for a plain URL: the file's base name without ".gguf",
 * reduced to the allowed characters. */
static int name_for_url(const char *url, struct slm_name *out, struct slm_err *err) {
    const char *end = url + strcspn(url, "?#");
    const char *base = end;
    while (base > url && base[-1] != '/') {
        base--;
    }
    size_t n = (size_t)(end - base);
    if (n > 5 && strncmp(end - 5, ".gguf", 5) == 0) {
        n -= 5;
    }
    char buf[SLM_NAME_MAX];
    size_t len = 0;
    for (size_t i = 0; i < n && len + 1 < sizeof(buf) - 1; i++) {
        char c = base[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-' || (c == '.' && len > 0);
        buf[len++] = ok ? c : '-';
    }
    buf[len] = '\0';
    if (len == 0) {
        return slm_err_set(err, SLM_E_INVALID,
                           "cannot make a model name from '%.200s': give one with --name", url);
    }
    return slm_name_parse(buf, out, err);
}

static int parse_url(const char *text, struct slm_source *out, struct slm_err *err) {
    size_t n = strlen(text);
    if (n >= sizeof(out->url)) {
        return slm_err_set(err, SLM_E_INVALID, "URL too long (%zu bytes)", n);
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c <= 0x20 || c >= 0x7f) {
            return slm_err_set(err, SLM_E_INVALID,
                               "URL '%.200s' contains a space or a non-ASCII byte", text);
        }
    }
    out->kind = SLM_SOURCE_URL;
    memcpy(out->url, text, n + 1);
    return name_for_url(text, &out->name, err);
}

/* "hf.co/ORG/REPO:QUANT", "hf.co/ORG/REPO", "hf.co/ORG/REPO/PATH.gguf". */
static int parse_hf(const char *text, const struct slm_name *name, struct slm_source *out,
                    struct slm_err *err) {
    const char *p = name->name + 6; /* after "hf.co/" */
    const char *slash = strchr(p, '/');
    if (!slash) {
        return slm_err_set(err, SLM_E_INVALID,
                           "'%.200s' needs an organisation and a repository: "
                           "hf.co/ORG/REPO:QUANT or hf.co/ORG/REPO/FILE.gguf",
                           text);
    }
    size_t org_len = (size_t)(slash - p);
    const char *repo = slash + 1;
    const char *rest = strchr(repo, '/');
    size_t repo_len = rest ? (size_t)(rest - repo) : strlen(repo);
    if (org_len >= sizeof(out->org) || repo_len >= sizeof(out->repo)) {
        return slm_err_set(err, SLM_E_INVALID, "'%.200s': organisation or repository too long",
                           text);
    }
    memcpy(out->org, p, org_len);
    out->org[org_len] = '\0';
    memcpy(out->repo, repo, repo_len);
    out->repo[repo_len] = '\0';
    if (rest) {
        size_t plen = strlen(rest + 1);
        if (plen < 6 || !slm_str_ends_with(slm_str_c(rest + 1), SLM_STR(".gguf"))) {
            return slm_err_set(err, SLM_E_INVALID,
                               "'%.200s': a file in a repository must end in .gguf "
                               "(hf.co/ORG/REPO/PATH.gguf)",
                               text);
        }
        if (strcmp(name->tag, "latest") != 0) {
            return slm_err_set(err, SLM_E_INVALID, "'%.200s': a .gguf file name takes no ':tag'",
                               text);
        }
        out->kind = SLM_SOURCE_HF_FILE;
        memcpy(out->path, rest + 1, plen + 1);
    } else {
        out->kind = SLM_SOURCE_HF_QUANT;
        /* No tag: the repository's Q4_K_M (or its only .gguf). */
        bool latest = strcmp(name->tag, "latest") == 0;
        snprintf(out->quant, sizeof(out->quant), "%s", latest ? "" : name->tag);
    }
    return SLM_OK;
}

int slm_source_parse(const char *text, struct slm_source *out, struct slm_err *err) {
    memset(out, 0, sizeof(*out));
    if (!text || !text[0]) {
        return slm_err_set(err, SLM_E_INVALID, "no model name given");
    }
    if (is_url(text)) {
        return parse_url(text, out, err);
    }
    const struct slm_alias *alias = slm_alias_find(text);
    char buf[SLM_NAME_MAX + 80];
    const char *target = text;
    if (alias) {
        target = alias->target;
        out->alias = alias;
        out->pinned_sha256 = alias->sha256;
    } else if (strncmp(text, "huggingface.co/", 15) == 0) {
        snprintf(buf, sizeof(buf), "hf.co/%.*s", (int)(sizeof(buf) - 7), text + 15);
        target = buf;
    }
    struct slm_name tname;
    int rc = slm_name_parse(target, &tname, err);
    if (rc != SLM_OK) {
        return rc;
    }
    /* The manifest is written under the name as the user typed it. */
    rc = slm_name_parse(alias ? text : target, &out->name, err);
    if (rc != SLM_OK) {
        return rc;
    }
    if (strncmp(tname.name, "hf.co/", 6) != 0) {
        return slm_err_set(err, SLM_E_NOT_FOUND,
                           "unknown model '%.120s': pull an alias (see `slm pull --help`), "
                           "hf.co/ORG/REPO:QUANT, hf.co/ORG/REPO/FILE.gguf or a URL with "
                           "--sha256",
                           text);
    }
    return parse_hf(text, &tname, out, err);
}

/* ---------------------------------------------------------------- listings */

void slm_hf_files_free(struct slm_hf_file *files, size_t n) {
    for (size_t i = 0; files && i < n; i++) {
        free(files[i].path);
    }
    free(files);
}

/* lfs.oid is the sha256 of the file, as hex (some mirrors prefix "sha256:"). */
static void entry_sha(const json_t *e, char out[65]) {
    out[0] = '\0';
    const char *oid = json_string_value(json_object_get(json_object_get(e, "lfs"), "oid"));
    if (oid && strncmp(oid, "sha256:", 7) == 0) {
        oid += 7;
    }
    if (oid && slm_is_sha256_hex(slm_str_c(oid))) {
        for (int i = 0; i < 64; i++) {
            char c = oid[i];
            out[i] = (c >= 'A' && c <= 'F') ? (char)(c - 'A' + 'a') : c;
        }
        out[64] = '\0';
    }
}

int slm_hf_tree_parse(const char *data, size_t len, struct slm_hf_file **out, size_t *n_out,
                      struct slm_err *err) {
    *out = NULL;
    *n_out = 0;
    json_t *doc = NULL;
    int rc = slm_json_parse(data, len, "repository listing", &doc, err);
    if (rc != SLM_OK) {
        return rc;
    }
    if (!json_is_array(doc)) {
        json_decref(doc);
        return slm_err_set(err, SLM_E_INVALID, "repository listing is not a JSON array");
    }
    size_t cap = json_array_size(doc);
    struct slm_hf_file *files = calloc(cap ? cap : 1, sizeof(*files));
    if (!files) {
        json_decref(doc);
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    size_t n = 0, i;
    const json_t *e;
    json_array_foreach(doc, i, e) {
        const char *type = json_string_value(json_object_get(e, "type"));
        const json_t *path = json_object_get(e, "path");
        if (!type || strcmp(type, "file") != 0 || !json_is_string(path)) {
            continue; /* directories and unknown entries */
        }
        struct slm_str p = slm_json_str(path);
        if (p.len == 0 || memchr(p.ptr, '\0', p.len)) {
            continue;
        }
        struct slm_hf_file *f = &files[n];
        f->path = slm_str_dup(p);
        if (!f->path) {
            slm_hf_files_free(files, n);
            json_decref(doc);
            return slm_err_set(err, SLM_E_NOMEM, "out of memory");
        }
        const json_t *size = json_object_get(json_object_get(e, "lfs"), "size");
        if (!json_is_integer(size)) {
            size = json_object_get(e, "size");
        }
        f->size = json_is_integer(size) && json_integer_value(size) > 0
                      ? (uint64_t)json_integer_value(size)
                      : 0;
        entry_sha(e, f->sha256);
        n++;
    }
    json_decref(doc);
    *out = files;
    *n_out = n;
    return SLM_OK;
}

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static bool is_token_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* True when `quant` occurs in `name` (case-insensitive) with no letter,
 * digit or '_' right before or after it: "Q4_K" is not a token of
 * "m-Q4_K_M.gguf", "Q4_K_M" is. */
static bool has_token(const char *name, const char *quant) {
    struct slm_str hay = slm_str_c(name), q = slm_str_c(quant);
    for (size_t i = 0; q.len > 0 && i + q.len <= hay.len; i++) {
        if (!slm_str_eq_nocase(slm_str_sub(hay, i, q.len), q)) {
            continue;
        }
        bool left = i == 0 || !is_token_char(hay.ptr[i - 1]);
        bool right = i + q.len == hay.len || !is_token_char(hay.ptr[i + q.len]);
        if (left && right) {
            return true;
        }
    }
    return false;
}

static bool usable_gguf(const char *path) {
    struct slm_str b = slm_str_c(base_name(path));
    if (!slm_str_ends_with(b, SLM_STR(".gguf")) && !slm_str_ends_with(b, SLM_STR(".GGUF"))) {
        return false;
    }
    /* Vision projectors ride along in many repositories; never the model. */
    return !slm_str_contains_nocase(b, SLM_STR("mmproj"));
}

/* "a.gguf, b.gguf, ..." into `out`, as many as fit. */
static void list_names(const struct slm_hf_file *files, const size_t *idx, size_t n, char *out,
                       size_t cap) {
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const char *b = files[idx[i]].path;
        int w = snprintf(out + len, cap - len, "%s%s", i ? ", " : "", b);
        if (w < 0 || (size_t)w >= cap - len) {
            if (cap > 4) {
                memcpy(out + cap - 4, "...", 4);
            }
            return;
        }
        len += (size_t)w;
    }
}

int slm_hf_pick_quant(const struct slm_hf_file *files, size_t n, const char *quant, size_t *index,
                      struct slm_err *err) {
    size_t *sub = calloc(n ? n : 1, sizeof(*sub));
    size_t *tok = calloc(n ? n : 1, sizeof(*tok));
    size_t *all = calloc(n ? n : 1, sizeof(*all));
    if (!sub || !tok || !all) {
        free(sub);
        free(tok);
        free(all);
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    /* No quant asked for: Q4_K_M when there is one, else the only .gguf. */
    const char *want = quant && quant[0] ? quant : "Q4_K_M";
    size_t n_sub = 0, n_tok = 0, n_all = 0;
    for (size_t i = 0; i < n; i++) {
        if (!usable_gguf(files[i].path)) {
            continue;
        }
        all[n_all++] = i;
        const char *b = base_name(files[i].path);
        if (slm_str_contains_nocase(slm_str_c(b), slm_str_c(want))) {
            sub[n_sub++] = i;
            if (has_token(b, want)) {
                tok[n_tok++] = i;
            }
        }
    }
    char list[160];
    int rc = SLM_OK;
    if (n_tok == 1 || (n_tok == 0 && n_sub == 1)) {
        *index = n_tok == 1 ? tok[0] : sub[0];
    } else if (n_sub == 0 && !(quant && quant[0]) && n_all == 1) {
        *index = all[0];
    } else if (n_sub == 0) {
        list_names(files, all, n_all, list, sizeof(list));
        rc = n_all == 0
                 ? slm_err_set(err, SLM_E_NOT_FOUND, "the repository has no .gguf file")
                 : slm_err_set(err, SLM_E_NOT_FOUND,
                               "no .gguf file matches '%s'; the repository has: %s", want, list);
    } else {
        bool by_tok = n_tok > 1;
        list_names(files, by_tok ? tok : sub, by_tok ? n_tok : n_sub, list, sizeof(list));
        rc = slm_err_set(err, SLM_E_INVALID,
                         "'%s' is ambiguous, it matches %zu files: %s; name one with "
                         "hf.co/ORG/REPO/FILE.gguf",
                         want, by_tok ? n_tok : n_sub, list);
    }
    free(sub);
    free(tok);
    free(all);
    return rc;
}

int slm_hf_find_path(const struct slm_hf_file *files, size_t n, const char *path) {
    for (size_t i = 0; i < n; i++) {
        if (strcmp(files[i].path, path) == 0) {
            return (int)i;
        }
    }
    return -1;
}
