// The throughput-vs-accuracy Pareto frontier: a port of engine_folder/profile.py:pareto_front,
// kept alone in this file pair so a change to the Python frontier (tie groups, ...) is re-ported here.
#pragma once
#include <cstdint>
#include <map>
#include <vector>

namespace snnet {

struct FrontierPoint {
    int64_t id;
    double throughput, accuracy;
};

// Ids on the frontier of (throughput, accuracy), both maximised, slowest (most accurate) first
// (profile.py:pareto_front): each tie group (``groups``: id -> label; an id without one is its own
// group) is represented by its most accurate member (then the faster, then the lower id); then
// sort by (throughput desc, accuracy desc, id asc) and keep strictly rising accuracy.
std::vector<int64_t> pareto_front(std::vector<FrontierPoint> points, const std::map<int64_t, int64_t> &groups);

struct TieRecord {
    int64_t id, batch;
    const std::vector<int64_t> *members;
};
// profile.py:tie_groups: {id: min(members)} of the records at ``batch`` with a group of 2 or more.
std::map<int64_t, int64_t> tie_groups(const std::vector<TieRecord> &records, int64_t batch);

}  // namespace snnet
