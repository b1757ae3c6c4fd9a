// Speed of the C selector's hot path: choose/observe/set_budget latency per call (median, p99),
// heap allocations on the hot path after open (counted by replacing operator new and malloc), and
// the time to open a folder. usage: bench_select FOLDER [CALLS] [OPENS] [PROFILE]; prints one JSON
// object. Each call is timed alone (one steady_clock pair, median/p99), and each loop again untimed
// per call (loop_mean: the loop's wall time / calls, no clock reads inside).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "snnet_select.h"

extern "C" void *__libc_malloc(size_t);
extern "C" void *__libc_calloc(size_t, size_t);
extern "C" void *__libc_realloc(void *, size_t);
extern "C" void __libc_free(void *);

static std::atomic<long> g_allocs{0};

extern "C" void *malloc(size_t n) { g_allocs.fetch_add(1, std::memory_order_relaxed); return __libc_malloc(n); }
extern "C" void *calloc(size_t a, size_t b) { g_allocs.fetch_add(1, std::memory_order_relaxed); return __libc_calloc(a, b); }
extern "C" void *realloc(void *p, size_t n) { g_allocs.fetch_add(1, std::memory_order_relaxed); return __libc_realloc(p, n); }
extern "C" void free(void *p) { __libc_free(p); }
void *operator new(size_t n) {
    g_allocs.fetch_add(1, std::memory_order_relaxed);
    if (void *p = __libc_malloc(n ? n : 1)) return p;
    throw std::bad_alloc();
}
void *operator new[](size_t n) { return operator new(n); }
void operator delete(void *p) noexcept { __libc_free(p); }
void operator delete[](void *p) noexcept { __libc_free(p); }
void operator delete(void *p, size_t) noexcept { __libc_free(p); }
void operator delete[](void *p, size_t) noexcept { __libc_free(p); }

using Clock = std::chrono::steady_clock;

struct Stats {
    double median_us, p99_us, loop_mean_us;
    long allocs;
};

template <class F>
Stats time_calls(long calls, F fn) {
    std::vector<double> ns(static_cast<size_t>(calls));
    long before = g_allocs.load();
    for (long i = 0; i < calls; ++i) {
        auto t0 = Clock::now();
        fn(i);
        auto t1 = Clock::now();
        ns[size_t(i)] = double(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count());
    }
    auto l0 = Clock::now();
    for (long i = 0; i < calls; ++i) fn(i);
    double loop_ns = double(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - l0).count());
    long allocs = g_allocs.load() - before;  // over both loops (2 x calls)
    std::sort(ns.begin(), ns.end());
    return {ns[ns.size() / 2] / 1e3, ns[size_t(double(ns.size()) * 0.99)] / 1e3, loop_ns / double(calls) / 1e3, allocs};
}

int main(int argc, char **argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: bench_select FOLDER [CALLS] [OPENS] [PROFILE]\n");
        return 2;
    }
    long calls = argc > 2 ? std::atol(argv[2]) : 200000;
    int opens = argc > 3 ? std::atoi(argv[3]) : 30;
    snnet_select_options o;
    snnet_select_options_init(&o);
    o.profile = argc > 4 ? argv[4] : "profile.synthetic.json";
    std::vector<double> open_ms;
    long open_allocs = 0;  // proves the counting shims count: an open allocates
    snnet_select *sel = nullptr;
    for (int k = 0; k < opens; ++k) {
        long a0 = g_allocs.load();
        auto t0 = Clock::now();
        snnet_status st = snnet_select_open(argv[1], &o, &sel);
        auto t1 = Clock::now();
        open_allocs = g_allocs.load() - a0;
        if (st != SNNET_OK) {
            std::fprintf(stderr, "open: %s\n", snnet_select_errmsg(sel));
            return 1;
        }
        open_ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
        if (k + 1 < opens) snnet_select_close(sel);
    }
    std::sort(open_ms.begin(), open_ms.end());
    size_t n_front = 0, n_all = 0;
    snnet_select_ids(sel, 1, nullptr, 0, &n_front);
    snnet_select_ids(sel, 0, nullptr, 0, &n_all);
    snnet_decision d;
    snnet_decision_init(&d);
    snnet_select_current(sel, &d);
    double budget = d.predicted_throughput * 1.5;  // forces a mid-frontier choice
    snnet_select_set_budget(sel, budget, 0, 0, &d);
    Stats choose = time_calls(calls, [&](long) { snnet_select_choose(sel, &d); });
    // observe: the active stitch at 1x, then 2x its profiled latency (load steps every 5000 calls)
    snnet_decision cur;
    snnet_decision_init(&cur);
    snnet_select_current(sel, &cur);
    double base_s = 1.0 / cur.predicted_throughput;
    long rechose = 0;
    snnet_observation ob{};
    ob.struct_size = sizeof ob;
    Stats observe = time_calls(calls, [&](long i) {
        double f = (i / 5000) % 2 ? 2.0 : 1.0;
        snnet_select_observe(sel, SNNET_CURRENT, 1, base_s * f * (1.0 + 0.01 * double(i % 7)), &ob);
        rechose += ob.rechose;
    });
    Stats set_budget = time_calls(calls / 4, [&](long i) {
        snnet_select_set_budget(sel, budget * (i % 2 ? 0.5 : 1.5), 0, 0, &d);
    });
    snnet_select_close(sel);
    std::printf("{\"stitches\": %zu, \"frontier\": %zu, \"calls\": %ld, "
                "\"open_ms\": {\"median\": %.3f, \"min\": %.3f, \"runs\": %d, \"allocations\": %ld}, "
                "\"choose_us\": {\"median\": %.4f, \"p99\": %.4f, \"loop_mean\": %.4f, \"allocations\": %ld}, "
                "\"observe_us\": {\"median\": %.4f, \"p99\": %.4f, \"loop_mean\": %.4f, \"allocations\": %ld, "
                "\"rechose\": %ld}, "
                "\"set_budget_us\": {\"median\": %.4f, \"p99\": %.4f, \"loop_mean\": %.4f, \"allocations\": %ld}}\n",
                n_all, n_front, calls, open_ms[open_ms.size() / 2], open_ms[0], opens, open_allocs, choose.median_us,
                choose.p99_us, choose.loop_mean_us, choose.allocs, observe.median_us, observe.p99_us,
                observe.loop_mean_us, observe.allocs, rechose, set_budget.median_us, set_budget.p99_us,
                set_budget.loop_mean_us, set_budget.allocs);
    return 0;
}
