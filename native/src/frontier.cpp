// pareto_front and tie_groups: see frontier.hpp and engine_folder/profile.py (the reference).
#include "frontier.hpp"

#include <algorithm>
#include <limits>
#include <tuple>

namespace snnet {

std::vector<int64_t> pareto_front(std::vector<FrontierPoint> points, const std::map<int64_t, int64_t> &groups) {
    if (!groups.empty()) {
        std::map<int64_t, FrontierPoint> best;  // label -> representative
        for (const auto &p : points) {
            auto g = groups.find(p.id);
            int64_t label = g == groups.end() ? p.id : g->second;
            auto cur = best.find(label);
            // (acc, thr, -id) > (cur acc, cur thr, -cur id)
            if (cur == best.end() || std::make_tuple(p.accuracy, p.throughput, -p.id) >
                                         std::make_tuple(cur->second.accuracy, cur->second.throughput, -cur->second.id))
                best[label] = p;
        }
        points.clear();
        for (const auto &kv : best) points.push_back(kv.second);
    }
    // sort by (-throughput, -accuracy, id): ids are unique, so the order is total
    std::sort(points.begin(), points.end(), [](const FrontierPoint &a, const FrontierPoint &b) {
        if (-a.throughput != -b.throughput) return -a.throughput < -b.throughput;
        if (-a.accuracy != -b.accuracy) return -a.accuracy < -b.accuracy;
        return a.id < b.id;
    });
    std::vector<int64_t> front;
    double best_acc = -std::numeric_limits<double>::infinity();
    for (const auto &p : points) {
        if (p.accuracy > best_acc) {
            front.push_back(p.id);
            best_acc = p.accuracy;
        }
    }
    std::reverse(front.begin(), front.end());
    return front;
}

std::map<int64_t, int64_t> tie_groups(const std::vector<TieRecord> &records, int64_t batch) {
    std::map<int64_t, int64_t> out;
    for (const auto &r : records)
        if (r.batch == batch && r.members && r.members->size() > 1)
            out[r.id] = *std::min_element(r.members->begin(), r.members->end());
    return out;
}

}  // namespace snnet
