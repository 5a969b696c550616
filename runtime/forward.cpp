// The Llama forward pass, top to bottom, for a batch of n tokens at positions n_past..:
//   x = embed(tokens)
//   per layer: xb = rmsnorm(x)·attn_norm; q,k,v = xb·Wq,Wk,Wv; rope(q,k); append k,v to the cache;
//              att = softmax(q·Kᵀ/√d, causal)·V per head (GQA: q head h reads kv head h/(H/Hkv));
//              x += att·Wo; xb = rmsnorm(x)·ffn_norm; x += (silu(xb·Wg) ⊙ xb·Wu)·Wd
//   logits = rmsnorm(x)·output_norm · Wout   (Wout = token_embd when tied)
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "runtime/session.h"

namespace slm {

Session::Session(const Model& model, const SessionOptions& opts) : model_(model), opts_(opts) {
  const ModelConfig& c = model.config();
  SLM_CHECK(opts.n_ctx > 0 && opts.n_ctx <= (int64_t(1) << 24), "context size {} is out of range", opts.n_ctx);
  SLM_CHECK(opts.max_batch > 0 && opts.max_batch <= 4096, "batch size {} is out of range", opts.max_batch);
  opts_.max_batch = std::min(opts.max_batch, opts.n_ctx);
  const size_t B = size_t(opts_.max_batch);
  max_threads_ = std::max({1, omp_get_max_threads(), omp_get_num_procs()});
  const size_t cache_bytes =
      size_t(c.n_layers) * size_t(opts.n_ctx) * size_t(c.kv_dim()) * size_t(cpu::kv_elem_bytes(opts.kv_type));
  k_cache_ = ZeroPages(cache_bytes);
  v_cache_ = ZeroPages(cache_bytes);
  rope_storage_.assign(ops::rope_table_floats(opts.n_ctx, c.n_rot), 0.f);
  rope_.data = rope_storage_.data();
  ops::rope_table_init(rope_, c, opts.n_ctx);
  x_.assign(B * size_t(c.dim), 0.f);
  xb_.assign(B * size_t(std::max(c.dim, c.q_dim())), 0.f);
  q_.assign(B * size_t(c.q_dim()), 0.f);
  k_.assign(B * size_t(c.kv_dim()), 0.f);
  v_.assign(B * size_t(c.kv_dim()), 0.f);
  att_.assign(B * size_t(c.q_dim()), 0.f);
  ffn_g_.assign(B * size_t(c.hidden_dim), 0.f);
  ffn_u_.assign(B * size_t(c.hidden_dim), 0.f);
  scores_.assign(size_t(max_threads_) * size_t(opts.n_ctx), 0.f);
  logits_.assign(size_t(c.n_vocab), 0.f);
  ws_.reserve(cpu::linear_workspace_bytes(int64_t(B), std::max({c.dim, c.hidden_dim, c.q_dim()})));
  auto reserve_gptq = [&](const WeightTensor& w) {
    if (w.gptq) ws_.reserve(cpu::gptq_workspace_bytes(*w.gptq, int64_t(B)));
  };
  for (const LayerWeights& L : model.weights().layers)
    for (const WeightTensor* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) reserve_gptq(*w);
  reserve_gptq(model.weights().output);
  last_logits_ = logits_.data();
}

size_t Session::scratch_bytes() const {
  return (x_.size() + xb_.size() + q_.size() + k_.size() + v_.size() + att_.size() + ffn_g_.size() +
          ffn_u_.size() + scores_.size() + logits_.size() + rope_storage_.size()) * sizeof(float) +
         ws_.bytes.size();
}

void Session::linear(const WeightTensor& w, const float* x, int64_t m, float* y, int64_t layer, LinearSlot slot) {
  if (opts_.on_linear_input) opts_.on_linear_input(LinearInput{layer, slot, &w, x, m, w.cols});
  if (w.gptq) return cpu::gptq_linear(*w.gptq, x, m, y, w.rows, ws_);
  cpu::LinearArgs a{.type = w.type, .w = w.data, .n = w.rows, .k = w.cols, .x = x, .m = m, .y = y, .ldy = w.rows};
  cpu::linear(a, ws_, opts_.precision);
}

void Session::linear_same_input(std::initializer_list<LinearOut> outs, const float* x, int64_t m, int64_t layer) {
  cpu::LinearArgs args[4];
  int n = 0;
  bool fused = outs.size() <= 4;
  for (const LinearOut& o : outs) fused = fused && o.w->gptq == nullptr;
  if (!fused) {
    for (const LinearOut& o : outs) linear(*o.w, x, m, o.y, layer, o.slot);
    return;
  }
  for (const LinearOut& o : outs) {
    if (opts_.on_linear_input) opts_.on_linear_input(LinearInput{layer, o.slot, o.w, x, m, o.w->cols});
    args[n++] = cpu::LinearArgs{.type = o.w->type, .w = o.w->data, .n = o.w->rows, .k = o.w->cols, .x = x, .m = m,
                                .y = o.y, .ldy = o.w->rows};
  }
  cpu::linear_multi(args, n, ws_, opts_.precision);
}

void Session::eval(std::span<const int32_t> tokens, bool all_logits) {
  const int64_t n = int64_t(tokens.size());
  SLM_CHECK(n > 0, "eval: no tokens");
  SLM_CHECK(n_past_ + n <= opts_.n_ctx,
            "context overflow: {} tokens in the cache + {} new tokens exceed the context size {} (raise -c)",
            n_past_, n, opts_.n_ctx);
  const int64_t V = model_.config().n_vocab;
  for (int32_t t : tokens)
    SLM_CHECK(t >= 0 && t < V, "token id {} is out of range (vocabulary has {} tokens)", t, V);
  if (omp_get_max_threads() > max_threads_) {  // more threads than at construction: grow once
    max_threads_ = omp_get_max_threads();
    scores_.assign(size_t(max_threads_) * size_t(opts_.n_ctx), 0.f);
  }
  if (all_logits) {
    all_logits_.assign(size_t(n) * size_t(V), 0.f);
    if (logits_.size() < size_t(opts_.max_batch) * size_t(V)) logits_.assign(size_t(opts_.max_batch) * size_t(V), 0.f);
  }
  for (int64_t i = 0; i < n; i += opts_.max_batch) {
    const int64_t nb = std::min(opts_.max_batch, n - i);
    forward_batch(tokens.data() + i, nb, logits_.data(), all_logits);
    if (all_logits)
      std::copy(logits_.begin(), logits_.begin() + nb * V, all_logits_.begin() + i * V);
  }
  const int64_t last_row = all_logits ? (n - 1) % opts_.max_batch : 0;
  last_logits_ = logits_.data() + last_row * V;
}

void Session::forward_batch(const int32_t* tokens, int64_t n, float* logits_out, bool logits_all_rows) {
  const ModelConfig& c = model_.config();
  const Weights& W = model_.weights();
  const int64_t dim = c.dim, qd = c.q_dim(), kvd = c.kv_dim(), hd = c.head_dim, hid = c.hidden_dim;
  const int64_t group = c.n_heads / c.n_kv_heads;
  const int64_t ctx = opts_.n_ctx;
  const int64_t p0 = n_past_;
  const float att_scale = 1.f / std::sqrt(float(hd));

  // Embedding lookup: dequantize the token's row.
  for (int64_t t = 0; t < n; ++t) dequantize_row(W.tok_embd.type, W.tok_embd.row(tokens[t]), &x_[size_t(t * dim)], dim);

  for (int64_t l = 0; l < c.n_layers; ++l) {
    const LayerWeights& L = W.layers[size_t(l)];
    const cpu::KvType kvt = opts_.kv_type;
    const size_t eb = size_t(cpu::kv_elem_bytes(kvt));
    // Layer l, KV head j, position p: element offset ((l * n_kv_heads + j) * ctx + p) * hd.
    uint8_t* kc = &k_cache_[size_t(l) * size_t(ctx) * size_t(kvd) * eb];
    uint8_t* vc = &v_cache_[size_t(l) * size_t(ctx) * size_t(kvd) * eb];
    const size_t head_bytes = size_t(ctx) * size_t(hd) * eb;

    for (int64_t t = 0; t < n; ++t) ops::rmsnorm(&xb_[size_t(t * dim)], &x_[size_t(t * dim)], L.attn_norm.data(), dim, c.rms_eps);
    linear_same_input({{&L.wq, q_.data(), LinearSlot::Q}, {&L.wk, k_.data(), LinearSlot::K},
                       {&L.wv, v_.data(), LinearSlot::V}},
                      xb_.data(), n, l);
    for (int64_t t = 0; t < n; ++t) {
      ops::rope_apply(&q_[size_t(t * qd)], c.n_heads, hd, c.n_rot, c.rope_style, rope_, p0 + t);
      ops::rope_apply(&k_[size_t(t * kvd)], c.n_kv_heads, hd, c.n_rot, c.rope_style, rope_, p0 + t);
      for (int64_t j = 0; j < c.n_kv_heads; ++j) {
        const size_t at = size_t(j) * head_bytes + size_t(p0 + t) * size_t(hd) * eb;
        cpu::kv_store(&k_[size_t(t * kvd + j * hd)], kc + at, hd, kvt);
        cpu::kv_store(&v_[size_t(t * kvd + j * hd)], vc + at, hd, kvt);
      }
    }

    // Causal attention, one (head, token) pair per iteration; heads outer, so a thread's
    // consecutive pairs read the same KV head while it is in L2.
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t h = 0; h < c.n_heads; ++h) {
      for (int64_t t = 0; t < n; ++t) {
        float* sc = &scores_[size_t(omp_get_thread_num()) * size_t(ctx)];
        const float* q = &q_[size_t(t * qd + h * hd)];
        const int64_t kvh = h / group;
        const int64_t n_keys = p0 + t + 1;
        const size_t head_off = size_t(kvh) * head_bytes;
        cpu::attn_head(q, kc + head_off, vc + head_off, n_keys, hd, hd, kvt, att_scale, sc,
                       &att_[size_t(t * qd + h * hd)]);
      }
    }

    linear(L.wo, att_.data(), n, xb_.data(), l, LinearSlot::O);
    ops::add_inplace(x_.data(), xb_.data(), n * dim);

    for (int64_t t = 0; t < n; ++t) ops::rmsnorm(&xb_[size_t(t * dim)], &x_[size_t(t * dim)], L.ffn_norm.data(), dim, c.rms_eps);
    linear_same_input({{&L.w_gate, ffn_g_.data(), LinearSlot::Gate}, {&L.w_up, ffn_u_.data(), LinearSlot::Up}},
                      xb_.data(), n, l);
    ops::swiglu(ffn_g_.data(), ffn_g_.data(), ffn_u_.data(), n * hid);
    linear(L.w_down, ffn_g_.data(), n, xb_.data(), l, LinearSlot::Down);
    ops::add_inplace(x_.data(), xb_.data(), n * dim);
  }

  // Final norm and output projection: every row, or only the last token's.
  const int64_t first = logits_all_rows ? 0 : n - 1;
  const int64_t rows = n - first;
  for (int64_t t = first; t < n; ++t)
    ops::rmsnorm(&xb_[size_t((t - first) * dim)], &x_[size_t(t * dim)], W.output_norm.data(), dim, c.rms_eps);
  linear(W.output, xb_.data(), rows, logits_out, -1, LinearSlot::Output);
  n_past_ += n;
}

}  // namespace slm
