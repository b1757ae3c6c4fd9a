/* A tiny engine folder for the native tests: 4 stitches of a made-up family, one ORT profile.
 * Stitch speeds/accuracies: 0 slow+accurate ... 3 fast+inaccurate; stitch 2 is off the frontier. */
#ifndef SNNET_TEST_FOLDER_H
#define SNNET_TEST_FOLDER_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SHA "0000000000000000000000000000000000000000000000000000000000000000"

static const char *test_manifest =
    "{\"schema\": \"snnet-export/manifest\", \"schema_version\": 1, \"family\": {\"name\": \"t\"},"
    " \"precision\": \"fp32\", \"input_shape\": [3, 32, 32], \"num_classes\": 10,"
    " \"weights\": {\"file\": \"weights.fp32.bin\", \"size\": 64, \"tensors\": [{\"offset\": 0, \"length\": 40,"
    "   \"dtype\": \"float32\", \"shape\": [10], \"sha256\": \"" SHA "\"}]},"
    " \"configs\": ["
    "  {\"id\": 0, \"path\": \"B\", \"flops\": 4e9, \"accuracy\": {\"acc1\": 80.0}, \"onnx\": \"stitch_000.onnx\","
    "   \"onnx_sha256\": \"" SHA "\", \"initializers\": [[\"w\", 0]], \"outputs\": [{\"shape\": [\"batch\", 10]}]},"
    "  {\"id\": 1, \"path\": \"S\", \"flops\": 2e9, \"accuracy\": {\"acc1\": 75.0}, \"onnx\": \"stitch_001.onnx\","
    "   \"onnx_sha256\": \"" SHA "\", \"initializers\": []},"
    "  {\"id\": 2, \"path\": \"X\", \"flops\": 2e9, \"accuracy\": {\"acc1\": 60.0}, \"onnx\": \"stitch_002.onnx\","
    "   \"onnx_sha256\": \"" SHA "\", \"initializers\": []},"
    "  {\"id\": 3, \"path\": \"T\", \"flops\": 1e9, \"accuracy\": {\"acc1\": 70.0}, \"onnx\": \"stitch_003.onnx\","
    "   \"onnx_sha256\": \"" SHA "\", \"initializers\": []}],"
    " \"engines\": {\"orin\": {\"stitches\": [{\"id\": 0, \"file\": \"trt/orin/s0.engine\", \"onnx\": \"stitch_000.onnx\", \"size\": 1}]}}}";

static const char *test_profile =
    "{\"schema\": \"snnet-export/profile\", \"version\": 1, \"device\": \"test\", \"backend\": \"ort\","
    " \"batches\": [1, 8], \"stitches\": ["
    "  {\"id\": 0, \"batch\": 1, \"throughput\": 100.0, \"latency_ms\": {\"p50\": 10.0, \"p90\": 11.0, \"p99\": 13.0}},"
    "  {\"id\": 0, \"batch\": 8, \"throughput\": 400.0, \"latency_ms\": {\"p50\": 20.0, \"p90\": 22.0, \"p99\": 26.0}},"
    "  {\"id\": 1, \"batch\": 1, \"throughput\": 200.0, \"latency_ms\": {\"p50\": 5.0, \"p90\": 5.5, \"p99\": 6.5}},"
    "  {\"id\": 1, \"batch\": 8, \"throughput\": 800.0, \"latency_ms\": {\"p50\": 10.0, \"p90\": 11.0, \"p99\": 13.0}},"
    "  {\"id\": 2, \"batch\": 1, \"throughput\": 190.0, \"latency_ms\": {\"p50\": 5.2, \"p90\": 5.7, \"p99\": 6.8}},"
    "  {\"id\": 3, \"batch\": 1, \"throughput\": 400.0, \"latency_ms\": {\"p50\": 2.5, \"p90\": 2.75, \"p99\": 3.25}},"
    "  {\"id\": 3, \"batch\": 8, \"throughput\": 1600.0, \"latency_ms\": {\"p50\": 5.0, \"p90\": 5.5, \"p99\": 6.5}}]}";

static void write_text(const char *dir, const char *name, const char *text, size_t len) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) { perror(path); exit(2); }
    fwrite(text, 1, len, f);
    fclose(f);
}

/* Write the test folder into `dir` (created by the caller). */
static void write_test_folder(const char *dir) {
    write_text(dir, "manifest.json", test_manifest, strlen(test_manifest));
    write_text(dir, "profile.test.json", test_profile, strlen(test_profile));
}
#endif
