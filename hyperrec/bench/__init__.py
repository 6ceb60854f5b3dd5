"""Tools that exercise a running endpoint from outside: `hyperrec bench` (the open-loop load generator, synthetic
bench bundles, the latency tables), the schemathesis fuzz run, and `hyperrec monitor` (its monitors as a report)."""
