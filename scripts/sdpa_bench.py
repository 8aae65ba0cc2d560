#!/usr/bin/env python3
"""PyTorch's fused attention (torch.nn.functional.scaled_dot_product_attention) at the sizes of
`retreever bench --what inference`: batch 1, 1024 queries over N = 1k .. max-n keys (by factors of
4), the bench's heads and head size (its CA: d_model 64, 4 heads -> 16 per head). The keys and values
are given (as the bench's CA has them projected in prepare()); only the attention is timed, with
CUDA events around each call, median of the repeats. Prints a table, and JSON with --json FILE.

  python3 scripts/sdpa_bench.py [--max-n 1048576] [--queries 1024] [--heads 4] [--head-dim 16]
                                [--repeats 15] [--dtypes bf16,fp32] [--json FILE]
"""
import argparse
import json
import statistics
import sys

import torch
import torch.nn.functional as F

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}


def time_call(fn, repeats):
    for _ in range(3):  # warm-up: kernel selection, allocator
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1000.0)  # ms -> us
    return statistics.median(times)


def backend_name(q, k, v):
    """The fused kernel SDPA picks for these inputs (best effort: torch 2.x private helpers)."""
    try:
        from torch.backends.cuda import SDPAParams, can_use_flash_attention, can_use_efficient_attention
        try:
            params = SDPAParams(q, k, v, None, 0.0, False, False)
        except TypeError:
            params = SDPAParams(q, k, v, None, 0.0, False)
        if can_use_flash_attention(params, False):
            return "flash"
        if can_use_efficient_attention(params, False):
            return "efficient"
        return "math/cudnn"
    except Exception as e:  # noqa: BLE001
        return "unknown (%s)" % type(e).__name__


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-n", type=int, default=1048576)
    ap.add_argument("--queries", type=int, default=1024)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--head-dim", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--dtypes", default="bf16,fp32")
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("sdpa_bench: no CUDA device", file=sys.stderr)
        return 2
    dev = torch.device("cuda")
    dtypes = [d for d in a.dtypes.split(",") if d]
    doc = {"torch": torch.__version__, "device": torch.cuda.get_device_name(0), "batch": 1, "queries": a.queries,
           "heads": a.heads, "head_dim": a.head_dim, "repeats": a.repeats, "rows": []}
    print("SDPA, batch 1, %d queries, %d heads x %d, torch %s, %s (median of %d, CUDA events)"
          % (a.queries, a.heads, a.head_dim, torch.__version__, doc["device"], a.repeats))
    print("%8s | %s" % ("N", " | ".join("%8s us (%s)" % (d, "kernel") for d in dtypes)))
    torch.manual_seed(0)
    n = 1024
    while n <= a.max_n:
        row = {"n": n}
        cells = []
        for d in dtypes:
            t = DTYPES[d]
            q = torch.randn(1, a.heads, a.queries, a.head_dim, device=dev, dtype=t)
            k = torch.randn(1, a.heads, n, a.head_dim, device=dev, dtype=t)
            v = torch.randn(1, a.heads, n, a.head_dim, device=dev, dtype=t)
            try:
                us = time_call(lambda: F.scaled_dot_product_attention(q, k, v), a.repeats)
                kernel = backend_name(q, k, v)
            except RuntimeError as e:  # out of memory on a math fallback, say
                us, kernel = -1.0, "failed: %s" % str(e).splitlines()[0][:120]
            row[d + "_us"] = us
            row[d + "_us_per_query"] = us / a.queries if us > 0 else -1.0
            row[d + "_kernel"] = kernel
            cells.append("%10.1f (%s)" % (us, kernel))
            del q, k, v
            torch.cuda.empty_cache()
        print("%8d | %s" % (n, " | ".join(cells)), flush=True)
        doc["rows"].append(row)
        n *= 4
    if a.json:
        with open(a.json, "w") as f:
            json.dump(doc, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
