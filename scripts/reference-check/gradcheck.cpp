// Our loss terms and gradients for one batch given as raw files (written by gradcheck.py),
// with a checkpoint's weights, dropout 0, greedy walk in training mode (the reference patched alike).
#include <torch/torch.h>
#include <fstream>
#include <iostream>
#include <map>
#include "core/model/losses.h"
#include "core/model/retreever.h"
#include "core/training/checkpoint.h"
#include "core/training/safetensors.h"
#include "core/nn/blocks.h"
#include "datasets/tasks.h"
using namespace retreever;

static torch::Tensor raw(const std::string& path, std::vector<int64_t> shape, torch::ScalarType t) {
  std::ifstream in(path, std::ios::binary);
  auto x = torch::empty(shape, torch::TensorOptions().dtype(t));
  in.read(static_cast<char*>(x.data_ptr()), x.numel() * x.element_size());
  if (!in) throw std::runtime_error("short read " + path);
  return x;
}

int main(int argc, char** argv) {
  const std::string ckpt = argv[1], dir = argv[2];
  const int64_t B = std::stoll(argv[3]), N = std::stoll(argv[4]), M = std::stoll(argv[5]), dx = std::stoll(argv[6]);
  auto header = read_checkpoint_header(ckpt);
  Config c = header.config;
  c.dropout = 0;
  if (const char* p = std::getenv("PADDING_SIBLINGS")) c.padding_siblings = p;
  auto task = datasets::make_task(c);
  ReTreever model(c, task->spec());
  load_checkpoint_state(ckpt, *model, nullptr, torch::kCPU);
  model->set_dropout(0);
  if (std::getenv("EVALMODE")) model->eval(); else model->train();
  Batch b;
  b.xc = raw(dir + "/xc.bin", {B, N, dx}, torch::kFloat32);
  b.xt = raw(dir + "/xt.bin", {B, M, dx}, torch::kFloat32);
  if (task->spec().classification()) {
    b.yt = raw(dir + "/yt.bin", {B, M}, torch::kLong);
  } else {
    b.yc = raw(dir + "/yc.bin", {B, N, 1}, torch::kFloat32);
    b.yt = raw(dir + "/yt.bin", {B, M, 1}, torch::kFloat32);
  }
  DecodeRequest req;
  req.retrieval = Retrieval::Greedy;
  req.all_leaves = c.model == "tca";
  if (const char* reps = std::getenv("DROPOUT_REPS")) {  // mean loss over dropout masks (the checkpoint's p)
    model->set_dropout(header.config.dropout);  // with autograd on: REINFORCE's term needs it
    // DROPOUT_PARTS=attn|ff|pe: dropout on that part alone (the others at 0), to compare part by part.
    if (const char* part = std::getenv("DROPOUT_PARTS")) {
      const std::string only = part;
      const double p = header.config.dropout;
      model->set_dropout(only == "pe" ? p : 0);  // the positional encoding's, and every module's
      for (auto& m : model->modules(/*include_self=*/false)) {
        if (auto* a = dynamic_cast<MultiHeadAttentionImpl*>(m.get())) a->dropout = only == "attn" && !a->spared_from_dropout ? p : 0;
        if (auto* f = dynamic_cast<FeedForwardImpl*>(m.get())) f->dropout = only == "ff" ? p : 0;
      }
    }
    std::vector<double> totals, tcas, cas, rls;
    // GRADS=1: also every parameter's gradient, its mean over the masks and the mean's standard error.
    const bool grads = std::getenv("GRADS") != nullptr;
    std::map<std::string, std::pair<torch::Tensor, torch::Tensor>> sums;  // name -> (sum, sum of squares)
    const int n = std::atoi(reps);
    for (int i = 0; i < n; ++i) {
      model->zero_grad();
      auto t = compute_losses(model->forward(b, req), b, task->spec(), c);
      if (grads) {
        t.total.backward();
        for (auto& p : model->named_parameters()) {
          if (!p.value().grad().defined()) continue;
          auto g = p.value().grad().to(torch::kDouble);
          auto& s = sums[p.key()];
          if (!s.first.defined()) s = {torch::zeros_like(g), torch::zeros_like(g)};
          s.first += g;
          s.second += g * g;
        }
      }
      totals.push_back(t.total.item<double>());
      tcas.push_back(t.tca.item<double>());
      if (t.ca.defined()) cas.push_back(t.ca.item<double>()), rls.push_back(t.rl.item<double>());
    }
    auto stats = [](const std::vector<double>& v) {
      double m = 0, s = 0;
      for (double x : v) m += x;
      m /= v.size();
      for (double x : v) s += (x - m) * (x - m);
      return std::make_pair(m, std::sqrt(s / (v.size() - 1) / v.size()));
    };
    auto [mt, st] = stats(totals);
    auto [mc, sc] = stats(tcas);
    if (!cas.empty()) std::cout << "mean ca " << stats(cas).first << " mean rl " << stats(rls).first << "\n";
    std::cout << "dropout " << header.config.dropout << ": mean total " << mt << " +- " << st << ", mean tca " << mc << " +- " << sc << "\n";
    if (grads) {
      std::vector<std::pair<std::string, torch::Tensor>> out;
      for (auto& [name, s] : sums) {
        auto mean = s.first / n, var = (s.second / n - mean * mean).clamp_min(0) * (double(n) / (n - 1));
        out.emplace_back(name, mean.to(torch::kFloat).contiguous());
        out.emplace_back(name + ".se", (var / n).sqrt().to(torch::kFloat).contiguous());
      }
      safetensors::write_file(dir + "/grads_mean.safetensors", out, {});
    }
    return 0;
  }
  auto out = model->forward(b, req);
  auto t = compute_losses(out, b, task->spec(), c);
  t.total.backward();
  auto show = [](const char* n, const torch::Tensor& x) { if (x.defined()) std::cout << n << " " << x.item<double>() << "\n"; };
  show("metric", t.metric); show("total", t.total); show("tca", t.tca); show("ca", t.ca); show("rl", t.rl); show("entropy", t.entropy);
  std::vector<std::pair<std::string, torch::Tensor>> grads;
  for (auto& p : model->named_parameters())
    if (p.value().grad().defined()) grads.emplace_back(p.key(), p.value().grad().contiguous());
  safetensors::write_file(dir + "/grads.safetensors", grads, {});
  return 0;
}
