/*
 * cli/cmd_ps.c - `slm ps`: the models a running `slm serve` holds in memory
 * (GET /api/ps), like `ollama ps`: NAME, SIZE, IN USE, UNTIL.
 */
#include <curl/curl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "slm/json.h"
#include "slm/server.h"

static void usage(void) {
    printf("Usage: slm ps [--host H] [--port P] [--api-key K] [--json]\n"
           "\n"
           "Lists the models a running `slm serve` has loaded: NAME, SIZE (weights + KV),\n"
           "IN USE (requests running on it) and UNTIL (when it unloads if idle).\n"
           "\n"
           "Options:\n"
           "  --host H      the server's address (default 127.0.0.1)\n"
           "  --port P      its port (default %d)\n"
           "  --api-key K   its API key (default $SLM_API_KEY)\n"
           "  --json        the server's answer as is\n"
           "  -h, --help    this help\n",
           SLM_SERVER_DEFAULT_PORT);
}

static size_t on_body(char *p, size_t size, size_t n, void *user) {
    return slm_buf_append(user, p, size * n) == SLM_OK ? size * n : 0;
}

/* GET url into `out`; the HTTP status in *status. */
static int get(const char *url, const char *key, struct slm_buf *out, long *status,
               struct slm_err *err) {
    CURL *c = curl_easy_init();
    if (!c) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    char auth[512];
    struct curl_slist *h = NULL;
    if (key && key[0]) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
        h = curl_slist_append(h, auth);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    CURLcode cc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (cc != CURLE_OK) {
        return slm_err_set(err, SLM_E_IO, "cannot reach slm serve at %s: %s (is it running?)", url,
                           curl_easy_strerror(cc));
    }
    return SLM_OK;
}

static void print_table(const json_t *models) {
    printf("%-40s %-10s %-7s %s\n", "NAME", "SIZE", "IN USE", "UNTIL");
    size_t i;
    const json_t *m;
    json_array_foreach(models, i, m) {
        char size[32];
        json_int_t bytes = json_integer_value(json_object_get(m, "size"));
        slm_format_size(size, sizeof(size), (uint64_t)(bytes > 0 ? bytes : 0));
        const char *until = json_string_value(json_object_get(m, "expires_at"));
        printf("%-40s %-10s %-7lld %s\n", json_string_value(json_object_get(m, "name")), size,
               (long long)json_integer_value(json_object_get(m, "in_use")), until ? until : "");
    }
}

static int run(int argc, char **argv) {
    static const struct option opts[] = {
        {"host", required_argument, NULL, 'H'},    {"port", required_argument, NULL, 'p'},
        {"api-key", required_argument, NULL, 'k'}, {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
    };
    const char *host = "127.0.0.1", *key = getenv("SLM_API_KEY");
    long long port = SLM_SERVER_DEFAULT_PORT;
    bool as_json = false;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'H': host = optarg; break;
        case 'p':
            if (!slm_cli_int("ps", "--port", optarg, 1, 65535, &port)) {
                return SLM_EXIT_USAGE;
            }
            break;
        case 'k': key = optarg; break;
        case 'j': as_json = true; break;
        case 'h': usage(); return SLM_EXIT_OK;
        default:
            slm_cli_error("ps", "unknown flag or missing value: '%s' (see slm ps --help)",
                          argv[optind - 1]);
            return SLM_EXIT_USAGE;
        }
    }
    char url[600];
    snprintf(url, sizeof(url),
             strchr(host, ':') ? "http://[%s]:%lld/api/ps" : "http://%s:%lld/api/ps", host, port);
    struct slm_buf body = {0};
    slm_buf_init(&body, (size_t)4 << 20);
    struct slm_err err = {0};
    long status = 0;
    json_t *doc = NULL;
    int rc = get(url, key, &body, &status, &err);
    if (rc == SLM_OK && status != 200) {
        rc = slm_err_set(&err, SLM_E_UPSTREAM, "%s answered %ld: %.200s", url, status,
                         slm_buf_cstr(&body));
    }
    if (rc == SLM_OK && !as_json) {
        rc = slm_json_parse(slm_buf_cstr(&body), body.len, "the server's answer", &doc, &err);
    }
    if (rc == SLM_OK) {
        if (as_json) {
            fwrite(slm_buf_cstr(&body), 1, body.len, stdout);
        } else {
            print_table(json_object_get(doc, "models"));
        }
    }
    json_decref(doc);
    slm_buf_free(&body);
    return rc == SLM_OK ? SLM_EXIT_OK : slm_cli_fail("ps", rc, &err);
}

const struct slm_cli_command slm_cli_cmd_ps = {"ps", "List the models a running server has loaded",
                                               run, 31};
