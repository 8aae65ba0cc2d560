#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "datasets/tasks.h"

namespace retreever::datasets {

CopyTask::CopyTask(std::int64_t seq_len) : seq_len_(seq_len) {
  if (seq_len < 4)
    throw std::invalid_argument("copy task: the sequence length must be at least 4, got " +
                                std::to_string(seq_len));
}

TaskSpec CopyTask::spec() const {
  TaskSpec s;
  s.name = "copy";
  s.x_dim = kVocabulary;
  s.classes = kVocabulary;
  s.sequential = true;
  return s;
}

Batch CopyTask::sample(std::int64_t batch, std::uint64_t seed, bool) const {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const auto L = seq_len_, C = context_size(), M = L - C;
  const auto half = (L - 1) / 2;  // free digits: s_1 .. s_half; the rest mirror them
  auto free = torch::randint(2, 2 + kDigits, {batch, half}, gen, torch::kLong);
  // s_i = s_{L-1-i} for the digits, so index i > half reads free[L-1-i].
  auto seq = torch::empty({batch, L}, torch::kLong);
  seq.select(1, 0).fill_(kBos);
  seq.select(1, L - 1).fill_(kEos);
  for (std::int64_t i = 1; i <= L - 2; ++i) {
    const auto j = i <= half ? i : L - 1 - i;
    seq.select(1, i).copy_(free.select(1, j - 1));
  }
  Batch b;
  b.xc = torch::one_hot(seq.slice(1, 0, C), kVocabulary).to(torch::kFloat32);
  b.xt = torch::zeros({batch, M, kVocabulary});  // targets differ only by position
  b.yt = seq.slice(1, C, L).contiguous();
  return b;
}

}  // namespace retreever::datasets
