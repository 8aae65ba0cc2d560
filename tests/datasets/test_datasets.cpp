// The task generators: deterministic for a seed, and the data they promise.
#include <QtTest>
#include <QElapsedTimer>
#include <QTemporaryDir>
#include <functional>
#include <random>
#include <QtEndian>
#include <zlib.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "core/inspection.h"
#include "core/model/retreever.h"
#include "core/training/checkpoint.h"
#include "datasets/idx.h"
#include "datasets/tasks.h"
#include "tests/small_config.h"

using namespace retreever;
using namespace retreever::datasets;

namespace {
QByteArray be32(quint32 v) {
  QByteArray b(4, 0);
  qToBigEndian(v, b.data());
  return b;
}

// Writes bytes to path, gzipped or plain.
void write_file(const std::string& path, const QByteArray& bytes, bool gz) {
  if (gz) {
    gzFile f = gzopen(path.c_str(), "wb");
    gzwrite(f, bytes.constData(), unsigned(bytes.size()));
    gzclose(f);
  } else {
    QFile f(QString::fromStdString(path));
    f.open(QIODevice::WriteOnly | QIODevice::Truncate);
    f.write(bytes);
  }
}
}  // namespace

class TestDatasets : public QObject {
  Q_OBJECT
 private Q_SLOTS:
  void copy_task_targets_mirror_the_context() {
    for (int64_t L : {4, 5, 8, 9, 64, 257}) {
      CopyTask task(L);
      auto b = task.sample(6, 123, false);
      const auto C = (L + 1) / 2, M = L - C;
      QCOMPARE(b.xc.size(1), C);
      QCOMPARE(b.xt.size(1), M);
      QCOMPARE(b.yt.size(1), M);
      QCOMPARE(b.xc.size(2), CopyTask::kVocabulary);
      QVERIFY(torch::equal(b.xc.sum(-1), torch::ones({6, C})));  // one-hot
      QVERIFY((b.xt == 0).all().item<bool>());                    // queries differ only by position
      auto tokens = b.xc.argmax(-1);
      auto seq = torch::cat({tokens, b.yt}, 1);  // the whole sequence s_0 .. s_{L-1}
      QVERIFY((seq.select(1, 0) == CopyTask::kBos).all().item<bool>());
      QVERIFY((seq.select(1, L - 1) == CopyTask::kEos).all().item<bool>());
      for (int64_t i = 1; i <= L - 2; ++i) {
        QVERIFY(torch::equal(seq.select(1, i), seq.select(1, L - 1 - i)));
        QVERIFY((seq.select(1, i) >= 2).all().item<bool>());
      }
    }
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, CopyTask(3));
  }

  void same_seed_same_batch_other_seed_other_batch() {
    CopyTask copy(32);
    QVERIFY(torch::equal(copy.sample(4, 9, false).xc, copy.sample(4, 9, false).xc));
    QVERIFY(!torch::equal(copy.sample(4, 9, false).xc, copy.sample(4, 10, false).xc));
    GPTask gp("rbf", "matern");
    auto a = gp.sample(4, 9, false), b = gp.sample(4, 9, false);
    QVERIFY(torch::equal(a.yc, b.yc) && torch::equal(a.yt, b.yt));
    QVERIFY(!torch::equal(a.yt, gp.sample(4, 9, true).yt));  // evaluation uses its own kernel
  }

  void gp_batches_have_the_paper_sizes_and_sorted_contexts() {
    // The reference's sampler: randint(3, 47) context points and randint(3, 50 - Nc) targets, upper
    // bounds exclusive: 3..46 context points, at most 49 points in all, and both ends are drawn.
    GPTask gp("rbf", "rbf");
    std::int64_t fewest = 100, most = 0, most_points = 0;
    for (uint64_t seed = 0; seed < 2000; ++seed) {
      auto b = gp.sample(1, seed, false);
      const auto nc = b.xc.size(1), nt = b.xt.size(1);
      QVERIFY(nc >= 3 && nc <= 46);
      QVERIFY(nt >= 3 && nc + nt <= 49);
      fewest = std::min(fewest, nc), most = std::max(most, nc), most_points = std::max(most_points, nc + nt);
      if (seed >= 40) continue;  // the values below on a few
      b = gp.sample(3, seed, false);
      QVERIFY((b.xc.abs() <= 2).all().item<bool>());
      QVERIFY((b.xc.slice(1, 1) >= b.xc.slice(1, 0, -1)).all().item<bool>());
      QVERIFY(torch::isfinite(b.yc).all().item<bool>() && torch::isfinite(b.yt).all().item<bool>());
    }
    QCOMPARE(fewest, std::int64_t(3));
    QCOMPARE(most, std::int64_t(46));
    QCOMPARE(most_points, std::int64_t(49));
  }

  void gp_kernels_give_positive_definite_covariances() {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
    auto x = torch::rand({4, 30, 1}, torch::kDouble) * 4 - 2;
    for (const char* k : {"rbf", "matern", "periodic"}) {
      auto cov = gp_covariance(x, k, gen);
      QVERIFY(torch::allclose(cov, cov.transpose(1, 2)));
      QVERIFY((torch::linalg_eigvalsh(cov) > 0).all().item<bool>());
    }
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, gp_covariance(x, "cubic", gen));
  }

  void image_task_reads_idx_files_gzipped_or_not() {
    QTemporaryDir dir;
    // 20 tiny 6x5 images; image i has class i % 10 and every pixel = 20 * class.
    auto write = [&](const QString& name, const QByteArray& bytes, bool gz) {
      const auto path = dir.filePath(name + (gz ? ".gz" : ""));
      if (gz) {
        gzFile f = gzopen(path.toUtf8().constData(), "wb");
        gzwrite(f, bytes.constData(), unsigned(bytes.size()));
        gzclose(f);
      } else {
        QFile f(path);
        QVERIFY(f.open(QIODevice::WriteOnly));
        f.write(bytes);
      }
    };
    const int n = 20, H = 6, W = 5;
    QByteArray images = be32(0x803) + be32(n) + be32(H) + be32(W), labels = be32(0x801) + be32(n);
    for (int i = 0; i < n; ++i) {
      images += QByteArray(H * W, char(20 * (i % 10)));
      labels += char(i % 10);
    }
    write("train-images-idx3-ubyte", images, true);
    write("train-labels-idx1-ubyte", labels, true);
    write("t10k-images-idx3-ubyte", images, false);
    write("t10k-labels-idx1-ubyte", labels, false);
    const auto folder = dir.path().toStdString();
    ImageTask seen(folder, "seen"), unseen(folder, "unseen");
    QCOMPARE(seen.spec().image_height, int64_t(H));
    QCOMPARE(seen.spec().x_dim, int64_t(2));
    for (uint64_t seed = 0; seed < 10; ++seed) {
      auto b = seen.sample(4, seed, false);
      const auto nc = b.xc.size(1), nt = b.xt.size(1);
      QVERIFY(nc >= 3 && nt >= 3 && nc + nt <= H * W);
      QVERIFY((b.xc.abs() <= 1).all().item<bool>() && (b.xt.abs() <= 1).all().item<bool>());
      // Context and target pixels of one image are distinct points.
      auto all = torch::cat({b.xc[0], b.xt[0]}, 0);
      QCOMPARE(std::get<0>(torch::unique_dim(all, 0)).size(0), nc + nt);
      // Training uses classes 0-4 only, the unseen evaluation classes 5-9 only.
      QVERIFY(((b.yc + 0.5) * 255 <= 4 * 20 + 0.5).all().item<bool>());
      auto u = unseen.sample(4, seed, true);
      QVERIFY(((u.yt + 0.5) * 255 >= 5 * 20 - 0.5).all().item<bool>());
      QVERIFY(torch::equal(seen.sample(4, seed, false).yc, b.yc));  // deterministic
    }
  }

  void the_inspector_predicts_every_pixel_of_an_image() {
    // Tiny 6x5 images of varying pixels: the inspector asks the model at every pixel, and at the
    // sample's target pixels that prediction is the targets' own (queries do not see each other).
    QTemporaryDir dir;
    const int n = 20, H = 6, W = 5;
    QByteArray images = be32(0x803) + be32(n) + be32(H) + be32(W), labels = be32(0x801) + be32(n);
    for (int i = 0; i < n; ++i) {
      for (int p = 0; p < H * W; ++p) images += char((i * 37 + p * 11) % 251);
      labels += char(i % 10);
    }
    for (const auto* split : {"train", "t10k"}) {
      write_file(dir.filePath(QString(split) + "-images-idx3-ubyte").toStdString(), images, false);
      write_file(dir.filePath(QString(split) + "-labels-idx1-ubyte").toStdString(), labels, false);
    }
    // pixel_of inverts pixel_coordinates at every pixel.
    const auto index = torch::arange(H * W, torch::kLong);
    const auto points = pixel_coordinates(torch::div(index, W, "floor"), index % W, H, W).contiguous();
    for (int p = 0; p < H * W; ++p)
      QCOMPARE(pixel_of(points[p].data_ptr<float>(), H, W), (std::pair<std::int64_t, std::int64_t>(p / W, p % W)));
    Config c = testing::small_config("image");
    c.data_dir = dir.path().toStdString();
    for (const auto* model : {"tca", "ca"}) {
      c.model = model;
      torch::manual_seed(3);
      auto task = make_task(c);
      ReTreever net(c, task->spec());
      Inspector inspector(Snapshot{c, serialize_parameters(*net), 0}, make_task);
      const auto v = inspector.view(0);
      QCOMPARE(std::int64_t(v.pixel_mean.size()), std::int64_t(H * W));
      for (std::int64_t j = 0; j < v.target_count; ++j) {
        const auto [r, col] = pixel_of(&v.xt[2 * j], H, W);
        const float at_pixel = v.pixel_mean[std::size_t(r * W + col)];
        QVERIFY2(std::abs(at_pixel - v.mean[j]) < 1e-4,
                 qPrintable(QString("%1, target %2: %3 vs %4").arg(model).arg(j).arg(at_pixel).arg(v.mean[j])));
      }
      // Not one value everywhere: the pixels' positions reach the prediction.
      const auto [lo, hi] = std::minmax_element(v.pixel_mean.begin(), v.pixel_mean.end());
      QVERIFY(*hi - *lo > 1e-6);
    }
    // Other tasks have no pixels.
    Config copy = testing::small_config("copy");
    torch::manual_seed(3);
    ReTreever net(copy, make_task(copy)->spec());
    QVERIFY(Inspector(Snapshot{copy, serialize_parameters(*net), 0}, make_task).view(0).pixel_mean.empty());
  }

  void the_inspector_draws_a_gp_curve_through_the_targets() {
    // The GP view's curve: evenly spaced inputs over every point and a margin, plus each target's x,
    // sorted; at a target's x it is the target's own prediction.
    Config c = testing::small_config("gp");
    for (const auto* model : {"tca", "ca"}) {
      c.model = model;
      torch::manual_seed(4);
      ReTreever net(c, make_task(c)->spec());
      Inspector inspector(Snapshot{c, serialize_parameters(*net), 0}, make_task);
      const auto v = inspector.view(inspector.typical_sample());
      QVERIFY(v.pixel_mean.empty());
      QVERIFY(v.curve_x.size() > std::size_t(v.target_count) + 100);
      QCOMPARE(v.curve_mean.size(), v.curve_x.size());
      QCOMPARE(v.curve_stddev.size(), v.curve_x.size());
      QVERIFY(std::is_sorted(v.curve_x.begin(), v.curve_x.end()));
      for (float x : v.xc) QVERIFY(v.curve_x.front() < x && x < v.curve_x.back());
      for (float sd : v.curve_stddev) QVERIFY(sd > 0);
      for (std::int64_t j = 0; j < v.target_count; ++j) {
        const auto at = std::find(v.curve_x.begin(), v.curve_x.end(), v.xt[j]);
        QVERIFY(at != v.curve_x.end());
        const auto i = std::size_t(at - v.curve_x.begin());
        QVERIFY2(std::abs(v.curve_mean[i] - v.mean[j]) < 1e-4 && std::abs(v.curve_stddev[i] - v.stddev[j]) < 1e-4,
                 qPrintable(QString("%1, target %2: %3 vs %4").arg(model).arg(j).arg(v.curve_mean[i]).arg(v.mean[j])));
      }
    }
  }

  void image_task_explains_missing_and_broken_files() {
    QTemporaryDir dir;
    auto message = [](const std::string& folder) {
      try {
        ImageTask t(folder, "seen");
      } catch (const std::exception& e) {
        return std::string(e.what());
      }
      return std::string();
    };
    QVERIFY(message(dir.path().toStdString()).find("apt-get install dataset-fashion-mnist") != std::string::npos);
    QFile bad(dir.filePath("train-images-idx3-ubyte"));
    QVERIFY(bad.open(QIODevice::WriteOnly));
    bad.write("not an idx file at all");
    bad.close();
    QFile labels(dir.filePath("train-labels-idx1-ubyte"));
    QVERIFY(labels.open(QIODevice::WriteOnly));
    labels.close();
    QVERIFY(message(dir.path().toStdString()).find("not an IDX image file") != std::string::npos);
    QFile truncated(dir.filePath("train-images-idx3-ubyte"));
    QVERIFY(truncated.open(QIODevice::WriteOnly));
    truncated.write(QByteArray::fromHex("00000803000000640000001c0000001c0102"));  // 100 images, 2 bytes
    truncated.close();
    QVERIFY(message(dir.path().toStdString()).find("truncated or corrupt") != std::string::npos);
  }

  void crafted_idx_headers_are_refused_before_allocating() {
    QTemporaryDir dir;
    auto write = [&](const QString& name, const QByteArray& bytes, bool gz) {
      const auto path = dir.filePath(name).toStdString();
      write_file(path, bytes, gz);
      return path;
    };
    auto refusal = [](const std::function<void()>& fn) {
      QElapsedTimer t;
      t.start();
      std::string msg;
      try {
        fn();
      } catch (const std::runtime_error& e) {
        msg = e.what();
      }
      if (t.elapsed() > 1000) msg += " (took over a second)";
      return msg;
    };
    // 2^31 images of 4095 x 4095, in a file of a few bytes, plain and gzipped.
    const auto huge = be32(0x803) + be32(0x80000000u) + be32(4095) + be32(4095) + QByteArray(2, 'x');
    for (bool gz : {false, true}) {
      const auto path = write(gz ? "huge.gz" : "huge", huge, gz);
      auto msg = refusal([&] { read_idx_images(path); });
      QVERIFY2(msg.find("more than the 4 GiB") != std::string::npos && msg.find("second") == std::string::npos, msg.c_str());
    }
    // A plain file promising more than it holds, and a gzip stream that yields less than promised.
    const auto short_plain = write("short", be32(0x803) + be32(1000) + be32(28) + be32(28) + QByteArray(100, 'x'), false);
    QVERIFY(refusal([&] { read_idx_images(short_plain); }).find("but holds 100") != std::string::npos);
    const auto short_gz = write("short.gz", be32(0x803) + be32(1000) + be32(28) + be32(28) + QByteArray(100, 'x'), true);
    QVERIFY(refusal([&] { read_idx_images(short_gz); }).find("ends early") != std::string::npos);
    const auto labels = write("labels.gz", be32(0x801) + be32(0xffffffffu), true);
    QVERIFY(refusal([&] { read_idx_labels(labels); }).find("ends early") != std::string::npos);
    // Images smaller than 2 x 2 are not images to complete.
    const auto dot = write("dot", be32(0x803) + be32(4) + be32(1) + be32(1) + QByteArray(4, 'x'), false);
    QVERIFY(refusal([&] { read_idx_images(dot); }).find("implausible") != std::string::npos);
  }

  void mutated_idx_files_end_in_a_load_or_one_clear_error() {
    QTemporaryDir dir;
    QByteArray valid = be32(0x803) + be32(20) + be32(6) + be32(5);
    for (int i = 0; i < 20; ++i) valid += QByteArray(30, char(i));
    std::mt19937 rng(2026);
    int loaded = 0, refused = 0;
    qint64 slowest = 0;
    const auto path = dir.filePath("mutant").toStdString();
    for (int c = 0; c < 2000; ++c) {
      QByteArray bytes = valid;
      if (c % 3 == 0) bytes.truncate(int(rng() % bytes.size()));
      else if (c % 3 == 1) bytes[int(rng() % 16)] = char(rng() & 0xff);  // the header
      else for (int k = 0; k < 3; ++k) bytes[int(rng() % bytes.size())] = char(rng() & 0xff);
      write_file(path, bytes, c % 2 == 0);
      QElapsedTimer t;
      t.start();
      try {
        auto images = read_idx_images(path);
        QCOMPARE(std::int64_t(images.pixels.size()), images.count * images.height * images.width);
        ++loaded;
      } catch (const std::runtime_error&) {
        ++refused;
      }
      slowest = std::max(slowest, t.elapsed());
    }
    QVERIFY2(loaded > 100 && refused > 100, qPrintable(QString("%1 loaded, %2 refused").arg(loaded).arg(refused)));
    QVERIFY2(slowest < 1000, qPrintable(QString("slowest case %1 ms").arg(slowest)));
  }

  void fashion_mnist_from_debian_loads_when_installed() {
    if (!QFile::exists(QString(ImageTask::kDefaultFolder) + "/train-images-idx3-ubyte.gz"))
      QSKIP("dataset-fashion-mnist is not installed");
    ImageTask task("", "unseen");
    QCOMPARE(task.spec().image_height, int64_t(28));
    QCOMPARE(task.spec().image_width, int64_t(28));
    auto b = task.sample(2, 1, true);
    QVERIFY(b.xc.size(1) + b.xt.size(1) <= 200);
  }

  void make_task_names_unknown_tasks() {
    Config c;
    c.task = "chess";
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, make_task(c));
  }
};

QTEST_GUILESS_MAIN(TestDatasets)
#include "test_datasets.moc"
