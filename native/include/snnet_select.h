/*
 * snnet_select.h - the snnet-export runtime stitch selector as a C library.
 *
 * Opens an snnet-export engine folder (manifest.json + a measured profile), and decides which
 * stitch to run for a throughput or latency budget, exactly as the Python
 * snnet_export.runtime.Selector does (Pareto frontier at the budget's batch, hysteresis, the
 * closed loop over observed latencies, the fastest stitch with a flag when nothing meets the
 * budget, FLOPs as the accuracy proxy with a flag). It runs no engine: it names the file to run
 * (the stitch's ONNX, or the plan of a TensorRT target) and the app runs it with its own
 * TensorRT or ONNX Runtime code. Parity with Python is proven by shared conformance traces
 * (`snnet-export conformance generate`, replayed by `snnet-select-replay`).
 *
 * Conventions
 *  - C99; every function returns an snnet_status (0 = SNNET_OK) except the version, name and
 *    errmsg accessors and snnet_select_close.
 *  - A handle carries the message of its last failure: snnet_select_errmsg().
 *  - No global mutable state; nothing throws, aborts or exits across this boundary.
 *  - Structs passed in or out start with `struct_size` (set it to sizeof the struct you compiled
 *    against, or use the *_init functions): later ABI-compatible versions only append fields.
 *  - Thread safety is stated per function. "Thread-safe" means: may be called concurrently on the
 *    same handle from several threads (an internal mutex serialises the short critical sections).
 *
 * ABI version policy: SNNET_SELECT_ABI_VERSION changes only when an existing function, struct
 * field or status code changes meaning or layout; then the shared library's SONAME changes with it
 * (libsnnet_select.so.<ABI>). Adding functions, appending struct fields or adding status codes
 * and flags keeps the ABI version.
 */
#ifndef SNNET_SELECT_H
#define SNNET_SELECT_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define SNNET_API __declspec(dllexport)
#elif defined(__GNUC__)
#define SNNET_API __attribute__((visibility("default")))
#else
#define SNNET_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/** ABI version this header describes (compare with snnet_select_abi_version() at run time). */
#define SNNET_SELECT_ABI_VERSION 1
/** Library version of this header ("major.minor.patch"). */
#define SNNET_SELECT_VERSION "0.1.0"

/** Status codes: every call returns one. */
typedef enum snnet_status {
    SNNET_OK = 0,
    SNNET_E_ARGUMENT = 1,       /* a NULL pointer, a non-finite or negative budget, a bad option */
    SNNET_E_MANIFEST = 2,       /* manifest.json missing, unreadable, invalid JSON or failing its schema */
    SNNET_E_PROFILE = 3,        /* the profile file missing, unreadable, invalid JSON or failing its schema */
    SNNET_E_SELECTOR = 4,       /* folder and profile valid but unusable together (no stitch measured, ...) */
    SNNET_E_UNKNOWN_STITCH = 5, /* a stitch id that is not a candidate (not in the manifest and the profile) */
    SNNET_E_BUFFER = 6,         /* the output buffer is too small (the size needed is returned) */
    SNNET_E_NOMEM = 7,          /* out of memory */
    SNNET_E_STATE = 8,          /* the handle failed to open: only errmsg and close work on it */
    SNNET_E_INTERNAL = 9        /* a bug: please report it with the message */
} snnet_status;

/** Opaque selector handle: created by snnet_select_open, destroyed by snnet_select_close. */
typedef struct snnet_select snnet_select;

/** Pass as `stitch` to mean the active stitch. */
#define SNNET_CURRENT INT64_MIN

/** Decision flags. */
#define SNNET_FLAG_NO_FIT 1u         /* no stitch met the budget: this is the fastest */
#define SNNET_FLAG_ACCURACY_PROXY 2u /* some stitch has no known Top-1: GFLOPs rank the stitches */
#define SNNET_FLAG_NO_ENGINE 4u      /* the TensorRT target has no engine for this stitch (engine_path NULL) */

/** How to open a folder. Initialise with snnet_select_options_init, then change fields. */
typedef struct snnet_select_options {
    size_t struct_size;       /* sizeof(snnet_select_options) */
    const char *backend;      /* "ort" (default) or "trt": which engine file a decision names */
    const char *profile;      /* profile file (absolute, or relative to the folder); NULL: look it up */
    const char *device;       /* with profile NULL: the profile's "device" to prefer (NULL: newest) */
    const char *target;       /* TensorRT target (NULL: the profile's "target", else "dgpu") */
    double hysteresis;        /* relative margin before switching up (default 0.05) */
    const char *latency_stat; /* "p50", "p90" (default) or "p99": what max_latency_ms compares */
    int adaptive;             /* 1 (default): closed loop on observed latencies; 0: fixed choice */
    int hold;                 /* 1 (default): no up-switch while a load slows the device, until the
                                 loop returns (Python's Selector(hold=)); 0: up-switches after a window */
} snnet_select_options;

/** What the selector decided (or knows) about one stitch. */
typedef struct snnet_decision {
    size_t struct_size;          /* sizeof(snnet_decision) */
    int64_t id;                  /* stitch id (manifest configs[].id) */
    const char *stitch_path;     /* e.g. "Ti[0..0] -> S[0..11]"; valid until snnet_select_close */
    const char *engine_path;     /* folder/<onnx> (ort) or folder/<plan> (trt); NULL with SNNET_FLAG_NO_ENGINE */
    double top1;                 /* Top-1 (%), NaN when unknown */
    double flops;                /* FLOPs per image, NaN when the manifest has none */
    double accuracy;             /* the score ranked: Top-1, or GFLOPs with SNNET_FLAG_ACCURACY_PROXY */
    double predicted_throughput; /* images/s at `batch`: profiled / the closed loop's speed factor */
    double predicted_latency_ms; /* latency_stat at `batch`: profiled percentile x the loop's latency factor */
    int64_t batch;               /* the budget's batch (the profile's smallest before any budget) */
    unsigned flags;              /* SNNET_FLAG_* */
} snnet_decision;

/** What one observed call did to the closed loop. */
typedef struct snnet_observation {
    size_t struct_size; /* sizeof(snnet_observation) */
    int rechose;        /* 1 when the correction or a tail ratio moved enough to re-choose */
    int64_t current;    /* the active stitch after this call */
    unsigned flags;     /* SNNET_FLAG_NO_FIT when the re-choice found no stitch meeting the budget */
    double correction;  /* the speed factor: 1.0 while the device runs as profiled (NOMINAL) */
} snnet_observation;

/** The closed loop's state (snnet_export.runtime.adaptive.LatencyTracker). */
typedef struct snnet_loop {
    size_t struct_size;    /* sizeof(snnet_loop) */
    int corrected;         /* 0: NOMINAL (the profile as is), 1: CORRECTED (profile x observed factors) */
    double speed_factor;   /* predicted / profiled latency for throughput budgets */
    double latency_factor; /* predicted / profiled latency at latency_stat */
    double correction;     /* median observed / profiled median ratio of the window */
    int has_inflation;     /* 1 once enough samples: */
    double inflation;      /*   observed / profiled ratio at latency_stat */
    int has_tails;         /* 1 once enough samples: */
    double tails[3];       /*   p50, p90, p99 of observed / profiled median */
    int64_t calls;         /* calls observed */
    int hold;              /* 1: on hold (a load slows the device; no up-switch until the return) */
} snnet_loop;

/** Library version string, e.g. "0.1.0". Thread-safe, never NULL. */
SNNET_API const char *snnet_select_version(void);
/** ABI version of the loaded library (SNNET_SELECT_ABI_VERSION it was built with). Thread-safe. */
SNNET_API int snnet_select_abi_version(void);
/** Constant name of a status ("SNNET_E_MANIFEST"); thread-safe, never NULL. */
SNNET_API const char *snnet_status_name(snnet_status status);

/** Fill `opts` with the defaults (struct_size set). Thread-safe. */
SNNET_API void snnet_select_options_init(snnet_select_options *opts);
/** Zero `d` and set its struct_size. Thread-safe. */
SNNET_API void snnet_decision_init(snnet_decision *d);

/**
 * Open `folder` (opts NULL: defaults). On SNNET_OK, *out is a ready handle. On any other status
 * except SNNET_E_NOMEM/SNNET_E_ARGUMENT with out NULL, *out is still a handle that carries the
 * message (snnet_select_errmsg) and must be closed. Thread-safe (handles are independent).
 */
SNNET_API snnet_status snnet_select_open(const char *folder, const snnet_select_options *opts, snnet_select **out);
/** Destroy a handle (NULL is a no-op). Not thread-safe: no other call on `sel` may run or follow. */
SNNET_API void snnet_select_close(snnet_select *sel);
/**
 * The message of the last failed call on `sel` ("" if none), one line. Valid until the next failing
 * call on `sel`; from several threads use snnet_select_errmsg_copy. NULL sel: a constant message.
 */
SNNET_API const char *snnet_select_errmsg(const snnet_select *sel);
/** Copy the last message into buf (truncated to cap-1 bytes, NUL-terminated). Thread-safe. */
SNNET_API snnet_status snnet_select_errmsg_copy(snnet_select *sel, char *buf, size_t cap);

/**
 * Set the budget and switch to the stitch it calls for (written to *out, may be NULL).
 * min_throughput: images/s needed at `batch` (0: no throughput limit); max_latency_ms: latency
 * limit per call (0: none); at least one must be > 0; negative or non-finite values are refused.
 * batch: the app's batch size (0: the profile's smallest). Thread-safe; no allocation.
 */
SNNET_API snnet_status snnet_select_set_budget(snnet_select *sel, double min_throughput, double max_latency_ms,
                                               int64_t batch, snnet_decision *out);
/** What the current budget calls for now (hysteresis against the active stitch), without switching. Thread-safe; no allocation. */
SNNET_API snnet_status snnet_select_choose(snnet_select *sel, snnet_decision *out);
/** The active stitch (what the app should run now). Thread-safe; no allocation. */
SNNET_API snnet_status snnet_select_current(snnet_select *sel, snnet_decision *out);
/**
 * Record one served call: `seconds` it took running `stitch` at `batch` (> 0, finite). With the
 * closed loop on, re-chooses when the device's speed moved. `out` may be NULL. Thread-safe; no allocation.
 */
SNNET_API snnet_status snnet_select_observe(snnet_select *sel, int64_t stitch, int64_t batch, double seconds,
                                            snnet_observation *out);
/** Facts and predictions of any candidate stitch (SNNET_CURRENT: the active one). Thread-safe; no allocation. */
SNNET_API snnet_status snnet_select_stitch(snnet_select *sel, int64_t stitch, snnet_decision *out);
/**
 * Candidate ids (frontier_only 0: every measured stitch, ascending id; 1: the Pareto frontier,
 * slowest/most accurate first) into ids[0..cap); *count gets the total (SNNET_E_BUFFER if cap < total). Thread-safe.
 */
SNNET_API snnet_status snnet_select_ids(snnet_select *sel, int frontier_only, int64_t *ids, size_t cap, size_t *count);
/** The closed loop's full state (out->struct_size set by the caller). Thread-safe; no allocation. */
SNNET_API snnet_status snnet_select_loop(snnet_select *sel, snnet_loop *out);
/**
 * The closed loop's speed factor (Python's Selector.correction), and tails[0..2] = p50, p90, p99 ratios when *have_tails is 1
 * (after enough calls). Any output may be NULL. Thread-safe.
 */
SNNET_API snnet_status snnet_select_correction(snnet_select *sel, double *correction, double tails[3], int *have_tails);
/**
 * JSON text describing `stitch` (SNNET_CURRENT: the active one), the same fields as the Python
 * Selector.describe(): id, path, accuracy, throughput, latency_ms, on_frontier, adaptive. Writes at
 * most cap bytes including the NUL; *needed (may be NULL) gets the size needed including the NUL
 * (SNNET_E_BUFFER when cap is smaller). Thread-safe; allocates (for logs, not the hot path).
 */
SNNET_API snnet_status snnet_select_describe(snnet_select *sel, int64_t stitch, char *buf, size_t cap, size_t *needed);

#ifdef __cplusplus
}
#endif
#endif /* SNNET_SELECT_H */
