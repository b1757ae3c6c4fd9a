// The selector's decisions: a port of snnet_export/runtime/selector.py (candidates, frontier at the
// smallest profiled batch, budgets, hysteresis, fallback to the fastest, FLOPs proxy, describe).
// Not thread-safe by itself: api.cpp serialises calls with one mutex per handle.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "folder.hpp"
#include "snnet_select.h"
#include "tracker.hpp"

namespace snnet {

struct Candidate {
    int64_t id = 0;
    std::string path, engine;  // engine: folder-joined file to run, empty when none
    bool has_engine = false;
    double accuracy = 0.0, top1 = 0.0, flops = 0.0;
    bool has_top1 = false, has_flops = false;
    std::vector<int64_t> batches;  // profile order (decides ties between equally near batches)
    std::vector<double> throughput, p50, p90, p99;
    std::vector<json> latency;     // as written, for describe
};

struct OpenOptions {
    std::string backend = "ort", profile, device, target;
    bool has_profile = false, has_device = false, has_target = false;
    double hysteresis = 0.05;
    int stat = 1;  // 0 p50, 1 p90, 2 p99
    bool adaptive = true;
    bool hold = true;  // Selector(hold=...): on hold under a load that slows the device
};

class Selector {
  public:
    // Throws FolderError (manifest, profile, selector kinds).
    Selector(const std::string &folder, const OpenOptions &opts);

    size_t size() const { return cands_.size(); }
    const Candidate &candidate(size_t i) const { return cands_[i]; }
    bool find(int64_t id, size_t *index) const;  // binary search, no allocation
    const std::vector<size_t> &frontier() const { return frontier_; }
    bool on_frontier(size_t i) const { return on_frontier_[i] != 0; }
    bool accuracy_proxy() const { return proxy_; }
    size_t active() const { return active_; }
    int64_t batch() const { return has_budget_ ? budget_batch_ : batch_; }
    const LatencyTracker *tracker() const { return tracker_.get(); }
    // Selector.correction: the closed loop's speed factor (1.0 in NOMINAL or when not adaptive)
    double correction() const { return tracker_ ? tracker_->speed_factor() : 1.0; }

    // Selector.choose(): what the budget calls for, hysteresis against the active stitch.
    size_t choose(bool *no_fit, bool returning = false) const;
    // Selector.set_budget() after validation: min/max <= 0 mean none, batch <= 0 the default.
    size_t set_budget(double min_throughput, double max_latency_ms, int64_t batch, bool *no_fit);
    // Selector.observe(): returns whether it re-chose.
    bool observe(size_t stitch, int64_t batch, double seconds, bool *no_fit);

    double speed(size_t i, int64_t batch) const;
    double predicted_latency_ms(size_t i, int64_t batch) const;
    void fill(size_t i, unsigned flags, snnet_decision *out) const;
    std::string describe(size_t i);

  private:
    size_t nearest(const Candidate &c, int64_t batch) const;
    bool meets(size_t i, double margin) const;
    size_t do_switch(bool *no_fit, Answer req = kNone);
    void factors(size_t i, double *speed, double *latency) const;

    std::vector<Candidate> cands_;
    std::vector<int64_t> ids_;
    std::vector<size_t> frontier_;
    std::vector<char> on_frontier_;
    bool proxy_ = false;
    int64_t batch_ = 1;
    double hysteresis_;
    int stat_;
    std::unique_ptr<LatencyTracker> tracker_;
    size_t active_ = 0;
    bool has_budget_ = false, has_min_ = false, has_max_ = false;
    double min_thr_ = 0.0, max_lat_ = 0.0;
    int64_t budget_batch_ = 1;
};

}  // namespace snnet
