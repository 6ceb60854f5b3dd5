"""`hyperrec bench`: the open-loop load generator, synthetic bench bundles, the latency tables."""
