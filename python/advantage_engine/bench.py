"""Bridge benchmark, the Python half (bench/bridge.bench.ts runs it and adds the direct Node figures):

    python -m advantage_engine.bench [--rows 1024] [--vocab 151936] [--repeats 10] [--tiny 2000] [--json]

Prints the median round trip of a tiny request (bf16ToNumber: no work, the bridge's own overhead; and
tokenStatsSync on 1 × 8 logits), the floor under them (8 bytes echoed by a bare `node` child over the same kind
of pipes: what the operating system and the two runtimes cost before any protocol), and the median time of
tokenStats on rows × vocab f32 logits in a shared array (engine.empty: no copy) with token ids.
"""
import argparse
import json
import subprocess
import time

import numpy as np

from .engine import Engine


def _median_seconds(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _pipe_floor_seconds(node, repeats):
    """Median round trip of 8 bytes through a node child that echoes its stdin to its stdout."""
    child = subprocess.Popen([node, "-e", "process.stdin.on('data', (d) => process.stdout.write(d))"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    try:
        def echo():
            child.stdin.write(b"12345678")
            got = 0
            while got < 8:
                got += len(child.stdout.read(8 - got))
        for _ in range(200):
            echo()
        return _median_seconds(echo, repeats)
    finally:
        child.stdin.close()
        child.wait(timeout=10)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1024)
    parser.add_argument("--vocab", type=int, default=151936)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--tiny", type=int, default=2000)
    parser.add_argument("--node")
    parser.add_argument("--cli")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with Engine(node=args.node, cli=args.cli) as engine:
        for _ in range(200):
            engine.bf16_to_number(0x3F80)
        noop = _median_seconds(lambda: engine.bf16_to_number(0x3F80), args.tiny)
        small = np.random.default_rng(0).standard_normal((1, 8)).astype(np.float32)
        tiny = _median_seconds(lambda: engine.token_stats_sync(small), args.tiny)
        logits = engine.empty((args.rows, args.vocab), np.float32)
        rng = np.random.default_rng(1)
        for r in range(0, args.rows, 64):
            logits[r:r + 64] = rng.standard_normal((min(64, args.rows - r), args.vocab), dtype=np.float32)
        tokens = rng.integers(0, args.vocab, args.rows).astype(np.int32)
        engine.token_stats(logits, tokens=tokens)  # maps the segment on the server side once
        stats = _median_seconds(lambda: engine.token_stats(logits, tokens=tokens), args.repeats)
        floor = _pipe_floor_seconds(engine.node, args.tiny)
        result = {"roundTripNoopUs": noop * 1e6, "roundTripTinyTokenStatsUs": tiny * 1e6, "pipeEchoFloorUs": floor * 1e6,
                  "rows": args.rows,
                  "vocab": args.vocab, "bridgeTokenStatsMs": stats * 1e3, "shm": engine.shm, "backend": engine.backend,
                  "tinySamples": args.tiny, "repeats": args.repeats}
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print("%-28s %s" % (k, v))


if __name__ == "__main__":
    main()
