/* The C API end to end, compiled as C99: versions, open/close, budgets, fallback flag, closed loop,
 * describe's buffer protocol, per-handle errors, and hostile folders (status + one-line message). */
#include <math.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/stat.h>

#include "snnet_select.h"
#include "test_folder.h"

static int failures = 0;
#define CHECK(cond) do { if (!(cond)) { fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); failures++; } } while (0)

static char base[4096];

static snnet_select *open_default(snnet_status *st) {
    snnet_select *sel = NULL;
    snnet_select_options o;
    snnet_select_options_init(&o);
    o.hysteresis = 0.0;
    *st = snnet_select_open(base, &o, &sel);
    return sel;
}

static void test_decisions(void) {
    snnet_status st;
    snnet_select *sel = open_default(&st);
    CHECK(st == SNNET_OK);
    int64_t ids[8];
    size_t n = 0;
    CHECK(snnet_select_ids(sel, 1, ids, 8, &n) == SNNET_OK && n == 3);
    CHECK(ids[0] == 0 && ids[1] == 1 && ids[2] == 3); /* 2 is slower and less accurate than 1 */
    CHECK(snnet_select_ids(sel, 0, ids, 2, &n) == SNNET_E_BUFFER && n == 4);
    snnet_decision d;
    snnet_decision_init(&d);
    CHECK(snnet_select_current(sel, &d) == SNNET_OK && d.id == 0 && d.batch == 1);
    CHECK(strstr(d.engine_path, "/stitch_000.onnx") != NULL && d.top1 == 80.0 && d.flops == 4e9);
    CHECK(snnet_select_set_budget(sel, 150.0, 0, 0, &d) == SNNET_OK && d.id == 1 && !(d.flags & SNNET_FLAG_NO_FIT));
    CHECK(d.predicted_throughput == 200.0 && d.predicted_latency_ms == 5.5);
    CHECK(snnet_select_set_budget(sel, 1e6, 0, 0, &d) == SNNET_OK && d.id == 3 && (d.flags & SNNET_FLAG_NO_FIT));
    CHECK(snnet_select_set_budget(sel, 0, 12.0, 8, &d) == SNNET_OK && d.id == 1 && d.batch == 8); /* p90 at batch 8 */
    CHECK(snnet_select_set_budget(sel, 0, 0, 0, &d) == SNNET_E_ARGUMENT);
    CHECK(strstr(snnet_select_errmsg(sel), "min_throughput") != NULL);
    CHECK(snnet_select_set_budget(sel, NAN, 0, 0, &d) == SNNET_E_ARGUMENT);
    CHECK(snnet_select_set_budget(sel, -1, 0, 0, &d) == SNNET_E_ARGUMENT);
    CHECK(snnet_select_set_budget(sel, 10, 0, -3, &d) == SNNET_E_ARGUMENT);
    /* closed loop: at batch 8 stitch 1 runs 2.5x slower than profiled -> switch down to 3 */
    CHECK(snnet_select_set_budget(sel, 500.0, 0, 8, &d) == SNNET_OK && d.id == 1);
    snnet_observation ob;
    ob.struct_size = sizeof ob;
    int switched = 0;
    for (int i = 0; i < 30 && !switched; ++i) {
        CHECK(snnet_select_observe(sel, d.id, 8, 0.025, &ob) == SNNET_OK);
        switched = ob.current == 3;
    }
    CHECK(switched && ob.correction == 2.5);
    double corr = 0, tails[3];
    int have = 0;
    CHECK(snnet_select_correction(sel, &corr, tails, &have) == SNNET_OK && corr == 2.5);
    CHECK(snnet_select_observe(sel, 42, 8, 0.01, NULL) == SNNET_E_UNKNOWN_STITCH);
    CHECK(strstr(snnet_select_errmsg(sel), "42") != NULL);
    CHECK(snnet_select_observe(sel, 3, 8, -1.0, NULL) == SNNET_E_ARGUMENT);
    CHECK(snnet_select_observe(sel, 3, 0, 0.01, NULL) == SNNET_E_ARGUMENT);
    size_t need = 0;
    char small[8];
    CHECK(snnet_select_describe(sel, SNNET_CURRENT, small, sizeof small, &need) == SNNET_E_BUFFER && need > 8);
    char *buf = malloc(need);
    CHECK(snnet_select_describe(sel, SNNET_CURRENT, buf, need, &need) == SNNET_OK);
    CHECK(strstr(buf, "\"id\":3") != NULL && strstr(buf, "\"correction\":2.5") != NULL);
    free(buf);
    CHECK(snnet_select_describe(sel, 77, NULL, 0, &need) == SNNET_E_UNKNOWN_STITCH);
    snnet_decision bad;
    memset(&bad, 0, sizeof bad);
    CHECK(snnet_select_current(sel, &bad) == SNNET_E_ARGUMENT); /* struct_size not set */
    snnet_select_close(sel);
}

static void test_trt_target(void) {
    snnet_select *sel = NULL;
    snnet_select_options o;
    snnet_select_options_init(&o);
    o.backend = "trt";
    o.target = "orin";
    o.profile = "profile.test.json";
    CHECK(snnet_select_open(base, &o, &sel) == SNNET_OK);
    snnet_decision d;
    snnet_decision_init(&d);
    CHECK(snnet_select_stitch(sel, 0, &d) == SNNET_OK && strstr(d.engine_path, "/trt/orin/s0.engine") != NULL);
    CHECK(snnet_select_stitch(sel, 1, &d) == SNNET_OK && d.engine_path == NULL && (d.flags & SNNET_FLAG_NO_ENGINE));
    snnet_select_close(sel);
}

static void test_misuse(void) {
    snnet_select *sel = NULL;
    CHECK(snnet_select_open(base, NULL, NULL) == SNNET_E_ARGUMENT);
    CHECK(snnet_select_open(NULL, NULL, &sel) == SNNET_E_ARGUMENT && sel != NULL);
    CHECK(snnet_select_choose(sel, NULL) == SNNET_E_STATE);
    snnet_select_close(sel);
    CHECK(snnet_select_choose(NULL, NULL) == SNNET_E_ARGUMENT);
    CHECK(strlen(snnet_select_errmsg(NULL)) > 0);
    snnet_select_close(NULL);
    snnet_select_options o;
    snnet_select_options_init(&o);
    o.latency_stat = "p42";
    CHECK(snnet_select_open(base, &o, &sel) == SNNET_E_ARGUMENT);
    snnet_select_close(sel);
    CHECK(strcmp(snnet_status_name(SNNET_E_PROFILE), "SNNET_E_PROFILE") == 0);
    CHECK(snnet_select_abi_version() == SNNET_SELECT_ABI_VERSION);
    CHECK(strcmp(snnet_select_version(), SNNET_SELECT_VERSION) == 0);
}

/* Replace `from` by `to` once in the manifest (or profile) and open: expect `want` and a one-line message. */
static void hostile(const char *name, const char *from, const char *to, snnet_status want) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/h", base);
    mkdir(dir, 0700);
    write_test_folder(dir);
    int manifest = strstr(test_manifest, from) != NULL;
    const char *src = manifest ? test_manifest : test_profile;
    const char *at = strstr(src, from);
    if (!at) { fprintf(stderr, "%s: pattern not found\n", name); failures++; return; }
    size_t len = strlen(src) - strlen(from) + strlen(to);
    char *text = malloc(len + 1);
    size_t head = (size_t)(at - src);
    memcpy(text, src, head);
    memcpy(text + head, to, strlen(to));
    strcpy(text + head + strlen(to), at + strlen(from));
    write_text(dir, manifest ? "manifest.json" : "profile.test.json", text, len);
    free(text);
    snnet_select *sel = NULL;
    snnet_status st = snnet_select_open(dir, NULL, &sel);
    const char *msg = snnet_select_errmsg(sel);
    if (st != want || strchr(msg, '\n') || !*msg) {
        fprintf(stderr, "%s: got %s (%s), want %s\n", name, snnet_status_name(st), msg, snnet_status_name(want));
        failures++;
    }
    snnet_select_close(sel);
}

static void test_hostile(void) {
    hostile("schema version", "\"schema_version\": 1", "\"schema_version\": 2", SNNET_E_MANIFEST);
    hostile("truncated", "\"id\": 3, \"path\": \"T\"", "\"id\": 3, \"pa", SNNET_E_MANIFEST);
    hostile("id type", "\"id\": 1,", "\"id\": \"1\",", SNNET_E_MANIFEST);
    hostile("duplicate id", "\"id\": 2,", "\"id\": 1,", SNNET_E_MANIFEST);
    hostile("huge id", "\"id\": 2,", "\"id\": 18446744073709551615,", SNNET_E_MANIFEST);
    hostile("huge float", "\"flops\": 2e9", "\"flops\": 2e999", SNNET_E_MANIFEST);
    hostile("NaN", "\"flops\": 2e9", "\"flops\": NaN", SNNET_E_MANIFEST);
    hostile("escaping", "stitch_001.onnx", "../stitch_001.onnx", SNNET_E_MANIFEST);
    hostile("absolute", "stitch_001.onnx", "/etc/passwd", SNNET_E_MANIFEST);
    hostile("escaping engine", "trt/orin/s0.engine", "trt/../../s0.engine", SNNET_E_MANIFEST);
    hostile("nul in path", "stitch_001.onnx", "stitch\\u0000.onnx", SNNET_E_MANIFEST);
    hostile("acc > 100", "\"acc1\": 75.0", "\"acc1\": 175.0", SNNET_E_MANIFEST);
    hostile("tensor length", "\"length\": 40", "\"length\": 41", SNNET_E_MANIFEST);
    hostile("tensor overflow", "\"shape\": [10]", "\"shape\": [4294967296, 4294967296, 4294967296]", SNNET_E_MANIFEST);
    {
        static char deep[2 * 5000 + 16];
        memset(deep, '[', 5000);
        memset(deep + 5000, ']', 5000);
        deep[10000] = 0;
        char to[10032];
        snprintf(to, sizeof to, "\"name\": %s", deep);
        hostile("deep", "\"name\": \"t\"", to, SNNET_E_MANIFEST);
    }
    hostile("throughput zero", "\"throughput\": 190.0", "\"throughput\": 0", SNNET_E_PROFILE);
    hostile("throughput NaN", "\"throughput\": 190.0", "\"throughput\": Infinity", SNNET_E_PROFILE);
    hostile("batch not listed", "\"batch\": 1, \"throughput\": 190.0", "\"batch\": 3, \"throughput\": 190.0", SNNET_E_PROFILE);
    hostile("p90 missing", "\"p90\": 5.7, ", "", SNNET_E_PROFILE);
    hostile("duplicate record", "{\"id\": 2, \"batch\": 1", "{\"id\": 3, \"batch\": 1", SNNET_E_PROFILE);
    hostile("not a profile", "snnet-export/profile", "snnet-export/other", SNNET_E_PROFILE);
    hostile("ort_mode", "\"batches\"", "\"ort_mode\": null, \"batches\"", SNNET_E_SELECTOR);
}

static void test_oversized(void) {
    char dir[4096], path[4096];
    snprintf(dir, sizeof dir, "%s/big", base);
    mkdir(dir, 0700);
    write_test_folder(dir);
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL && ftruncate(fileno(f), (off_t)65 << 20) == 0); /* sparse: no 65 MB written */
    fclose(f);
    snnet_select *sel = NULL;
    CHECK(snnet_select_open(dir, NULL, &sel) == SNNET_E_MANIFEST);
    CHECK(strstr(snnet_select_errmsg(sel), "bytes") != NULL);
    snnet_select_close(sel);
    snprintf(dir, sizeof dir, "%s/none", base);
    CHECK(snnet_select_open(dir, NULL, &sel) == SNNET_E_MANIFEST);
    snnet_select_close(sel);
}

int main(void) {
    const char *tmp = getenv("TMPDIR");
    snprintf(base, sizeof base, "%s/snnet-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(base)) { perror("mkdtemp"); return 2; }
    write_test_folder(base);
    test_decisions();
    test_trt_target();
    test_misuse();
    test_hostile();
    test_oversized();
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", base);
    if (failures) fprintf(stderr, "%d checks failed\n", failures);
    else printf("test_api: all checks passed\n");
    return failures ? 1 : 0;
}
