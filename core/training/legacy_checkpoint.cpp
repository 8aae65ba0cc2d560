// The first checkpoint format (a torch archive, that is a TorchScript ZIP file). Reading one runs
// the TorchScript deserializer, which executes code the file carries: only `retreever convert
// --trust` reaches this file, never a user's plain `eval`, `inspect`, resume or Open.
#include "checkpoint.h"

#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>

#include <torch/serialize.h>

#include "core/training/flat_adam.h"

namespace retreever {
namespace {

constexpr const char* kFormat = "retreever-checkpoint";  // tag that marks our files
constexpr std::int64_t kVersion = 1;

std::string first_line(const std::string& s) {
  auto nl = s.find('\n');
  return nl == std::string::npos ? s : s.substr(0, nl);
}

// Parameters and buffers by name with their shapes: checked after loading, because
// torch's archive reader would silently accept a tensor of another shape.
std::map<std::string, std::vector<std::int64_t>> shapes_of(torch::nn::Module& model) {
  std::map<std::string, std::vector<std::int64_t>> shapes;
  for (const auto& p : model.named_parameters()) shapes[p.key()] = p.value().sizes().vec();
  for (const auto& p : model.named_buffers()) shapes[p.key()] = p.value().sizes().vec();
  return shapes;
}

void load_archive(torch::serialize::InputArchive& archive, const std::string& path,
                  const torch::Device& device) {
  require_checkpoint_file(path);
  try {
    archive.load_from(path, device);
  } catch (const std::exception& e) {  // c10::Error, or TorchScript's errors for foreign archives
    throw std::runtime_error("checkpoint '" + path +
                             "' is not a readable checkpoint (truncated, from an older version, or not a "
                             "ReTreever file): " + first_line(e.what()));
  }
}

void load_module(torch::serialize::InputArchive& archive, torch::nn::Module& model,
                 const std::string& what) {
  const auto expected = shapes_of(model);
  try {
    model.load(archive);
  } catch (const c10::Error& e) {
    throw std::runtime_error(what + " does not match the model its config describes: " +
                             first_line(e.what()));
  }
  if (shapes_of(model) != expected)
    throw std::runtime_error(what + " holds parameters of other shapes than its config describes");
}

}  // namespace

CheckpointHeader read_legacy_checkpoint_header(const std::string& path) {
  torch::serialize::InputArchive archive;
  load_archive(archive, path, torch::kCPU);
  c10::IValue format, version, config, step, history, best;
  if (!archive.try_read("format", format) || !format.isString() ||
      format.toStringRef() != kFormat)
    throw std::runtime_error("'" + path + "' is not a ReTreever checkpoint (it has no '" + kFormat +
                             "' tag)");
  if (!archive.try_read("version", version) || version.toInt() > kVersion)
    throw std::runtime_error("checkpoint '" + path + "' was written by a newer ReTreever; update this one");
  CheckpointHeader h;
  try {
    archive.read("config", config);
    archive.read("step", step);
    archive.read("history", history);
    archive.read("best", best);
    h.config = Config::from_saved_json(config.toStringRef());
    h.step = step.toInt();
    h.history = MetricsHistory::from_json(history.toStringRef());
    h.best = best.toDouble();
  } catch (const std::exception& e) {
    throw std::runtime_error("checkpoint '" + path + "' is damaged: " + first_line(e.what()));
  }
  check_checkpoint_config(path, h.config);
  return h;
}

void load_legacy_checkpoint_state(const std::string& path, torch::nn::Module& model,
                                  FlatAdam* optimizer, const torch::Device& device) {
  torch::serialize::InputArchive archive;
  load_archive(archive, path, device);
  torch::serialize::InputArchive model_archive;
  if (!archive.try_read("model", model_archive))
    throw std::runtime_error("checkpoint '" + path + "' has no model parameters");
  load_module(model_archive, model, "checkpoint '" + path + "'");
  if (optimizer) {
    torch::serialize::InputArchive optimizer_archive;
    if (archive.try_read("optimizer", optimizer_archive)) {
      try {
        optimizer->load(optimizer_archive);
      } catch (const std::exception& e) {  // c10::Error, or a state of the wrong shape
        throw std::runtime_error("checkpoint '" + path + "' has a damaged optimiser state: " +
                                 first_line(e.what()));
      }
    }
  }
}

}  // namespace retreever
