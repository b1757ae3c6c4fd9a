// The throughput-vs-accuracy Pareto frontier: a port of engine_folder/profile.py:pareto_front,
// kept alone in this file pair so a change to the Python frontier (tie groups, ...) is re-ported here.
#pragma once
#include <cstdint>
#include <vector>

namespace snnet {

struct FrontierPoint {
    int64_t id;
    double throughput, accuracy;
};

// Ids on the frontier of (throughput, accuracy), both maximised, slowest (most accurate) first.
// A point is on it when no other point is at least as fast and as accurate and strictly better in
// one; of exact duplicates the first in `points` order stays (Python's stable sort).
std::vector<int64_t> pareto_front(std::vector<FrontierPoint> points);

}  // namespace snnet
