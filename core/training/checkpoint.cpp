#include "checkpoint.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "core/files.h"
#include "core/training/flat_adam.h"
#include "core/training/safetensors.h"

namespace retreever {

void require_checkpoint_file(const std::string& path) {
  if (const auto why = unreadable_checkpoint_reason(path); !why.empty())
    throw std::runtime_error("checkpoint '" + path + "' " + why);
}

namespace {

constexpr const char* kFormat = "retreever-checkpoint";  // __metadata__ "format": marks our files
constexpr std::int64_t kVersion = 2;                      // 1 was the torch archive
const std::string kExpAvg = "optimizer.exp_avg.", kExpAvgSq = "optimizer.exp_avg_sq.";

std::string first_line(const std::string& s) {
  auto nl = s.find('\n');
  return nl == std::string::npos ? s : s.substr(0, nl);
}

// "checkpoint PATH is damaged: WHY", naming the run folder's other checkpoint where there is one
// (a run's last checkpoint and its best are written apart, so one can outlive the other's damage).
std::runtime_error damaged(const std::string& path, const std::exception& why) {
  std::string message = "checkpoint '" + path + "' is damaged: " + first_line(why.what());
  const auto folder = std::filesystem::path(path).parent_path(), name = std::filesystem::path(path).filename();
  for (const char* other : {kCheckpointFileName, kBestCheckpointFileName}) {
    const auto sibling = folder / other;
    if (name != other && unreadable_file_reason(sibling.string()).empty())
      return std::runtime_error(message + ". The run's other checkpoint, '" + sibling.string() + "', may be intact");
  }
  return std::runtime_error(message);
}

// Parameters and buffers by name, in the order the optimiser holds them.
std::vector<std::pair<std::string, torch::Tensor>> state_of(torch::nn::Module& model) {
  std::vector<std::pair<std::string, torch::Tensor>> state;
  for (const auto& p : model.named_parameters()) state.emplace_back(p.key(), p.value());
  for (const auto& b : model.named_buffers()) state.emplace_back(b.key(), b.value());
  return state;
}

std::vector<std::pair<std::string, torch::Tensor>> tensors_to_save(torch::nn::Module& model, FlatAdam* optimizer) {
  auto tensors = state_of(model);
  if (optimizer && optimizer->steps_taken() > 0) {
    const auto params = model.named_parameters();
    for (std::size_t i = 0; i < params.size(); ++i) {
      tensors.emplace_back(kExpAvg + params[i].key(), optimizer->exp_avg_of(i));
      tensors.emplace_back(kExpAvgSq + params[i].key(), optimizer->exp_avg_sq_of(i));
    }
  }
  return tensors;
}

std::int64_t parse_int(const std::string& text, const std::string& what) {
  std::size_t used = 0;
  std::int64_t v = 0;
  try {
    v = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || text.empty()) throw std::runtime_error(what + " is not an integer: '" + text.substr(0, 40) + "'");
  return v;
}

double parse_double(const std::string& text, const std::string& what) {
  std::size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || text.empty()) throw std::runtime_error(what + " is not a number: '" + text.substr(0, 40) + "'");
  return v;
}

safetensors::Header open_checkpoint(const std::string& path) {
  require_checkpoint_file(path);
  if (safetensors::looks_like_torch_archive(path))
    throw std::runtime_error("'" + path + "' is a checkpoint in the old torch-archive format, which runs code from the "
                             "file when it is read; if you trust where it came from, convert it once with "
                             "'retreever convert --trust " + path + " NEW.safetensors'");
  safetensors::Header header;
  try {
    header = safetensors::read_header_file(path);
  } catch (const std::exception& e) {
    throw std::runtime_error("checkpoint '" + path + "' is not a valid safetensors file: " + first_line(e.what()));
  }
  try {
    safetensors::verify_header(header);  // the data's checksum: load_checkpoint_state, which reads them
  } catch (const std::exception& e) {
    throw damaged(path, e);
  }
  return header;
}

}  // namespace

bool is_legacy_checkpoint(const std::string& path) { return safetensors::looks_like_torch_archive(path); }

void save_checkpoint(const std::string& path, const CheckpointHeader& header, torch::nn::Module& model,
                     FlatAdam* optimizer) {
  char best[64];
  std::snprintf(best, sizeof best, "%.17g", header.best);
  std::map<std::string, std::string> metadata = {
      {"format", kFormat},
      {"version", std::to_string(kVersion)},
      {"config", header.config.to_json()},
      {"step", std::to_string(header.step)},
      {"best", best},
      {"history", header.history.to_json()},
      {"optimizer_step", std::to_string(optimizer ? optimizer->steps_taken() : 0)},
  };
  safetensors::write_file(path, tensors_to_save(model, optimizer), metadata);
}

CheckpointHeader read_checkpoint_header(const std::string& path) {
  const auto file = open_checkpoint(path);
  const auto& m = file.metadata;
  auto field = [&](const char* key) -> const std::string& {
    auto it = m.find(key);
    if (it == m.end()) throw std::runtime_error("checkpoint '" + path + "' has no '" + key + "' in its metadata");
    return it->second;
  };
  auto format = m.find("format");
  if (format == m.end() || format->second != kFormat)
    throw std::runtime_error("'" + path + "' is a safetensors file but not a ReTreever checkpoint (its metadata has no "
                             "format '" + kFormat + "'); pass a checkpoint.safetensors written by 'retreever train'");
  CheckpointHeader h;
  try {
    if (parse_int(field("version"), "the version") > kVersion)
      throw std::runtime_error("it was written by a newer ReTreever; update this one");
    h.config = Config::from_saved_json(field("config"));
    h.step = parse_int(field("step"), "the step");
    if (h.step < 0) throw std::runtime_error("its step is negative");
    h.best = parse_double(field("best"), "the best evaluation");
    h.history = MetricsHistory::from_json(field("history"));
  } catch (const std::exception& e) {
    throw damaged(path, e);
  }
  check_checkpoint_config(path, h.config);
  return h;
}

void check_checkpoint_config(const std::string& path, const Config& config) {
  auto problems = config.validate();
  if (!problems.empty())
    throw std::runtime_error("checkpoint '" + path + "' holds an invalid config: " + problems.front());
}

void load_checkpoint_state(const std::string& path, torch::nn::Module& model, FlatAdam* optimizer,
                           const torch::Device&) {
  const auto file = open_checkpoint(path);
  const auto state = state_of(model);
  const auto params = model.named_parameters();
  // Every name must be one the model (or its optimiser's state) has, and every parameter present.
  std::set<std::string> known;
  for (const auto& [name, t] : state) known.insert(name);
  bool has_moments = false;
  for (const auto& [name, e] : file.tensors) {
    if (known.count(name)) continue;
    const bool avg = name.rfind(kExpAvg, 0) == 0, sq = name.rfind(kExpAvgSq, 0) == 0;
    const auto base = avg ? name.substr(kExpAvg.size()) : sq ? name.substr(kExpAvgSq.size()) : std::string();
    if ((avg || sq) && params.contains(base)) {
      has_moments = true;
      continue;
    }
    throw std::runtime_error("checkpoint '" + path + "' holds a tensor '" + name +
                             "' that the model its config describes does not have");
  }
  for (const auto& [name, t] : state)
    if (!file.tensors.count(name))
      throw std::runtime_error("checkpoint '" + path + "' lacks the parameter '" + name + "' of the model its config describes");
  std::ifstream in(path, std::ios::binary);
  try {
    safetensors::verify_data(in, file);
  } catch (const std::exception& e) {
    throw damaged(path, e);
  }
  torch::NoGradGuard no_grad;
  try {
    for (auto [name, t] : state) safetensors::read_tensor(in, file, name, t);
    if (optimizer && has_moments) {
      for (std::size_t i = 0; i < params.size(); ++i) {
        auto avg = optimizer->exp_avg_of(i), sq = optimizer->exp_avg_sq_of(i);
        safetensors::read_tensor(in, file, kExpAvg + params[i].key(), avg);
        safetensors::read_tensor(in, file, kExpAvgSq + params[i].key(), sq);
      }
      auto step = file.metadata.find("optimizer_step");
      optimizer->set_steps_taken(step == file.metadata.end() ? 0 : parse_int(step->second, "the optimiser's step"));
    }
  } catch (const std::exception& e) {
    throw std::runtime_error("checkpoint '" + path + "' does not fit the model its config describes: " + first_line(e.what()));
  }
}

std::string serialize_parameters(torch::nn::Module& model) {
  std::ostringstream out;
  safetensors::write(out, state_of(model), {});
  return out.str();
}

void deserialize_parameters(const std::string& bytes, torch::nn::Module& model, const torch::Device&) {
  std::istringstream in(bytes);
  const auto file = safetensors::read_header(in, bytes.size());
  torch::NoGradGuard no_grad;
  for (auto [name, t] : state_of(model)) safetensors::read_tensor(in, file, name, t);
}

}  // namespace retreever
