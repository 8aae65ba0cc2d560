// The one small model the suites train: a task's preset shrunk to seconds of CPU (width 16, two
// heads, one evaluation batch). A suite starts from it and sets what its test is about.
#pragma once

#include <string>

#include "core/config.h"
#include "core/registry.h"

namespace retreever::testing {

inline Config small_config(const std::string& task = "copy", const std::string& model = "tca") {
  Config c = Config::preset(task);
  c.model = model;
  c.seq_len = 16;
  c.d_model = 16;
  c.heads = 2;
  c.ff_dim = 32;
  c.embed_depth = 2;
  c.encoder_layers = task_info(task).view == "sequence" ? 0 : 1;  // the copy task's preset has none
  c.batch = 8;
  c.eval_batches = 1;
  c.device = "cpu";
  return c;
}

}  // namespace retreever::testing
