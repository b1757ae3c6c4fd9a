// The closed loop: a port of snnet_export/runtime/adaptive.py (LatencyTracker, the NOMINAL /
// CORRECTED state machine with home, credit, penalties and calm periods), kept in this one file
// pair so a change to the Python loop is re-ported here alone. The algorithm is written step by
// step in adaptive.py's module docstring; this follows it line by line, with the same doubles.
// Storage is fixed at construction: record() and factors() allocate nothing.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace snnet {

constexpr int kDefaultWindow = 20;          // DEFAULT_WINDOW
constexpr int kMinSamples = 10;             // MIN_SAMPLES
constexpr int kDefaultCheckEvery = 3;       // DEFAULT_CHECK_EVERY
constexpr double kDefaultMinChange = 0.03;  // DEFAULT_MIN_CHANGE
constexpr double kEnter = 1.10, kTailEnter = 1.30, kLeave = 1.05, kTailLeave = 1.15;
constexpr int kCalmMax = 32;  // CALM_MAX
constexpr double kStep = 1.5;  // STEP
constexpr int kStepCalls = 3;  // STEP_CALLS
constexpr int kHistory = 64;

enum Answer { kNone = 0, kRechoose = 1, kReturn = 2 };  // NONE < RECHOOSE < RETURN

// Per stitch (by candidate index): its profiled batches, p50 and the budgeted percentile (ms).
struct StitchProfile {
    std::vector<int64_t> batches;
    std::vector<double> p50_ms, stat_ms;
};

// A fixed-capacity FIFO (Python's deque(maxlen=n)).
template <class T>
class Ring {
  public:
    explicit Ring(int cap = 1) : buf_(size_t(cap)), cap_(cap) {}
    void push(const T &x) {
        buf_[size_t((head_ + size_) % cap_)] = x;
        if (size_ < cap_) ++size_;
        else head_ = (head_ + 1) % cap_;
    }
    int size() const { return size_; }
    const T &at(int i) const { return buf_[size_t((head_ + i) % cap_)]; }
    void clear() { head_ = size_ = 0; }
    void keep_newest(int k) {  // drop all but the k newest
        if (size_ > k) head_ = (head_ + size_ - k) % cap_, size_ = k;
    }

  private:
    std::vector<T> buf_;
    int cap_, head_ = 0, size_ = 0;
};

struct Sample {
    double r = 0.0, u = 0.0;  // ms / profiled median, ms / profiled percentile
};

struct Triple {  // (stitch index, speed factor, latency factor)
    bool set = false;
    size_t stitch = 0;
    double speed = 1.0, latency = 1.0;
};

class LatencyTracker {
  public:
    // level: 0.5, 0.9 or 0.99 (the budgeted latency percentile).
    LatencyTracker(std::vector<StitchProfile> profile, double level, int window = kDefaultWindow,
                   int check_every = kDefaultCheckEvery, double min_change = kDefaultMinChange,
                   int history = kHistory, int min_samples = kMinSamples, bool hold = true);

    double expected_ms(size_t s, int64_t batch) const { return lookup(false, s, batch); }
    double predicted_ms(size_t s, int64_t batch) const { return expected_ms(s, batch) * speed_factor(); }
    Answer record(size_t s, int64_t batch, double seconds);
    void factors(size_t s, double *speed, double *latency) const;
    void penalise(size_t s);
    void clear_home() { home_.set = settled_.set = credit_.set = false; }
    Answer take_request() {
        Answer a = pending_;
        pending_ = kNone;
        return a;
    }
    Answer pending() const { return pending_; }
    bool corrected() const { return corrected_; }
    // adaptive.LatencyTracker.dwelt: the running stitch gave W samples since it was switched to
    bool dwelt() const { return run_ >= size_; }
    // adaptive.LatencyTracker.hold: on hold under a load that slows the device (no up-switch)
    bool hold() const { return hold_; }
    double speed_factor() const { return corrected_ ? correction_ : 1.0; }
    // max(c, g), max(c, top) while g is none: never below the median slowdown (Python's max keeps c
    // unless the other is larger)
    double latency_factor() const {
        const double g = has_inflation_ ? inflation_ : top_;
        return !corrected_ ? 1.0 : (g > correction_ ? g : correction_);
    }
    double correction() const { return correction_; }
    bool has_inflation() const { return has_inflation_; }
    double inflation() const { return inflation_; }
    bool has_tails() const { return has_tails_; }
    double tail(int k) const { return tails_[k]; }  // 0: p50, 1: p90, 2: p99
    bool has_return_to() const { return has_return_to_; }
    size_t return_to() const { return return_to_; }
    // Median ms per image over the stitch's recent calls; false when it never ran.
    bool observed(size_t s, double *median_ms_per_image, int *calls);
    int64_t calls() const { return calls_; }

  private:
    double lookup(bool stat, size_t s, int64_t batch) const;
    Answer check(bool step);
    bool recent_ok();
    Answer do_return();

    std::vector<StitchProfile> profile_;
    double level_;
    Ring<Sample> window_;
    std::vector<Ring<double>> seen_;
    std::vector<double> scratch_a_, scratch_b_;
    std::vector<char> has_penalty_;
    std::vector<double> penalty_speed_, penalty_latency_;
    int size_, check_every_, min_samples_;
    double threshold_;
    int64_t calls_ = 0;
    bool corrected_ = false;
    double correction_ = 1.0, inflation_ = 0.0;
    bool has_inflation_ = false, has_tails_ = false;
    bool holds_, hold_ = false;  // holding enabled; on hold
    double top_ = 1.0;           // the window's largest u at the last check
    double tails_[3] = {1.0, 1.0, 1.0};
    double chosen_with_[2] = {1.0, 1.0};
    bool has_last_ = false;
    size_t last_ = 0;
    int calm_ = 1, streak_ = 0;
    int64_t returned_at_ = -1;
    int64_t run_ = 0;
    int over_ = 0, under_ = 0;  // consecutive samples above / below the speed factor's step band
    Triple settled_, home_, credit_;
    bool has_return_to_ = false;
    size_t return_to_ = 0;
    Answer pending_ = kNone;
};

}  // namespace snnet
