// Neural building blocks: multi-head attention with key masks that can return its
// head-averaged weights, GEGLU feed-forward, pre-norm Transformer layers, MLPs.
// Shapes: B batch, M queries, N keys, D model width, H heads, dh = D / H.
#pragma once

#include <map>
#include <vector>

#include <torch/nn.h>

namespace retreever {

// Score given to masked keys in a tensor of this dtype: half its lowest finite value. Far below any
// real score, and finite in every dtype (a fixed -1e9 turns into -inf in float16, and a row with
// every key masked then becomes NaN), so a row with every key masked yields uniform weights. The
// half leaves room for log-softmax's subtractions: a masked key's log-probability stays finite
// too (-inf would make 0 * log 0 in the entropy NaN).
double masked_score(torch::ScalarType dtype);

// attend_shared's chunk of [B,H,m,N] scores when not given: 2^24 elements on the CPU, 2^28 on a GPU.
std::int64_t default_max_score_elements(bool cuda);

// Result of one attention: output [B, M, D] (after the output projection) and,
// when asked for, the attention weights averaged over heads, [B, M, N].
struct AttentionResult {
  torch::Tensor out;
  torch::Tensor weights;
};

// Multi-head attention with the projections split out, so that a tree can project
// every node once and each query only gathers the keys it visits.
class MultiHeadAttentionImpl : public torch::nn::Module {
 public:
  MultiHeadAttentionImpl(std::int64_t d_model, std::int64_t heads);

  // Queries [.., D] -> [.., H, dh], already scaled by 1/sqrt(dh).
  torch::Tensor project_query(const torch::Tensor& x);
  // Keys and values [.., D] -> each [.., H, dh], from the two halves of one projection weight.
  std::pair<torch::Tensor, torch::Tensor> project_key_value(const torch::Tensor& x);
  // Merged heads [.., H, dh] -> [.., D].
  torch::Tensor project_out(const torch::Tensor& x);

  // Every query reads the same keys. q [B,M,H,dh], k/v [B,N,H,dh], mask (true = keep)
  // [B,N] or [B,M,N] or undefined. Queries are processed in chunks so that the score
  // matrix stays below max_score_elements even for huge N (0: default_max_score_elements).
  AttentionResult attend_shared(const torch::Tensor& q, const torch::Tensor& k,
                                const torch::Tensor& v, const torch::Tensor& mask,
                                bool need_weights, std::int64_t max_score_elements = 0);
  // Each query reads its own few keys (tree cross attention): rows of a table of keys (or values)
  // per context. Shapes: q [B,M,H,dh], table [B,T,H,dh], rows [B,M,S] (int64, into T), mask [B,M,S]
  // (true = keep), scores [B,M,S,H]. On the CPU the kernels read the table in place
  // (group_attention.h: group_scores_at).
  torch::Tensor scores_each(const torch::Tensor& q, const torch::Tensor& keys, const torch::Tensor& rows);
  // Softmax over S of masked scores, averaged over heads: [B,M,S] (the retrieval policy).
  static torch::Tensor head_averaged_weights(const torch::Tensor& scores, const torch::Tensor& mask);
  // Each head's log-softmax over S of the masked scores: [B,M,S,H].
  static torch::Tensor head_log_weights(const torch::Tensor& scores, const torch::Tensor& mask);
  // log of head_averaged_weights computed exactly (log-sum-exp over the heads' log-softmax), so
  // its gradient survives where a probability underflows: a saturated policy can still learn.
  static torch::Tensor head_averaged_log_weights(const torch::Tensor& scores, const torch::Tensor& mask);
  // The same from head_log_weights' result: [B,M,S,H] -> [B,M,S].
  static torch::Tensor head_averaged(const torch::Tensor& log_weights);
  AttentionResult attend_scores(const torch::Tensor& scores, const torch::Tensor& values, const torch::Tensor& rows,
                                const torch::Tensor& mask, bool need_weights);
  // The same with each query's own keys and values k/v [B,M,S,H,dh].
  AttentionResult attend_each(const torch::Tensor& q, const torch::Tensor& k,
                              const torch::Tensor& v, const torch::Tensor& mask,
                              bool need_weights);

  // Convenience: query [B,M,D] attends to context [B,N,D].
  AttentionResult forward(const torch::Tensor& query, const torch::Tensor& context,
                          const torch::Tensor& mask = {}, bool need_weights = false);

  std::int64_t heads() const { return heads_; }
  std::int64_t head_dim() const { return head_dim_; }

  // Dropout on the attention weights in training (Config::dropout, set by set_dropout unless
  // spared).
  double dropout = 0;
  // true: set_dropout leaves this attention's dropout at 0 (tree cross attention's, as in the reference).
  bool spared_from_dropout = false;
  // dropout in training mode, 0 otherwise.
  double active_dropout() const { return is_training() ? dropout : 0; }

 private:
  std::int64_t heads_, head_dim_;
  double scale_;
  torch::nn::Linear to_q_{nullptr}, to_kv_{nullptr}, to_out_{nullptr};
};
TORCH_MODULE(MultiHeadAttention);

// Linear -> GEGLU -> Linear (Shazeer 2020), as in Perceiver IO.
class FeedForwardImpl : public torch::nn::Module {
 public:
  FeedForwardImpl(std::int64_t d_model, std::int64_t hidden);
  torch::Tensor forward(const torch::Tensor& x);
  // The two halves of forward: the gated hidden layer, and the (linear) output layer with its
  // bias scaled by bias_scale (broadcast; 0 drops it; undefined keeps it).
  torch::Tensor hidden(const torch::Tensor& x);
  torch::Tensor output(const torch::Tensor& h, const torch::Tensor& bias_scale);

  // Dropout on the output in training (Config::dropout, set by set_dropout).
  double dropout = 0;
  double active_dropout() const { return is_training() ? dropout : 0; }

 private:
  torch::nn::Linear in_{nullptr}, out_{nullptr};
};
TORCH_MODULE(FeedForward);

// Self-attention layer in one of two styles (BlockStyle's normed_residual):
// v1 (standard pre-norm): y = x + Attn(LN(x)); out = y + FF(LN(y)).
// reference (the paper's code): y = LN(x) + Attn(q = LN(x), k = v = x); out = LN(y) + FF(LN(y)),
// so each sublayer adds to its normalised input, and keys and values read x as it is.
class TransformerLayerImpl : public torch::nn::Module {
 public:
  TransformerLayerImpl(std::int64_t d_model, std::int64_t heads, std::int64_t ff_dim, bool reference = false);
  // x [B,N,D]; key_mask [B,N] (true = real token) or undefined.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& key_mask = {});
  // The mean of forward()'s output over the real tokens, [B,D] (0 where none is real; an undefined
  // key_mask: every token is real). The
  // feed-forward's output layer is linear, so it runs once on the mean instead of on every token.
  torch::Tensor forward_mean(const torch::Tensor& x, const torch::Tensor& key_mask);

 private:
  // The attention sublayer's output y (before the feed-forward sublayer) and the feed-forward's input.
  std::pair<torch::Tensor, torch::Tensor> attend(const torch::Tensor& x, const torch::Tensor& key_mask);
  bool reference_ = false;
  torch::nn::LayerNorm norm_attn_{nullptr}, norm_ff_{nullptr};
  MultiHeadAttention attn_{nullptr};
  FeedForward ff_{nullptr};
};
TORCH_MODULE(TransformerLayer);

// A stack of pre-norm layers with a final LayerNorm (identity when layers == 0). In the reference
// style every layer starts as a copy of the first, as the reference code's stacks do (they deep-copy
// one initialised layer); v1 draws each layer on its own.
class TransformerEncoderImpl : public torch::nn::Module {
 public:
  TransformerEncoderImpl(std::int64_t layers, std::int64_t d_model, std::int64_t heads,
                         std::int64_t ff_dim, bool final_norm = true, bool reference = false);
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& key_mask = {});
  // The mean of forward()'s output over the real tokens (TransformerLayer::forward_mean). Needs at
  // least one layer and no final LayerNorm.
  torch::Tensor forward_mean(torch::Tensor x, const torch::Tensor& key_mask);
  std::int64_t size() const { return static_cast<std::int64_t>(layers_->size()); }

 private:
  torch::nn::ModuleList layers_;
  torch::nn::LayerNorm norm_{nullptr};
};
TORCH_MODULE(TransformerEncoder);

enum class Activation { ReLU, ELU };

// depth Linear layers: in -> hidden -> ... -> out, activation between them.
class MLPImpl : public torch::nn::Module {
 public:
  MLPImpl(std::int64_t in, std::int64_t hidden, std::int64_t out, std::int64_t depth,
          Activation act);
  torch::Tensor forward(torch::Tensor x);

 private:
  torch::nn::ModuleList layers_;
  Activation act_;
};
TORCH_MODULE(MLP);

// A LayerNorm module's forward; on a GPU, where the CUDA kernels are built, one kernel each way
// (cuda_ops.h: use_cuda_layer_norm).
torch::Tensor layer_norm(const torch::nn::LayerNorm& norm, const torch::Tensor& x);

// Dropout's random stream: a generator a device, all seeded alike. While a DropoutScope holds it
// on a thread, every dropout mask drawn there comes from it, so the masks follow from the seed
// alone: the trainer reseeds its stream each step from the run's seed and the step, and a resumed
// run, a run on another thread or a step replayed from a CUDA graph (which registers the stream's
// CUDA generator) draws the same masks. Without a scope, masks come from torch's global generators.
class DropoutStream {
 public:
  explicit DropoutStream(std::uint64_t seed = 0) : seed_(seed) {}
  void reseed(std::uint64_t seed);  // every generator restarts from `seed`
  at::Generator generator(const torch::Device& device);  // made on first use
 private:
  std::uint64_t seed_;
  std::map<std::pair<int, int>, at::Generator> generators_;  // by device type and index
};
class DropoutScope {
 public:
  explicit DropoutScope(DropoutStream& stream);
  ~DropoutScope();
  DropoutScope(const DropoutScope&) = delete;
  DropoutScope& operator=(const DropoutScope&) = delete;
 private:
  DropoutStream* previous_;
};

// Dropout masks kept by one pass and handed out again by another. While a recording tape is
// alive on a thread, keep_mask appends every mask it draws to `masks`; while a replaying one is,
// keep_mask draws nothing and returns `masks` in order, each of the shape asked for (else a
// std::logic_error). build_tree runs a GPU training step's small tree levels a second time,
// batched, with the masks their first pass drew.
class DropoutTape {
 public:
  enum class Mode { record, replay };
  explicit DropoutTape(Mode mode, std::vector<torch::Tensor> masks = {});
  ~DropoutTape();
  DropoutTape(const DropoutTape&) = delete;
  DropoutTape& operator=(const DropoutTape&) = delete;
  // Replaying: the next mask, checked against the shape asked for.
  torch::Tensor next(at::IntArrayRef sizes);
  // Replaying: every mask was handed out.
  bool finished() const { return replayed_ == masks.size(); }
  std::vector<torch::Tensor> masks;
  const Mode mode;

 private:
  std::size_t replayed_ = 0;
  DropoutTape* previous_;
};

// Keep masks of the given shape and options: 1 / (1 - p) with probability 1 - p, else 0 (the
// current DropoutStream's draws, or the global generator's; drawn in float32 for every dtype).
torch::Tensor keep_mask(at::IntArrayRef sizes, double p, const torch::TensorOptions& options);
// The CPU keep mask (float32) that a 64-bit key gives: element i (in row-major order) is 1 / (1 - p)
// where keep_bits(i, key) < keep_threshold(1 - p) (keep_hash.h), else 0. keep_mask on the CPU keys
// it by one draw of the stream; the dense attention kernels draw the same hash on the GPU.
torch::Tensor keep_mask_for_key(at::IntArrayRef sizes, std::uint64_t key, double p);
// x times a keep mask in training for p > 0 (dropout); x itself for p = 0.
torch::Tensor maybe_dropout(const torch::Tensor& x, double p);
// Sets the dropout of every attention and feed-forward in `root`'s module tree (attentions
// spared from dropout keep 0).
void set_dropout(torch::nn::Module& root, double p);
// Whether a forward of `root` (in its current mode) draws dropout masks: an attention or
// feed-forward in its module tree has dropout and is training.
bool dropout_active(const torch::nn::Module& root);

// Sinusoidal positional encodings for positions [start, start + n): [n, d].
torch::Tensor sinusoidal_positions(std::int64_t start, std::int64_t n, std::int64_t d,
                                   const torch::TensorOptions& options);

// How the cross-attention block normalises and adds its residuals.
struct BlockStyle {
  // "v1" (every checkpoint before the field existed): keys and values read LN_kv(nodes);
  // y = q + Attn; out = y + FF(LN(y)).
  // "reference" (the paper's code): keys and values read the nodes as they are; y = LN_q(q) + Attn
  // (+ q as well when raw_query: the reference's tree cross attention); out = LN(y) + FF(LN(y)).
  bool norm_kv = true;
  bool normed_residual = false;
  bool raw_query = false;
  static BlockStyle v1() { return {}; }
  static BlockStyle reference(bool raw_query);
};

// A block's queries: the input [B,M,D], its layer norm (the reference style's residual adds it, so it
// is computed once per read) and the projection [B,M,H,dh].
struct BlockQueries {
  torch::Tensor input, normed, q;
};

// The cross-attention block every decoder shares (DESIGN: "no copy-paste between decoders"),
// in one of the two styles above. Exposes its pieces so that tree cross attention can precompute
// node keys once.
class CrossAttentionBlockImpl : public torch::nn::Module {
 public:
  CrossAttentionBlockImpl(std::int64_t d_model, std::int64_t heads, std::int64_t ff_dim,
                          BlockStyle style = BlockStyle::v1());

  // Keys and values of context nodes [.., D] -> each [.., H, dh].
  std::pair<torch::Tensor, torch::Tensor> keys_values(const torch::Tensor& nodes);
  // Queries [B,M,D], normed and projected ([B,M,H,dh]).
  BlockQueries queries(const torch::Tensor& query);
  // Residual + feed-forward after the attention output [B,M,D].
  torch::Tensor finish(const BlockQueries& query, const torch::Tensor& attended);
  // The queries twice over, stacked along the batch, for one finish() of two reads: only the parts
  // finish() reads in this block's style.
  BlockQueries twice(const BlockQueries& query) const;
  // Whole block over keys/values already projected by keys_values, mask [B,N] (or undefined).
  torch::Tensor read(const torch::Tensor& query, const torch::Tensor& keys, const torch::Tensor& values,
                     const torch::Tensor& mask = {});
  // Whole block over shared nodes [B,N,D] with mask [B,N].
  torch::Tensor forward(const torch::Tensor& query, const torch::Tensor& nodes,
                        const torch::Tensor& mask = {});

  MultiHeadAttention attention{nullptr};

 private:
  BlockStyle style_;
  torch::nn::LayerNorm norm_q_{nullptr}, norm_kv_{nullptr}, norm_ff_{nullptr};
  FeedForward ff_{nullptr};
};
TORCH_MODULE(CrossAttentionBlock);

}  // namespace retreever
