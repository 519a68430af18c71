"""Test helpers, not used by any command: `replay_server` (an OpenAI-compatible server on 127.0.0.1 that replays
generator outputs and injects faults), its built-in reply set `replay_data`, and `tiny` (tiny random models and
tokenizers built in code). The tests and benchmarks import them; the replay server's client side needs httpx,
which comes with the `test` extra (`pip install 'synthembed[test]'`) and is imported only when used."""
