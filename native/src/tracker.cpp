// LatencyTracker: see tracker.hpp and snnet_export/runtime/adaptive.py (the reference); the step
// numbers refer to the algorithm in adaptive.py's module docstring.
#include "tracker.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <utility>

namespace snnet {

namespace {

// _rank: nearest-rank quantile of an ascending array (level 0.5: the upper median); tail: never the
// largest of two or more
double rank(const double *ordered, int n, double level, bool tail = false) {
    if (level == 0.5) return ordered[n / 2];
    size_t i = size_t(std::ceil(level * double(n))) - 1;
    if (tail && n > 1) i = std::min(i, size_t(n - 2));
    return ordered[i];
}

}  // namespace

LatencyTracker::LatencyTracker(std::vector<StitchProfile> profile, double level, int window, int check_every,
                               double min_change, int history, int min_samples, bool hold)
    : profile_(std::move(profile)),
      level_(level),
      window_(window),
      seen_(profile_.size(), Ring<double>(history)),
      scratch_a_(size_t(std::max(window, history))),
      scratch_b_(size_t(window)),
      has_penalty_(profile_.size(), 0),
      penalty_speed_(profile_.size(), 1.0),
      penalty_latency_(profile_.size(), 1.0),
      size_(window),
      check_every_(check_every),
      min_samples_(std::min(min_samples, window)),
      threshold_(std::log1p(min_change)),
      holds_(hold) {}

double LatencyTracker::lookup(bool stat, size_t s, int64_t batch) const {
    const StitchProfile &p = profile_[s];
    // near = sorted(batches); nb = min(near, key=abs(b - batch)): the smaller batch on a tie
    size_t best = 0;
    for (size_t i = 1; i < p.batches.size(); ++i) {
        int64_t d = std::llabs(p.batches[i] - batch), e = std::llabs(p.batches[best] - batch);
        if (d < e || (d == e && p.batches[i] < p.batches[best])) best = i;
    }
    const double ms = stat ? p.stat_ms[best] : p.p50_ms[best];
    return ms * double(batch) / double(p.batches[best]);
}

Answer LatencyTracker::record(size_t s, int64_t batch, double seconds) {
    double ms = seconds * 1e3;  // step 1
    double r = ms / lookup(false, s, batch), u = ms / lookup(true, s, batch);
    if (has_last_ && last_ == s) {
        window_.push({r, u});
        run_ += 1;
        const double f = speed_factor();
        over_ = r > f * kStep ? over_ + 1 : 0;
        under_ = r < f / kStep ? under_ + 1 : 0;
    } else {
        run_ = 0;
    }
    has_last_ = true;
    last_ = s;
    seen_[s].push(ms / double(batch));
    calls_ += 1;
    const bool step = std::max(over_, under_) >= kStepCalls;  // step 2: a load step (or its end)
    if (step) {
        hold_ = hold_ || (holds_ && over_ >= kStepCalls);  // a load that slows the device: on hold
        window_.keep_newest(kStepCalls);
        over_ = under_ = 0;
    } else if (calls_ % check_every_ != 0 || window_.size() == 0) {
        return kNone;
    }
    Answer answer = check(step);
    if (answer == kNone && run_ >= min_samples_) {  // step 7
        settled_.set = true;
        settled_.stitch = last_;
        settled_.speed = speed_factor();
        settled_.latency = latency_factor();
    }
    if (answer > pending_) pending_ = answer;
    return answer;
}

Answer LatencyTracker::check(bool step) {  // steps 3-5
    int n = window_.size();
    double *R = scratch_a_.data(), *U = scratch_b_.data();
    for (int i = 0; i < n; ++i) R[i] = window_.at(i).r, U[i] = window_.at(i).u;
    std::sort(R, R + n);
    double c = correction_ = rank(R, n, 0.5);
    std::sort(U, U + n);
    top_ = U[n - 1];
    bool has_g = false;
    double g = 0.0;
    if (n >= min_samples_) {
        g = rank(U, n, level_, !hold_), has_g = true;  // on hold: the largest counts
        has_tails_ = true;
        tails_[0] = c, tails_[1] = rank(R, n, 0.9), tails_[2] = rank(R, n, 0.99);
    }
    has_inflation_ = has_g, inflation_ = g;
    if (!corrected_) {
        if (!step && (!has_g || (1 / kEnter <= c && c <= kEnter && g <= kTailEnter))) return kNone;
        corrected_ = true, streak_ = 0, credit_.set = false;
        if (holds_ && !hold_ && !step && has_g && (c > kEnter || g > kTailEnter)) {  // slower: on hold
            hold_ = true;
            inflation_ = rank(U, n, level_, false);
        }
        chosen_with_[0] = c, chosen_with_[1] = latency_factor();
        return kRechoose;
    }
    if (recent_ok()) {
        streak_ += 1;
        if (streak_ >= calm_ + (hold_ ? 1 : 0)) return do_return();  // on hold: one passing check more
    } else {
        streak_ = 0;
    }
    double now[2] = {c, latency_factor()};
    bool quiet = true;
    for (int k = 0; k < 2; ++k) quiet = quiet && std::fabs(std::log(now[k] / chosen_with_[k])) < threshold_;
    if (quiet) return kNone;
    chosen_with_[0] = now[0], chosen_with_[1] = now[1];
    return kRechoose;
}

bool LatencyTracker::recent_ok() {  // the min_samples newest (all since the last step)
    int n = window_.size();
    int k = min_samples_;
    if (n < k) return false;
    double *R = scratch_a_.data(), *U = scratch_b_.data();  // check() is done with them
    for (int i = 0; i < k; ++i) R[i] = window_.at(n - k + i).r, U[i] = window_.at(n - k + i).u;
    std::sort(R, R + k);
    std::sort(U, U + k);
    double ck = rank(R, k, 0.5);
    double gk = rank(U, k, level_, true);
    if (!home_.set || (home_.speed == 1.0 && home_.latency == 1.0)) {
        double low = !home_.set ? 1 / kLeave : 0.0;
        return low <= ck && ck <= kLeave && gk <= kTailLeave;
    }
    return ck <= home_.speed * kLeave && gk <= home_.latency * kTailLeave;
}

Answer LatencyTracker::do_return() {  // step 6
    Triple home = home_;
    home_.set = false;
    has_return_to_ = home.set;
    return_to_ = home.stitch;
    over_ = under_ = streak_ = 0, returned_at_ = calls_, hold_ = false;
    std::fill(has_penalty_.begin(), has_penalty_.end(), 0);
    if (!home.set || (home.speed == 1.0 && home.latency == 1.0)) {
        corrected_ = false, credit_.set = false;
        window_.clear();
        correction_ = 1.0, has_inflation_ = false, has_tails_ = false;
        chosen_with_[0] = chosen_with_[1] = 1.0;
    } else {
        window_.keep_newest(min_samples_);
        credit_ = home;
        chosen_with_[0] = home.speed, chosen_with_[1] = home.latency;
    }
    return kReturn;
}

void LatencyTracker::factors(size_t s, double *speed, double *latency) const {
    double sp = speed_factor(), lat = latency_factor();
    *speed = sp, *latency = lat;
    if (!corrected_) return;
    if (credit_.set && credit_.stitch == s && sp <= credit_.speed * kLeave && lat <= credit_.latency * kTailLeave) {
        *speed = credit_.speed, *latency = credit_.latency;
        return;
    }
    if (!has_penalty_[s]) return;
    *speed = std::max(sp, penalty_speed_[s]);
    *latency = std::max(lat, penalty_latency_[s]);
}

void LatencyTracker::penalise(size_t s) {
    if (!corrected_) return;
    has_penalty_[s] = 1, penalty_speed_[s] = speed_factor(), penalty_latency_[s] = latency_factor();
    if (credit_.set && credit_.stitch == s) credit_.set = false;
    bool relapse = returned_at_ >= 0 && calls_ - returned_at_ <= 2 * int64_t(size_);
    calm_ = relapse ? std::min(2 * calm_, kCalmMax) : 1;
    if (!home_.set && settled_.set && settled_.stitch == s) home_ = settled_;
}

bool LatencyTracker::observed(size_t s, double *median_ms_per_image, int *calls) {
    const Ring<double> &seen = seen_[s];
    int n = seen.size();
    if (n == 0) return false;
    double *a = scratch_a_.data();
    for (int i = 0; i < n; ++i) a[i] = seen.at(i);
    std::sort(a, a + n);
    *median_ms_per_image = a[n / 2];
    *calls = n;
    return true;
}

}  // namespace snnet
