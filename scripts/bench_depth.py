#!/usr/bin/env python3
"""Prefill and decode with a filled KV cache: `slmrun bench -d` beside llama-bench -d, back to back.

For each (threads, format): slmrun, optionally a second slmrun build (--base, e.g. a worktree of
an older commit), then llama.cpp's llama-bench on the same file, each with
`-p P -n N -d DEPTHS -r R -t T`; prints one markdown row per test with the ratios.

usage: scripts/bench_depth.py --models DIR [--formats Q4_0,Q4_K_M,F16] [--threads 2,1]
                              [--slmrun build/tools/slmrun] [--base PATH] [--llama-bench PATH]
                              [-p 512] [-n 32] [-d 0,2048] [-r 2]
DIR holds 1b-FORMAT.gguf (see scripts/bench_matrix.py).
"""
import argparse, csv, io, os, subprocess, time


def slmrun_rows(binary, path, a, t):
    out = subprocess.run([binary, "bench", "-m", path, "-p", a.p, "-n", a.n, "-d", a.d, "-t", str(t),
                          "-r", str(a.r), "--no-bw", "-o", "csv"], capture_output=True, text=True, check=True).stdout
    return {row["test"]: float(row["avg_ts"]) for row in csv.DictReader(io.StringIO(out))}


def llama_rows(binary, path, a, t):
    env = dict(os.environ, LD_LIBRARY_PATH=os.path.dirname(binary))
    out = subprocess.run([binary, "-m", path, "-p", a.p, "-n", a.n, "-d", a.d, "-t", str(t), "-r", str(a.r),
                          "-o", "csv"], capture_output=True, text=True, env=env, check=True).stdout
    rows = {}
    for row in csv.DictReader(io.StringIO(out)):
        p, n, d = int(row["n_prompt"]), int(row["n_gen"]), int(row["n_depth"])
        rows[(f"pp{p}" if p else f"tg{n}") + (f" @ d{d}" if d else "")] = float(row["avg_ts"])
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", required=True)
    ap.add_argument("--formats", default="Q4_0,Q4_K_M,F16")
    ap.add_argument("--threads", default="2,1")
    ap.add_argument("--slmrun", default="build/tools/slmrun")
    ap.add_argument("--base", default="")
    ap.add_argument("--llama-bench", default="")
    ap.add_argument("-p", default="512")
    ap.add_argument("-n", default="32")
    ap.add_argument("-d", default="0,2048")
    ap.add_argument("-r", type=int, default=2)
    a = ap.parse_args()
    print("| time | format | threads | test | slmrun | base | llama.cpp | x base | x llama.cpp |")
    print("|---|---|---:|---|---:|---:|---:|---:|---:|")
    for t in [int(x) for x in a.threads.split(",")]:
        for f in a.formats.split(","):
            path = os.path.join(a.models, f"1b-{f}.gguf")
            t0 = time.strftime("%H:%M:%S")
            ours = slmrun_rows(a.slmrun, path, a, t)
            base = slmrun_rows(a.base, path, a, t) if a.base else {}
            ll = llama_rows(a.llama_bench, path, a, t) if a.llama_bench else {}
            for test, v in ours.items():
                cell = lambda d: f"{d[test]:.2f}" if test in d else "-"
                ratio = lambda d: f"{v / d[test]:.2f}" if d.get(test) else "-"
                print(f"| {t0} | {f} | {t} | {test} | {v:.2f} | {cell(base)} | {cell(ll)} | {ratio(base)} | {ratio(ll)} |",
                      flush=True)


if __name__ == "__main__":
    main()
