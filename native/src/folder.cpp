// The engine-folder door: a field-by-field port of snnet_export/engine_folder/schema.py
// (check_manifest, check_profile, contained) and the manifest/profile readers around it.
// Same order of checks, same meaning of every field; each failure is one line naming the file
// and the field ("manifest.json: configs[3].onnx: ..."). Integers must fit in int64 (Python's
// are unbounded); the JSON door (json_io.cpp) bounds size and nesting.
#include "folder.hpp"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <utility>

namespace snnet {

namespace {

const char *kManifestSchema = "snnet-export/manifest";
const char *kProfileSchema = "snnet-export/profile";

std::string brief(const json &v) {
    std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
    if (s.size() > 60) s = s.substr(0, 60) + "...";
    return s;
}

const char *kind(const json &v) {
    switch (v.type()) {
        case json::value_t::null: return "null";
        case json::value_t::object: return "dict";
        case json::value_t::array: return "list";
        case json::value_t::string: return "str";
        case json::value_t::boolean: return "bool";
        case json::value_t::number_float: return "float";
        default: return "int";
    }
}

class Check {
  public:
    Check(std::string file, snnet_status code) : file_(std::move(file)), code_(code) {}

    [[noreturn]] void fail(const std::string &where, const std::string &msg) const {
        throw FolderError{code_, file_ + ": " + where + ": " + msg};
    }
    const json &get(const json &obj, const char *key, const std::string &where) const {
        auto it = obj.find(key);
        if (it == obj.end()) fail(where + key, "missing");
        return *it;
    }
    const json &dict(const json &v, const std::string &where) const {
        if (!v.is_object()) fail(where, std::string("must be an object, got ") + kind(v));
        return v;
    }
    const json &list(const json &v, const std::string &where) const {
        if (!v.is_array()) fail(where, std::string("must be a list, got ") + kind(v));
        return v;
    }
    const std::string &str(const json &v, const std::string &where) const {
        if (!v.is_string()) fail(where, std::string("must be a string, got ") + kind(v));
        return v.get_ref<const std::string &>();
    }
    int64_t integer(const json &v, const std::string &where, int64_t lo = 0, bool has_hi = false,
                    int64_t hi = 0) const {
        std::string rng = has_hi ? std::to_string(lo) + ".." + std::to_string(hi) : ">= " + std::to_string(lo);
        if (!v.is_number_integer()) fail(where, "must be an integer " + rng + ", got " + brief(v));
        if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX))
            fail(where, "is larger than this library's integers (2^63 - 1), got " + brief(v));
        int64_t x = v.get<int64_t>();
        if (x < lo || (has_hi && x > hi)) fail(where, "must be an integer " + rng + ", got " + brief(v));
        return x;
    }
    double num(const json &v, const std::string &where, double lo = 0.0, bool positive = false) const {
        double x = v.is_number() ? v.get<double>() : 0.0;
        if (!v.is_number() || !std::isfinite(x) || x < lo || (positive && x <= 0))
            fail(where, std::string("must be a finite number ") + (positive ? ">" : ">=") + " 0.0, got " + brief(v));
        return x;
    }
    bool boolean(const json &v, const std::string &where) const {
        if (!v.is_boolean()) fail(where, "must be true or false, got " + brief(v));
        return v.get<bool>();
    }
    void sha(const json &v, const std::string &where) const {
        // Python: re.match(r"^[0-9a-f]{64}$") ($ also matches before one final newline)
        bool ok = v.is_string();
        if (ok) {
            const std::string &s = v.get_ref<const std::string &>();
            ok = s.size() == 64 || (s.size() == 65 && s[64] == '\n');
            for (size_t i = 0; ok && i < 64; ++i) ok = (s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f');
        }
        if (!ok) fail(where, "must be a SHA-256 hex digest");
    }
    const std::string &choice(const json &v, std::initializer_list<const char *> choices, const std::string &where) const {
        if (v.is_string())
            for (const char *c : choices)
                if (v.get_ref<const std::string &>() == c) return v.get_ref<const std::string &>();
        std::string all;
        for (const char *c : choices) all += std::string(all.empty() ? "" : ", ") + "'" + c + "'";
        fail(where, "must be one of [" + all + "], got " + brief(v));
    }

  private:
    std::string file_;
    snnet_status code_;
};

// Python truthiness of a JSON value (what `x or default` tests).
bool truthy(const json &v) {
    switch (v.type()) {
        case json::value_t::null: return false;
        case json::value_t::boolean: return v.get<bool>();
        case json::value_t::string: return !v.get_ref<const std::string &>().empty();
        case json::value_t::array:
        case json::value_t::object: return !v.empty();
        case json::value_t::number_float: return v.get<double>() != 0.0;
        case json::value_t::number_unsigned: return v.get<uint64_t>() != 0;
        default: return v.get<int64_t>() != 0;
    }
}

bool is_symlink(const std::string &path) {
    struct stat st;
    return lstat(path.c_str(), &st) == 0 && S_ISLNK(st.st_mode);
}

// schema.contained: a plain relative path with no link on the way; returns the relative path.
const std::string &contained(const std::string &folder, const json &rel_v, const std::string &where, const Check &c) {
    const std::string &rel = c.str(rel_v, where);
    std::vector<std::string> parts;
    size_t start = 0;
    for (;;) {
        size_t slash = rel.find('/', start);
        parts.push_back(rel.substr(start, slash == std::string::npos ? std::string::npos : slash - start));
        if (slash == std::string::npos) break;
        start = slash + 1;
    }
    bool bad = rel.empty() || rel[0] == '/' || rel.find('\\') != std::string::npos ||
               rel.find('\0') != std::string::npos;
    for (const auto &p : parts) bad = bad || p.empty() || p == "." || p == "..";
    std::string shown = rel.substr(0, 80);
    if (bad) c.fail(where, "'" + shown + "' must be a plain relative path inside the folder");
    std::string path = folder;
    for (const auto &p : parts) {
        path += "/" + p;
        if (is_symlink(path))
            c.fail(where, "'" + shown + "' goes through a symbolic link; files of an engine folder must be "
                          "regular files inside it");
    }
    return rel;
}

const std::map<std::string, int> &itemsizes() {
    static const std::map<std::string, int> sizes = {{"float32", 4}, {"float16", 2}, {"float64", 8},
                                                     {"bfloat16", 2}, {"int64", 8}, {"int32", 4},
                                                     {"int8", 1}, {"uint8", 1}, {"bool", 1}};
    return sizes;
}

size_t check_weights(const Check &c, const std::string &folder, const json &weights) {
    const json &w = c.dict(weights, "weights");
    contained(folder, c.get(w, "file", "weights."), "weights.file", c);
    int64_t size = c.integer(c.get(w, "size", "weights."), "weights.size");
    auto sha = w.find("sha256");
    if (sha != w.end() && !sha->is_null()) c.sha(*sha, "weights.sha256");
    const json &tensors = c.list(c.get(w, "tensors", "weights."), "weights.tensors");
    for (size_t i = 0; i < tensors.size(); ++i) {
        std::string where = "weights.tensors[" + std::to_string(i) + "]";
        const json &t = c.dict(tensors[i], where);
        int64_t offset = c.integer(c.get(t, "offset", where + "."), where + ".offset");
        int64_t length = c.integer(c.get(t, "length", where + "."), where + ".length");
        const json &dt = c.get(t, "dtype", where + ".");
        const std::string &dtype = c.choice(dt, {"float32", "float16", "float64", "bfloat16", "int64", "int32", "int8",
                                                 "uint8", "bool"}, where + ".dtype");
        const json &dims = c.list(c.get(t, "shape", where + "."), where + ".shape");
        unsigned __int128 count = 1;
        bool huge = false;
        for (size_t j = 0; j < dims.size(); ++j) {
            count *= uint64_t(c.integer(dims[j], where + ".shape[" + std::to_string(j) + "]"));
            if (count > (unsigned __int128)(uint64_t(INT64_MAX))) { huge = true; count = (unsigned __int128)(uint64_t(INT64_MAX)) + 1; }
        }
        unsigned __int128 bytes = count * unsigned(itemsizes().at(dtype));
        if (huge || bytes != (unsigned __int128)length)
            c.fail(where + ".shape", brief(dims) + " of " + dtype + " does not match length " + std::to_string(length));
        if ((unsigned __int128)offset + (unsigned __int128)length > (unsigned __int128)size)
            c.fail(where, "bytes " + std::to_string(offset) + ".. lie past the weight file's recorded size " +
                              std::to_string(size));
        c.sha(c.get(t, "sha256", where + "."), where + ".sha256");
    }
    return tensors.size();
}

bool equals_int(const json &v, int64_t x) {  // Python's `v == x` for a JSON value and an int
    if (v.is_boolean()) return int64_t(v.get<bool>()) == x;
    if (v.is_number_float()) return v.get<double>() == double(x) && std::fabs(double(x)) < 9.0e15;
    if (v.is_number_unsigned()) return v.get<uint64_t>() <= uint64_t(INT64_MAX) && int64_t(v.get<uint64_t>()) == x;
    if (v.is_number_integer()) return v.get<int64_t>() == x;
    return false;
}

StitchEntry check_entry(const Check &c, const std::string &folder, const json &e, const std::string &where,
                        size_t n_tensors, int64_t classes) {
    StitchEntry out;
    out.id = c.integer(c.get(e, "id", where + "."), where + ".id");
    out.path = c.str(c.get(e, "path", where + "."), where + ".path");
    out.onnx = contained(folder, c.get(e, "onnx", where + "."), where + ".onnx", c);
    c.sha(c.get(e, "onnx_sha256", where + "."), where + ".onnx_sha256");
    for (const char *key : {"flops", "params"}) {
        auto it = e.find(key);
        if (it == e.end()) continue;
        double v = c.num(*it, where + "." + key);
        if (std::string(key) == "flops") out.has_flops = true, out.flops = v;
    }
    const json &inits = c.list(c.get(e, "initializers", where + "."), where + ".initializers");
    for (size_t j = 0; j < inits.size(); ++j) {
        const json &pair = inits[j];
        std::string w = where + ".initializers[" + std::to_string(j) + "]";
        if (!(pair.is_array() && pair.size() == 2 && pair[0].is_string()))
            c.fail(w, "must be [initializer name, tensor index]");
        c.integer(pair[1], w + "[1]", 0, true, int64_t(n_tensors) - 1);
    }
    auto acc = e.find("accuracy");
    if (acc != e.end() && !acc->is_null()) {
        c.dict(*acc, where + ".accuracy");
        for (const char *key : {"acc1", "acc5"}) {
            auto v = acc->find(key);
            if (v == acc->end() || v->is_null()) continue;
            double x = c.num(*v, where + ".accuracy." + key);
            if (x > 100) c.fail(where + ".accuracy." + key, "is a percentage (0-100), got " + brief(*v));
            if (std::string(key) == "acc1") out.has_top1 = true, out.top1 = x;
        }
        auto loss = acc->find("loss");
        if (loss != acc->end() && !loss->is_null()) c.num(*loss, where + ".accuracy.loss");
        if (acc->empty()) out.has_top1 = false;  // accuracy_of: `not acc` -> unknown
    }
    auto outs = e.find("outputs");
    if (outs != e.end()) {
        c.list(*outs, where + ".outputs");
        for (size_t j = 0; j < outs->size(); ++j) {
            std::string w = where + ".outputs[" + std::to_string(j) + "]";
            const json &o = c.dict((*outs)[j], w);
            auto shape = o.find("shape");
            static const json null_value;
            const json &dims = c.list(shape == o.end() ? null_value : *shape, w + ".shape");
            if (dims.empty() || !equals_int(dims.back(), classes))
                c.fail(w + ".shape", brief(dims) + " does not end in num_classes " + std::to_string(classes) +
                                         " (every stitch must have the same output shape)");
        }
    }
    auto ver = e.find("verified");
    if (ver != e.end() && !ver->is_null()) {
        c.dict(*ver, where + ".verified");
        auto ok = ver->find("ok");
        if (ok != ver->end()) c.boolean(*ok, where + ".verified.ok");
    }
    return out;
}

std::map<int64_t, std::string> check_engines(const Check &c, const std::string &folder, const json &target,
                                             const std::string &where) {
    std::map<int64_t, std::string> out;
    static const json empty = json::array();
    auto st = target.find("stitches");
    const json &stitches = c.list(st == target.end() ? empty : *st, where + ".stitches");
    std::vector<int64_t> ids;
    for (size_t j = 0; j < stitches.size(); ++j) {
        std::string w = where + ".stitches[" + std::to_string(j) + "]";
        const json &rec = c.dict(stitches[j], w);
        int64_t id = c.integer(c.get(rec, "id", w + "."), w + ".id");
        const std::string &file = contained(folder, c.get(rec, "file", w + "."), w + ".file", c);
        contained(folder, c.get(rec, "onnx", w + "."), w + ".onnx", c);
        c.integer(c.get(rec, "size", w + "."), w + ".size");
        for (const char *key : {"stripped", "version_compatible"}) {
            auto it = rec.find(key);
            if (it != rec.end()) c.boolean(*it, w + "." + key);
        }
        ids.push_back(id);
        out.emplace(id, file);
    }
    std::set<int64_t> seen;
    for (int64_t id : ids)
        if (!seen.insert(id).second) c.fail(where + ".stitches", "id " + std::to_string(id) + " appears twice");
    return out;
}

Manifest check_manifest(const json &data, const std::string &folder, const std::string &file) {
    Check c(file, SNNET_E_MANIFEST);
    Manifest m;
    c.dict(data, "manifest");
    c.dict(c.get(data, "family", ""), "family");
    c.choice(c.get(data, "precision", ""), {"fp32", "fp16"}, "precision");
    auto bm = data.find("batch_max");
    if (bm != data.end()) c.integer(*bm, "batch_max", 1);
    const json &shape = c.list(c.get(data, "input_shape", ""), "input_shape");
    if (shape.size() != 3) c.fail("input_shape", "must be [channels, height, width], got " + brief(shape));
    for (size_t i = 0; i < 3; ++i) c.integer(shape[i], "input_shape[" + std::to_string(i) + "]", 1, true, 1 << 16);
    int64_t classes = c.integer(c.get(data, "num_classes", ""), "num_classes", 1);
    size_t n_tensors = check_weights(c, folder, c.get(data, "weights", ""));
    const json &configs = c.list(c.get(data, "configs", ""), "configs");
    for (size_t i = 0; i < configs.size(); ++i) {
        std::string where = "configs[" + std::to_string(i) + "]";
        m.configs.push_back(check_entry(c, folder, c.dict(configs[i], where), where, n_tensors, classes));
    }
    std::set<int64_t> seen;
    for (const auto &e : m.configs)
        if (!seen.insert(e.id).second) c.fail("configs", "id " + std::to_string(e.id) + " appears twice");
    auto eng = data.find("engines");
    if (eng != data.end() && truthy(*eng)) {
        c.dict(*eng, "engines");
        for (auto it = eng->begin(); it != eng->end(); ++it) {
            std::string where = "engines." + it.key();
            m.engines[it.key()] = check_engines(c, folder, c.dict(it.value(), where), where);
        }
    }
    return m;
}

void check_records(const Check &c, const json &records, const std::string &where, const std::set<int64_t> &batches,
                   std::vector<ProfileRecord> *out) {
    std::vector<std::pair<int64_t, int64_t>> keys;
    for (size_t i = 0; i < records.size(); ++i) {
        std::string w = where + "[" + std::to_string(i) + "]";
        const json &r = c.dict(records[i], w);
        ProfileRecord rec;
        rec.id = c.integer(c.get(r, "id", w + "."), w + ".id");
        rec.batch = c.integer(c.get(r, "batch", w + "."), w + ".batch", 1);
        if (!batches.count(rec.batch))
            c.fail(w + ".batch", std::to_string(rec.batch) + " is not one of the profile's batches");
        rec.throughput = c.num(c.get(r, "throughput", w + "."), w + ".throughput", 0.0, true);
        const json &lat = c.dict(c.get(r, "latency_ms", w + "."), w + ".latency_ms");
        for (const char *key : {"p50", "p90", "p99"}) c.get(lat, key, w + ".latency_ms.");
        for (auto it = lat.begin(); it != lat.end(); ++it) {
            if (it.key() == "ci95" || it.key() == "p50_ci") {  // [low, high] of the median
                if (!it->is_array() || it->size() != 2)
                    c.fail(w + ".latency_ms." + it.key(), "must be [low, high], got " + brief(*it));
                for (size_t k = 0; k < 2; ++k)
                    c.num((*it)[k], w + ".latency_ms." + it.key() + "[" + std::to_string(k) + "]");
                continue;
            }
            c.num(*it, w + ".latency_ms." + it.key());
        }
        rec.p50 = lat["p50"].get<double>();
        rec.p90 = lat["p90"].get<double>();
        rec.p99 = lat["p99"].get<double>();
        rec.latency = lat;
        auto runs = r.find("runs");
        if (runs != r.end()) c.integer(*runs, w + ".runs", 1);
        auto tie = r.find("tie_group");
        if (tie != r.end()) {  // the ids tied with it in speed, itself included (bench.ties)
            const json &members = c.list(*tie, w + ".tie_group");
            bool self_in = false;
            for (size_t k = 0; k < members.size(); ++k) {
                rec.tie_group.push_back(c.integer(members[k], w + ".tie_group[" + std::to_string(k) + "]"));
                self_in = self_in || rec.tie_group.back() == rec.id;
            }
            if (!self_in) c.fail(w + ".tie_group", "must include the record's own id " + std::to_string(rec.id));
        }
        auto resolved = r.find("resolved");
        if (resolved != r.end()) c.boolean(*resolved, w + ".resolved");
        keys.emplace_back(rec.id, rec.batch);
        if (out) out->push_back(std::move(rec));
    }
    std::set<std::pair<int64_t, int64_t>> seen;
    for (const auto &k : keys)
        if (!seen.insert(k).second)
            c.fail(where, "id (" + std::to_string(k.first) + ", " + std::to_string(k.second) + ") appears twice");
}

std::string base_name(const std::string &path) {
    size_t slash = path.rfind('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

Manifest load_manifest(const std::string &folder) {
    std::string path = folder + "/manifest.json";
    struct stat st;
    if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode))
        throw FolderError{SNNET_E_MANIFEST, folder + " is not an engine folder: manifest.json is missing "
                                            "(create one with `snnet-export export`)"};
    json data;
    try {
        data = parse_json(read_file(path));
    } catch (const ReadError &e) {
        throw FolderError{SNNET_E_MANIFEST, path + " " + e.message + ": restore it or re-export the folder"};
    }
    if (!data.is_object() || !data.contains("schema") || data["schema"] != kManifestSchema)
        throw FolderError{SNNET_E_MANIFEST, path + " is not an snnet-export manifest"};
    auto ver = data.find("schema_version");
    if (ver == data.end() || !equals_int(*ver, 1))  // Python: != 1 (1.0 and true pass)
        throw FolderError{SNNET_E_MANIFEST, path + " has schema version " +
                                                (ver == data.end() ? std::string("None") : brief(*ver)) +
                                                "; this library reads version 1: re-export the folder"};
    return check_manifest(data, folder, path);
}

Profile read_profile(const std::string &path) {
    json data;
    try {
        data = parse_json(read_file(path));
    } catch (const ReadError &e) {
        throw FolderError{SNNET_E_PROFILE, "profile " + path + " " + e.message +
                                               ": delete it and re-run `snnet-export bench`"};
    }
    if (!data.is_object() || !data.contains("schema") || data["schema"] != kProfileSchema)
        throw FolderError{SNNET_E_PROFILE, path + " is not an snnet-export profile (no \"schema\": \"" +
                                               std::string(kProfileSchema) + "\")"};
    Check c(path, SNNET_E_PROFILE);
    Profile p;
    p.file = base_name(path);
    p.backend = c.str(c.get(data, "backend", ""), "backend");
    p.device = c.str(c.get(data, "device", ""), "device");
    const json &batches = c.list(c.get(data, "batches", ""), "batches");
    if (batches.empty()) c.fail("batches", "is empty");
    for (size_t i = 0; i < batches.size(); ++i) p.batches.push_back(c.integer(batches[i], "batches[" + std::to_string(i) + "]", 1));
    std::set<int64_t> bset(p.batches.begin(), p.batches.end());
    check_records(c, c.list(c.get(data, "stitches", ""), "stitches"), "stitches", bset, &p.stitches);
    auto base = data.find("baseline");
    if (base != data.end() && !base->is_null()) {
        c.dict(*base, "baseline");
        for (auto it = base->begin(); it != base->end(); ++it)
            check_records(c, c.list(it.value(), "baseline." + it.key()), "baseline." + it.key(), bset, nullptr);
    }
    auto mode = data.find("ort_mode");
    if (mode != data.end()) p.has_ort_mode = true, p.ort_mode = *mode;
    auto target = data.find("target");
    if (target != data.end()) p.has_target = true, p.target = *target;
    struct stat st;
    if (stat(path.c_str(), &st) == 0) p.mtime = double(st.st_mtim.tv_sec) + 1e-9 * double(st.st_mtim.tv_nsec);
    return p;
}

std::vector<Profile> load_profiles(const std::string &folder) {
    std::vector<Profile> out;
    std::unique_ptr<DIR, int (*)(DIR *)> dir(opendir(folder.c_str()), &closedir);
    if (!dir) return out;
    std::vector<std::string> names;
    while (struct dirent *ent = readdir(dir.get())) {
        std::string name = ent->d_name;
        if (name.size() >= 13 && name.compare(0, 8, "profile.") == 0 && name.compare(name.size() - 5, 5, ".json") == 0)
            names.push_back(name);
    }
    std::sort(names.begin(), names.end());
    for (const auto &name : names) out.push_back(read_profile(folder + "/" + name));
    std::stable_sort(out.begin(), out.end(), [](const Profile &a, const Profile &b) { return a.mtime > b.mtime; });
    return out;
}

}  // namespace snnet
