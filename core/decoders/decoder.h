// The one interface behind which full cross attention, tree cross attention and Perceiver IO
// read a context. A decoder first prepares a memory from the encoded context (once per
// context: the tree, the latents, or the projected tokens) and then answers queries from it.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include <torch/nn.h>

#include "core/nn/blocks.h"
#include "core/tree/tree.h"

namespace retreever {

struct Config;

enum class Retrieval { Sample, Greedy };

struct DecodeRequest {
  Retrieval retrieval = Retrieval::Greedy;
  double explore = 0;       // TCA, sampling: share of draws made uniformly over the real children
  bool all_leaves = false;  // TCA: also predict from all leaves (for L_CA)
  bool trace = false;       // TCA: return the retrieval trace
  // Data-parallel training: this batch is rows [draw_row, draw_row + B) of a batch of draw_batch rows,
  // and the walk takes its slice of the draws made for all of them, so that N processes draw what one
  // would (0: the draws are this batch's own).
  std::int64_t draw_batch = 0, draw_row = 0;
  // The seed of the walk's uniform draws: drawn on the CPU by a generator of their own and moved to
  // the queries' device, so that trainers in several threads of one process (the studio's "all
  // GPUs") and every device draw the same numbers (on the CPU, the numbers torch's global generator
  // draws after torch::manual_seed(draw_seed)). Unset: torch's global generator.
  std::optional<std::uint64_t> draw_seed;
  // Where set, the draws live in this device tensor: the first walk makes them (from draw_seed) into
  // it, later walks of the same shape read it as it stands. A CUDA graph of the training step reads
  // its draws from here, and the trainer refills it before each replay (policy_draws).
  std::shared_ptr<torch::Tensor> draw_buffer;
};

// The walk's uniform draws [levels, columns] for a seed, made on the CPU by a generator of their own:
// the numbers every walk of TCA takes for DecodeRequest::draw_seed.
torch::Tensor policy_draws(std::uint64_t seed, std::int64_t levels, std::int64_t columns);

// Per-query retrieval trace of TCA (Algorithm 1), for k levels of the walk.
struct RetrievalTrace {
  torch::Tensor path;           // [B,M,k] long: index within level l (1..k) of the node walked to
  torch::Tensor probabilities;  // [B,M,k,b]: the policy's probabilities over the children
  torch::Tensor leaf_group;     // [B,M] long: the leaf group reached (index on level k)
};

struct DecodeOutput {
  torch::Tensor encoding;    // [B,M,D] the prediction path (TCA: from the selected set S)
  torch::Tensor all_leaves;  // [B,M,D] TCA with all_leaves: the same block over every leaf
  torch::Tensor log_prob;    // [B,M] TCA: sum over levels of log pi(a_t | s_t)
  torch::Tensor entropy;     // [] TCA: mean entropy of the policy over queries and levels
  RetrievalTrace trace;
};

// Whatever a decoder keeps per context between prepare() and decode().
struct Memory {
  virtual ~Memory() = default;
};

// Keys and values every query reads in full: the context tokens (CA) or the latents (Perceiver IO).
struct ProjectedMemory : Memory {
  torch::Tensor keys, values;  // [B,N,H,dh]
};

class DecoderImpl : public torch::nn::Module {
 public:
  // context [B,N,D] in original order; x_context [B,N,dx] raw inputs (for ordering).
  virtual std::shared_ptr<Memory> prepare(const torch::Tensor& context,
                                          const torch::Tensor& x_context) = 0;
  virtual DecodeOutput decode(const Memory& memory, const torch::Tensor& queries,
                              const DecodeRequest& request) = 0;
  // Nodes each query attends to for a context of n tokens.
  virtual std::int64_t tokens_per_query(std::int64_t n) const = 0;
};

// Builds the decoder named by config.model ("tca", "ca", "perceiver").
std::shared_ptr<DecoderImpl> make_decoder(const Config& config);
// The block style config.block names (tree: the decoder is tree cross attention, which in the
// reference code also adds the raw query to its residual).
BlockStyle block_style(const Config& config, bool tree);

}  // namespace retreever
