"""What several stages read, in one place: file formats and their errors (JSONL, generate output, BEIR, STS,
classification and other evaluation tables), the query format and the per-task instructions, and the store of
offline models on disk. data, evaluate, train, generate and model import from here; this package imports no
other part of synthembed (tests/test_architecture.py checks it)."""
