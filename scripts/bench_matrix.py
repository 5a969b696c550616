#!/usr/bin/env python3
"""Runs the CPU acceptance matrix of `slmrun bench` interleaved in time and prints a markdown table.

For each round, every (format, threads, isa) combination runs once as its own `slmrun bench`
process (synthetic Llama-3.2-1B shapes, pp64 + tg32, read bandwidth measured in the same process);
rounds repeat the whole list, so a slow minute on a noisy machine hits every variant alike. The
table shows the median over rounds of each process's mean tok/s, the median measured bandwidth and
decode as a share of the roofline (tok/s x weight bytes per token / read bandwidth), next to the
llama.cpp numbers quoted in the CPU-speed issue (another machine of this class, Feb 2025 build).

With --llama-bench PATH, the same rounds also run llama.cpp's llama-bench (-p 64 -n 32, same
thread count) on GGUF files of the same shapes, right after each slmrun process, and the table
gains the measured llama.cpp columns and same-minute ratios. The files come from --models DIR
(DIR/1b-FORMAT.gguf; made with `slmrun mkmodel --preset llama-3.2-1b --type FORMAT` when missing),
and slmrun then benchmarks those files too instead of in-memory models. llama-bench runs with its
own best ISA (no AVX2 rows for it), unless --llama-bench-avx2 names a llama-bench built for AVX2
only (-DGGML_NATIVE=OFF -DGGML_AVX512=OFF ...), which then runs beside the AVX2 rows.

usage: scripts/bench_matrix.py [--slmrun build/tools/slmrun] [--rounds 2] [--reps 2]
                               [--formats F16,Q8_0,Q4_0,Q4_K_M] [--threads 1,2] [--isa avx512,avx2]
                               [--llama-bench PATH [--llama-bench-avx2 PATH] --models DIR]
"""
import argparse, json, os, statistics, subprocess, sys

LLAMA_CPP = {  # type: {threads: (pp64, tg32)} from the issue text (llama-bench -p 64 -n 32 -r 3)
    "F16": {2: (164.0, 14.3), 1: (90.7, 12.5)},
    "Q8_0": {2: (139.2, 28.4), 1: (71.4, 20.7)},
    "Q4_0": {2: (234.6, 48.9), 1: (118.9, 30.2)},
    "Q4_K_M": {2: (94.7, 39.0), 1: (48.5, 30.0)},
    "Q5_K_M": {2: (68.5, 33.0), 1: (35.6, 24.1)},
    "Q6_K": {2: (76.1, 33.6), 1: (38.6, 23.8)},
}

def run_json(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{out.stderr}")
    return json.loads(out.stdout)

def model_file(a, f):
    path = os.path.join(a.models, f"1b-{f}.gguf")
    if not os.path.exists(path):
        print(f"making {path}", file=sys.stderr, flush=True)
        subprocess.run([a.slmrun, "mkmodel", "--preset", "llama-3.2-1b", "--type", f, "-o", path, "-q"], check=True)
    return path

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--slmrun", default="build/tools/slmrun")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--formats", default="F16,Q8_0,Q4_0,Q4_K_M")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--isa", default="avx512,avx2")
    ap.add_argument("--llama-bench", default="")
    ap.add_argument("--llama-bench-avx2", default="")
    ap.add_argument("--models", default="")
    a = ap.parse_args()
    if a.llama_bench and not a.models:
        sys.exit("--llama-bench needs --models DIR (GGUF files both programs read)")
    combos = [(f, int(t), i) for i in a.isa.split(",") for t in a.threads.split(",") for f in a.formats.split(",")]
    rows, llama = {}, {}
    for rnd in range(a.rounds):
        for f, t, isa in combos:
            src = ["-m", model_file(a, f)] if a.models else ["--synthetic", f]
            cmd = [a.slmrun, "bench", *src, "-t", str(t), "--isa", isa, "-r", str(a.reps), "-p", "64", "-n", "32", "-o", "json"]
            for r in run_json(cmd):
                rows.setdefault((f, t, isa, r["test"]), []).append(r)
            lb = a.llama_bench_avx2 if isa == "avx2" and a.llama_bench_avx2 else (
                a.llama_bench if isa == a.isa.split(",")[0] else "")
            if lb:
                cmd = [lb, "-m", model_file(a, f), "-t", str(t), "-r", str(a.reps), "-p", "64", "-n", "32", "-o", "json"]
                for r in run_json(cmd):
                    test = f"pp{r['n_prompt']}" if r["n_gen"] == 0 else f"tg{r['n_gen']}"
                    llama.setdefault((f, t, isa, test), []).append(r["avg_ts"])
            print(f"round {rnd + 1}: {f} t={t} {isa} done", file=sys.stderr, flush=True)
    head = "| format | isa | threads | pp64 t/s | tg32 t/s | read BW GB/s | decode % of roofline | peak RSS MiB |"
    rule = "|---|---|---:|---:|---:|---:|---:|---:|"
    if a.llama_bench:
        head += " llama.cpp here pp64 / tg32 | ratio here pp / tg |"
        rule += "---|---|"
    print(head + " issue's llama.cpp pp64 / tg32 | ratio pp / tg |")
    print(rule + "---|---|")
    for f, t, isa in combos:
        pp = rows[(f, t, isa, "pp64")]
        tg = rows[(f, t, isa, "tg32")]
        pp_ts = statistics.median(r["avg_ts"] for r in pp)
        tg_ts = statistics.median(r["avg_ts"] for r in tg)
        bw = statistics.median(r["read_bw_gbs"] for r in tg)
        roof = statistics.median(r["roofline_pct"] for r in tg)
        rss = max(r["peak_rss"] for r in tg + pp) / 2**20
        line = f"| {f} | {isa} | {t} | {pp_ts:.1f} | {tg_ts:.2f} | {bw:.1f} | {roof:.0f}% | {rss:.0f} |"
        if a.llama_bench:
            lp, lt = llama.get((f, t, isa, "pp64")), llama.get((f, t, isa, "tg32"))
            if not lp:  # without its own llama-bench, a row shows the best-ISA one's numbers
                lp, lt = llama.get((f, t, a.isa.split(",")[0], "pp64")), llama.get((f, t, a.isa.split(",")[0], "tg32"))
            if lp and lt:
                lp, lt = statistics.median(lp), statistics.median(lt)
                line += f" {lp:.1f} / {lt:.2f} | {pp_ts / lp:.2f} / {tg_ts / lt:.2f} |"
            else:
                line += " - | - |"
        ref = LLAMA_CPP.get(f, {}).get(t)
        refs = f"{ref[0]} / {ref[1]}" if ref else "-"
        ratio = f"{pp_ts / ref[0]:.2f} / {tg_ts / ref[1]:.2f}" if ref else "-"
        print(f"{line} {refs} | {ratio} |")

if __name__ == "__main__":
    main()
