#include "inspection.h"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "core/decoders/tree_cross_attention.h"
#include "core/registry.h"
#include "core/model/losses.h"
#include "core/model/retreever.h"
#include "core/training/checkpoint.h"
#include "core/training/device.h"

namespace retreever {
namespace {

std::vector<float> to_vector(const torch::Tensor& t) {
  auto c = t.detach().to(torch::kCPU, torch::kFloat32).contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}
}  // namespace

namespace {
// The tree of a TCA memory and the walk of one query of its trace, into r.
void describe_walk(const Memory* decoder_memory, const RetrievalTrace& trace, std::int64_t query, InspectResult& r) {
  auto* memory = dynamic_cast<const TreeMemory*>(decoder_memory);
  if (!memory) return;
  r.has_tree = true;
  const auto& tree = memory->tree;
  const auto& s = tree.shape;
  r.shape = s;
  auto order = tree.order[0].to(torch::kCPU).contiguous();
  const auto* leaf_index = order.data_ptr<std::int64_t>();
  std::vector<std::vector<bool>> level_masks(s.levels());
  level_masks[0] = {true};
  for (std::int64_t l = 1; l < s.levels(); ++l) {
    auto mask = tree.masks[l - 1][0].to(torch::kCPU).contiguous();
    level_masks[l].assign(mask.data_ptr<bool>(), mask.data_ptr<bool>() + mask.numel());
  }
  // Leaves under node i of level l: a contiguous range of padded leaf slots.
  for (std::int64_t l = 0; l < s.levels(); ++l) {
    const auto per_node = s.padded() / s.level_size(l);
    for (std::int64_t i = 0; i < s.level_size(l); ++i) {
      TreeNodeInfo n;
      n.id = s.node_id(l, i);
      n.level = l;
      n.index = i;
      n.parent = l == 0 ? -1 : s.node_id(l - 1, i / s.fan_out(l - 1));
      n.padding = !level_masks[l][i];
      for (std::int64_t slot = i * per_node; slot < (i + 1) * per_node; ++slot)
        if (level_masks.back()[slot]) n.leaves.push_back(leaf_index[slot]);
      r.nodes.push_back(std::move(n));
    }
  }
  // The walk: root, then the node chosen on each level; S: rejected siblings, then the leaves.
  auto path = trace.path[0][query].to(torch::kCPU);
  auto probs = trace.probabilities[0][query].to(torch::kCPU, torch::kDouble);
  std::int64_t parent_index = 0;
  r.trace.path.push_back(s.node_id(0, 0));
  for (std::int64_t l = 1; l <= s.k; ++l) {
    const auto chosen = path[l - 1].item<std::int64_t>();
    for (std::int64_t c = 0; c < s.b; ++c) {
      const auto child = parent_index * s.b + c;
      if (child != chosen) r.trace.selected.push_back(s.node_id(l, child));
    }
    std::vector<double> p;
    for (std::int64_t c = 0; c < s.b; ++c) p.push_back(probs[l - 1][c].item<double>());
    r.trace.probabilities.push_back(p);
    r.trace.path.push_back(s.node_id(l, chosen));
    parent_index = chosen;
  }
  for (std::int64_t j = 0; j < s.p; ++j) r.trace.selected.push_back(s.node_id(s.k + 1, parent_index * s.p + j));
}
}  // namespace

struct Inspector::Impl {
  Config config;
  TaskSpec spec;
  torch::Device device = torch::kCPU;
  ReTreever model{nullptr};
  std::vector<Batch> eval_set;  // on the CPU; a row is moved to the device when inspected
  std::int64_t rows_per_batch = 1;

  void build(const Config& c, const std::string& parameters, const TaskFactory& tasks,
             std::int64_t eval_seed) {
    config = c;
    device = resolve_device(c.device);
    auto task = tasks(c);
    spec = task->spec();
    model = ReTreever(c, spec);
    model->to(device);
    if (!parameters.empty()) deserialize_parameters(parameters, *model, device);
    model->eval();
    rows_per_batch = c.eval_batch > 0 ? c.eval_batch : c.batch;
    eval_set = evaluation_set(*task, c, eval_seed >= 0 ? std::uint64_t(eval_seed) : std::uint64_t(c.seed));
  }

  Batch row(std::int64_t sample) const {
    const std::int64_t count = std::int64_t(eval_set.size()) * rows_per_batch;
    if (sample < 0 || sample >= count)
      throw std::out_of_range("sample " + std::to_string(sample) + " is out of range: the evaluation set has " +
                              std::to_string(count) + " samples (0.." + std::to_string(count - 1) + ")");
    const auto r = sample % rows_per_batch;
    return eval_set[sample / rows_per_batch].rows(r, r + 1).to(device);
  }
};

Inspector::Inspector(const Snapshot& snapshot, const TaskFactory& tasks, std::int64_t eval_seed)
    : impl_(std::make_unique<Impl>()) {
  impl_->build(snapshot.config, snapshot.parameters, tasks, eval_seed);
}

std::unique_ptr<Inspector> Inspector::from_checkpoint(const std::string& path, const TaskFactory& tasks,
                                                      std::int64_t eval_seed) {
  auto header = read_checkpoint_header(path);
  header.config.device = "cpu";  // inspection is one context at a time: the CPU answers at once
  Snapshot empty{header.config, "", header.step};
  auto inspector = std::make_unique<Inspector>(empty, tasks, eval_seed);
  load_checkpoint_state(path, *inspector->impl_->model, nullptr, inspector->impl_->device);
  return inspector;
}

Inspector::~Inspector() = default;

std::int64_t Inspector::samples() const {
  return std::int64_t(impl_->eval_set.size()) * impl_->rows_per_batch;
}
std::int64_t Inspector::queries(std::int64_t sample) const { return impl_->row(sample).xt.size(1); }
std::int64_t Inspector::context_size(std::int64_t sample) const { return impl_->row(sample).xc.size(1); }

std::int64_t Inspector::typical_sample() const {
  std::vector<std::int64_t> sizes;  // one per batch: its rows share a context size
  for (const auto& b : impl_->eval_set) sizes.push_back(b.xc.size(1));
  if (sizes.empty()) return 0;
  auto sorted = sizes;
  std::nth_element(sorted.begin(), sorted.begin() + sorted.size() / 2, sorted.end());
  const auto median = sorted[sorted.size() / 2];
  for (std::size_t i = 0; i < sizes.size(); ++i)
    if (sizes[i] == median) return std::int64_t(i) * impl_->rows_per_batch;
  return 0;
}
const Config& Inspector::config() const { return impl_->config; }

SampleView Inspector::view(std::int64_t sample) {
  torch::NoGradGuard no_grad;
  auto& m = *impl_;
  auto batch = m.row(sample);
  auto out = m.model->forward(batch, DecodeRequest{});
  SampleView v;
  v.task = m.config.task;
  v.context_size = batch.xc.size(1);
  v.target_count = batch.xt.size(1);
  v.x_dim = m.spec.x_dim;
  v.y_dim = m.spec.classification() ? 1 : m.spec.y_dim;
  v.classes = m.spec.classes;
  v.image_height = m.spec.image_height;
  v.image_width = m.spec.image_width;
  v.xt = to_vector(batch.xt[0]);
  v.metric = task_metric(out.prediction, batch.yt, m.spec, m.config.bound_std).mean().item<double>();
  if (m.spec.classification()) {
    v.xc = to_vector(batch.xc[0].argmax(-1));  // one-hot tokens -> class ids
    v.yc = v.xc;
    v.yt = to_vector(batch.yt[0]);
    v.mean = to_vector(out.prediction[0].argmax(-1));
  } else {
    v.xc = to_vector(batch.xc[0]);
    v.yc = to_vector(batch.yc[0]);
    v.yt = to_vector(batch.yt[0]);
    auto [mean, std] = gaussian(out.prediction[0], m.config.bound_std);
    v.mean = to_vector(mean);
    v.stddev = to_vector(std);
  }
  // The model asked at other inputs x [1, Q, x_dim] with this sample's context: mean and std per query.
  auto ask = [&](const torch::Tensor& x) {
    Batch at = batch;
    at.xt = x.to(batch.xc.device(), batch.xc.scalar_type());
    at.yt = torch::zeros({1, at.xt.size(1), m.spec.y_dim}, at.xt.options());
    at.shared_targets = false;
    return gaussian(m.model->forward(at, DecodeRequest{}).prediction[0], m.config.bound_std);
  };
  if (!m.spec.classification() && m.spec.x_dim == 1 && m.spec.y_dim == 1) {
    // The function along x: evenly spaced inputs over the points' span and a margin, and the targets.
    constexpr std::int64_t kCurvePoints = 200;
    const auto xs = torch::cat({batch.xc[0].flatten(), batch.xt[0].flatten()}).to(torch::kCPU, torch::kFloat32);
    const double lo = xs.min().item<double>(), hi = xs.max().item<double>(), margin = 0.05 * std::max(hi - lo, 1e-3);
    const auto even = torch::linspace(lo - margin, hi + margin, kCurvePoints);
    auto x = std::get<0>(torch::cat({even, batch.xt[0].flatten().to(torch::kCPU, torch::kFloat32)}).sort());
    auto [mean, std] = ask(x.reshape({1, -1, 1}));
    v.curve_x = to_vector(x);
    v.curve_mean = to_vector(mean);
    v.curve_stddev = to_vector(std);
  }
  if (v.image_height > 0 && v.image_width > 0) {  // the whole image: one query per pixel
    const auto pixels = torch::arange(v.image_height * v.image_width, torch::kLong);
    const auto x = pixel_coordinates(torch::div(pixels, v.image_width, "floor"), pixels % v.image_width,
                                     v.image_height, v.image_width);
    v.pixel_mean = to_vector(ask(x.unsqueeze(0)).first);
  }
  return v;
}

InspectResult Inspector::inspect(std::int64_t sample, std::int64_t query) {
  torch::NoGradGuard no_grad;
  auto& m = *impl_;
  auto batch = m.row(sample);
  const auto M = batch.xt.size(1);
  if (query < 0 || query >= M)
    throw std::out_of_range("query " + std::to_string(query) + " is out of range: this sample has " +
                            std::to_string(M) + " targets (0.." + std::to_string(M - 1) + ")");
  DecodeRequest request;
  request.trace = true;
  auto out = m.model->forward(batch, request);

  InspectResult r;
  r.sample = sample;
  r.query = query;
  r.context_size = batch.xc.size(1);
  r.tokens_per_query = m.model->tokens_per_query(r.context_size);
  auto pred = out.prediction[0][query];
  if (m.spec.classification()) {
    auto p = torch::softmax(pred, -1);
    for (auto x : to_vector(p)) r.prediction.push_back(x);
    r.predicted_class = p.argmax().item<std::int64_t>();
    r.target = {double(batch.yt[0][query].item<std::int64_t>())};
  } else {
    auto [mean, std] = gaussian(pred, m.config.bound_std);
    auto mv = to_vector(mean), sv = to_vector(std);
    for (size_t i = 0; i < mv.size(); ++i) {
      r.prediction.push_back(mv[i]);
      r.prediction.push_back(sv[i]);
    }
    for (auto y : to_vector(batch.yt[0][query])) r.target.push_back(y);
  }

  describe_walk(out.memory.get(), out.trace, query, r);
  return r;
}

InspectResult inspect_random_context(std::int64_t n, std::int64_t d_model, std::int64_t heads, const std::string& device,
                                     std::uint64_t seed) {
  if (n < 2) throw std::invalid_argument("a tree needs at least 2 context tokens, got " + std::to_string(n));
  torch::NoGradGuard no_grad;
  torch::manual_seed(seed);
  const auto where = resolve_device(device);
  // Every core on the CPU: the calling thread's own count is whatever LibTorch's was when it first ran.
  if (where.is_cpu()) torch::set_num_threads(default_cpu_threads());
  Config c;
  c.d_model = d_model;
  c.heads = heads;
  auto decoder = decoder_info("tca").make(c);
  decoder->to(where);
  decoder->eval();
  const auto opts = torch::TensorOptions().device(where);
  const auto context = torch::randn({1, n, d_model}, opts);
  const auto x = torch::linspace(-1, 1, n, opts).view({1, n, 1});
  DecodeRequest request;
  request.trace = true;
  auto memory = decoder->prepare(context, x);
  auto out = decoder->decode(*memory, torch::randn({1, 1, d_model}, opts), request);
  InspectResult r;
  r.context_size = n;
  r.tokens_per_query = decoder->tokens_per_query(n);
  describe_walk(memory.get(), out.trace, 0, r);
  return r;
}

std::string InspectResult::to_json() const {
  using nlohmann::json;
  json j;
  j["sample"] = sample;
  j["query"] = query;
  j["context_size"] = context_size;
  j["tokens_per_query"] = tokens_per_query;
  if (predicted_class >= 0) {
    j["prediction"] = {{"class", predicted_class}, {"probabilities", prediction}};
    j["target"] = {{"class", std::int64_t(target.at(0))}};
  } else {
    json mean = json::array(), stddev = json::array();
    for (size_t i = 0; i + 1 < prediction.size(); i += 2) {
      mean.push_back(prediction[i]);
      stddev.push_back(prediction[i + 1]);
    }
    j["prediction"] = {{"mean", mean}, {"std", stddev}};
    j["target"] = {{"value", target}};
  }
  if (has_tree) {
    j["tree"]["branch_factor"] = shape.b;
    j["tree"]["depth"] = shape.k;
    j["tree"]["leaves_per_group"] = shape.p;
    j["tree"]["nodes"] = json::array();
    for (const auto& n : nodes)
      j["tree"]["nodes"].push_back({{"id", n.id}, {"level", n.level}, {"parent", n.parent},
                                    {"leaves", n.leaves}, {"padding", n.padding}});
    j["trace"] = {{"path", trace.path}, {"selected", trace.selected},
                  {"probabilities", trace.probabilities}};
  } else {
    j["tree"] = nullptr;
    j["trace"] = nullptr;
  }
  return j.dump();
}

}  // namespace retreever
