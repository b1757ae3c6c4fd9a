// The closed loop: a port of snnet_export/runtime/adaptive.py (LatencyTracker), kept in this one
// file pair so a change to the Python loop is re-ported here alone. Same windows, thresholds,
// quantile definitions (nearest rank) and order of floating-point operations.
// Storage is fixed at construction: record() allocates nothing.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace snnet {

constexpr int kDefaultWindow = 20;     // DEFAULT_WINDOW
constexpr int kMinSamples = 10;        // MIN_SAMPLES
constexpr int kDefaultCheckEvery = 3;  // DEFAULT_CHECK_EVERY
constexpr double kDefaultMinChange = 0.03;  // DEFAULT_MIN_CHANGE
constexpr int kHistory = 64;

// Per stitch (by candidate index): its profiled batches in profile order and p50 latency (ms).
struct StitchProfile {
    std::vector<int64_t> batches;
    std::vector<double> p50_ms;
};

// A fixed-capacity FIFO (Python's deque(maxlen=n)).
class Ring {
  public:
    explicit Ring(int cap = 1) : buf_(size_t(cap)), cap_(cap) {}
    void push(double x) {
        buf_[size_t((head_ + size_) % cap_)] = x;
        if (size_ < cap_) ++size_;
        else head_ = (head_ + 1) % cap_;
    }
    int size() const { return size_; }
    double at(int i) const { return buf_[size_t((head_ + i) % cap_)]; }
    void clear() { head_ = size_ = 0; }

  private:
    std::vector<double> buf_;
    int cap_, head_ = 0, size_ = 0;
};

class LatencyTracker {
  public:
    LatencyTracker(std::vector<StitchProfile> profile, int window = kDefaultWindow,
                   int check_every = kDefaultCheckEvery, double min_change = kDefaultMinChange,
                   int history = kHistory, int min_samples = kMinSamples);

    // Profiled median latency (ms) of stitch index `s` at `batch` (linear from the nearest batch).
    double expected_ms(size_t s, int64_t batch) const;
    // expected_ms x correction.
    double predicted_ms(size_t s, int64_t batch) const { return expected_ms(s, batch) * correction_; }
    // Add one served call; true when the correction or a tail moved enough to re-choose.
    bool record(size_t s, int64_t batch, double seconds);

    double correction() const { return correction_; }
    bool has_tails() const { return has_tails_; }
    // 0: p50, 1: p90, 2: p99 (only when has_tails()).
    double tail(int k) const { return tails_[k]; }
    // Median ms per image over the stitch's recent calls (Python: round(sorted[n // 2], 4) is done by
    // the caller); false when it never ran. Allocates nothing (scratch is preallocated).
    bool observed(size_t s, double *median_ms_per_image, int *calls);
    int64_t calls() const { return calls_; }

  private:
    std::vector<StitchProfile> profile_;
    Ring ratios_;
    std::vector<Ring> seen_;
    std::vector<char> ran_;
    std::vector<double> scratch_;
    int check_every_, min_samples_;
    double threshold_;
    int64_t calls_ = 0;
    double correction_ = 1.0;
    bool has_tails_ = false;
    double tails_[3] = {1.0, 1.0, 1.0};
    double chosen_with_[3] = {1.0, 1.0, 1.0};
    bool has_last_ = false;
    size_t last_ = 0;
};

}  // namespace snnet
