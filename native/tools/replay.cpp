// snnet-select-replay DIR|FILE...: replay conformance traces (snnet-export conformance generate)
// through the C library and compare every decision with the Python Selector's.
// Exit 0 on full agreement, 1 listing each disagreement (file, step, expected, got), 2 on bad usage.
#include <snnet_select.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

struct Report {
    std::string file;
    long disagreements = 0, events = 0;
    void differ(const std::string &step, const std::string &what, const json &expected, const std::string &got) {
        ++disagreements;
        std::string exp = expected.dump();
        if (exp.size() > 300) exp = exp.substr(0, 300) + "...";
        std::printf("DISAGREE %s: step %s: %s: expected %s, got %s\n", file.c_str(), step.c_str(), what.c_str(),
                    exp.c_str(), got.substr(0, 300).c_str());
    }
};

std::string b64decode(const std::string &in) {
    static const std::string chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    unsigned val = 0; int bits = -8;
    for (unsigned char c : in) {
        size_t pos = chars.find(char(c));
        if (pos == std::string::npos) break;  // '=' padding
        val = ((val << 6) + unsigned(pos)) & 0xFFFFFFu;  // keep 24 bits: no overflow
        bits += 6;
        if (bits >= 0) {
            out.push_back(char((val >> bits) & 0xFF));
            bits -= 8;
        }
    }
    return out;
}

double number(const json &v) {  // null -> 0 (no limit), "nan"/"inf"/"-inf" -> non-finite
    if (v.is_null()) return 0.0;
    if (v.is_string()) {
        const std::string &s = v.get_ref<const std::string &>();
        if (s == "nan") return std::numeric_limits<double>::quiet_NaN();
        return s == "inf" ? std::numeric_limits<double>::infinity() : -std::numeric_limits<double>::infinity();
    }
    return v.get<double>();
}

// Equal as JSON values, numbers compared as doubles (Python writes 1 and 1.0 for the same value).
bool same(const json &a, const json &b) {
    if (a.is_number() && b.is_number()) return a.get<double>() == b.get<double>();
    if (a.is_object() && b.is_object()) {
        if (a.size() != b.size()) return false;
        for (auto it = a.begin(); it != a.end(); ++it) {
            auto jt = b.find(it.key());
            if (jt == b.end() || !same(it.value(), *jt)) return false;
        }
        return true;
    }
    if (a.is_array() && b.is_array()) {
        if (a.size() != b.size()) return false;
        for (size_t i = 0; i < a.size(); ++i)
            if (!same(a[i], b[i])) return false;
        return true;
    }
    return a == b;
}

std::string fmt(double x) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.17g", x);
    return buf;
}

snnet_status kind_status(const std::string &kind) {
    if (kind == "manifest") return SNNET_E_MANIFEST;
    if (kind == "profile") return SNNET_E_PROFILE;
    if (kind == "selector") return SNNET_E_SELECTOR;
    if (kind == "argument") return SNNET_E_ARGUMENT;
    if (kind == "unknown_stitch") return SNNET_E_UNKNOWN_STITCH;
    return SNNET_E_INTERNAL;
}

// The state every decision event records: current stitch, correction, tail ratios.
void check_state(snnet_select *sel, const json &exp, const std::string &step, Report &r) {
    snnet_decision cur;
    snnet_decision_init(&cur);
    snnet_select_current(sel, &cur);
    if (exp.contains("current") && exp["current"].get<int64_t>() != cur.id)
        r.differ(step, "current", exp["current"], std::to_string(cur.id));
    double corr = 0, tails[3];
    int have = 0;
    snnet_select_correction(sel, &corr, tails, &have);
    if (exp.contains("correction") && exp["correction"].get<double>() != corr)
        r.differ(step, "correction", exp["correction"], fmt(corr));
    snnet_loop loop;
    loop.struct_size = sizeof loop;
    snnet_select_loop(sel, &loop);
    if (exp.contains("state") && (exp["state"] == "corrected") != bool(loop.corrected))
        r.differ(step, "state", exp["state"], loop.corrected ? "corrected" : "nominal");
    if (exp.contains("raw_correction") && exp["raw_correction"].get<double>() != loop.correction)
        r.differ(step, "raw_correction", exp["raw_correction"], fmt(loop.correction));
    if (exp.contains("latency_factor") && exp["latency_factor"].get<double>() != loop.latency_factor)
        r.differ(step, "latency_factor", exp["latency_factor"], fmt(loop.latency_factor));
    if (exp.contains("hold") && exp["hold"].get<bool>() != bool(loop.hold))
        r.differ(step, "hold", exp["hold"], loop.hold ? "true" : "false");
    if (exp.contains("inflation")) {
        const json &g = exp["inflation"];
        if (g.is_null() ? loop.has_inflation : (!loop.has_inflation || g.get<double>() != loop.inflation))
            r.differ(step, "inflation", g, loop.has_inflation ? fmt(loop.inflation) : "null");
    }
    if (exp.contains("tails")) {
        const json &t = exp["tails"];
        bool ok = t.is_null() ? !have : (have && t["p50"].get<double>() == tails[0] && t["p90"].get<double>() == tails[1] &&
                                         t["p99"].get<double>() == tails[2]);
        if (!ok) r.differ(step, "tails", t, have ? fmt(tails[0]) + "/" + fmt(tails[1]) + "/" + fmt(tails[2]) : "null");
    }
}

void check_status(snnet_status st, const json &exp, const std::string &step, snnet_select *sel, Report &r, bool *ok) {
    *ok = st == SNNET_OK;
    if (exp.contains("error")) {
        snnet_status want = kind_status(exp["error"].get<std::string>());
        if (st != want) r.differ(step, "status", exp["error"], snnet_status_name(st));
        *ok = false;
    } else if (st != SNNET_OK) {
        r.differ(step, "status", "ok", std::string(snnet_status_name(st)) + " (" + snnet_select_errmsg(sel) + ")");
    }
}

void replay_event(snnet_select *sel, const json &ev, size_t index, Report &r) {
    const std::string op = ev["op"].get<std::string>();
    const std::string step = std::to_string(index) + " (" + op + ")";
    const json &exp = ev["expect"];
    snnet_decision d;
    snnet_decision_init(&d);
    bool ok = false;
    ++r.events;
    if (op == "set_budget" || op == "choose") {
        snnet_status st = op == "choose" ? snnet_select_choose(sel, &d)
                                         : snnet_select_set_budget(sel, number(ev["min_throughput"]), number(ev["max_latency_ms"]),
                                                                   ev["batch"].is_null() ? 0 : ev["batch"].get<int64_t>(), &d);
        check_status(st, exp, step, sel, r, &ok);
        if (!ok) return;
        if (exp["id"].get<int64_t>() != d.id) r.differ(step, "id", exp["id"], std::to_string(d.id));
        if (exp["no_fit"].get<bool>() != bool(d.flags & SNNET_FLAG_NO_FIT))
            r.differ(step, "no_fit", exp["no_fit"], (d.flags & SNNET_FLAG_NO_FIT) ? "true" : "false");
        check_state(sel, exp, step, r);
    } else if (op == "observe") {
        snnet_observation o;
        o.struct_size = sizeof o;
        snnet_status st = snnet_select_observe(sel, ev["stitch"].get<int64_t>(), ev["batch"].get<int64_t>(),
                                               ev["seconds"].get<double>(), &o);
        check_status(st, exp, step, sel, r, &ok);
        if (!ok) return;
        if (exp["rechose"].get<bool>() != bool(o.rechose)) r.differ(step, "rechose", exp["rechose"], o.rechose ? "true" : "false");
        if (exp["no_fit"].get<bool>() != bool(o.flags & SNNET_FLAG_NO_FIT))
            r.differ(step, "no_fit", exp["no_fit"], (o.flags & SNNET_FLAG_NO_FIT) ? "true" : "false");
        check_state(sel, exp, step, r);
    } else if (op == "describe") {
        int64_t stitch = ev["stitch"].is_null() ? SNNET_CURRENT : ev["stitch"].get<int64_t>();
        size_t need = 0;
        snnet_status st = snnet_select_describe(sel, stitch, nullptr, 0, &need);
        std::vector<char> buf(need ? need : 1);
        if (st == SNNET_E_BUFFER) st = snnet_select_describe(sel, stitch, buf.data(), buf.size(), &need);
        check_status(st, exp, step, sel, r, &ok);
        if (!ok) return;
        json got = json::parse(buf.data());
        if (!same(exp["describe"], got)) r.differ(step, "describe", exp["describe"], got.dump());
    } else {
        r.differ(step, "op", "a known op", op);
    }
}

void check_open(snnet_select *sel, const std::string &folder, const json &exp, Report &r) {
    std::vector<int64_t> ids(4096);
    size_t n = 0;
    snnet_select_ids(sel, 1, ids.data(), ids.size(), &n);
    json front(std::vector<int64_t>(ids.begin(), ids.begin() + long(n)));
    if (!same(exp["frontier"], front)) r.differ("open", "frontier", exp["frontier"], front.dump());
    snnet_select_ids(sel, 0, ids.data(), ids.size(), &n);
    json cands(std::vector<int64_t>(ids.begin(), ids.begin() + long(n)));
    if (!same(exp["candidates"], cands)) r.differ("open", "candidates", exp["candidates"], cands.dump());
    snnet_decision d;
    snnet_decision_init(&d);
    snnet_select_current(sel, &d);
    if (exp["current"].get<int64_t>() != d.id) r.differ("open", "current", exp["current"], std::to_string(d.id));
    if (exp["batch"].get<int64_t>() != d.batch) r.differ("open", "batch", exp["batch"], std::to_string(d.batch));
    if (exp["accuracy_proxy"].get<bool>() != bool(d.flags & SNNET_FLAG_ACCURACY_PROXY))
        r.differ("open", "accuracy_proxy", exp["accuracy_proxy"], (d.flags & SNNET_FLAG_ACCURACY_PROXY) ? "true" : "false");
    for (auto it = exp["engines"].begin(); it != exp["engines"].end(); ++it) {
        snnet_decision s;
        snnet_decision_init(&s);
        snnet_select_stitch(sel, std::stoll(it.key()), &s);
        std::string want = it->is_null() ? "(none)" : folder + "/" + it->get<std::string>();
        std::string got = s.engine_path ? s.engine_path : "(none)";
        if (want != got) r.differ("open", "engine of stitch " + it.key(), *it, got);
    }
}

// Write the trace's folder, replay it; returns the number of disagreements.
long replay_file(const fs::path &path, long *events) {
    Report r;
    r.file = path.filename().string();
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    json trace;
    try {
        trace = json::parse(ss.str());
    } catch (const std::exception &e) {
        std::printf("DISAGREE %s: not a readable trace (%s)\n", r.file.c_str(), e.what());
        return 1;
    }
    char tmpl[] = "/tmp/snnet-replay-XXXXXX";
    std::string folder = mkdtemp(tmpl) ? tmpl : "";
    if (folder.empty()) {
        std::printf("DISAGREE %s: cannot create a temporary folder\n", r.file.c_str());
        return 1;
    }
    for (auto it = trace["files"].begin(); it != trace["files"].end(); ++it) {
        std::string data = it->contains("text") ? (*it)["text"].get<std::string>() : b64decode((*it)["base64"].get<std::string>());
        std::ofstream(folder + "/" + it.key(), std::ios::binary) << data;
    }
    for (auto it = trace["symlinks"].begin(); it != trace["symlinks"].end(); ++it)
        if (symlink(it->get<std::string>().c_str(), (folder + "/" + it.key()).c_str()) != 0) r.differ("setup", "symlink", it.key(), "failed");
    const json &o = trace["open"];
    snnet_select_options opts;
    snnet_select_options_init(&opts);
    std::string backend = o["backend"], profile = o["profile"], stat = o["latency_stat"];
    std::string target = o["target"].is_null() ? "" : o["target"].get<std::string>();
    opts.backend = backend.c_str();
    opts.profile = profile.c_str();
    opts.target = target.empty() ? nullptr : target.c_str();
    opts.hysteresis = o["hysteresis"].get<double>();
    opts.latency_stat = stat.c_str();
    opts.adaptive = o["adaptive"].get<bool>() ? 1 : 0;
    opts.hold = o.value("hold", true) ? 1 : 0;
    snnet_select *sel = nullptr;
    snnet_status st = snnet_select_open(folder.c_str(), &opts, &sel);
    const json &exp = trace["expect_open"];
    if (!exp["ok"].get<bool>()) {
        snnet_status want = kind_status(exp["error"].get<std::string>());
        if (st != want) r.differ("open", "status", exp["error"], std::string(snnet_status_name(st)) + " (" + snnet_select_errmsg(sel) + ")");
    } else if (st != SNNET_OK) {
        r.differ("open", "status", "ok", std::string(snnet_status_name(st)) + " (" + snnet_select_errmsg(sel) + ")");
    } else {
        check_open(sel, folder, exp, r);
        const json &evs = trace["events"];
        for (size_t i = 0; i < evs.size(); ++i) replay_event(sel, evs[i], i, r);
    }
    snnet_select_close(sel);
    std::error_code ec;
    fs::remove_all(folder, ec);
    *events += r.events;
    return r.disagreements;
}

}  // namespace

int main(int argc, char **argv) {
    if (argc < 2 || std::string(argv[1]) == "-h" || std::string(argv[1]) == "--help") {
        std::printf("usage: snnet-select-replay DIR|TRACE.json...\n"
                    "Replays snnet-export conformance traces through libsnnet_select %s; exit 0 when every\n"
                    "decision agrees with the Python Selector's, 1 listing each disagreement.\n",
                    snnet_select_version());
        return argc < 2 ? 2 : 0;
    }
    std::vector<fs::path> files;
    for (int i = 1; i < argc; ++i) {
        std::error_code ec;
        if (fs::is_directory(argv[i], ec)) {
            for (const auto &ent : fs::directory_iterator(argv[i], ec))
                if (ent.path().extension() == ".json") files.push_back(ent.path());
        } else if (fs::is_regular_file(argv[i], ec)) {
            files.push_back(argv[i]);
        } else {
            std::fprintf(stderr, "snnet-select-replay: %s is neither a folder nor a trace file\n", argv[i]);
            return 2;
        }
    }
    std::sort(files.begin(), files.end());
    if (files.empty()) {
        std::fprintf(stderr, "snnet-select-replay: no trace files found\n");
        return 2;
    }
    long bad = 0, events = 0, bad_files = 0;
    for (const auto &f : files) {
        long d = replay_file(f, &events);
        bad += d;
        bad_files += d > 0;
    }
    std::printf("replayed %zu traces, %ld events: %ld disagreements in %ld traces\n", files.size(), events, bad, bad_files);
    return bad ? 1 : 0;
}
