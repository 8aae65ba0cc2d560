// Every tunable of a ReTreever experiment in one value, with its JSON form.
// Torch-free so that the GUI and the command line can include it cheaply.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace retreever {

struct Config {
  // What to learn.
  std::string task = "copy";        // copy | gp | image
  std::string model = "tca";        // tca | ca | perceiver | treeformer
  std::int64_t seq_len = 64;        // copy task: whole sequence length (context = first half)
  std::string data_dir;             // image task: folder of IDX files
  std::string kernel = "rbf";       // gp task: kernel of the training tasks (rbf | matern | periodic)
  std::string eval_kernel = "rbf";  // gp task: kernel of the evaluation tasks
  std::string eval_split = "seen";  // image task: evaluate on the training classes or the unseen ones
  // gp, image: context points of every evaluation task (0 = drawn as in training: 3..46 for gp,
  // 3..196 for image; core/registry.cpp). A fixed count shows how a model does at one context size.
  std::int64_t eval_context = 0;

  // Architecture (PAPER.md "ReTreever" defaults).
  std::int64_t d_model = 64;        // width of every token embedding
  std::int64_t heads = 4;           // attention heads (d_model must divide evenly)
  std::int64_t ff_dim = 128;        // hidden width of the GEGLU feed-forward blocks
  std::int64_t embed_depth = 4;     // linear layers in the embedder MLPs
  std::int64_t encoder_layers = 0;  // Transformer layers over the context (0 = embedder only)
  std::int64_t branch_factor = 2;   // children per tree node (b)
  std::int64_t aggregator_layers = 1;  // Transformer layers of the bottom-up aggregator
  bool bptt = false;                // backpropagate through the tree into the encoder
  std::string ordering = "given";   // given | sort_x1 | sort_x2 | kdtree | random_proj
  // Where the padding of the leaf groups goes: "packed" = after the real leaves (the paper's
  // reading, and every checkpoint written before this field existed); "balanced" = spread over
  // the groups, so sibling nodes cover equal shares of the context (see TreeShape).
  std::string leaf_layout = "packed";
  // Sequential data (the copy task): where the queries' positional encodings count from.
  // "from_zero" = 0..M-1, as the context's own 0..N-1 (the reference code: each embedder adds its
  // own positional encoding from position 0); "after_context" = N..N+M-1, after the context, which
  // every checkpoint written before this field existed used.
  std::string query_positions = "from_zero";
  // TCA: a sibling on the walk that covers only padding (a zero vector: its children are all padding).
  // "zero" keeps it in S, where its zero key takes attention weight and its zero value adds nothing
  // (the reference code: S's mask leaves out only the chosen child); "masked" leaves it out, as every
  // checkpoint written before this field existed. Without padding (N a power of b) both are the same.
  std::string padding_siblings = "zero";
  std::int64_t latents = 8;         // Perceiver IO: number of learned latents (L)
  std::int64_t treeformer_depth = 3;  // Treeformer TC attention: decision-tree depth (2^d leaves read)
  // Gaussian head: std = 0.05 + 0.95 softplus(raw) (the reference's image script), or exp(raw)
  // (false: its GP script; the GP preset).
  bool bound_std = true;
  // How the attention layers normalise (BlockStyle, TransformerLayer): "reference" (the paper's code:
  // each sublayer adds to its normalised input; keys and values read the tokens as they are; no final
  // LayerNorms; each head's policy entropy) or "v1" (standard pre-norm, this project's first form,
  // which every checkpoint before the field existed used). Applies to TCA and CA, the models the
  // reference code has; Perceiver IO and Treeformer keep v1.
  std::string block = "reference";
  // Dropout in training where the reference code has it: on the weights of every attention but tree
  // cross attention's own (its walk, read of S and all-leaves read take none, as the reference's
  // query_model since its commit 3c4a9c0), on each feed-forward's output and on a sequence's
  // positional encoding. The reference's copy script trains with 0.1, its other tasks with 0 (the
  // copy preset takes 0.1). While it is on, a GPU takes the tensor paths for dense attention (the
  // step still replays from a CUDA graph).
  double dropout = 0;

  // Objective (PAPER.md "Training objective").
  double lambda_rl = 1.0;           // weight of the REINFORCE term
  double lambda_ca = 1.0;           // weight of the all-leaves cross-attention term
  double entropy_bonus = 0.01;      // alpha: weight of the policy's entropy bonus
  // Steps at the start of training that minimise L_CA alone (L_TCA and L_RL join afterwards), so
  // the encoder first learns as full cross attention's does. 0 = the paper's objective throughout.
  std::int64_t ca_warmup = 0;
  double explore = 0;               // share of policy draws made uniformly in training (0 = paper)
  std::string reward = "acc";       // classification reward: acc | nce (regression uses log-likelihood)
  // What REINFORCE subtracts from the reward: "fixed" = the paper's constants (0 for accuracy and
  // log-likelihood, -log(classes) for nce); "mean" = the batch mean of the reward (detached).
  std::string rl_baseline = "fixed";

  // Optimisation.
  std::int64_t batch = 128;         // tasks (sequences) per training step
  std::int64_t steps = 2000;        // training steps (cosine schedule spans them)
  // Steps the cosine schedule spans (0 = steps): a run can train the first steps of a longer
  // schedule, as the reference's time-to-accuracy figures do (4000 steps of a 100k schedule).
  std::int64_t schedule_steps = 0;
  double lr = 5e-4;                 // Adam's peak learning rate
  // Adam's first-moment decay. The reference code trains the copy task with 0.1 (its other tasks
  // with PyTorch's 0.9).
  double adam_beta1 = 0.9;
  double grad_clip = 1.0;           // max global gradient norm (0 = off)
  std::int64_t seed = 0;            // seeds data, initialisation and the policy's sampling
  std::string device = "auto";      // auto | cpu | cuda
  // fp32, or bf16: the forward (and evaluation) autocast to bfloat16 on CUDA or the CPU; parameters,
  // gradients and the optimiser stay float32, and the losses are computed in float32.
  std::string precision = "fp32";

  // Bookkeeping.
  std::int64_t log_every = 10;      // steps between metric rows
  std::int64_t eval_every = 200;    // steps between evaluations (and checkpoints)
  std::int64_t eval_batches = 4;    // batches in the fixed evaluation set
  std::int64_t eval_batch = 0;      // batch size of the evaluation set (0 = same as batch)

  // A list of "field: problem. fix" lines; empty when the config is usable.
  std::vector<std::string> validate() const;
  // Settings that are valid but known to train badly, as "field: why. advice" lines.
  std::vector<std::string> warnings() const;
  bool is_classification() const;  // the task's (core/registry.h)

  std::string to_json() const;  // pretty-printed JSON object
  // The fields whose values differ from base's, in the field table's order, as "field value" pairs
  // joined by ", " ("steps 5000, seed 3"); empty where none does.
  std::string changes_from(const Config& base) const;
  // changes_from(preset(task)): what sets a run apart from its task's preset.
  std::string changes_from_preset() const { return changes_from(preset(task)); }
  // Parses JSON text over the defaults (missing keys keep defaults). Throws
  // std::runtime_error naming the bad key or the syntax error.
  static Config from_json(const std::string& text, const Config& base);
  static Config from_json(const std::string& text);
  // The base for files written by earlier versions (checkpoints, run folders): a field they lack
  // takes the value those versions used, which may differ from today's default (block: "v1").
  static Config legacy();
  // A config saved in a checkpoint: JSON over legacy(). An evaluation context fixed at 47 (gp) or 197
  // (image), the largest before the tasks drew the reference's sizes (December 5, 2026), reads as
  // today's largest, 46 or 196, so that such checkpoints still open.
  static Config from_saved_json(const std::string& text);
  // A task's preset: resources/presets/TASK.json (compiled in) over the defaults. Throws
  // std::invalid_argument for a task without one and std::runtime_error for a broken file.
  static Config preset(const std::string& task);
  // The values a choice field accepts, in the order menus list them (empty for other fields):
  // task and model (from core/registry.h), ordering, leaf_layout, query_positions, padding_siblings, reward,
  // rl_baseline, device, precision, kernel, eval_kernel, eval_split.
  static const std::vector<std::string>& choices(const std::string& field);
  // The largest value a numeric field accepts (one table for validation and the studio's editors);
  // 0 for a field without one.
  static double upper_bound(const std::string& field);

  // What a training run of this config needs in memory, estimated before anything is built.
  struct MemoryEstimate {
    double parameters = 0;   // bytes: parameters, gradients, Adam's moments and its flat copy
    double activations = 0;  // bytes: one training step's saved activations and attention scores
    double eval_set = 0;     // bytes: the fixed evaluation set
    double total() const { return parameters + activations + eval_set; }
    // The settings to lower for each share, and for the largest one.
    static constexpr const char* kLowerActivations = "batch (or seq_len, d_model, encoder_layers)";
    static constexpr const char* kLowerEvalSet = "eval_batches or eval_batch";
    static constexpr const char* kLowerParameters = "d_model, ff_dim or encoder_layers";
    std::string largest_share() const;
  };
  MemoryEstimate memory_estimate() const;

  // The largest eval_context a task accepts (gp 46, image 196; 0: the task has no such choice).
  static std::int64_t max_eval_context(const std::string& task);
};

}  // namespace retreever
