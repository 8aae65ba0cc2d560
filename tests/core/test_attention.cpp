// Attention equals a naive per-query, per-head reference on random inputs, with and without
// masks, for shared keys (full cross attention), per-query keys (tree cross attention) and the
// chunked path used for huge contexts.
#include <map>
#include <QtTest>
#include <cmath>
#include <torch/torch.h>

#include "core/nn/blocks.h"
#include "core/nn/gather_rows.h"
#include "core/nn/group_attention.h"
#include "core/nn/paired_linear.h"

using namespace retreever;

namespace {

// softmax(q.k) v per head, with masked keys removed, written as plainly as possible.
// q [H,dh] (already scaled), k/v [N,H,dh], keep [N] -> out [H,dh], weights [N] (head mean)
std::pair<torch::Tensor, torch::Tensor> naive(const torch::Tensor& q, const torch::Tensor& k,
                                              const torch::Tensor& v, const torch::Tensor& keep) {
  const auto H = q.size(0), N = k.size(0);
  auto out = torch::zeros_like(q);
  auto weights = torch::zeros({N});
  for (int64_t h = 0; h < H; ++h) {
    std::vector<double> s(N);
    double mx = -1e300;
    for (int64_t n = 0; n < N; ++n) {
      if (!keep[n].item<bool>()) continue;
      s[n] = (q[h] * k[n][h]).sum().item<double>();
      mx = std::max(mx, s[n]);
    }
    double z = 0;
    for (int64_t n = 0; n < N; ++n)
      if (keep[n].item<bool>()) z += std::exp(s[n] - mx);
    for (int64_t n = 0; n < N; ++n) {
      if (!keep[n].item<bool>()) continue;
      const double w = std::exp(s[n] - mx) / z;
      out[h] += w * v[n][h];
      weights[n] += w / double(H);
    }
  }
  return {out, weights};
}

bool close(const torch::Tensor& a, const torch::Tensor& b, double tol = 1e-5) {
  return torch::allclose(a.to(torch::kDouble), b.to(torch::kDouble), tol, tol);
}

// s = scores(), o = mix(softmax of s over the keys): both, and the gradients of the inputs for a fixed
// weighting of s and o.
template <typename Scores, typename Mix>
std::tuple<torch::Tensor, torch::Tensor, std::vector<torch::Tensor>> scores_then_mix(
    const Scores& scores, const Mix& mix, const std::vector<torch::Tensor>& inputs) {
  auto s = scores();
  auto o = mix(torch::softmax(s, 2));
  auto w1 = torch::linspace(-1, 1, s.numel(), s.options()).view(s.sizes());
  auto w2 = torch::linspace(1, -2, o.numel(), o.options()).view(o.sizes());
  return {s, o, torch::autograd::grad({(s * w1).sum() + (o * w2).sum()}, inputs)};
}

}  // namespace

class TestAttention : public QObject {
  Q_OBJECT
 private Q_SLOTS:
  void initTestCase() { torch::manual_seed(7); }

  void shared_keys_match_naive_reference_with_and_without_mask() {
    // Up to 256 query-key pairs the CPU takes the group kernels, above them batched matmuls.
    for (int64_t N : {1, 3, 16, 17, 40, 60, 200}) {
      MultiHeadAttention attn(32, 4);
      const int64_t B = 2, M = 5;
      auto q = attn->project_query(torch::randn({B, M, 32}));
      auto [k, v] = attn->project_key_value(torch::randn({B, N, 32}));
      auto keep = torch::rand({B, N}) > 0.3;
      keep.select(1, 0).fill_(true);  // at least one real key per row
      for (bool masked : {false, true}) {
        auto r = attn->attend_shared(q, k, v, masked ? keep : torch::Tensor(), true);
        for (int64_t b = 0; b < B; ++b)
          for (int64_t m = 0; m < M; ++m) {
            auto [o, w] = naive(q[b][m], k[b], v[b], masked ? keep[b] : torch::ones({N}, torch::kBool));
            QVERIFY2(close(r.weights[b][m], w), qPrintable(QString("weights differ at N=%1").arg(N)));
            QVERIFY2(close(r.out[b][m], attn->project_out(o.unsqueeze(0))[0]),
                     qPrintable(QString("output differs at N=%1").arg(N)));
          }
        QVERIFY(torch::allclose(r.weights.sum(-1), torch::ones({B, M}), 1e-5, 1e-5));
      }
    }
  }

  void queries_shared_by_every_row_match_the_per_row_path() {
    // The copy task's queries are one row expanded over the batch; attention (values and
    // gradients) must equal what the same queries give when stored row by row.
    for (int64_t N : {5, 40}) {
      CrossAttentionBlock block(32, 4, 64);
      const int64_t B = 3, M = 7;
      auto base = torch::randn({1, M, 32}, torch::requires_grad());
      auto context = torch::randn({B, N, 32}, torch::requires_grad());
      auto keep = torch::rand({B, N}) > 0.3;
      keep.select(1, 0).fill_(true);
      auto run = [&](const torch::Tensor& queries) {
        auto [k, v] = block->keys_values(context);
        auto q = block->queries(queries);
        auto out = block->finish(q, block->attention->attend_shared(q.q, k, v, keep, false).out);
        auto grads = torch::autograd::grad({(out * out).sum()}, {base, context});
        return std::make_tuple(out, grads[0], grads[1]);
      };
      auto shared = base.expand({B, M, 32});
      QCOMPARE(shared.stride(0), int64_t(0));
      auto [o1, gq1, gc1] = run(shared);
      auto [o2, gq2, gc2] = run(shared.contiguous());
      QVERIFY2(close(o1, o2), qPrintable(QString("outputs differ at N=%1").arg(N)));
      QVERIFY2(close(gq1, gq2, 1e-4), qPrintable(QString("query gradients differ at N=%1").arg(N)));
      QVERIFY2(close(gc1, gc2, 1e-4), qPrintable(QString("context gradients differ at N=%1").arg(N)));
    }
  }

  void per_query_keys_match_naive_reference() {
    MultiHeadAttention attn(16, 2);
    const int64_t B = 2, M = 3, S = 7;
    auto q = attn->project_query(torch::randn({B, M, 16}));
    auto kv = attn->project_key_value(torch::randn({B, M, S, 16}));
    auto keep = torch::rand({B, M, S}) > 0.4;
    keep.select(2, 3).fill_(true);
    auto r = attn->attend_each(q, kv.first, kv.second, keep, true);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t m = 0; m < M; ++m) {
        auto [o, w] = naive(q[b][m], kv.first[b][m], kv.second[b][m], keep[b][m]);
        QVERIFY(close(r.weights[b][m], w));
        QVERIFY(close(r.out[b][m], attn->project_out(o.unsqueeze(0))[0]));
      }
    // Masked keys get exactly zero weight: the policy can never pick a padding node.
    QVERIFY((r.weights.masked_select(keep.logical_not()) == 0).all().item<bool>());
  }

  void group_kernels_match_broadcast_products_with_gradients() {
    // The CPU kernels of group_attention.h against the broadcast products other devices run, in
    // values and in the gradients of every input, for float and double, contiguous or not.
    for (auto dtype : {torch::kFloat, torch::kDouble})
      for (auto [G, m, n] : {std::tuple<int64_t, int64_t, int64_t>{7, 1, 6}, {5, 2, 2}, {3, 4, 9}, {40, 3, 1}}) {
        auto opts = torch::TensorOptions().dtype(dtype);
        auto q = torch::randn({G, m, 3, 5}, opts).requires_grad_();
        auto k = torch::randn({G, n, 3, 5}, opts).requires_grad_();
        auto v = torch::randn({G, n, 3, 5}, opts).requires_grad_();
        auto run = [&](bool kernel) {
          auto qs = q.transpose(0, 1).contiguous().transpose(0, 1);  // same values, other strides
          return scores_then_mix(
              [&] { return kernel ? group_scores(qs, k) : (qs.unsqueeze(2) * k.unsqueeze(1)).sum(-1); },
              [&](const torch::Tensor& p) { return kernel ? group_mix(p, v) : (p.unsqueeze(-1) * v.unsqueeze(1)).sum(2); },
              {q, k, v});
        };
        auto [s1, o1, g1] = run(true);
        auto [s2, o2, g2] = run(false);
        const auto what = QString("G=%1 m=%2 n=%3").arg(G).arg(m).arg(n);
        QCOMPARE(s1.sizes().vec(), (std::vector<int64_t>{G, m, n, 3}));
        QCOMPARE(o1.sizes().vec(), (std::vector<int64_t>{G, m, 3, 5}));
        QVERIFY2(close(s1, s2), qPrintable("scores differ: " + what));
        QVERIFY2(close(o1, o2), qPrintable("outputs differ: " + what));
        for (int i = 0; i < 3; ++i) QVERIFY2(close(g1[i], g2[i], 1e-4), qPrintable("gradients differ: " + what));
      }
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, group_scores(torch::zeros({2, 1, 3, 5}), torch::zeros({2, 1, 3, 4})));
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, group_mix(torch::zeros({2, 1, 4, 3}), torch::zeros({2, 3, 3, 5})));
  }

  void group_kernels_read_picked_rows_in_place_with_gradients() {
    // group_scores_at / group_mix_at (the kernels read a table at the rows) against the same
    // products on the picked copy of the keys (picked_rows): values, and the gradients of the
    // queries, the weights and the table, where a row is picked by several groups of one table,
    // twice by one group, or never; several groups per table; float and double.
    for (auto dtype : {torch::kFloat, torch::kDouble})
      for (auto [B, per, m, n, T] : {std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t>{3, 4, 1, 5, 9},
                                     {2, 1, 2, 3, 4}, {5, 7, 1, 12, 31}}) {
        auto opts = torch::TensorOptions().dtype(dtype);
        const auto G = B * per;
        auto q = torch::randn({G, m, 3, 4}, opts).requires_grad_();
        auto keys = torch::randn({B, T, 3, 4}, opts).requires_grad_();
        auto values = torch::randn({B, T, 3, 4}, opts).requires_grad_();
        auto rows = torch::randint(0, T - 1, {G, n}, torch::kLong);  // row T - 1 never picked
        rows.select(1, 0).fill_(0);                                   // row 0 picked by every group
        if (n > 1) rows.select(1, n - 1).copy_(rows.select(1, 0));     // and twice by each
        auto run = [&](bool in_place) {
          return scores_then_mix(
              [&] { return in_place ? group_scores_at(q, keys, rows) : group_scores(q, picked_rows(keys, rows)); },
              [&](const torch::Tensor& p) {
                return in_place ? group_mix_at(p, values, rows) : group_mix(p, picked_rows(values, rows));
              },
              {q, keys, values});
        };
        auto [s1, o1, g1] = run(true);
        auto [s2, o2, g2] = run(false);
        const auto what = QString("B=%1 per=%2 m=%3 n=%4").arg(B).arg(per).arg(m).arg(n);
        QCOMPARE(s1.sizes().vec(), (std::vector<int64_t>{G, m, n, 3}));
        QCOMPARE(o1.sizes().vec(), (std::vector<int64_t>{G, m, 3, 4}));
        QCOMPARE(g1[1].sizes().vec(), keys.sizes().vec());
        QVERIFY2(close(s1, s2), qPrintable("scores differ: " + what));
        QVERIFY2(close(o1, o2), qPrintable("outputs differ: " + what));
        for (int i = 0; i < 3; ++i) QVERIFY2(close(g1[i], g2[i], 1e-4), qPrintable("gradients differ: " + what));
        QVERIFY(g1[1].select(1, T - 1).abs().sum().item<double>() == 0);  // never picked: no gradient
        QVERIFY(g1[2].select(1, 0).abs().sum().item<double>() > 0);
      }
    auto table = torch::zeros({2, 4, 3, 5});
    QVERIFY_THROWS_EXCEPTION(std::out_of_range, group_scores_at(torch::zeros({2, 1, 3, 5}), table, torch::full({2, 2}, 4, torch::kLong)));
    QVERIFY_THROWS_EXCEPTION(std::out_of_range, group_mix_at(torch::zeros({2, 1, 2, 3}), table, torch::full({2, 2}, -1, torch::kLong)));
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, group_scores_at(torch::zeros({3, 1, 3, 5}), table, torch::zeros({3, 2}, torch::kLong)));
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, group_scores_at(torch::zeros({2, 1, 3, 4}), table, torch::zeros({2, 2}, torch::kLong)));
  }

  void gathered_rows_match_embedding_with_gradients() {
    // gather_rows.h's CPU loops against torch::embedding: values, and the table's gradient where
    // rows are picked several times, never, or once; float and double; a non-contiguous table.
    for (auto dtype : {torch::kFloat, torch::kDouble})
      for (int64_t K : {1, 7, 3000}) {
        auto opts = torch::TensorOptions().dtype(dtype);
        auto table = torch::randn({40, 6}, opts).transpose(0, 1).contiguous().transpose(0, 1).requires_grad_();
        auto index = torch::randint(0, 13, {K}, torch::kLong);  // rows 13..39 never picked
        index[0] = 39;
        auto w = torch::linspace(-1, 2, K * 6, opts).view({K, 6});
        auto ours = gather_rows(table, index);
        auto theirs = torch::embedding(table, index);
        QCOMPARE(ours.sizes().vec(), (std::vector<int64_t>{K, 6}));
        QVERIFY(torch::equal(ours, theirs));
        auto g1 = torch::autograd::grad({(ours * w).sum()}, {table})[0];
        auto g2 = torch::autograd::grad({(theirs * w).sum()}, {table})[0];
        QVERIFY2(close(g1, g2, 1e-5), qPrintable(QString("gradients differ at K=%1").arg(K)));
        QVERIFY(g1.slice(0, 13, 39).abs().sum().item<double>() == 0);
        QVERIFY(g1[39].abs().sum().item<double>() > 0);
      }
    QVERIFY_THROWS_EXCEPTION(std::out_of_range, gather_rows(torch::zeros({4, 2}), torch::tensor({0, 4}, torch::kLong)));
    QVERIFY_THROWS_EXCEPTION(std::out_of_range, gather_rows(torch::zeros({4, 2}), torch::tensor({-1}, torch::kLong)));
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, gather_rows(torch::zeros({4}), torch::tensor({0}, torch::kLong)));
  }

  void paired_linear_matches_two_linears_with_gradients() {
    // paired_linear.h's hand-written backward against autograd through two linears on the weight's
    // row blocks: values and the gradients of input, weight and bias, with and without a bias, with
    // an output left out of the loss (its gradient zeros), for float and double.
    for (auto dtype : {torch::kFloat, torch::kDouble})
      for (bool bias : {true, false})
        for (int used : {2, 1}) {
          auto opts = torch::TensorOptions().dtype(dtype);
          auto x = torch::randn({3, 7, 5}, opts).requires_grad_();
          auto w = torch::randn({8, 5}, opts).requires_grad_();
          auto b = bias ? torch::randn({8}, opts).requires_grad_() : torch::Tensor();
          auto run = [&](bool paired) {
            torch::Tensor y0, y1;
            if (paired) std::tie(y0, y1) = paired_linear(x, w, b);
            else {
              y0 = torch::linear(x, w.narrow(0, 0, 4), bias ? b.narrow(0, 0, 4) : torch::Tensor());
              y1 = torch::linear(x, w.narrow(0, 4, 4), bias ? b.narrow(0, 4, 4) : torch::Tensor());
            }
            auto c0 = torch::linspace(-1, 1, y0.numel(), opts).view(y0.sizes());
            auto c1 = torch::linspace(2, -1, y1.numel(), opts).view(y1.sizes());
            auto loss = (y0 * c0).sum() + (used == 2 ? (y1 * c1).sum() : torch::zeros({}, opts));
            std::vector<torch::Tensor> inputs{x, w};
            if (bias) inputs.push_back(b);
            return std::make_tuple(y0, y1, torch::autograd::grad({loss}, inputs));
          };
          auto [a0, a1, ga] = run(true);
          auto [e0, e1, ge] = run(false);
          const auto what = QString("dtype %1, bias %2, outputs used %3").arg(int(dtype)).arg(bias).arg(used);
          QCOMPARE(a0.sizes().vec(), (std::vector<int64_t>{3, 7, 4}));
          QVERIFY2(a0.is_contiguous() && a1.is_contiguous(), qPrintable("halves not contiguous: " + what));
          QVERIFY2(close(a0, e0) && close(a1, e1), qPrintable("values differ: " + what));
          QCOMPARE(ga.size(), ge.size());
          for (std::size_t i = 0; i < ga.size(); ++i) {
            QCOMPARE(ga[i].sizes(), ge[i].sizes());
            QVERIFY2(close(ga[i], ge[i], 1e-5), qPrintable(QString("gradient %1 differs: ").arg(i) + what));
          }
        }
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, paired_linear(torch::zeros({2, 5}), torch::zeros({7, 5}), {}));
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument,
                             paired_linear(torch::zeros({2, 5}), torch::zeros({8, 5}), torch::zeros({6})));
  }

  void chunked_queries_equal_one_pass() {
    MultiHeadAttention attn(16, 2);
    auto q = attn->project_query(torch::randn({1, 300, 16}));
    auto [k, v] = attn->project_key_value(torch::randn({1, 64, 16}));
    auto whole = attn->attend_shared(q, k, v, {}, true);
    auto chunked = attn->attend_shared(q, k, v, {}, true, /*max_score_elements=*/2 * 64 * 7);
    QVERIFY(close(whole.out, chunked.out));
    QVERIFY(close(whole.weights, chunked.weights));
  }

  void feed_forward_is_geglu() {
    FeedForward ff(8, 6);
    auto x = torch::randn({3, 8});
    auto params = ff->named_parameters();
    auto h = torch::nn::functional::linear(x, params["expand.weight"], params["expand.bias"]);
    auto parts = h.chunk(2, -1);
    auto expected = torch::nn::functional::linear(parts[0] * torch::gelu(parts[1]), params["contract.weight"],
                                                  params["contract.bias"]);
    QVERIFY(close(ff->forward(x), expected));
  }

  void dropout_applies_in_training_only() {
    // Config::dropout: in training, forward_mean is the masked mean of forward under the same
    // draws (no shortcut through the linear output layer), and the output moves with the draws;
    // in evaluation dropout is off and the layer computes what it computes without it.
    TransformerEncoder encoder(1, 16, 2, 32, /*final_norm=*/false, /*reference=*/true);
    auto x = torch::randn({6, 4, 16});
    auto mask = torch::rand({6, 4}) > 0.3;
    mask[0].fill_(false);
    encoder->eval();
    auto plain = encoder->forward(x, mask);
    set_dropout(*encoder, 0.3);
    QVERIFY(torch::equal(encoder->forward(x, mask), plain));
    encoder->train();
    torch::manual_seed(5);
    auto got = encoder->forward_mean(x, mask);
    torch::manual_seed(5);
    auto out = encoder->forward(x, mask);
    auto m = mask.unsqueeze(-1).to(torch::kFloat);
    QVERIFY(torch::allclose(got, (out * m).sum(1) / m.sum(1).clamp_min(1.0), 1e-5, 1e-6));
    QVERIFY(torch::equal(got[0], torch::zeros({16})));
    QVERIFY(!torch::allclose(out, plain, 1e-3, 1e-3));
    torch::manual_seed(6);
    QVERIFY(!torch::allclose(encoder->forward(x, mask), out, 1e-3, 1e-3));
    // Attention weights, alone: a dropped weight is 0 and a kept one is scaled by 1 / (1 - p).
    MultiHeadAttention attn(16, 2);
    set_dropout(*attn, 0.5);
    auto q = attn->project_query(torch::randn({2, 3, 16}));
    auto [k, v] = attn->project_key_value(torch::randn({2, 5, 16}));
    attn->eval();
    auto reference = attn->attend_shared(q, k, v, {}, false).out;
    attn->train();
    QVERIFY(!torch::allclose(attn->attend_shared(q, k, v, {}, false).out, reference, 1e-3, 1e-3));
    set_dropout(*attn, 0);
    QVERIFY(torch::equal(attn->attend_shared(q, k, v, {}, false).out, reference));
  }

  void dropout_stream_draws_follow_from_its_seed() {
    // Under a DropoutScope every mask comes from its stream's seed, whatever torch's global
    // generator did before; reseeding restarts it; nested scopes restore the outer stream; without
    // a scope the global generator draws. Masks are 0 or 1 / (1 - p), the same numbers in float
    // and double.
    TransformerEncoder encoder(1, 16, 2, 32, /*final_norm=*/false, /*reference=*/true);
    set_dropout(*encoder, 0.3);
    encoder->train();
    auto x = torch::randn({3, 5, 16});
    auto under = [&](std::uint64_t seed, std::uint64_t global) {
      torch::manual_seed(global);
      DropoutStream stream(seed);
      DropoutScope scope(stream);
      return encoder->forward(x, {});
    };
    QVERIFY(torch::equal(under(7, 1), under(7, 2)));
    QVERIFY(!torch::allclose(under(7, 1), under(8, 1), 1e-3, 1e-3));
    DropoutStream a(7), b(9);
    torch::Tensor inner, outer_first, outer_again;
    {
      DropoutScope on_a(a);
      outer_first = keep_mask({1000}, 0.25, torch::kFloat);
      {
        DropoutScope on_b(b);
        inner = keep_mask({1000}, 0.25, torch::kFloat);
      }
      outer_again = keep_mask({1000}, 0.25, torch::kFloat);  // a's stream continues
    }
    QVERIFY(!torch::equal(outer_first, outer_again));
    a.reseed(7);
    b.reseed(9);
    {
      DropoutScope on_a(a);
      QVERIFY(torch::equal(keep_mask({1000}, 0.25, torch::kFloat), outer_first));
      DropoutScope on_b(b);
      QVERIFY(torch::equal(keep_mask({1000}, 0.25, torch::kDouble).to(torch::kFloat), inner));
    }
    const auto values = std::get<0>(torch::_unique(outer_first));
    QCOMPARE(values.numel(), int64_t(2));
    QCOMPARE(values[0].item<float>(), 0.0f);
    QCOMPARE(values[1].item<float>(), float(1 / 0.75));
    const double kept = (outer_first > 0).to(torch::kDouble).mean().item<double>();
    QVERIFY2(std::abs(kept - 0.75) < 0.06, qPrintable(QString::number(kept)));
    torch::manual_seed(4);  // no scope: the global generator's draws
    auto g1 = keep_mask({1000}, 0.25, torch::kFloat);
    torch::manual_seed(4);
    QVERIFY(torch::equal(keep_mask({1000}, 0.25, torch::kFloat), g1));
  }

  void dropout_tape_records_and_replays_masks_in_order() {
    // A recording tape keeps each mask drawn; a replaying one hands them back in order without
    // drawing (the stream does not advance), and refuses a shape it does not hold or a mask too many.
    DropoutStream stream(3);
    DropoutScope scope(stream);
    std::vector<torch::Tensor> kept;
    {
      DropoutTape tape(DropoutTape::Mode::record);
      keep_mask({4, 5}, 0.5, torch::kFloat);
      keep_mask({7}, 0.5, torch::kFloat);
      kept = tape.masks;
    }
    QCOMPARE(int(kept.size()), 2);
    QCOMPARE(kept[1].sizes().vec(), std::vector<int64_t>{7});
    auto next_draw = keep_mask({1000}, 0.5, torch::kFloat);
    stream.reseed(3);
    keep_mask({4, 5}, 0.5, torch::kFloat);
    keep_mask({7}, 0.5, torch::kFloat);
    {
      DropoutTape replay(DropoutTape::Mode::replay, kept);
      QVERIFY(torch::equal(keep_mask({4, 5}, 0.5, torch::kFloat), kept[0]));
      QVERIFY(!replay.finished());
      QVERIFY(torch::equal(keep_mask({7}, 0.5, torch::kFloat), kept[1]));
      QVERIFY(replay.finished());
      try {
        keep_mask({7}, 0.5, torch::kFloat);
        QFAIL("a third mask from a tape of two");
      } catch (const std::logic_error& e) {
        QVERIFY2(QString(e.what()).contains("the tape holds 2"), e.what());
      }
    }
    QVERIFY(torch::equal(keep_mask({1000}, 0.5, torch::kFloat), next_draw));  // nothing drawn while replaying
    DropoutTape replay(DropoutTape::Mode::replay, kept);
    try {
      keep_mask({5, 4}, 0.5, torch::kFloat);
      QFAIL("a mask of another shape");
    } catch (const std::logic_error& e) {
      QVERIFY2(QString(e.what()).contains("[5, 4]") && QString(e.what()).contains("[4, 5]"), e.what());
    }
  }

  void cpu_keep_masks_are_independent_draws_at_the_asked_rate() {
    // The CPU masks come from a counter-based hash of one draw of the stream: check that they keep
    // 1 - p of the elements everywhere in the tensor, that neighbours and successive masks are
    // independent, and that the thread count does not change them.
    const std::int64_t n = std::int64_t(1) << 20;
    const double p = 0.1, q = 1 - p;
    const double tolerance = 6 * std::sqrt(p * q / n);  // six standard errors of a rate over n draws
    DropoutStream stream(3);
    torch::Tensor first, second;
    {
      DropoutScope scope(stream);
      first = keep_mask({n}, p, torch::kFloat) > 0;
      second = keep_mask({n}, p, torch::kFloat) > 0;
    }
    auto rate = [](const torch::Tensor& kept) { return kept.to(torch::kDouble).mean().item<double>(); };
    QVERIFY2(std::abs(rate(first) - q) < tolerance, qPrintable(QString::number(rate(first))));
    // In each sixteenth of the tensor (a bias towards either end would show), with a block's tolerance.
    const double block_tolerance = 6 * std::sqrt(p * q / (n / 16));
    for (const auto& block : first.chunk(16))
      QVERIFY2(std::abs(rate(block) - q) < block_tolerance, qPrintable(QString::number(rate(block))));
    // Neighbours kept together at q^2 (a shifted copy of the mask agrees with it at q^2 + p^2), and
    // two successive masks of the stream agree at q^2 + p^2, not 1.
    const auto a = first.narrow(0, 0, n - 1), b = first.narrow(0, 1, n - 1);
    QVERIFY2(std::abs(rate(a.logical_and(b)) - q * q) < tolerance, qPrintable(QString::number(rate(a.logical_and(b)))));
    QVERIFY2(std::abs(rate(first == second) - (q * q + p * p)) < tolerance,
             qPrintable(QString::number(rate(first == second))));
    // Thread count: the same seed gives the same mask with one thread and with four.
    const int threads = torch::get_num_threads();
    torch::Tensor one, four;
    for (int t : {1, 4}) {
      torch::set_num_threads(t);
      stream.reseed(3);
      DropoutScope scope(stream);
      (t == 1 ? one : four) = keep_mask({n}, p, torch::kFloat);
    }
    torch::set_num_threads(threads);
    QVERIFY(torch::equal(one, four));
    QVERIFY(torch::equal(one > 0, first));
  }

  void mean_over_real_tokens_equals_the_mean_of_the_output() {
    // forward_mean moves the feed-forward's output layer after the mean: same numbers, in both styles.
    for (bool reference : {false, true}) {
    TransformerEncoder encoder(2, 16, 2, 32, /*final_norm=*/false, reference);
    auto x = torch::randn({6, 4, 16});
    auto mask = torch::rand({6, 4}) > 0.4;
    mask[0].fill_(false);  // a node with no real child
    mask[1].fill_(true);
    auto out = encoder->forward(x, mask);
    auto m = mask.unsqueeze(-1).to(torch::kFloat);
    auto expected = (out * m).sum(1) / m.sum(1).clamp_min(1.0);
    auto got = encoder->forward_mean(x, mask);
    QVERIFY2(torch::allclose(got, expected, 1e-5, 1e-5), "forward_mean left the mean of forward");
    QVERIFY(torch::equal(got[0], torch::zeros({16})));
    // No mask at all (a tree without padding) means every token is real.
    QVERIFY(torch::allclose(encoder->forward_mean(x, {}), encoder->forward(x).mean(1), 1e-5, 1e-5));
    // Gradients agree too.
    auto w = torch::randn({6, 16});
    encoder->zero_grad();
    (expected * w).sum().backward();
    std::vector<torch::Tensor> g1;
    for (const auto& p : encoder->parameters()) g1.push_back(p.grad().clone());
    encoder->zero_grad();
    (encoder->forward_mean(x, mask) * w).sum().backward();
    auto params = encoder->parameters();
    for (std::size_t i = 0; i < params.size(); ++i)
      QVERIFY2(torch::allclose(params[i].grad(), g1[i], 1e-4, 1e-5), "gradients differ");
    // An encoder with a final LayerNorm has no such shortcut.
    TransformerEncoder normed(1, 16, 2, 32, true);
    QVERIFY_THROWS_EXCEPTION(std::logic_error, normed->forward_mean(x, mask));
    }
  }

  void reference_style_adds_each_sublayer_to_its_normalised_input() {
    // The reference code's layer: y = LN1(x) + Attn(q = LN1(x), k = v = x); out = LN2(y) + FF(LN2(y)).
    TransformerLayer layer(16, 2, 32, /*reference=*/true);
    auto parts = layer->named_children();
    auto ln1 = std::dynamic_pointer_cast<torch::nn::LayerNormImpl>(parts["norm_attn"]);
    auto ln2 = std::dynamic_pointer_cast<torch::nn::LayerNormImpl>(parts["norm_ff"]);
    auto attn = std::dynamic_pointer_cast<MultiHeadAttentionImpl>(parts["attn"]);
    auto ff = std::dynamic_pointer_cast<FeedForwardImpl>(parts["ff"]);
    QVERIFY(ln1 && ln2 && attn && ff);
    {
      torch::NoGradGuard no_grad;  // LayerNorms away from the identity, so that they show
      for (auto& p : layer->parameters()) p.add_(torch::randn(p.sizes()) * 0.3);
    }
    auto x = torch::randn({3, 5, 16}) * 2 + 1;
    auto h = ln1->forward(x);
    auto y = h + attn->forward(h, x).out;
    auto n = ln2->forward(y);
    QVERIFY(close(layer->forward(x), n + ff->forward(n)));
    TransformerLayer v1(16, 2, 32);
    {  // the same weights in the v1 form give x + Attn(LN1 x) and then + FF(LN2 .)
      torch::NoGradGuard no_grad;
      auto src = layer->named_parameters();
      for (auto& p : v1->named_parameters()) p.value().copy_(src[p.key()]);
    }
    auto y1 = x + attn->forward(h, h).out;
    QVERIFY(close(v1->forward(x), y1 + ff->forward(ln2->forward(y1))));
    QVERIFY(!close(v1->forward(x), layer->forward(x)));

    // The decoder block: keys and values read the nodes unnormalised (no norm_kv), tree cross
    // attention adds the raw query as well, and the feed-forward adds to LN(y).
    for (bool raw : {false, true}) {
      CrossAttentionBlock block(16, 2, 32, BlockStyle::reference(raw));
      QVERIFY(!block->named_parameters().contains("norm_kv.weight"));
      auto bp = block->named_children();
      auto nq = std::dynamic_pointer_cast<torch::nn::LayerNormImpl>(bp["norm_q"]);
      auto nf = std::dynamic_pointer_cast<torch::nn::LayerNormImpl>(bp["norm_ff"]);
      auto bff = std::dynamic_pointer_cast<FeedForwardImpl>(bp["ff"]);
      auto q = torch::randn({2, 3, 16}) * 3, nodes = torch::randn({2, 7, 16}) * 2;
      auto yq = nq->forward(q) + block->attention->forward(nq->forward(q), nodes).out + (raw ? q : torch::zeros_like(q));
      auto nn = nf->forward(yq);
      QVERIFY(close(block->forward(q, nodes), nn + bff->forward(nn)));
    }
    QVERIFY(CrossAttentionBlock(16, 2, 32)->named_parameters().contains("norm_kv.weight"));
  }

  void reference_stacks_start_with_copies_of_their_first_layer() {
    // The reference code deep-copies one initialised layer into each place of a stack (its
    // _get_clones); v1 draws every layer on its own.
    auto layer_params = [](TransformerEncoder& stack, int i) {
      std::map<std::string, torch::Tensor> out;
      for (const auto& p : stack->named_parameters())
        if (p.key().rfind("layers." + std::to_string(i) + ".", 0) == 0) out[p.key().substr(p.key().find('.', 7) + 1)] = p.value();
      return out;
    };
    TransformerEncoder reference(3, 16, 2, 32, /*final_norm=*/false, /*reference=*/true), v1(3, 16, 2, 32);
    const auto first = layer_params(reference, 0);
    QCOMPARE(int(first.size()), 12);  // LayerNorms, q, kv, out, expand, contract: weights and biases
    for (int i : {1, 2}) {
      const auto other = layer_params(reference, i);
      QCOMPARE(other.size(), first.size());
      for (const auto& [name, p] : other) {
        QVERIFY2(torch::equal(p, first.at(name)), qPrintable(QString::fromStdString(name)));
        QVERIFY(p.data_ptr() != first.at(name).data_ptr());  // copies, not shared: they train apart
      }
    }
    QVERIFY(!torch::equal(layer_params(v1, 1).at("attn.to_q.weight"), layer_params(v1, 0).at("attn.to_q.weight")));
  }

  void encoder_layer_ignores_masked_tokens() {
    TransformerLayer layer(16, 4, 32);
    auto x = torch::randn({2, 6, 16});
    auto keep = torch::tensor({1, 1, 1, 1, 0, 0}, torch::kBool).unsqueeze(0).expand({2, 6});
    auto y1 = layer->forward(x, keep);
    auto x2 = x.clone();
    x2.slice(1, 4, 6).normal_();  // change only the masked tokens
    auto y2 = layer->forward(x2, keep);
    QVERIFY(close(y1.slice(1, 0, 4), y2.slice(1, 0, 4)));
  }
};

QTEST_GUILESS_MAIN(TestAttention)
#include "test_attention.moc"
