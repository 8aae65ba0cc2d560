// The table of Config's fields (name and member), private to core/: the JSON mapping and the
// validation walk it, so a new field is one line here plus its member in config.h.
#pragma once

#include "core/config.h"

namespace retreever::detail {

// One table drives both directions of the JSON mapping, so a new field is one line.
template <typename Fn>
inline void for_each_field(Config& c, Fn&& fn) {
  fn("task", c.task);
  fn("model", c.model);
  fn("seq_len", c.seq_len);
  fn("data_dir", c.data_dir);
  fn("kernel", c.kernel);
  fn("eval_kernel", c.eval_kernel);
  fn("eval_split", c.eval_split);
  fn("eval_context", c.eval_context);
  fn("d_model", c.d_model);
  fn("heads", c.heads);
  fn("ff_dim", c.ff_dim);
  fn("embed_depth", c.embed_depth);
  fn("encoder_layers", c.encoder_layers);
  fn("branch_factor", c.branch_factor);
  fn("aggregator_layers", c.aggregator_layers);
  fn("bptt", c.bptt);
  fn("ordering", c.ordering);
  fn("leaf_layout", c.leaf_layout);
  fn("query_positions", c.query_positions);
  fn("padding_siblings", c.padding_siblings);
  fn("latents", c.latents);
  fn("treeformer_depth", c.treeformer_depth);
  fn("bound_std", c.bound_std);
  fn("block", c.block);
  fn("lambda_rl", c.lambda_rl);
  fn("dropout", c.dropout);
  fn("lambda_ca", c.lambda_ca);
  fn("entropy_bonus", c.entropy_bonus);
  fn("ca_warmup", c.ca_warmup);
  fn("explore", c.explore);
  fn("reward", c.reward);
  fn("rl_baseline", c.rl_baseline);
  fn("batch", c.batch);
  fn("steps", c.steps);
  fn("schedule_steps", c.schedule_steps);
  fn("lr", c.lr);
  fn("adam_beta1", c.adam_beta1);
  fn("grad_clip", c.grad_clip);
  fn("seed", c.seed);
  fn("device", c.device);
  fn("precision", c.precision);
  fn("log_every", c.log_every);
  fn("eval_every", c.eval_every);
  fn("eval_batches", c.eval_batches);
  fn("eval_batch", c.eval_batch);
}

}  // namespace retreever::detail
