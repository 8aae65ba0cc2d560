// A checkpoint round trip gives identical predictions and identical continued training; the file
// is safetensors as the format defines it (checked by an independent reader); missing, truncated,
// foreign, old-format, crafted and changed files (checksums) are refused with a message that names
// the problem, and thousands of mutated files each end in one clear error or a load of the very
// content they came from.
#include <QDir>
#include <QElapsedTimer>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QTemporaryDir>
#include <QtTest>
#include <chrono>
#include <fstream>
#include <random>
#include <sstream>
#include <torch/torch.h>
#include <zlib.h>

#include "core/inspection.h"
#include "core/training/checkpoint.h"
#include "core/training/safetensors.h"
#include "core/training/trainer.h"
#include "datasets/tasks.h"

#include "tests/small_config.h"

using retreever::testing::small_config;
using namespace retreever;

namespace {
Config tiny(const std::string& task, const std::string& model) {
  Config c = small_config(task, model);
  c.steps = 20;
  c.eval_batches = 2;
  c.eval_batch = 4;
  return c;
}

std::string message_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// A safetensors file from a header object and a data buffer, written by hand.
std::string craft(const QJsonObject& header, const std::string& data) {
  const auto text = QJsonDocument(header).toJson(QJsonDocument::Compact).toStdString();
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = char((std::uint64_t(text.size()) >> (8 * i)) & 0xff);
  return out + text + data;
}

// The independent reader: the format as its definition states it, with Qt's JSON parser.
struct Parsed {
  QJsonObject header;
  std::string data;
};
Parsed parse_independently(const std::string& bytes) {
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | std::uint8_t(bytes[i]);
  Parsed p;
  p.header = QJsonDocument::fromJson(QByteArray::fromStdString(bytes.substr(8, n))).object();
  p.data = bytes.substr(8 + n);
  return p;
}

// The header as another program writes it: no checksums (this one's edits then load).
QJsonObject without_checksums(QJsonObject header) {
  auto meta = header["__metadata__"].toObject();
  meta.remove(safetensors::kHeaderCrc);
  meta.remove(safetensors::kDataCrc);
  header["__metadata__"] = meta;
  return header;
}

// The header with one field of the config in its metadata set to `value`.
QJsonObject with_config_field(QJsonObject header, const QString& field, const QJsonValue& value) {
  auto meta = header["__metadata__"].toObject();
  auto config = QJsonDocument::fromJson(meta["config"].toString().toUtf8()).object();
  config[field] = value;
  meta["config"] = QString::fromUtf8(QJsonDocument(config).toJson(QJsonDocument::Compact));
  header["__metadata__"] = meta;
  return header;
}

QString crc32_hex(const QByteArray& bytes) {
  const auto crc = ::crc32(0, reinterpret_cast<const Bytef*>(bytes.constData()), uInt(bytes.size()));
  return QString("%1").arg(qulonglong(crc), 8, 16, QChar('0'));
}
}  // namespace

class TestCheckpoint : public QObject {
  Q_OBJECT
  QTemporaryDir dir_;

  std::string path(const char* name) { return dir_.filePath(name).toStdString(); }

 private Q_SLOTS:
  void round_trip_gives_identical_predictions_and_training() {
    for (const char* model : {"tca", "ca", "perceiver", "treeformer"})
      for (const char* task : {"copy", "gp"}) {
        Trainer a(tiny(task, model), datasets::make_task);
        for (int i = 0; i < 3; ++i) a.step();
        const auto e1 = a.evaluate();
        a.save(path("ck.safetensors"));
        auto b = Trainer::load(path("ck.safetensors"), datasets::make_task);
        QCOMPARE(b->steps_done(), a.steps_done());
        QCOMPARE(b->config().to_json(), a.config().to_json());
        QCOMPARE(int64_t(b->history().evals.size()), int64_t(1));
        // The last evaluation's accuracy per target position comes back (the copy task's only:
        // GP's batches differ in their target counts), for the studio's per-position plot.
        QCOMPARE(b->history().evals.back().per_target, e1.per_target);
        QCOMPARE(e1.per_target.empty(), std::string(task) != "copy");
        const auto e2 = b->evaluate();
        QCOMPARE(e2.value, e1.value);
        // The optimiser state, the data stream and (the copy preset's) dropout masks continue exactly.
        if (std::string(task) == "copy") QVERIFY(a.config().dropout > 0);
        auto s1 = a.step(), s2 = b->step();
        QCOMPARE(s2.loss, s1.loss);
        auto s3 = a.step(), s4 = b->step();
        QCOMPARE(s4.loss, s3.loss);
        // Inspection of the checkpoint sees the same predictions as a snapshot of the trainer.
        a.save(path("ck2.safetensors"));
        auto from_file = Inspector::from_checkpoint(path("ck2.safetensors"), datasets::make_task);
        Inspector from_snapshot(a.snapshot(), datasets::make_task);
        QCOMPARE(from_file->view(1).mean, from_snapshot.view(1).mean);
      }
  }

  void writes_leave_no_temporary_file() {
    Trainer a(tiny("copy", "tca"), datasets::make_task);
    a.save(path("clean.safetensors"));
    QVERIFY(QFile::exists(QString::fromStdString(path("clean.safetensors"))));
    QVERIFY(!QFile::exists(QString::fromStdString(path("clean.safetensors.tmp"))));
  }

  void the_file_is_safetensors_as_the_format_defines_it() {
    Trainer a(tiny("gp", "tca"), datasets::make_task);
    for (int i = 0; i < 2; ++i) a.step();
    a.evaluate();
    a.save(path("layout.safetensors"));
    const auto bytes = read_bytes(path("layout.safetensors"));
    const auto p = parse_independently(bytes);
    QVERIFY(!p.header.isEmpty());
    const auto meta = p.header["__metadata__"].toObject();
    QCOMPARE(meta["format"].toString(), QString("retreever-checkpoint"));
    QCOMPARE(meta["version"].toString(), QString("2"));
    QCOMPARE(meta["step"].toString(), QString("2"));
    QCOMPARE(QJsonDocument::fromJson(meta["config"].toString().toUtf8()).object()["task"].toString(), QString("gp"));
    QVERIFY(meta["history"].toString().contains("\"evals\""));
    for (auto it = meta.begin(); it != meta.end(); ++it) QVERIFY2(it.value().isString(), qPrintable(it.key()));
    // The checksums, recomputed here with zlib and Qt's JSON: the data buffer's, and the header's
    // without them (its JSON object, keys sorted, compact).
    QCOMPARE(meta[safetensors::kDataCrc].toString(), crc32_hex(QByteArray::fromStdString(p.data)));
    QCOMPARE(meta[safetensors::kHeaderCrc].toString(),
             crc32_hex(QJsonDocument(without_checksums(p.header)).toJson(QJsonDocument::Compact)));
    // Every parameter under its module name, F32, its shape, its bytes; Adam's moments beside them;
    // the offsets tile the data buffer.
    auto snap = a.snapshot();  // the parameters, through the same names
    const auto snap_parsed = parse_independently(snap.parameters);
    std::vector<std::pair<qint64, qint64>> ranges;
    int params = 0, moments = 0;
    for (auto it = p.header.begin(); it != p.header.end(); ++it) {
      if (it.key() == "__metadata__") continue;
      const auto e = it.value().toObject();
      const auto off = e["data_offsets"].toArray();
      ranges.emplace_back(off[0].toInteger(), off[1].toInteger());
      QCOMPARE(e["dtype"].toString(), QString("F32"));
      qint64 count = 1;
      for (const auto& d : e["shape"].toArray()) count *= d.toInteger();
      QCOMPARE(off[1].toInteger() - off[0].toInteger(), count * 4);
      if (it.key().startsWith("optimizer.exp_avg")) {
        ++moments;
        continue;
      }
      ++params;
      const auto s2 = snap_parsed.header[it.key()].toObject();
      QVERIFY2(!s2.isEmpty(), qPrintable("not a parameter name: " + it.key()));
      const auto off2 = s2["data_offsets"].toArray();
      QVERIFY2(p.data.substr(off[0].toInteger(), count * 4) == snap_parsed.data.substr(off2[0].toInteger(), count * 4),
               qPrintable("bytes differ for " + it.key()));
    }
    QVERIFY(p.header.contains("encoder.layers.0.attn.to_q.weight"));
    QVERIFY(p.header.contains("decoder.block.attention.to_kv.weight"));
    QCOMPARE(moments, 2 * params);
    std::sort(ranges.begin(), ranges.end());
    qint64 at = 0;
    for (const auto& [b, e] : ranges) {
      QCOMPARE(b, at);
      at = e;
    }
    QCOMPARE(at, qint64(p.data.size()));
    QCOMPARE((8 + bytes.size() - p.data.size()) % 8, std::size_t(0));  // the data starts 8-byte aligned
  }

  void missing_truncated_foreign_and_old_files_are_refused_clearly() {
    auto load = [&](const std::string& p) { return message_of([&] { Trainer::load(p, datasets::make_task); }); };
    QVERIFY(load(path("nope.safetensors")).find("does not exist") != std::string::npos);
    QVERIFY(load(path("")).find("is a folder, not a file; pass a .safetensors file") != std::string::npos);

    Trainer a(tiny("copy", "tca"), datasets::make_task);
    a.save(path("full.safetensors"));
    const auto bytes = read_bytes(path("full.safetensors"));
    write_bytes(path("half.safetensors"), bytes.substr(0, bytes.size() / 2));
    auto truncated = load(path("half.safetensors"));
    QVERIFY2(truncated.find("not a valid safetensors file") != std::string::npos, truncated.c_str());

    write_bytes(path("text.safetensors"), "hello, I am not a checkpoint\n");
    QVERIFY(load(path("text.safetensors")).find("not a valid safetensors file") != std::string::npos);

    // A valid safetensors file that is not ours.
    safetensors::write_file(path("foreign.safetensors"), {{"w", torch::ones({3})}}, {{"format", "pt"}});
    auto foreign = load(path("foreign.safetensors"));
    QVERIFY2(foreign.find("not a ReTreever checkpoint") != std::string::npos, foreign.c_str());

    // The old format (a torch archive) is never read here; the message names the one way that does.
    torch::save(torch::ones({3}), path("old.pt"));
    auto old = load(path("old.pt"));
    QVERIFY2(old.find("retreever convert --trust") != std::string::npos, old.c_str());
    QVERIFY(message_of([&] { Inspector::from_checkpoint(path("old.pt"), datasets::make_task); }).find("convert --trust") !=
            std::string::npos);
  }

  void crafted_files_are_refused_fast_and_before_allocating() {
    const std::string big = std::to_string(std::uint64_t(1) << 40);
    qint64 slowest = 0;
    auto header_error = [&](const std::string& bytes) {
      std::istringstream in(bytes);
      QElapsedTimer t;
      t.start();
      auto msg = message_of([&] { safetensors::read_header(in, bytes.size()); });
      slowest = std::max(slowest, t.elapsed());
      return msg;
    };
    auto tensor = [](const char* dtype, QJsonArray shape, qint64 b, qint64 e) {
      return QJsonObject{{"dtype", dtype}, {"shape", shape}, {"data_offsets", QJsonArray{b, e}}};
    };
    // A header length near 2^63 and one past the end of the file.
    std::string huge(8, '\xff');
    huge[7] = '\x7f';
    QVERIFY(header_error(huge + "{}").find("above the limit") != std::string::npos);
    // A text file passed as a checkpoint (config.json) is named as text, not as an absurd length.
    const auto text = header_error("{\n  \"task\": \"copy\"\n}\n");
    QVERIFY2(text.find("starts with text ('{   \"tas...')") != std::string::npos, text.c_str());
    QVERIFY(text.find("checkpoint.safetensors") != std::string::npos);
    std::string past(8, '\0');
    past[0] = char(200);
    QVERIFY(header_error(past + "{}").find("truncated") != std::string::npos);
    // A shape of 2^80 elements whose offsets claim 8 bytes: refused without allocating.
    QVERIFY(header_error(craft({{"w", tensor("F32", QJsonArray{qint64(1) << 40, qint64(1) << 40}, 0, 8)}}, std::string(8, 'x')))
                .find("larger than the file") != std::string::npos);
    QVERIFY(header_error(craft({{"w", tensor("F99", QJsonArray{2}, 0, 8)}}, std::string(8, 'x'))).find("unknown dtype") != std::string::npos);
    QVERIFY(header_error(craft({{"a", tensor("F32", QJsonArray{2}, 0, 8)}, {"b", tensor("F32", QJsonArray{2}, 4, 12)}}, std::string(12, 'x')))
                .find("overlap") != std::string::npos);
    QVERIFY(header_error(craft({{"a", tensor("F32", QJsonArray{2}, 0, 8)}}, std::string(16, 'x'))).find("end at byte 8") != std::string::npos);
    QVERIFY(header_error(craft({{"a", tensor("F32", QJsonArray{3}, 0, 8)}}, std::string(8, 'x'))).find("need 3 x 4 bytes") != std::string::npos);
    QVERIFY(header_error(craft({{"__metadata__", QJsonObject{{"step", 3}}}}, "")).find("not a string") != std::string::npos);
    // Duplicate keys, which a lax JSON reader resolves silently.
    const std::string dup = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                            "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    std::string dup_file(8, '\0');
    dup_file[0] = char(dup.size());
    QVERIFY(header_error(dup_file + dup + "xxxx").find("twice") != std::string::npos);
    QVERIFY2(slowest < 1000, qPrintable(QString("a crafted header took %1 ms").arg(slowest)));

    // A valid file whose config describes another model: refused by shape, naming the tensor.
    Trainer a(tiny("copy", "tca"), datasets::make_task);
    a.save(path("good.safetensors"));
    auto good = parse_independently(read_bytes(path("good.safetensors")));
    good.header = without_checksums(good.header);  // edited by hand: the checksums would refuse it first
    write_bytes(path("other-shape.safetensors"), craft(with_config_field(good.header, "ff_dim", 48), good.data));
    auto msg = message_of([&] { Trainer::load(path("other-shape.safetensors"), datasets::make_task); });
    QVERIFY2(msg.find("has shape") != std::string::npos && msg.find("ff.") != std::string::npos, msg.c_str());
    // ... and one with a tensor the model does not have.
    auto header = good.header;
    const auto end = qint64(good.data.size());
    header.insert("decoder.spare", QJsonObject{{"dtype", "F32"}, {"shape", QJsonArray{1}}, {"data_offsets", QJsonArray{end, end + 4}}});
    write_bytes(path("extra.safetensors"), craft(header, good.data + std::string(4, '\0')));
    msg = message_of([&] { Trainer::load(path("extra.safetensors"), datasets::make_task); });
    QVERIFY2(msg.find("'decoder.spare'") != std::string::npos && msg.find("does not have") != std::string::npos, msg.c_str());
    // ... and one that lacks a parameter.
    header = good.header;
    header.remove("head.layers.1.bias");  // its bytes stay: the offsets then leave a gap
    msg = message_of([&] { write_bytes(path("gap.safetensors"), craft(header, good.data)); Trainer::load(path("gap.safetensors"), datasets::make_task); });
    QVERIFY2(msg.find("gap") != std::string::npos || msg.find("end at byte") != std::string::npos, msg.c_str());
  }

  void a_changed_byte_fails_its_checksum() {
    // One bit flipped in a weight still parses and fits the model: only the checksum can tell.
    Trainer a(tiny("copy", "tca"), datasets::make_task);
    a.step();
    a.save(path("sum.safetensors"));
    const auto bytes = read_bytes(path("sum.safetensors"));
    const auto p = parse_independently(bytes);
    const auto data_start = bytes.size() - p.data.size();
    const auto weight = p.header["decoder.block.attention.to_q.weight"].toObject()["data_offsets"].toArray();
    auto flipped = bytes;
    flipped[data_start + std::size_t(weight[0].toInteger()) + 5] ^= 0x04;
    write_bytes(path("flipped.safetensors"), flipped);
    auto msg = message_of([&] { Trainer::load(path("flipped.safetensors"), datasets::make_task); });
    QVERIFY2(msg.find("is damaged: its tensors' bytes do not match the checksum") != std::string::npos, msg.c_str());
    QVERIFY2(msg.find("remove 'crc32_header' and 'crc32_data'") != std::string::npos, msg.c_str());
    msg = message_of([&] { Inspector::from_checkpoint(path("flipped.safetensors"), datasets::make_task); });
    QVERIFY2(msg.find("is damaged") != std::string::npos, msg.c_str());
    QVERIFY2(msg.find("other checkpoint") == std::string::npos, msg.c_str());  // none beside it
    // In a run folder the message names the run's other checkpoint.
    QVERIFY(QDir(dir_.path()).mkpath("run"));
    write_bytes(path("run/checkpoint.safetensors"), flipped);
    write_bytes(path("run/checkpoint_best.safetensors"), bytes);
    msg = message_of([&] { Trainer::load(path("run/checkpoint.safetensors"), datasets::make_task); });
    QVERIFY2(msg.find("The run's other checkpoint, '" + path("run/checkpoint_best.safetensors") + "', may be intact") !=
                 std::string::npos,
             msg.c_str());
    QCOMPARE(Trainer::load(path("run/checkpoint_best.safetensors"), datasets::make_task)->steps_done(), a.steps_done());

    // An edit of the config that stays valid (another learning rate) is refused by the header's
    // checksum, as soon as the header is read (what the studio lists runs by).
    const auto header = with_config_field(p.header, "lr", 0.125);
    write_bytes(path("edited.safetensors"), craft(header, p.data));
    msg = message_of([&] { read_checkpoint_header(path("edited.safetensors")); });
    QVERIFY2(msg.find("is damaged: its header (config, step, history, tensor names and shapes) do not match the checksum") != std::string::npos,
             msg.c_str());
    // The same edit with the checksums removed, as the message says, loads with the edit.
    write_bytes(path("edited-on-purpose.safetensors"), craft(without_checksums(header), p.data));
    auto b = Trainer::load(path("edited-on-purpose.safetensors"), datasets::make_task);
    QCOMPARE(b->config().lr, 0.125);
    // One checksum without the other is itself damage.
    auto half = p.header;
    auto meta = half["__metadata__"].toObject();
    meta.remove(safetensors::kDataCrc);
    half["__metadata__"] = meta;
    write_bytes(path("half-sum.safetensors"), craft(half, p.data));
    msg = message_of([&] { Trainer::load(path("half-sum.safetensors"), datasets::make_task); });
    QVERIFY2(msg.find("one checksum without the other") != std::string::npos, msg.c_str());
    // The writer refuses metadata that names a checksum itself.
    QVERIFY(message_of([&] { safetensors::write_file(path("x.safetensors"), {}, {{safetensors::kDataCrc, "0"}}); })
                .find("checksum entry") != std::string::npos);
  }

  void mutated_files_end_in_a_load_or_one_clear_error() {
    // Deterministic mutations of a valid checkpoint: bit flips anywhere, truncations, edited length
    // fields and edited header bytes. Each must throw one std::exception within a second, or load
    // as exactly the file it came from (the checksums leave no third way: a load of other content).
    Trainer a(tiny("copy", "tca"), datasets::make_task);
    a.step();
    a.save(path("seed.safetensors"));
    const auto valid = read_bytes(path("seed.safetensors"));
    std::uint64_t header_len = 0;
    for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | std::uint8_t(valid[i]);
    std::istringstream valid_in(valid);
    const auto original = safetensors::read_header(valid_in, valid.size());
    const auto original_parameters = a.snapshot().parameters;
    // What a mutant that passes the header reader and both checksums must hold: the original's
    // metadata, and each tensor under its name with the original's shape, dtype and bytes.
    auto same_content = [&](const std::string& bytes, const safetensors::Header& h) {
      if (h.metadata != original.metadata || h.tensors.size() != original.tensors.size()) return false;
      for (const auto& [name, e] : original.tensors) {
        auto it = h.tensors.find(name);
        if (it == h.tensors.end() || it->second.dtype != e.dtype || it->second.shape != e.shape) return false;
        const auto n = e.end - e.begin;
        if (bytes.compare(h.data_start + it->second.begin, n, valid, original.data_start + e.begin, n) != 0) return false;
      }
      return true;
    };
    auto check = [&](const std::string& bytes, bool full) {
      if (full) {  // the whole path: header, config, model, evaluation set, checksums, tensors
        write_bytes(path("mutant.safetensors"), bytes);
        auto b = Trainer::load(path("mutant.safetensors"), datasets::make_task);
        return b->snapshot().parameters == original_parameters && b->config().to_json() == a.config().to_json() &&
               b->steps_done() == a.steps_done();
      }
      std::istringstream in(bytes);  // the reader and the checksums alone, in memory
      const auto h = safetensors::read_header(in, bytes.size());
      safetensors::verify_header(h);
      safetensors::verify_data(in, h);
      return same_content(bytes, h);
    };
    QVERIFY(check(valid, true) && check(valid, false));
    std::mt19937_64 rng(20261202);
    int loaded = 0, refused = 0, changed_loads = 0;
    double slowest = 0;
    const int cases = 3000, full_loads = 300;
    for (int c = 0; c < cases; ++c) {
      std::string bytes = valid;
      switch (c % 5) {
        case 0:  // bit flips anywhere
          for (int k = 0; k < 1 + int(rng() % 4); ++k) bytes[rng() % bytes.size()] ^= char(1 << (rng() % 8));
          break;
        case 1:  // truncation
          bytes.resize(rng() % bytes.size());
          break;
        case 2:  // the length field
          bytes[rng() % 8] = char(rng() & 0xff);
          break;
        case 3:  // a byte of the header text (digits, quotes, braces)
          bytes[8 + rng() % header_len] = "0123456789\"{}[],:-e. x"[rng() % 22];
          break;
        case 4:  // a run of garbage inside the header
          for (std::uint64_t i = 8 + rng() % header_len, n = 1 + rng() % 16; n-- && i < 8 + header_len; ++i)
            bytes[i] = char(rng() & 0xff);
          break;
      }
      const auto start = std::chrono::steady_clock::now();
      try {
        QVERIFY2(check(bytes, c < full_loads), qPrintable(QString("case %1 loaded as other content").arg(c)));
        ++loaded;
        if (bytes != valid) ++changed_loads;  // e.g. a header byte replaced by the same character
      } catch (const std::exception&) {
        ++refused;
      }
      slowest = std::max(slowest, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    qInfo() << loaded << "loaded (" << changed_loads << "of them changed bytes), " << refused << "refused";
    QCOMPARE(loaded + refused, cases);
    QVERIFY2(refused > cases / 2, qPrintable(QString("%1 loaded, %2 refused").arg(loaded).arg(refused)));
    QVERIFY2(slowest < 1.0, qPrintable(QString("slowest case %1 s").arg(slowest)));
  }

  void parameters_of_another_shape_are_refused() {
    // A snapshot whose parameters come from another configuration must not load silently.
    Trainer a(tiny("copy", "tca"), datasets::make_task);
    auto snap = a.snapshot();
    snap.config.d_model = 32;
    auto msg = message_of([&] { Inspector(snap, datasets::make_task); });
    QVERIFY2(!msg.empty(), "a mismatched snapshot loaded silently");
  }
};

QTEST_GUILESS_MAIN(TestCheckpoint)
#include "test_checkpoint.moc"
