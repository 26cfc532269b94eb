/*
 * router/ledger_internal.h - what the cost reports (cost.c) need from the ledger
 * connection (ledger.c). Not a public header.
 */
#ifndef SLM_ROUTER_LEDGER_INTERNAL_H
#define SLM_ROUTER_LEDGER_INTERNAL_H

#include <sqlite3.h>

#include "slm/ledger.h"

/* Takes the ledger's mutex and returns its connection; slm__ledger_unlock() releases it.
 * Every use of the connection outside ledger.c happens between these two calls. */
sqlite3 *slm__ledger_lock(struct slm_ledger *l);
void slm__ledger_unlock(struct slm_ledger *l);
/* Sets `err` from the connection's last error, prefixed with the ledger path and `what`. */
int slm__ledger_db_err(struct slm_ledger *l, int rc, const char *what, struct slm_err *err);

#endif /* SLM_ROUTER_LEDGER_INTERNAL_H */
