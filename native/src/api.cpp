// The C ABI (snnet_select.h) over snnet::Selector: handles, status codes, per-handle messages,
// one mutex per handle, and no exception across the boundary (every entry point catches).
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <string>

#include "selector.hpp"
#include "snnet_select.h"

struct snnet_select {
    std::mutex mu;
    std::unique_ptr<snnet::Selector> sel;  // null when opening failed
    char err[512] = {0};
};

namespace {

snnet_status fail(snnet_select *h, snnet_status code, const char *msg) {
    if (h) {
        std::snprintf(h->err, sizeof h->err, "%s", msg);
        for (char *p = h->err; *p; ++p)
            if (*p == '\n' || *p == '\r') *p = ' ';  // one line
    }
    return code;
}

template <class T>
bool copy_out(const T &full, T *out) {  // fill a caller's struct of an older, shorter layout
    if (!out) return true;
    size_t n = out->struct_size;
    if (n < sizeof(size_t)) return false;
    if (n > sizeof(T)) n = sizeof(T);
    std::memcpy(reinterpret_cast<char *>(out) + sizeof(size_t), reinterpret_cast<const char *>(&full) + sizeof(size_t),
                n - sizeof(size_t));
    return true;
}

// The one guard every entry point that takes a handle goes through: a NULL handle is refused, the
// handle's lock is held when `lock` (and still held while a failure's message is written), and
// every exception becomes a status and a one-line message on the handle.
template <class F>
snnet_status guard(snnet_select *h, bool lock, const char *nomem, F fn) {
    if (!h) return SNNET_E_ARGUMENT;
    std::unique_lock<std::mutex> held(h->mu, std::defer_lock);
    try {
        if (lock) held.lock();
        return fn();
    } catch (const snnet::FolderError &e) {
        return fail(h, e.code, e.message.c_str());
    } catch (const std::bad_alloc &) {
        return fail(h, SNNET_E_NOMEM, nomem);
    } catch (const std::exception &e) {
        return fail(h, SNNET_E_INTERNAL, (std::string("internal error: ") + e.what()).c_str());
    } catch (...) {
        return fail(h, SNNET_E_INTERNAL, "internal error");
    }
}

// guard() for the calls on an open selector: `fn(selector)` under the handle's lock.
template <class F>
snnet_status guarded(snnet_select *h, F fn) {
    return guard(h, true, "out of memory", [&]() -> snnet_status {
        if (!h->sel) return fail(h, SNNET_E_STATE, "this handle failed to open: close it and open the folder again");
        return fn(*h->sel);
    });
}

snnet_status lookup(snnet_select *h, snnet::Selector &s, int64_t stitch, size_t *index) {
    if (stitch == SNNET_CURRENT) {
        *index = s.active();
        return SNNET_OK;
    }
    if (s.find(stitch, index)) return SNNET_OK;
    char msg[160];
    std::snprintf(msg, sizeof msg, "stitch %lld is not a candidate (not measured in the profile or not in the manifest)",
                  (long long)stitch);
    return fail(h, SNNET_E_UNKNOWN_STITCH, msg);
}

snnet_status decision_out(snnet_select *h, const snnet::Selector &s, size_t i, unsigned flags, snnet_decision *out) {
    if (!out) return SNNET_OK;
    snnet_decision d;
    snnet_decision_init(&d);
    s.fill(i, flags, &d);
    if (!copy_out(d, out)) return fail(h, SNNET_E_ARGUMENT, "snnet_decision.struct_size is not set (use snnet_decision_init)");
    return SNNET_OK;
}

bool read_options(const snnet_select_options *in, snnet::OpenOptions *o, std::string *why) {
    snnet_select_options opts;
    snnet_select_options_init(&opts);
    if (in) {
        if (in->struct_size < sizeof(size_t)) return *why = "snnet_select_options.struct_size is not set (use snnet_select_options_init)", false;
        std::memcpy(&opts, in, in->struct_size < sizeof opts ? in->struct_size : sizeof opts);
    }
    o->backend = opts.backend ? opts.backend : "ort";
    if (o->backend != "ort" && o->backend != "trt") return *why = "backend must be ort or trt, got '" + o->backend + "'", false;
    if (opts.profile) o->has_profile = true, o->profile = opts.profile;
    if (opts.device) o->has_device = true, o->device = opts.device;
    if (opts.target && *opts.target) o->has_target = true, o->target = opts.target;
    if (!std::isfinite(opts.hysteresis)) return *why = "hysteresis must be a finite number", false;
    o->hysteresis = opts.hysteresis;
    std::string stat = opts.latency_stat ? opts.latency_stat : "p90";
    if (stat == "p50") o->stat = 0;
    else if (stat == "p90") o->stat = 1;
    else if (stat == "p99") o->stat = 2;
    else return *why = "latency_stat must be p50, p90 or p99, got '" + stat + "'", false;
    o->adaptive = opts.adaptive != 0;
    o->hold = opts.hold != 0;
    return true;
}

bool bad_limit(double x) { return !std::isfinite(x) || x < 0; }

}  // namespace

extern "C" {

const char *snnet_select_version(void) { return SNNET_SELECT_VERSION; }

int snnet_select_abi_version(void) { return SNNET_SELECT_ABI_VERSION; }

const char *snnet_status_name(snnet_status status) {
    switch (status) {
        case SNNET_OK: return "SNNET_OK";
        case SNNET_E_ARGUMENT: return "SNNET_E_ARGUMENT";
        case SNNET_E_MANIFEST: return "SNNET_E_MANIFEST";
        case SNNET_E_PROFILE: return "SNNET_E_PROFILE";
        case SNNET_E_SELECTOR: return "SNNET_E_SELECTOR";
        case SNNET_E_UNKNOWN_STITCH: return "SNNET_E_UNKNOWN_STITCH";
        case SNNET_E_BUFFER: return "SNNET_E_BUFFER";
        case SNNET_E_NOMEM: return "SNNET_E_NOMEM";
        case SNNET_E_STATE: return "SNNET_E_STATE";
        case SNNET_E_INTERNAL: return "SNNET_E_INTERNAL";
    }
    return "SNNET_E_UNKNOWN_STATUS";
}

void snnet_select_options_init(snnet_select_options *opts) {
    if (!opts) return;
    std::memset(opts, 0, sizeof *opts);
    opts->struct_size = sizeof *opts;
    opts->backend = "ort";
    opts->hysteresis = 0.05;
    opts->latency_stat = "p90";
    opts->adaptive = 1;
    opts->hold = 1;
}

void snnet_decision_init(snnet_decision *d) {
    if (!d) return;
    std::memset(d, 0, sizeof *d);
    d->struct_size = sizeof *d;
}

snnet_status snnet_select_open(const char *folder, const snnet_select_options *opts, snnet_select **out) {
    if (!out) return SNNET_E_ARGUMENT;
    *out = nullptr;
    snnet_select *h = new (std::nothrow) snnet_select;
    if (!h) return SNNET_E_NOMEM;
    *out = h;
    if (!folder) return fail(h, SNNET_E_ARGUMENT, "folder is NULL");
    // no lock: nobody else holds this handle yet
    return guard(h, false, "out of memory while reading the folder", [&]() -> snnet_status {
        snnet::OpenOptions o;
        std::string why;
        if (!read_options(opts, &o, &why)) return fail(h, SNNET_E_ARGUMENT, why.c_str());
        h->sel.reset(new snnet::Selector(folder, o));
        return SNNET_OK;
    });
}

void snnet_select_close(snnet_select *sel) { delete sel; }

const char *snnet_select_errmsg(const snnet_select *sel) {
    return sel ? sel->err : "no handle: snnet_select_open got no out pointer or ran out of memory";
}

snnet_status snnet_select_errmsg_copy(snnet_select *sel, char *buf, size_t cap) {
    return guard(sel, true, "out of memory", [&]() -> snnet_status {
        if (!buf || cap == 0) return SNNET_E_ARGUMENT;  // no message: it would overwrite the one asked for
        std::snprintf(buf, cap, "%s", sel->err);
        return SNNET_OK;
    });
}

snnet_status snnet_select_set_budget(snnet_select *sel, double min_throughput, double max_latency_ms, int64_t batch,
                                     snnet_decision *out) {
    return guarded(sel, [&](snnet::Selector &s) {
        if (bad_limit(min_throughput) || bad_limit(max_latency_ms))
            return fail(sel, SNNET_E_ARGUMENT, "min_throughput and max_latency_ms must be finite and >= 0 (0: no limit)");
        if (min_throughput == 0 && max_latency_ms == 0)
            return fail(sel, SNNET_E_ARGUMENT, "set_budget needs min_throughput or max_latency_ms (> 0)");
        if (batch < 0) return fail(sel, SNNET_E_ARGUMENT, "batch must be a positive integer (0: the profile's smallest)");
        bool no_fit = false;
        size_t i = s.set_budget(min_throughput, max_latency_ms, batch, &no_fit);
        return decision_out(sel, s, i, no_fit ? SNNET_FLAG_NO_FIT : 0u, out);
    });
}

snnet_status snnet_select_choose(snnet_select *sel, snnet_decision *out) {
    return guarded(sel, [&](snnet::Selector &s) {
        bool no_fit = false;
        size_t i = s.choose(&no_fit);
        return decision_out(sel, s, i, no_fit ? SNNET_FLAG_NO_FIT : 0u, out);
    });
}

snnet_status snnet_select_current(snnet_select *sel, snnet_decision *out) {
    return guarded(sel, [&](snnet::Selector &s) { return decision_out(sel, s, s.active(), 0u, out); });
}

snnet_status snnet_select_observe(snnet_select *sel, int64_t stitch, int64_t batch, double seconds,
                                  snnet_observation *out) {
    return guarded(sel, [&](snnet::Selector &s) {
        if (batch < 1) return fail(sel, SNNET_E_ARGUMENT, "batch must be a positive integer");
        if (!std::isfinite(seconds) || seconds <= 0)
            return fail(sel, SNNET_E_ARGUMENT, "seconds must be a finite number > 0");
        snnet_observation o;
        std::memset(&o, 0, sizeof o);
        o.struct_size = sizeof o;
        if (s.tracker()) {  // not adaptive: observe does nothing (as in Python)
            size_t i = 0;
            snnet_status st = lookup(sel, s, stitch, &i);
            if (st != SNNET_OK) return st;
            bool no_fit = false;
            o.rechose = s.observe(i, batch, seconds, &no_fit) ? 1 : 0;
            o.flags = no_fit ? SNNET_FLAG_NO_FIT : 0u;
        }
        o.current = s.candidate(s.active()).id;
        o.correction = s.correction();
        if (!copy_out(o, out)) return fail(sel, SNNET_E_ARGUMENT, "snnet_observation.struct_size is not set");
        return SNNET_OK;
    });
}

snnet_status snnet_select_stitch(snnet_select *sel, int64_t stitch, snnet_decision *out) {
    return guarded(sel, [&](snnet::Selector &s) {
        size_t i = 0;
        snnet_status st = lookup(sel, s, stitch, &i);
        return st != SNNET_OK ? st : decision_out(sel, s, i, 0u, out);
    });
}

snnet_status snnet_select_ids(snnet_select *sel, int frontier_only, int64_t *ids, size_t cap, size_t *count) {
    return guarded(sel, [&](snnet::Selector &s) {
        size_t n = frontier_only ? s.frontier().size() : s.size();
        if (count) *count = n;
        if (cap < n || (!ids && n)) return fail(sel, SNNET_E_BUFFER, "the id buffer is too small (see *count)");
        for (size_t k = 0; k < n; ++k) ids[k] = s.candidate(frontier_only ? s.frontier()[k] : k).id;
        return SNNET_OK;
    });
}

snnet_status snnet_select_correction(snnet_select *sel, double *correction, double tails[3], int *have_tails) {
    return guarded(sel, [&](snnet::Selector &s) {
        const snnet::LatencyTracker *t = s.tracker();
        if (correction) *correction = s.correction();
        if (have_tails) *have_tails = t && t->has_tails() ? 1 : 0;
        if (tails)
            for (int k = 0; k < 3; ++k) tails[k] = t && t->has_tails() ? t->tail(k) : 1.0;
        return SNNET_OK;
    });
}

snnet_status snnet_select_loop(snnet_select *sel, snnet_loop *out) {
    return guarded(sel, [&](snnet::Selector &s) {
        snnet_loop l;
        std::memset(&l, 0, sizeof l);
        l.struct_size = sizeof l;
        l.speed_factor = l.latency_factor = l.correction = 1.0;
        l.tails[0] = l.tails[1] = l.tails[2] = 1.0;
        if (const snnet::LatencyTracker *t = s.tracker()) {
            l.corrected = t->corrected();
            l.speed_factor = t->speed_factor(), l.latency_factor = t->latency_factor(), l.correction = t->correction();
            l.has_inflation = t->has_inflation(), l.inflation = t->inflation();
            l.has_tails = t->has_tails();
            for (int k = 0; k < 3; ++k) l.tails[k] = t->has_tails() ? t->tail(k) : 1.0;
            l.calls = t->calls();
            l.hold = t->hold();
        }
        if (!out || !copy_out(l, out)) return fail(sel, SNNET_E_ARGUMENT, "snnet_loop.struct_size is not set");
        return SNNET_OK;
    });
}

snnet_status snnet_select_describe(snnet_select *sel, int64_t stitch, char *buf, size_t cap, size_t *needed) {
    return guarded(sel, [&](snnet::Selector &s) {
        size_t i = 0;
        snnet_status st = lookup(sel, s, stitch, &i);
        if (st != SNNET_OK) return st;
        std::string text = s.describe(i);
        if (needed) *needed = text.size() + 1;
        if (!buf || cap < text.size() + 1) return fail(sel, SNNET_E_BUFFER, "the describe buffer is too small (see *needed)");
        std::memcpy(buf, text.c_str(), text.size() + 1);
        return SNNET_OK;
    });
}

}  // extern "C"
