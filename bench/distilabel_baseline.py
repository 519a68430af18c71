"""Baseline: run a prompt file through a distilabel 1.5.3 pipeline against an OpenAI-compatible server.

Run with the isolated venv (see bench/requirements-distilabel.txt):

    bench/.venv-distilabel/bin/python bench/distilabel_baseline.py --prompts P.jsonl \
        --base-url http://127.0.0.1:8000/v1 --model M --concurrency 64 --out OUT.jsonl

Each prompt row: {"id", "prompt", "json_object", "max_tokens", "temperature", "top_p", "seed"}.
Prints one JSON line on stdout: requested, returned, parsed, wall_s, cpu_s.

distilabel sets generation kwargs per step, not per row, so rows are grouped by
(json_object, max_tokens, temperature, top_p) and each group gets its own
LoadDataFromDicts -> TextGeneration pipeline run; groups run one after another so at most
`concurrency` requests are in flight. OpenAILLM has no `seed` argument, so seeds are not sent.
"""

import argparse
import json
import os
import re
import resource
import sys
import tempfile
import time

# Quiet distilabel and datasets before they are imported.
os.environ.setdefault("DISTILABEL_LOG_LEVEL", "CRITICAL")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

from distilabel.models import OpenAILLM  # noqa: E402
from distilabel.pipeline import Pipeline  # noqa: E402
from distilabel.steps import LoadDataFromDicts  # noqa: E402
from distilabel.steps.tasks import TextGeneration  # noqa: E402

FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*\n?(.*?)\n?\s*```\s*$", re.S)


def parse_json(text):
    """json.loads after stripping a surrounding code fence; (ok, value)."""
    if text is None:
        return False, None
    m = FENCE.match(text)
    try:
        return True, json.loads(m.group(1) if m else text)
    except ValueError:
        return False, None


def cpu_seconds():
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def run_group(rows, key, args, cache_dir):
    """One pipeline run for rows sharing the same generation kwargs; returns the output rows."""
    json_object, max_tokens, temperature, top_p = key
    gen_kwargs = {"max_new_tokens": max_tokens, "temperature": temperature, "top_p": top_p}
    if json_object:
        gen_kwargs["response_format"] = {"type": "json_object"}
    with Pipeline(name="distilabel-baseline", cache_dir=cache_dir) as pipeline:
        load = LoadDataFromDicts(
            data=[{"id": r["id"], "instruction": r["prompt"]} for r in rows],
            batch_size=args.concurrency,
        )
        # OpenAILLM.generate gathers one coroutine per row of the batch, so the batch
        # size is the number of requests in flight.
        gen = TextGeneration(
            llm=OpenAILLM(base_url=args.base_url, model=args.model, api_key="x",
                          generation_kwargs=gen_kwargs),
            input_batch_size=args.concurrency,
        )
        load >> gen
    distiset = pipeline.run(use_cache=False)
    return list(distiset["default"]["train"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", required=True)
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    with open(args.prompts) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    groups = {}
    for r in rows:
        key = (bool(r.get("json_object", False)), int(r.get("max_tokens", 1024)),
               float(r.get("temperature", 1.0)), float(r.get("top_p", 1.0)))
        groups.setdefault(key, []).append(r)

    # distilabel logs and progress go to stdout (also from its worker processes):
    # point fd 1 at stderr for the run so stdout carries only the summary line.
    real_stdout = os.dup(1)
    os.dup2(2, 1)
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    outputs = []
    try:
        with tempfile.TemporaryDirectory(prefix="distilabel-cache-") as cache_dir:
            for key, group in groups.items():
                outputs.extend(run_group(group, key, args, cache_dir))
    finally:
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
        sys.stdout.flush()
        os.dup2(real_stdout, 1)
        os.close(real_stdout)

    # Outputs come back grouped; write them in prompt-file order.
    by_id = {o["id"]: o for o in outputs}
    returned = parsed = 0
    with open(args.out, "w") as f:
        for r in rows:
            gen = by_id.get(r["id"], {}).get("generation")
            ok, obj = parse_json(gen)
            returned += gen is not None
            parsed += ok
            f.write(json.dumps({"id": r["id"], "generation": gen, "parsed": obj}) + "\n")
    print(json.dumps({"requested": len(rows), "returned": returned, "parsed": parsed,
                      "wall_s": round(wall, 3), "cpu_s": round(cpu, 3)}), flush=True)


if __name__ == "__main__":
    main()
