// pareto_front: see frontier.hpp.
#include "frontier.hpp"

#include <algorithm>
#include <limits>

namespace snnet {

std::vector<int64_t> pareto_front(std::vector<FrontierPoint> points) {
    // sorted(points, key=lambda p: (-p[1], -p[2])): stable, fastest first, then most accurate
    std::stable_sort(points.begin(), points.end(), [](const FrontierPoint &a, const FrontierPoint &b) {
        if (-a.throughput != -b.throughput) return -a.throughput < -b.throughput;
        return -a.accuracy < -b.accuracy;
    });
    std::vector<int64_t> front;
    double best = -std::numeric_limits<double>::infinity();
    for (const auto &p : points) {
        if (p.accuracy > best) {
            front.push_back(p.id);
            best = p.accuracy;
        }
    }
    std::reverse(front.begin(), front.end());
    return front;
}

}  // namespace snnet
