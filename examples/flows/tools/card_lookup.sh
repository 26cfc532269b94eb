#!/bin/sh
# card_lookup.sh - the example flows' `tool`: reads the node's input (a JSON object with the
# `card` and `intent` state keys) on stdin, writes a JSON object on stdout. A stand-in for a
# call into the bank's own systems; it needs only jq.
exec jq -c '{status: (if .card.last4 == null then "card not identified" else "card found" end),
            next_step: (if (.intent.label | test("lost|stolen|compromised")) then "freeze the card"
                        else "check the latest transactions" end)}'
