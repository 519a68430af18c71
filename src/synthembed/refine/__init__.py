"""Better training pairs from the same data with an embedder and (for relabel) the LLM: hard-negative mining,
round-trip consistency filtering and Gecko-style relabeling. Each reads generate output or labeled JSONL and
writes labeled rows plus a data card; embeddings go through the evaluator's on-disk cache, LLM calls through the
generation ledger, so reruns are cheap and pay nothing twice. A part of its own (run as `synthembed data ...`):
it composes data, generate, model and evaluate, which `data` itself must not import."""
