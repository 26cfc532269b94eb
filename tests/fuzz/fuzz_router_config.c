/*
 * fuzz_router_config.c - libFuzzer harness for router.yaml validation: any
 * input is either a valid config or an error with a "file:line: key:" message.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "slm/router.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct slm_router_config *cfg = NULL;
    struct slm_err err;
    memset(&err, 0, sizeof(err));
    /* a folder that does not exist: referenced files are missing, never read */
    int rc = slm_router_config_parse("fuzz.yaml", (const char *)data, size, "/nonexistent-slm-fuzz",
                                     &cfg, &err);
    if (rc != SLM_OK) {
        if (err.msg[0] == '\0' || (rc == SLM_E_INVALID && !strstr(err.msg, "fuzz.yaml"))) {
            abort(); /* every error has a message naming the file */
        }
        return 0;
    }
    for (size_t i = 0; i < cfg->n_routes; i++) {
        if (cfg->routes[i].local >= cfg->n_locals) {
            abort();
        }
        for (size_t j = 0; j < cfg->routes[i].n_escalate; j++) {
            if (cfg->routes[i].escalate[j] >= cfg->n_pools) {
                abort();
            }
        }
    }
    slm_router_config_free(cfg);
    return 0;
}
