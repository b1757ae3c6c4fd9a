// The one JSON door of the native library: bounded reads, then nlohmann-json.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace snnet {

using json = nlohmann::json;

//: a manifest of a few hundred stitches is about a megabyte; refuse files far beyond that
constexpr size_t kMaxFileBytes = size_t(64) << 20;
//: our files nest about 6 levels; Python's json refuses roughly 1000
constexpr int kMaxDepth = 512;

// Why a file was refused: `what` names the file kind ("manifest", "profile").
struct ReadError {
    std::string message;
};

// Parse `bytes` as JSON the way Python's json.loads(bytes.decode("utf-8")) accepts it, except that
// NaN/Infinity literals, a byte-order mark, nesting deeper than kMaxDepth and invalid UTF-8 are
// refused (Python refuses the last two as well; NaN it reads and the schema check refuses).
// Throws ReadError with a one-line reason.
json parse_json(const std::string &bytes);

// Read a whole file (regular files up to kMaxFileBytes); throws ReadError.
std::string read_file(const std::string &path);

}  // namespace snnet
