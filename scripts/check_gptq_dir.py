#!/usr/bin/env python3
"""Independent check of a GPTQ checkpoint directory against AutoGPTQ's conventions.

Reads config.json / quantize_config.json and model.safetensors with nothing but json + struct
(no numpy, no torch), verifies every quantized Linear (dtypes, shapes, packing widths, g_idx,
symmetric zero pattern, v1 zero range) and dequantizes one layer as AutoGPTQ's reference forward
does: W[n][k] = scale[g][n] * (q[k][n] - (qzeros_field[g][n] + 1)), g = g_idx[k].
With --ref DIR (an F32/F16/BF16 HF checkpoint of the unquantized model) the dequantized layer is
compared with the original weight. GPTQModel's per-module `dynamic` overrides (bits, group_size,
sym, desc_act; "-:" excludes a module) are honoured, e.g. an 8-bit lm_head in a 4-bit model; a
quantized lm_head must come with tie_word_embeddings false and an F16 embedding for lookups.
Exit status 0 when every check passes.

  python3 scripts/check_gptq_dir.py OUT_DIR [--ref HF_DIR] [--layer model.layers.0.self_attn.q_proj]
"""
import json
import math
import os
import re
import struct
import sys

DTYPE_SIZE = {"F32": 4, "F16": 2, "BF16": 2, "I32": 4, "I64": 8, "I8": 1, "U8": 1}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack_from("<Q", data, 0)
    header = json.loads(data[8 : 8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    base = 8 + n
    tensors = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        numel = 1
        for d in info["shape"]:
            numel *= d
        assert e - b == numel * DTYPE_SIZE[info["dtype"]], f"{name}: byte range does not match shape/dtype"
        tensors[name] = (info["dtype"], info["shape"], data[base + b : base + e])
    return tensors, meta


def values(dtype, raw):
    n = len(raw) // DTYPE_SIZE[dtype]
    if dtype == "F32":
        return list(struct.unpack(f"<{n}f", raw))
    if dtype == "F16":
        return list(struct.unpack(f"<{n}e", raw))
    if dtype == "BF16":
        return [struct.unpack("<f", struct.pack("<I", h << 16))[0] for h in struct.unpack(f"<{n}H", raw)]
    if dtype == "I32":
        return list(struct.unpack(f"<{n}i", raw))
    raise ValueError(dtype)


def field(words, stride, index, col, bits):
    """Value `index` of the little-endian bitstream stored down column `col` of an int32 matrix
    with `stride` columns (qweight: along K; qzeros: pass the row as a 1-column matrix)."""
    chunk, j = divmod(index, 32)
    bit = bits * j
    w, shift = chunk * bits + bit // 32, bit % 32
    v = (words[w * stride + col] & 0xFFFFFFFF) >> shift
    if shift + bits > 32:
        v |= (words[(w + 1) * stride + col] & 0xFFFFFFFF) << (32 - shift)
    return v & ((1 << bits) - 1)


def main(argv):
    if len(argv) < 2:
        print(__doc__)
        return 2
    d = argv[1]
    ref = argv[argv.index("--ref") + 1] if "--ref" in argv else None
    layer = argv[argv.index("--layer") + 1] if "--layer" in argv else "model.layers.0.self_attn.q_proj"
    errors = []

    def check(cond, msg):
        if not cond:
            errors.append(msg)

    cfg = json.load(open(os.path.join(d, "config.json")))
    qc = cfg.get("quantization_config")
    check(qc is not None, "config.json has no quantization_config")
    qc2 = json.load(open(os.path.join(d, "quantize_config.json")))
    for key in ("bits", "group_size", "desc_act", "sym"):
        check(qc.get(key) == qc2.get(key), f"{key} differs between config.json and quantize_config.json")
    check(qc.get("quant_method") == "gptq", "quant_method must be gptq")
    check(qc.get("checkpoint_format", "gptq") == "gptq", "checkpoint_format must be gptq (v1)")
    base = {key: qc[key] for key in ("bits", "group_size", "sym", "desc_act")}
    dynamic = qc.get("dynamic") or {}
    check(dynamic == (qc2.get("dynamic") or {}), "dynamic differs between config.json and quantize_config.json")

    def module_config(prefix):
        """Config of one module: the first matching dynamic rule (re.match, in file order) applied."""
        for key, rule in dynamic.items():
            pattern = key[2:] if key.startswith(("+:", "-:")) else key
            if re.match(pattern, prefix):
                if key.startswith("-:"):
                    return None
                check(set(rule) <= set(base), f"dynamic rule {key}: unknown fields {sorted(set(rule) - set(base))}")
                return {**base, **{k: v for k, v in rule.items() if k in base}}
        return base

    check(base["bits"] in (2, 3, 4, 8), f"bits {base['bits']}")
    check(os.path.exists(os.path.join(d, "tokenizer.json")), "tokenizer.json missing")

    tensors, meta = read_safetensors(os.path.join(d, "model.safetensors"))
    prefixes = sorted(n[: -len(".qweight")] for n in tensors if n.endswith(".qweight"))
    check(len(prefixes) == 7 * cfg["num_hidden_layers"] + (1 if qc.get("lm_head") else 0),
          f"{len(prefixes)} quantized linears for {cfg['num_hidden_layers']} layers")
    if qc.get("lm_head"):
        check("lm_head" in prefixes, "lm_head is true but lm_head.qweight is missing")
        check(cfg.get("tie_word_embeddings") is False, "a quantized lm_head needs tie_word_embeddings false")
    else:
        check("lm_head" not in prefixes, "lm_head.qweight present but quantize_config says lm_head false")
    linear_bits = {}
    for p in prefixes:
        mc = module_config(p)
        if mc is None:
            errors.append(f"{p}: quantized although a '-:' dynamic rule excludes it")
            continue
        bits, gs, sym, desc_act = mc["bits"], mc["group_size"], mc["sym"], mc["desc_act"]
        check(bits in (2, 3, 4, 8), f"{p}: bits {bits}")
        linear_bits[p] = bits
        maxq = (1 << bits) - 1
        qw, qz, sc, gi = (tensors.get(p + s) for s in (".qweight", ".qzeros", ".scales", ".g_idx"))
        if None in (qw, qz, sc, gi):
            errors.append(f"{p}: missing one of qweight/qzeros/scales/g_idx")
            continue
        check(p + ".weight" not in tensors, f"{p}: both weight and qweight")
        check(qw[0] == "I32" and qz[0] == "I32" and gi[0] == "I32", f"{p}: qweight/qzeros/g_idx must be I32")
        check(sc[0] == "F16", f"{p}: scales must be F16")
        K = gi[1][0]
        N = qw[1][1]
        G = 1 if gs == -1 else -(-K // gs)
        check(qw[1] == [K * bits // 32, N], f"{p}: qweight shape {qw[1]}, expected {[K * bits // 32, N]}")
        check(qz[1] == [G, N * bits // 32], f"{p}: qzeros shape {qz[1]}, expected {[G, N * bits // 32]}")
        check(sc[1] == [G, N], f"{p}: scales shape {sc[1]}")
        g_idx = values("I32", gi[2])
        check(all(0 <= g < G for g in g_idx), f"{p}: g_idx out of range")
        if not desc_act:
            check(g_idx == [k // (gs if gs > 0 else K) for k in range(K)], f"{p}: g_idx must be k // group_size")
        elif gs > 0:
            counts = [0] * G
            for g in g_idx:
                counts[g] += 1
            check(all(c == gs for c in counts[:-1]) and 0 < counts[-1] <= gs, f"{p}: act-order groups not of size {gs}")
        zw = values("I32", qz[2])
        zstride = N * bits // 32
        # qzeros rows pack along N: value n of row g.
        zeros = [[field(zw[g * zstride : (g + 1) * zstride], 1, n, 0, bits) for n in range(N)] for g in range(G)]
        if sym:
            check(all(z + 1 == 1 << (bits - 1) for row in zeros for z in row), f"{p}: sym zeros must be 2^(bits-1)-1 (v1)")
        else:
            check(all(z + 1 <= maxq for row in zeros for z in row), f"{p}: v1 zero out of range")
        scales = values("F16", sc[2])
        check(all(s > 0 and math.isfinite(s) for s in scales), f"{p}: scales must be positive")
        if p == layer:
            q = values("I32", qw[2])
            W = [[scales[g_idx[k] * N + n] * (field(q, N, k, n, bits) - (zeros[g_idx[k]][n] + 1)) for k in range(K)]
                 for n in range(N)]
            absmean = sum(abs(v) for row in W for v in row) / (N * K)
            print(f"{p}: dequantized [{N}, {K}], mean |w| = {absmean:.6g}")
            if ref:
                rt, _ = read_safetensors(os.path.join(ref, "model.safetensors"))
                # A tied reference has no lm_head.weight: the head is the embedding matrix.
                ref_name = p + ".weight" if p + ".weight" in rt or p != "lm_head" else "model.embed_tokens.weight"
                dt, shape, raw = rt[ref_name]
                check(shape == [N, K], f"{p}: reference shape {shape}")
                R = values(dt, raw)
                num = sum((W[n][k] - R[n * K + k]) ** 2 for n in range(N) for k in range(K))
                den = sum(v * v for v in R)
                rel = math.sqrt(num / den)
                bias = sum(W[n][k] - R[n * K + k] for n in range(N) for k in range(K)) / (N * K)
                mean_scale = sum(scales) / len(scales)
                print(f"{p}: relative RMS difference to the reference weight = {rel:.4f}, "
                      f"mean difference = {bias / mean_scale:+.4f} scale steps")
                # GPTQ moves weights to cut the *output* error, so its weight-space difference is
                # larger than round-to-nearest's (~0.1 at 4 bits; ~0.3 for GPTQ on the test model),
                # but a wrong packing order decorrelates the weights (difference >= 1).
                check(rel < {2: 1.0, 3: 0.8, 4: 0.6, 8: 0.2}[bits], f"{p}: dequantized weight too far from reference ({rel})")
                # Forgetting the v1 "+1" on the zeros shifts every weight by one step.
                check(abs(bias) < 0.1 * mean_scale, f"{p}: weights biased by {bias / mean_scale:.3f} steps (zero convention?)")
    for name in ("model.embed_tokens.weight", "model.norm.weight"):
        check(name in tensors and tensors[name][0] == "F16", f"{name} missing or not F16")
    check(meta.get("format") == "pt", "safetensors metadata format must be 'pt'")
    if errors:
        for e in errors:
            print("FAIL:", e)
        return 1
    extra = "".join(f", {p} {b}-bit" for p, b in sorted(linear_bits.items()) if b != base["bits"])
    print(f"OK: {len(prefixes)} GPTQ linears, {base['bits']}-bit, group {base['group_size']}, "
          f"desc_act {base['desc_act']}, sym {base['sym']}{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
