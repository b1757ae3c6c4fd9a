// LatencyTracker: see tracker.hpp and snnet_export/runtime/adaptive.py (the reference).
#include "tracker.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <utility>

namespace snnet {

LatencyTracker::LatencyTracker(std::vector<StitchProfile> profile, int window, int check_every, double min_change,
                               int history, int min_samples)
    : profile_(std::move(profile)),
      ratios_(window),
      seen_(profile_.size(), Ring(history)),
      ran_(profile_.size(), 0),
      scratch_(size_t(std::max(window, history))),
      check_every_(check_every),
      min_samples_(std::min(min_samples, window)),
      threshold_(std::log1p(min_change)) {}

double LatencyTracker::expected_ms(size_t s, int64_t batch) const {
    const StitchProfile &p = profile_[s];
    // min(near, key=lambda b: abs(b - batch)): the first of the nearest in profile order
    size_t best = 0;
    for (size_t i = 1; i < p.batches.size(); ++i)
        if (std::llabs(p.batches[i] - batch) < std::llabs(p.batches[best] - batch)) best = i;
    return p.p50_ms[best] * double(batch) / double(p.batches[best]);
}

bool LatencyTracker::record(size_t s, int64_t batch, double seconds) {
    double ms = seconds * 1e3;
    double ratio = ms / expected_ms(s, batch);
    if (has_last_ && last_ == s) ratios_.push(ratio);  // the first call after a switch is a warm-up
    has_last_ = true;
    last_ = s;
    seen_[s].push(ms / double(batch));
    ran_[s] = 1;
    calls_ += 1;
    if (calls_ % check_every_ != 0 || ratios_.size() == 0) return false;
    int n = ratios_.size();
    for (int i = 0; i < n; ++i) scratch_[size_t(i)] = ratios_.at(i);
    std::sort(scratch_.begin(), scratch_.begin() + n);
    correction_ = scratch_[size_t(n / 2)];
    if (n >= min_samples_) {
        has_tails_ = true;
        tails_[0] = correction_;
        tails_[1] = scratch_[size_t(std::ceil(0.9 * double(n))) - 1];
        tails_[2] = scratch_[size_t(std::ceil(0.99 * double(n))) - 1];
    }
    // (correction, tail("p90") or 1.0, tail("p99") or 1.0)
    double now[3] = {correction_, has_tails_ && tails_[1] != 0.0 ? tails_[1] : 1.0,
                     has_tails_ && tails_[2] != 0.0 ? tails_[2] : 1.0};
    bool all_small = true;
    for (int k = 0; k < 3; ++k) all_small = all_small && std::fabs(std::log(now[k] / chosen_with_[k])) < threshold_;
    if (all_small) return false;
    for (int k = 0; k < 3; ++k) chosen_with_[k] = now[k];
    return true;
}

bool LatencyTracker::observed(size_t s, double *median_ms_per_image, int *calls) {
    const Ring &seen = seen_[s];
    int n = seen.size();
    if (n == 0) return false;
    for (int i = 0; i < n; ++i) scratch_[size_t(i)] = seen.at(i);
    std::sort(scratch_.begin(), scratch_.begin() + n);
    *median_ms_per_image = scratch_[size_t(n / 2)];
    *calls = n;
    return true;
}

}  // namespace snnet
