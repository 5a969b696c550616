#!/usr/bin/env python3
"""Runs the CPU acceptance matrix of `slmrun bench` interleaved in time and prints a markdown table.

For each round, every (format, threads, isa) combination runs once as its own `slmrun bench`
process (synthetic Llama-3.2-1B shapes, pp64 + tg32, read bandwidth measured in the same process);
rounds repeat the whole list, so a slow minute on a noisy machine hits every variant alike. The
table shows the median over rounds of each process's mean tok/s, the median measured bandwidth and
decode as a share of the roofline (tok/s x weight bytes per token / read bandwidth), next to the
llama.cpp numbers quoted in the CPU-speed issue (another machine of this class, Feb 2025 build).

usage: scripts/bench_matrix.py [--slmrun build/tools/slmrun] [--rounds 2] [--reps 2]
                               [--formats F16,Q8_0,Q4_0,Q4_K_M] [--threads 1,2] [--isa avx512,avx2]
"""
import argparse, json, statistics, subprocess, sys

LLAMA_CPP = {  # type: {threads: (pp64, tg32)} from the issue text (llama-bench -p 64 -n 32 -r 3)
    "F16": {2: (164.0, 14.3), 1: (90.7, 12.5)},
    "Q8_0": {2: (139.2, 28.4), 1: (71.4, 20.7)},
    "Q4_0": {2: (234.6, 48.9), 1: (118.9, 30.2)},
    "Q4_K_M": {2: (94.7, 39.0), 1: (48.5, 30.0)},
    "Q5_K_M": {2: (68.5, 33.0), 1: (35.6, 24.1)},
    "Q6_K": {2: (76.1, 33.6), 1: (38.6, 23.8)},
}

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--slmrun", default="build/tools/slmrun")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--formats", default="F16,Q8_0,Q4_0,Q4_K_M")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--isa", default="avx512,avx2")
    a = ap.parse_args()
    combos = [(f, int(t), i) for i in a.isa.split(",") for t in a.threads.split(",") for f in a.formats.split(",")]
    rows = {}
    for rnd in range(a.rounds):
        for f, t, isa in combos:
            cmd = [a.slmrun, "bench", "--synthetic", f, "-t", str(t), "--isa", isa, "-r", str(a.reps),
                   "-p", "64", "-n", "32", "-o", "json"]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                sys.exit(f"failed: {' '.join(cmd)}\n{out.stderr}")
            for r in json.loads(out.stdout):
                key = (f, t, isa, r["test"])
                rows.setdefault(key, []).append(r)
            print(f"round {rnd + 1}: {f} t={t} {isa} done", file=sys.stderr, flush=True)
    print("| format | isa | threads | pp64 t/s | tg32 t/s | read BW GB/s | decode % of roofline | peak RSS MiB | llama.cpp pp64 / tg32 | ratio pp / tg |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|---|")
    for f, t, isa in combos:
        pp = rows[(f, t, isa, "pp64")]
        tg = rows[(f, t, isa, "tg32")]
        pp_ts = statistics.median(r["avg_ts"] for r in pp)
        tg_ts = statistics.median(r["avg_ts"] for r in tg)
        bw = statistics.median(r["read_bw_gbs"] for r in tg)
        roof = statistics.median(r["roofline_pct"] for r in tg)
        rss = max(r["peak_rss"] for r in tg + pp) / 2**20
        ref = LLAMA_CPP.get(f, {}).get(t)
        refs = f"{ref[0]} / {ref[1]}" if ref else "-"
        ratio = f"{pp_ts / ref[0]:.2f} / {tg_ts / ref[1]:.2f}" if ref else "-"
        print(f"| {f} | {isa} | {t} | {pp_ts:.1f} | {tg_ts:.2f} | {bw:.1f} | {roof:.0f}% | {rss:.0f} | {refs} | {ratio} |")

if __name__ == "__main__":
    main()
