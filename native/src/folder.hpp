// Engine-folder reading: the port of engine_folder/schema.py + manifest.py + profile.py's door.
// Every file passes its schema check here; the selector trusts what comes out.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "json_io.hpp"
#include "snnet_select.h"

namespace snnet {

// A refusal: the status kind (manifest, profile, selector) and a one-line message.
struct FolderError {
    snnet_status code;
    std::string message;
};

struct StitchEntry {
    int64_t id = 0;
    std::string path, onnx;
    bool has_flops = false, has_top1 = false;
    double flops = 0.0, top1 = 0.0;
};

struct Manifest {
    std::vector<StitchEntry> configs;
    std::map<std::string, std::map<int64_t, std::string>> engines;  // target -> id -> plan file
};

struct ProfileRecord {
    int64_t id = 0, batch = 0;
    double throughput = 0.0, p50 = 0.0, p90 = 0.0, p99 = 0.0;
    json latency;  // the record's latency_ms object as written (describe repeats it)
    std::vector<int64_t> tie_group;  // ids tied with it in speed (itself included); empty when absent
};

struct Profile {
    std::string file, backend, device;
    std::vector<int64_t> batches;
    std::vector<ProfileRecord> stitches;
    bool has_ort_mode = false;
    json ort_mode;      // the "ort_mode" value when present
    bool has_target = false;
    json target;        // the "target" value when present
    double mtime = 0.0; // for the newest-first lookup
};

// folder/manifest.json through the manifest door (schema version, types, ids, containment).
Manifest load_manifest(const std::string &folder);
// One profile file through the profile door.
Profile read_profile(const std::string &path);
// Every folder/profile.*.json, newest first (a broken one throws).
std::vector<Profile> load_profiles(const std::string &folder);

}  // namespace snnet
