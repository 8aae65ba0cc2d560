#include "tree_cross_attention.h"

namespace retreever {
namespace {

// Rows of per-context nodes [B,n,H,dh] picked per query: idx [B,M,c] -> [B,M,c,H,dh].
// An embedding lookup: on the CPU its backward is about twice as fast as index_select's.
torch::Tensor gather_nodes(const torch::Tensor& nodes, const torch::Tensor& idx) {
  const auto B = nodes.size(0), n = nodes.size(1);
  auto base = (torch::arange(B, idx.options()) * n).view({B, 1, 1});
  auto flat = nodes.reshape({B * n, nodes.size(2) * nodes.size(3)});
  auto picked = torch::embedding(flat, (idx + base).reshape(-1));
  return picked.view({idx.size(0), idx.size(1), idx.size(2), nodes.size(2), nodes.size(3)});
}

// Mask entries [B,n] picked per query: idx [B,M,c] -> [B,M,c].
torch::Tensor gather_mask(const torch::Tensor& mask, const torch::Tensor& idx) {
  const auto B = idx.size(0);
  return mask.gather(1, idx.reshape({B, -1})).view(idx.sizes());
}

// One draw per query from pi [B,M,b] by inverting the CDF (far cheaper than multinomial
// over many tiny rows); uses the global generator, so torch::manual_seed fixes it.
torch::Tensor sample_children(const torch::Tensor& pi) {
  auto u = torch::rand({pi.size(0), pi.size(1), 1}, pi.options());
  auto below = (pi.cumsum(-1) <= u).sum(-1, true);  // children whose CDF is still below u
  return below.clamp_max(pi.size(-1) - 1);
}

}  // namespace

TreeCrossAttentionImpl::TreeCrossAttentionImpl(std::int64_t d_model, std::int64_t heads,
                                               std::int64_t ff_dim, std::int64_t branch_factor,
                                               std::int64_t aggregator_layers, bool bptt,
                                               std::string ordering, bool balanced_leaves)
    : branch_factor_(branch_factor), bptt_(bptt), ordering_(std::move(ordering)), balanced_leaves_(balanced_leaves) {
  aggregator_ = register_module("aggregator", Aggregator(aggregator_layers, d_model, heads, ff_dim));
  block_ = register_module("block", CrossAttentionBlock(d_model, heads, ff_dim));
}

std::shared_ptr<Memory> TreeCrossAttentionImpl::prepare(const torch::Tensor& context,
                                                        const torch::Tensor& x_context) {
  auto memory = std::make_shared<TreeMemory>();
  memory->tree = build_tree(context, context_order(x_context, ordering_, branch_factor_), branch_factor_,
                            aggregator_, bptt_, balanced_leaves_);
  // Project every node of every level at once; each query then only gathers the keys on its walk.
  std::vector<std::int64_t> sizes;
  for (const auto& level : memory->tree.nodes) sizes.push_back(level.size(1));
  auto [k, v] = block_->keys_values(torch::cat(memory->tree.nodes, 1));
  memory->keys = k.split_with_sizes(sizes, 1);
  memory->values = v.split_with_sizes(sizes, 1);
  return memory;
}

DecodeOutput TreeCrossAttentionImpl::decode(const Memory& base, const torch::Tensor& queries,
                                            const DecodeRequest& request) {
  const auto& memory = static_cast<const TreeMemory&>(base);
  const auto& tree = memory.tree;
  const auto& shape = tree.shape;
  const auto B = queries.size(0), M = queries.size(1);
  const auto b = shape.b;
  auto& attention = block_->attention;
  auto q = block_->queries(queries);  // [B,M,H,dh]
  auto long_opts = torch::TensorOptions().dtype(torch::kLong).device(queries.device());
  auto siblings = torch::arange(b, long_opts).view({1, 1, b});

  DecodeOutput out;
  // S as it grows: the attention scores of its nodes (reused from the policy: the same
  // attention scores the children), their values and their mask.
  std::vector<torch::Tensor> sel_scores, sel_v, sel_mask, log_probs, entropies, probs, path;
  auto current = torch::zeros({B, M}, long_opts);  // the node being expanded (root = 0)
  for (std::int64_t level = 1; level <= shape.k; ++level) {
    auto children = current.unsqueeze(-1) * b + siblings;                     // [B,M,b]
    auto scores = attention->scores_each(q, gather_nodes(memory.keys[level - 1], children));
    auto child_mask = gather_mask(tree.masks[level - 1], children);           // [B,M,b]
    // The policy: the head-averaged attention of the query over the children.
    auto log_pi = attention->head_averaged_log_weights(scores, child_mask);   // [B,M,b]
    auto pi = log_pi.exp();
    torch::Tensor action;  // [B,M,1]
    if (request.retrieval == Retrieval::Sample) {
      auto draw = pi.detach();
      if (request.explore > 0) {  // a saturated wrong choice is otherwise never revisited
        auto real = child_mask.to(draw.dtype());
        draw = (1 - request.explore) * draw + request.explore * real / real.sum(-1, true).clamp_min(1);
      }
      action = sample_children(draw);
    } else {
      action = pi.argmax(-1, true);
    }
    log_probs.push_back(log_pi.gather(-1, action).squeeze(-1));
    entropies.push_back(-(pi * log_pi).sum(-1));
    // S gains the rejected siblings; the walk continues into the chosen child.
    sel_scores.push_back(scores);
    sel_v.push_back(gather_nodes(memory.values[level - 1], children));
    sel_mask.push_back(child_mask.logical_and(siblings != action));
    current = children.gather(-1, action).squeeze(-1);
    if (request.trace) {
      probs.push_back(pi.detach());
      path.push_back(current);
    }
  }
  // S gains the P leaves of the leaf group reached.
  const auto p = shape.p;
  auto leaves = current.unsqueeze(-1) * p + torch::arange(p, long_opts).view({1, 1, p});
  sel_scores.push_back(attention->scores_each(q, gather_nodes(memory.keys.back(), leaves)));
  sel_v.push_back(gather_nodes(memory.values.back(), leaves));
  sel_mask.push_back(gather_mask(tree.leaf_mask(), leaves));

  auto attended = attention->attend_scores(torch::cat(sel_scores, 2), torch::cat(sel_v, 2),
                                           torch::cat(sel_mask, 2), false);
  if (request.all_leaves) {
    // The all-leaves read (L_CA) finishes in the same feed-forward call as the read of S: one
    // pass over 2B rows costs less than two over B on small models.
    auto all = attention->attend_shared(q, memory.keys.back(), memory.values.back(), tree.leaf_mask(), false);
    auto both = block_->finish(torch::cat({queries, queries}), torch::cat({attended.out, all.out})).chunk(2);
    out.encoding = both[0];
    out.all_leaves = both[1];
  } else {
    out.encoding = block_->finish(queries, attended.out);
  }

  if (shape.k > 0) {
    out.log_prob = torch::stack(log_probs, -1).sum(-1);
    out.entropy = torch::stack(entropies, -1).mean();
  } else {
    out.log_prob = torch::zeros({B, M}, queries.options());
    out.entropy = torch::zeros({}, queries.options());
  }
  if (request.trace) {
    auto float_opts = queries.options();
    out.trace.path = shape.k > 0 ? torch::stack(path, -1) : torch::zeros({B, M, 0}, long_opts);
    out.trace.probabilities = shape.k > 0 ? torch::stack(probs, 2) : torch::zeros({B, M, 0, b}, float_opts);
    out.trace.leaf_group = current;
  }
  return out;
}

}  // namespace retreever
