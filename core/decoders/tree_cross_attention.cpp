#include "tree_cross_attention.h"

#include <ATen/CPUGeneratorImpl.h>

#include "core/config.h"
#include "core/cuda/cuda_ops.h"
#include "core/decoders/tree_walk.h"
#include "core/registry.h"
#include "core/stage.h"

namespace retreever {
namespace {

// Mask entries [B,n] picked per query: idx [B,M,c] -> [B,M,c].
torch::Tensor gather_mask(const torch::Tensor& mask, const torch::Tensor& idx) {
  const auto B = idx.size(0);
  return mask.gather(1, idx.reshape({B, -1})).view(idx.sizes());
}

}  // namespace

// Inverting the CDF is far cheaper than multinomial over many tiny rows.
torch::Tensor draw_children(const torch::Tensor& pi, const torch::Tensor& real, const torch::Tensor& u) {
  auto below = (pi.cumsum(-1) <= u).sum(-1, true);  // children whose CDF is still below u
  const auto b = pi.size(-1);
  auto position = torch::arange(b, below.options()).view({1, 1, b});
  auto last_real = torch::where(real, position, torch::zeros_like(position)).amax(-1, true);
  last_real = torch::where(real.any(-1, true), last_real, torch::full_like(last_real, b - 1));
  return torch::minimum(below, last_real);
}

namespace {

// mu = (1 - explore) pi + explore * uniform over the real children: the distribution an exploring
// walk draws from (explore = 0: pi itself).
torch::Tensor exploring_policy(const torch::Tensor& pi, const torch::Tensor& real, double explore) {
  if (explore <= 0) return pi;
  auto r = real.to(pi.dtype());
  return (1 - explore) * pi + explore * r / r.sum(-1, true).clamp_min(1);
}

// log mu of the sampled children (explore = 0: log pi itself, exact where pi underflows).
torch::Tensor sampling_log_prob(const torch::Tensor& log_pi, const torch::Tensor& real, double explore) {
  if (explore <= 0) return log_pi;
  auto mu = exploring_policy(log_pi.exp(), real, explore);
  // Padding children (mu = 0, never drawn) get log 1 = 0 instead of -inf, whose gradient is NaN.
  return torch::log(torch::where(real, mu, torch::ones_like(mu)));
}

// The walk's uniform draws [k, B*M], level by level: this batch's own, or its rows' slice of the draws
// for the whole batch of a data-parallel step (the same numbers one process draws).
torch::Tensor uniform_draws(const DecodeRequest& request, std::int64_t k, std::int64_t B, std::int64_t M,
                            const torch::TensorOptions& options) {
  const auto columns = (request.draw_batch > 0 ? request.draw_batch : B) * M;
  auto& buffer = request.draw_buffer;
  torch::Tensor all;
  if (buffer && buffer->defined()) {
    if (buffer->dim() != 2 || buffer->size(0) != k || buffer->size(1) != columns)
      throw std::logic_error("DecodeRequest::draw_buffer holds draws of another shape than this walk's");
    all = *buffer;
  } else if (request.draw_seed) {
    all = policy_draws(*request.draw_seed, k, columns).to(options.device(), options.dtype().toScalarType());
  } else {
    all = torch::rand({k, columns}, options);
  }
  if (buffer && !buffer->defined()) *buffer = all;
  return request.draw_batch > 0 ? all.narrow(1, request.draw_row * M, B * M).contiguous() : all;
}

}  // namespace

torch::Tensor policy_draws(std::uint64_t seed, std::int64_t levels, std::int64_t columns) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return torch::rand({levels, columns}, gen, torch::kFloat32);
}

TreeCrossAttentionImpl::TreeCrossAttentionImpl(std::int64_t d_model, std::int64_t heads,
                                               std::int64_t ff_dim, std::int64_t branch_factor,
                                               std::int64_t aggregator_layers, bool bptt,
                                               std::string ordering, bool balanced_leaves,
                                               BlockStyle style, bool head_entropy)
    : branch_factor_(branch_factor), bptt_(bptt), ordering_(std::move(ordering)), balanced_leaves_(balanced_leaves),
      head_entropy_(head_entropy) {
  aggregator_ = register_module("aggregator", Aggregator(aggregator_layers, d_model, heads, ff_dim,
                                                        style.normed_residual));
  block_ = register_module("block", CrossAttentionBlock(d_model, heads, ff_dim, style));
  // The walk, the read of S and the all-leaves read take no dropout on their attention weights (the
  // reference's query_model since its commit 3c4a9c0, "set attention policy dropout to 0"); the
  // block's feed-forward and the aggregator keep Config::dropout.
  block_->attention->spared_from_dropout = true;
}

std::shared_ptr<Memory> TreeCrossAttentionImpl::prepare(const torch::Tensor& context,
                                                        const torch::Tensor& x_context) {
  auto memory = std::make_shared<TreeMemory>();
  {
    RETREEVER_STAGE("prepare/tree");
    memory->tree = build_tree(context, context_order(x_context, ordering_, branch_factor_), branch_factor_,
                              aggregator_, bptt_, balanced_leaves_);
  }
  // Project every node of every level at once; each query then only gathers the keys on its walk.
  std::int64_t offset = 0;
  for (const auto& level : memory->tree.nodes) {
    memory->offsets.push_back(offset);
    offset += level.size(1);
  }
  std::tie(memory->all_keys, memory->all_values) = block_->keys_values(torch::cat(memory->tree.nodes, 1));
  memory->all_masks = torch::cat(memory->tree.masks, 1);
  // The kernels' float32 tables once per context, not once per decode (a decoder's queries come in
  // many batches over one prepared context: at 1M tokens the conversions were nine tenths of a decode).
  if (memory->all_keys.scalar_type() == torch::kBFloat16 && cuda_walk_serves(memory->all_keys, memory->tree.shape)) {
    memory->kernel_keys = memory->all_keys.to(torch::kFloat);
    memory->kernel_values = memory->all_values.to(torch::kFloat);
  }
  return memory;
}

bool TreeCrossAttentionImpl::cuda_walk_serves(const torch::Tensor& x, const TreeShape& shape) const {
  return walk_kernel_ && shape.b <= 16 && shape.k <= 62 && use_cuda_kernels(x, x.size(-1));
}

DecodeOutput TreeCrossAttentionImpl::decode(const Memory& base, const torch::Tensor& queries,
                                            const DecodeRequest& request) {
  const auto& memory = static_cast<const TreeMemory&>(base);
  const auto& tree = memory.tree;
  const auto& shape = tree.shape;
  const auto B = queries.size(0), M = queries.size(1);
  const auto b = shape.b, k = shape.k, p = shape.p;
  auto& attention = block_->attention;
  const auto projected = block_->queries(queries);
  const auto& q = projected.q;  // [B,M,H,dh]
  if (cuda_walk_serves(q, shape)) return decode_cuda(memory, projected, request);
  auto long_opts = torch::TensorOptions().dtype(torch::kLong).device(queries.device());
  auto siblings = torch::arange(b, long_opts).view({1, 1, b});
  const bool grad = torch::GradMode::is_enabled();

  // The walk, level by level, chooses one child per query. It runs without autograd: the
  // log-probabilities of the choices are computed afterwards for every level at once.
  DecodeOutput out;
  torch::Tensor walk_rows, actions, walk_scores, probs, path, current;  // walk_rows: node table rows
  {
    RETREEVER_STAGE("decode/walk");
    if (queries.device().is_cpu() && walk_kernel_) {  // one kernel for the whole walk (tree_walk.h)
      torch::NoGradGuard no_grad;
      WalkInput in;
      in.queries = q.reshape({B * M, q.size(2), q.size(3)});
      in.keys = memory.all_keys;
      in.masks = memory.all_masks;
      in.offsets = memory.offsets;
      in.b = b;
      in.k = k;
      // The draws of every level at once: the same numbers as one torch::rand per level.
      if (request.retrieval == Retrieval::Sample && k > 0) in.uniform = uniform_draws(request, k, B, M, queries.options());
      in.explore = request.explore;
      auto walk = walk_cpu(in);
      walk_rows = walk.rows.view({B, M, k * b});
      actions = walk.actions.view({B, M, k, 1});
      walk_scores = walk.scores.view({B, M, k * b, q.size(2)});
      probs = walk.pi.view({B, M, k, b});
      path = walk.path.view({B, M, k});
      current = k > 0 ? path.select(2, k - 1) : torch::zeros({B, M}, long_opts);
    } else {
      std::vector<torch::Tensor> ids, chosen, level_scores, level_probs, level_path;
      torch::Tensor draws;  // [k, B*M] uniform draws, made at the first sampled level
      current = torch::zeros({B, M}, long_opts);  // the node being expanded (root = 0)
      torch::NoGradGuard no_grad;
      for (std::int64_t level = 1; level <= k; ++level) {
        auto children = current.unsqueeze(-1) * b + siblings;                     // [B,M,b], in the level
        auto rows = children + memory.offsets[level - 1];
        auto scores = attention->scores_each(q, memory.all_keys, rows);
        auto child_mask = gather_mask(memory.all_masks, rows);                    // [B,M,b]
        // The policy: the head-averaged attention of the query over the children.
        auto pi = attention->head_averaged_log_weights(scores, child_mask).exp();  // [B,M,b]
        torch::Tensor action;  // [B,M,1]
        if (request.retrieval == Retrieval::Sample) {
          auto draw = exploring_policy(pi, child_mask, request.explore);  // revisits saturated wrong choices
          // The draws of every level at once, as the CPU kernel takes them: the same numbers.
          if (!draws.defined()) draws = uniform_draws(request, k, B, M, queries.options());
          action = draw_children(draw, child_mask, draws[level - 1].view({B, M, 1}));
        } else {
          action = pi.argmax(-1, true);
        }
        ids.push_back(rows);
        chosen.push_back(action);
        current = children.gather(-1, action).squeeze(-1);
        // Kept only where read below: the scores without autograd, probabilities and path for a trace.
        if (!grad) level_scores.push_back(scores);
        if (request.trace) {
          level_probs.push_back(pi);
          level_path.push_back(current);
        }
      }
      const auto H = q.size(2);
      walk_rows = k > 0 ? torch::cat(ids, 2) : torch::zeros({B, M, 0}, long_opts);
      actions = k > 0 ? torch::stack(chosen, 2) : torch::zeros({B, M, 0, 1}, long_opts);
      if (!grad) walk_scores = k > 0 ? torch::cat(level_scores, 2) : torch::zeros({B, M, 0, H}, q.options());
      if (request.trace) {
        probs = k > 0 ? torch::stack(level_probs, 2) : torch::zeros({B, M, 0, b}, q.options());
        path = k > 0 ? torch::stack(level_path, -1) : torch::zeros({B, M, 0}, long_opts);
      }
    }
  }
  // S: each level's children but the chosen one (its descendants stand for it), then the P leaves
  // of the leaf group reached. One gather of keys, values and masks for all of S.
  auto leaf_rows = current.unsqueeze(-1) * p + torch::arange(p, long_opts).view({1, 1, p}) + memory.offsets[k];
  auto rows = torch::cat({walk_rows, leaf_rows}, 2);                           // [B,M,k*b+P]
  torch::Tensor scores;                                                        // [B,M,k*b+P,H]
  {
    RETREEVER_STAGE("decode/read S");  // its scores here, its mix below
    if (grad) {
      scores = attention->scores_each(q, memory.all_keys, rows);
    } else {  // the walk's scores serve; only the leaves' are new
      scores = torch::cat({walk_scores, attention->scores_each(q, memory.all_keys, leaf_rows)}, 2);
    }
  }
  auto real = gather_mask(memory.all_masks, rows), mask = real;  // mask: real (or a padding sibling) and not chosen
  if (k > 0) {
    auto chosen = torch::zeros_like(real);
    chosen.narrow(2, 0, k * b).view({B, M, k, b}).scatter_(3, actions, true);
    if (zero_padding_siblings_) mask = torch::cat({torch::ones_like(real.narrow(2, 0, k * b)), real.narrow(2, k * b, p)}, 2);
    mask = mask.logical_and(chosen.logical_not());
    policy_terms(scores.narrow(2, 0, k * b), real.narrow(2, 0, k * b), actions, request, out);
  } else {
    out.log_prob = torch::zeros({B, M}, queries.options());
    out.entropy = torch::zeros({}, queries.options());
  }
  torch::Tensor attended;
  {
    RETREEVER_STAGE("decode/read S");
    attended = attention->attend_scores(scores, memory.all_values, rows, mask, false).out;
  }
  finish_decode(memory, projected, attended, request, out);
  if (request.trace) {
    out.trace.path = path;
    out.trace.probabilities = probs;
    out.trace.leaf_group = current;
  }
  return out;
}

// The policy of every level at once, with gradients (the walk's numbers): the log-probability of the
// children taken, summed over the levels, and the entropy bonus's term.
void TreeCrossAttentionImpl::policy_terms(const torch::Tensor& scores, const torch::Tensor& real,
                                          const torch::Tensor& actions, const DecodeRequest& request,
                                          DecodeOutput& out) {
  RETREEVER_STAGE("decode/policy");
  const auto B = scores.size(0), M = actions.size(1), k = actions.size(2), b = scores.size(2) / k;
  auto& attention = block_->attention;
  auto child_scores = scores.reshape({B, M * k, b, scores.size(3)});
  auto child_mask = real.reshape({B, M * k, b});
  auto log_h = attention->head_log_weights(child_scores, child_mask);  // each head's, [B,M*k,b,H]
  auto log_pi = attention->head_averaged(log_h).view({B, M, k, b});
  // REINFORCE's score function is the log-probability of the distribution the draw came from:
  // with exploration that is mu, not pi (log pi would bias the gradient).
  auto log_draw = request.retrieval == Retrieval::Sample
                      ? sampling_log_prob(log_pi, child_mask.view({B, M, k, b}), request.explore)
                      : log_pi;
  out.log_prob = log_draw.gather(3, actions).squeeze(3).sum(2);  // [B,M]
  if (head_entropy_) {  // each head's own distribution over the children, averaged over heads
    out.entropy = -(log_h.exp() * log_h).sum(2).mean();
  } else {
    out.entropy = -(log_pi.exp() * log_pi).sum(3).mean();
  }
}

void TreeCrossAttentionImpl::finish_decode(const TreeMemory& memory, const BlockQueries& queries,
                                           const torch::Tensor& attended, const DecodeRequest& request,
                                           DecodeOutput& out) {
  if (request.all_leaves) {
    // The all-leaves read (L_CA) finishes in the same feed-forward call as the read of S: one
    // pass over 2B rows costs less than two over B on small models.
    const auto leaves = memory.offsets[memory.tree.shape.k], n = memory.tree.leaves().size(1);
    torch::Tensor all;
    {
      RETREEVER_STAGE("decode/all leaves");
      // Without padding leaves no mask: a masked fill of the [B,H,M,N] scores costs as much as the softmax.
      all = block_->attention->attend_shared(queries.q, memory.all_keys.narrow(1, leaves, n),
                                             memory.all_values.narrow(1, leaves, n),
                                             memory.tree.shape.has_padding() ? memory.tree.leaf_mask() : torch::Tensor(),
                                             false).out;
    }
    auto both = block_->finish(block_->twice(queries), torch::cat({attended, all})).chunk(2);
    out.encoding = both[0];
    out.all_leaves = both[1];
  } else {
    out.encoding = block_->finish(queries, attended);
  }
}

// The walk is one kernel launch for every query and level (the same draws as the other paths),
// and so is the read of S (scores, masked softmax and mix, with a backward kernel), which reads
// keys and values straight from the node table by the walk's rows. With autograd the policy's
// log-probabilities come from tensor operations on the children's scores, as on the other paths;
// without it the walk kernel's sums serve.
DecodeOutput TreeCrossAttentionImpl::decode_cuda(const TreeMemory& memory, const BlockQueries& projected,
                                                 const DecodeRequest& request) {
  const auto& queries = projected.input;
  const auto& q = projected.q;
  const auto& shape = memory.tree.shape;
  const auto B = queries.size(0), M = queries.size(1), H = q.size(2), dh = q.size(3);
  const auto b = shape.b, k = shape.k, p = shape.p;
  auto& attention = block_->attention;
  const bool sample = request.retrieval == Retrieval::Sample;
  // The kernels compute in float32: bfloat16 queries and node tables (autocast, or a decoder
  // converted) are converted once here, differentiably, and the read comes back in q's dtype.
  const auto f32 = [](const torch::Tensor& t) { return t.to(torch::kFloat); };  // float32: itself
  auto qf = f32(q).reshape({B * M, H, dh});
  const auto keys = memory.kernel_keys.defined() ? memory.kernel_keys : f32(memory.all_keys);
  const auto values = memory.kernel_values.defined() ? memory.kernel_values : f32(memory.all_values);
  CudaWalk walk;
  {
    RETREEVER_STAGE("decode/walk");
    torch::NoGradGuard no_grad;
    torch::Tensor draws;  // [k, B*M]: the same numbers as the other paths draw
    if (sample && k > 0) draws = uniform_draws(request, k, B, M, queries.options().dtype(torch::kFloat));
    walk = walk_cuda(qf.detach(), keys.detach(), memory.all_masks, memory.offsets, b, k, p, draws,
                     sample ? request.explore : 0.0, zero_padding_siblings_);
  }
  // The read of S. With autograd it also returns the raw scores of S, whose first k*b are the
  // children's scores the policy's log-probabilities need: no second gather of their keys.
  const bool grad = torch::GradMode::is_enabled();
  auto read = [&] {
    RETREEVER_STAGE("decode/read S");
    return group_attention_scores_cuda(qf.unsqueeze(1), keys, values, walk.rows, walk.keep, grad && k > 0);
  }();
  read.out = read.out.to(q.scalar_type());
  DecodeOutput out;
  if (k == 0) {
    out.log_prob = torch::zeros({B, M}, queries.options());
    out.entropy = torch::zeros({}, queries.options());
  } else if (grad) {
    policy_terms(read.scores.view({B, M, k * b + p, H}).narrow(2, 0, k * b),
                 walk.real.narrow(1, 0, k * b).view({B, M, k * b}), walk.actions.view({B, M, k, 1}), request, out);
  } else {
    out.log_prob = walk.log_prob.view({B, M});
    out.entropy = (head_entropy_ ? walk.head_entropy : walk.entropy).sum();  // already divided: one launch
  }
  finish_decode(memory, projected, attention->project_out(read.out.view({B, M, H, dh})), request, out);
  if (request.trace) {
    out.trace.path = walk.path.view({B, M, k});
    out.trace.probabilities = walk.pi.view({B, M, k, b});
    out.trace.leaf_group = k > 0 ? out.trace.path.select(2, k - 1)
                                 : torch::zeros({B, M}, queries.options().dtype(torch::kLong));
  }
  return out;
}

DecoderInfo tca_decoder() {
  DecoderInfo d;
  d.name = "tca";
  d.title = "ReTreever (TCA)";
  d.summary = "Tree Cross Attention: a learned policy walks down a tree over the context, O(log N) reads";
  d.fields = {"branch_factor", "aggregator_layers", "bptt",      "ordering",      "leaf_layout", "lambda_rl",
              "lambda_ca",     "entropy_bonus",     "ca_warmup", "explore",       "reward",      "rl_baseline",
              "padding_siblings"};
  d.policy = true;
  d.reference_block = true;
  d.make = [](const Config& c) -> std::shared_ptr<DecoderImpl> {
    auto tca = std::make_shared<TreeCrossAttentionImpl>(c.d_model, c.heads, c.ff_dim, c.branch_factor,
                                                        c.aggregator_layers, c.bptt, c.ordering,
                                                        c.leaf_layout == "balanced", block_style(c, true),
                                                        c.block == "reference");
    tca->zero_padding_siblings(c.padding_siblings == "zero");
    return tca;
  };
  return d;
}

}  // namespace retreever
