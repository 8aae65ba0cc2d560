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
  // Digit i (1..L-2) copies free digit min(i, L-1-i): one gather builds every palindrome.
  std::vector<std::int64_t> source(L - 2);
  for (std::int64_t i = 1; i <= L - 2; ++i) source[i - 1] = std::min(i, L - 1 - i) - 1;
  auto digits = free.index_select(1, torch::tensor(source, torch::kLong));
  auto seq = torch::cat({torch::full({batch, 1}, kBos, torch::kLong), digits,
                         torch::full({batch, 1}, kEos, torch::kLong)}, 1);
  Batch b;
  b.xc = torch::one_hot(seq.slice(1, 0, C), kVocabulary).to(torch::kFloat32);
  b.xt = torch::zeros({batch, M, kVocabulary});  // targets differ only by position
  b.yt = seq.slice(1, C, L).contiguous();
  b.shared_targets = true;
  return b;
}

}  // namespace retreever::datasets
