// Selector: see selector.hpp and snnet_export/runtime/selector.py (the reference). Every formula
// keeps Python's order of operations on doubles; comments quote the Python it mirrors.
#include "selector.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <map>

#include "frontier.hpp"

namespace snnet {

namespace {

std::string join(const std::string &folder, const std::string &rel) {
    if (!rel.empty() && rel[0] == '/') return rel;
    if (folder.empty()) return rel;
    return folder.back() == '/' ? folder + rel : folder + "/" + rel;
}

Profile pick_profile(const std::string &folder, const OpenOptions &o) {
    if (o.has_profile) return read_profile(join(folder, o.profile));
    std::vector<Profile> all = load_profiles(folder);  // newest first; a broken one throws
    for (auto &p : all)
        if (p.backend == o.backend && (!o.has_device || p.device == o.device)) return std::move(p);
    throw FolderError{SNNET_E_SELECTOR, folder + " has no measured " + o.backend + " profile" +
                                            (o.has_device ? " for device " + o.device : std::string()) +
                                            ": run `snnet-export bench " + folder + " --backend " + o.backend +
                                            "` on this device"};
}

// Python round(x, 4): correctly rounded to 4 decimals (glibc printf rounds the exact binary value).
double round4(double x) {
    char buf[400];
    std::snprintf(buf, sizeof buf, "%.4f", x);
    return std::strtod(buf, nullptr);
}

}  // namespace

Selector::Selector(const std::string &folder, const OpenOptions &o) : hysteresis_(o.hysteresis), stat_(o.stat) {
    Manifest m = load_manifest(folder);
    Profile prof = pick_profile(folder, o);
    // ort_mode = profile.get("ort_mode", "shared"), which must be shared or fused (null is refused too)
    if (prof.has_ort_mode && !(prof.ort_mode == "shared" || prof.ort_mode == "fused"))
        throw FolderError{SNNET_E_SELECTOR, "ort_mode must be shared or fused (one copy of the weights), got '" +
                                                prof.ort_mode.dump() + "'"};
    std::map<int64_t, size_t> entry_of;
    for (size_t i = 0; i < m.configs.size(); ++i) entry_of[m.configs[i].id] = i;
    std::map<int64_t, Candidate> measured;  // sorted(measured.items())
    for (const auto &rec : prof.stitches) {
        auto e = entry_of.find(rec.id);
        if (e == entry_of.end()) continue;
        Candidate &c = measured[rec.id];
        c.batches.push_back(rec.batch);
        c.throughput.push_back(rec.throughput);
        c.p50.push_back(rec.p50);
        c.p90.push_back(rec.p90);
        c.p99.push_back(rec.p99);
        c.latency.push_back(rec.latency);
    }
    if (measured.empty())
        throw FolderError{SNNET_E_SELECTOR, "the profile measures none of " + folder + "'s stitches: re-run bench"};
    for (const auto &kv : measured) proxy_ = proxy_ || !m.configs[entry_of[kv.first]].has_top1;
    std::string target = o.has_target ? o.target : std::string("dgpu");
    bool target_ok = true;
    if (!o.has_target && prof.has_target) {  // self.target or self.profile.get("target", "dgpu")
        target_ok = prof.target.is_string();
        if (target_ok) target = prof.target.get<std::string>();
    }
    const std::map<int64_t, std::string> *plans = nullptr;
    auto eng = m.engines.find(target);
    if (target_ok && eng != m.engines.end()) plans = &eng->second;
    for (auto &kv : measured) {
        const StitchEntry &e = m.configs[entry_of[kv.first]];
        Candidate c = std::move(kv.second);
        c.id = e.id;
        c.path = e.path;
        c.has_top1 = e.has_top1, c.top1 = e.top1, c.has_flops = e.has_flops, c.flops = e.flops;
        if (proxy_ && !e.has_flops)
            throw FolderError{SNNET_E_SELECTOR, "stitch " + std::to_string(e.id) + " has no flops, needed as the "
                                                "accuracy proxy while some stitch has no known accuracy"};
        c.accuracy = proxy_ ? e.flops / 1e9 : e.top1;  // entries[i]["flops"] / 1e9
        if (o.backend == "trt") {
            auto p = plans ? plans->find(e.id) : std::map<int64_t, std::string>::const_iterator();
            c.has_engine = plans && p != plans->end();
            if (c.has_engine) c.engine = join(folder, p->second);
        } else {
            c.has_engine = true;
            c.engine = join(folder, e.onnx);
        }
        ids_.push_back(c.id);
        cands_.push_back(std::move(c));
    }
    batch_ = *std::min_element(prof.batches.begin(), prof.batches.end());
    std::vector<FrontierPoint> pts;
    for (const auto &c : cands_) {  // (c.id, c.throughput.get(batch, 0.0), c.accuracy)
        double thr = 0.0;
        for (size_t k = 0; k < c.batches.size(); ++k)
            if (c.batches[k] == batch_) thr = c.throughput[k];
        pts.push_back({c.id, thr, c.accuracy});
    }
    std::vector<TieRecord> ties;
    for (const auto &rec : prof.stitches) ties.push_back({rec.id, rec.batch, &rec.tie_group});
    on_frontier_.assign(cands_.size(), 0);
    for (int64_t id : pareto_front(pts, tie_groups(ties, batch_))) {
        size_t i = 0;
        find(id, &i);
        frontier_.push_back(i);
        on_frontier_[i] = 1;
    }
    // best = max(self.frontier, key=accuracy): the first of the most accurate
    active_ = frontier_[0];
    for (size_t i : frontier_)
        if (cands_[i].accuracy > cands_[active_].accuracy) active_ = i;
    if (o.adaptive) {
        std::vector<StitchProfile> sp;
        for (const auto &c : cands_)
            sp.push_back({c.batches, c.p50, stat_ == 0 ? c.p50 : (stat_ == 1 ? c.p90 : c.p99)});
        tracker_.reset(new LatencyTracker(std::move(sp), stat_ == 0 ? 0.5 : (stat_ == 1 ? 0.9 : 0.99), kDefaultWindow,
                                          kDefaultCheckEvery, kDefaultMinChange, kHistory, kMinSamples, o.hold));
    }
}

bool Selector::find(int64_t id, size_t *index) const {
    auto it = std::lower_bound(ids_.begin(), ids_.end(), id);
    if (it == ids_.end() || *it != id) return false;
    *index = size_t(it - ids_.begin());
    return true;
}

size_t Selector::nearest(const Candidate &c, int64_t batch) const {
    // batch if in dict else min(dict, key=lambda b: abs(b - batch)): the first nearest in profile order
    size_t best = 0;
    for (size_t k = 1; k < c.batches.size(); ++k)
        if (std::llabs(c.batches[k] - batch) < std::llabs(c.batches[best] - batch)) best = k;
    return best;
}

void Selector::factors(size_t i, double *speed, double *latency) const {
    if (tracker_) tracker_->factors(i, speed, latency);
    else *speed = *latency = 1.0;
}

double Selector::speed(size_t i, int64_t batch) const {
    // profiled (at the nearest batch, profile order on a tie) / the stitch's speed factor
    const Candidate &c = cands_[i];
    double sf, lf;
    factors(i, &sf, &lf);
    return c.throughput[nearest(c, batch)] / sf;
}

double Selector::predicted_latency_ms(size_t i, int64_t batch) const {
    // the stitch's profiled percentile x the observed inflation at that percentile
    const Candidate &c = cands_[i];
    size_t k = nearest(c, batch);
    double sf, lf;
    factors(i, &sf, &lf);
    const double stat = stat_ == 0 ? c.p50[k] : (stat_ == 1 ? c.p90[k] : c.p99[k]);
    return stat * lf;
}

bool Selector::meets(size_t i, double margin) const {
    int64_t b = batch();
    if (has_min_ && speed(i, b) < min_thr_ * margin) return false;
    if (has_max_ && predicted_latency_ms(i, b) * margin > max_lat_) return false;
    return true;
}

size_t Selector::choose(bool *no_fit, bool returning) const {
    *no_fit = false;
    bool any = false;
    size_t best = 0;
    for (size_t i : frontier_)  // best = max(fits, key=accuracy): the first of the most accurate
        if (meets(i, 1.0) && (!any || cands_[i].accuracy > cands_[best].accuracy)) best = i, any = true;
    if (!any) {
        *no_fit = true;
        int64_t b = batch();
        size_t fastest = frontier_[0];
        for (size_t i : frontier_)
            if (speed(i, b) > speed(fastest, b)) fastest = i;
        return fastest;
    }
    size_t cur = active_;
    const double up = returning ? 1.0 : 1.0 + hysteresis_;
    if (!on_frontier_[cur] || !meets(cur, 1.0)) {  // misses: switch down now
        // while CORRECTED, the best that meets the up-switch margin, if any
        bool safe = false;
        size_t pick = best;
        if (tracker_ && tracker_->corrected())
            for (size_t i : frontier_)
                if (meets(i, 1.0) && meets(i, up) && (!safe || cands_[i].accuracy > cands_[pick].accuracy))
                    pick = i, safe = true;
        return safe ? pick : best;
    }
    if (cands_[best].accuracy <= cands_[cur].accuracy) return best;
    // CORRECTED: up-switches wait for the return on hold, else for a full window (adaptive.py, dwell)
    if (!returning && tracker_ && tracker_->corrected() && (tracker_->hold() || !tracker_->dwelt())) return cur;
    // switching up: only to a stitch that clears the budget by the margin
    bool found = false;
    size_t pick = cur;
    for (size_t i : frontier_) {
        if (!meets(i, 1.0) || !(cands_[i].accuracy > cands_[cur].accuracy) || !meets(i, up)) continue;
        if (!found || cands_[i].accuracy > cands_[pick].accuracy) pick = i, found = true;
    }
    return pick;
}

size_t Selector::do_switch(bool *no_fit, Answer req) {
    *no_fit = false;
    if (req != kNone && tracker_ && !meets(active_, 1.0))
        tracker_->penalise(active_);  // left because it is slow now: not retried before a return
    if (req == kReturn && tracker_ && tracker_->has_return_to() && on_frontier_[tracker_->return_to()]) {
        active_ = tracker_->return_to();
        return active_;
    }
    active_ = choose(no_fit, req == kReturn);
    return active_;
}

size_t Selector::set_budget(double min_throughput, double max_latency_ms, int64_t batch, bool *no_fit) {
    has_budget_ = true;
    has_min_ = min_throughput > 0, min_thr_ = min_throughput;
    has_max_ = max_latency_ms > 0, max_lat_ = max_latency_ms;
    budget_batch_ = batch > 0 ? batch : batch_;
    if (tracker_) tracker_->clear_home();  // a new budget: the stitch to return to is chosen afresh
    return do_switch(no_fit);
}

bool Selector::observe(size_t stitch, int64_t batch, double seconds, bool *no_fit) {
    // if tr.record(...) or tr.pending, and a budget: act on the loop's request
    *no_fit = false;
    if (!tracker_) return false;
    Answer a = tracker_->record(stitch, batch, seconds);
    if (!((a != kNone || tracker_->pending() != kNone) && has_budget_)) return false;
    Answer req = tracker_->take_request();
    if (req == kNone) return false;
    do_switch(no_fit, req);
    return true;
}

void Selector::fill(size_t i, unsigned flags, snnet_decision *out) const {
    const Candidate &c = cands_[i];
    const double nan = std::numeric_limits<double>::quiet_NaN();
    int64_t b = batch();
    out->id = c.id;
    out->stitch_path = c.path.c_str();
    out->engine_path = c.has_engine ? c.engine.c_str() : nullptr;
    out->top1 = c.has_top1 ? c.top1 : nan;
    out->flops = c.has_flops ? c.flops : nan;
    out->accuracy = c.accuracy;
    out->predicted_throughput = speed(i, b);
    out->predicted_latency_ms = predicted_latency_ms(i, b);
    out->batch = b;
    out->flags = flags | (proxy_ ? SNNET_FLAG_ACCURACY_PROXY : 0u) | (c.has_engine ? 0u : SNNET_FLAG_NO_ENGINE);
}

std::string Selector::describe(size_t i) {
    const Candidate &c = cands_[i];
    nlohmann::ordered_json out, thr, lat;
    for (size_t k = 0; k < c.batches.size(); ++k) {
        thr[std::to_string(c.batches[k])] = c.throughput[k];
        lat[std::to_string(c.batches[k])] = c.latency[k];
    }
    out["id"] = c.id;
    out["path"] = c.path;
    out["accuracy"] = c.accuracy;
    out["throughput"] = thr;
    out["latency_ms"] = lat;
    out["on_frontier"] = on_frontier_[i] != 0;
    if (tracker_) {  // LatencyTracker.describe(stitch, budget batch)
        int64_t b = batch();
        nlohmann::ordered_json a;
        a["state"] = tracker_->corrected() ? "corrected" : "nominal";
        a["hold"] = tracker_->hold();
        a["correction"] = round4(tracker_->correction());
        a["batch"] = b;
        a["inflation"] = tracker_->has_inflation() ? nlohmann::ordered_json(round4(tracker_->inflation()))
                                                   : nlohmann::ordered_json(nullptr);
        if (tracker_->has_tails())
            a["tail_ratios"] = {{"p50", round4(tracker_->tail(0))}, {"p90", round4(tracker_->tail(1))},
                                {"p99", round4(tracker_->tail(2))}};
        else
            a["tail_ratios"] = nullptr;
        a["predicted_ms"] = round4(tracker_->predicted_ms(i, b));
        double med = 0.0;
        int calls = 0;
        bool ran = tracker_->observed(i, &med, &calls);
        a["observed_ms"] = ran ? nlohmann::ordered_json(round4(round4(med) * double(b))) : nlohmann::ordered_json(nullptr);
        a["observed_calls"] = calls;
        out["adaptive"] = a;
    }
    return out.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace snnet
