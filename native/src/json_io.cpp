// Bounded JSON reading (see json_io.hpp).
#include "json_io.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

namespace snnet {

namespace {

// Deepest nesting of arrays/objects outside strings; stops counting past the limit.
int max_depth(const std::string &s) {
    int depth = 0, deepest = 0;
    bool in_string = false, escaped = false;
    for (char ch : s) {
        if (in_string) {
            if (escaped) escaped = false;
            else if (ch == '\\') escaped = true;
            else if (ch == '"') in_string = false;
            continue;
        }
        if (ch == '"') in_string = true;
        else if (ch == '[' || ch == '{') {
            if (++depth > deepest) deepest = depth;
            if (deepest > kMaxDepth) return deepest;
        } else if (ch == ']' || ch == '}') {
            --depth;
        }
    }
    return deepest;
}

std::string first_line(const char *what) {
    std::string s(what);
    size_t nl = s.find('\n');
    if (nl != std::string::npos) s.resize(nl);
    if (s.size() > 200) s.resize(200);
    return s;
}

}  // namespace

json parse_json(const std::string &bytes) {
    if (bytes.size() >= 3 && (unsigned char)bytes[0] == 0xEF && (unsigned char)bytes[1] == 0xBB &&
        (unsigned char)bytes[2] == 0xBF)
        throw ReadError{"starts with a UTF-8 byte-order mark (not JSON as written by snnet-export)"};
    if (max_depth(bytes) > kMaxDepth)
        throw ReadError{"nests arrays/objects deeper than " + std::to_string(kMaxDepth) + " levels"};
    try {
        return json::parse(bytes.begin(), bytes.end(), nullptr, true, false);
    } catch (const json::exception &e) {
        throw ReadError{"is not valid JSON (" + first_line(e.what()) + ")"};
    }
}

std::string read_file(const std::string &path) {
    struct stat st;
    if (stat(path.c_str(), &st) != 0) throw ReadError{"cannot be read (" + std::string(std::strerror(errno)) + ")"};
    if (!S_ISREG(st.st_mode)) throw ReadError{"is not a regular file"};
    if (size_t(st.st_size) > kMaxFileBytes)
        throw ReadError{"is " + std::to_string(st.st_size) + " bytes, more than the " +
                        std::to_string(kMaxFileBytes) + " a folder file may have"};
    std::unique_ptr<FILE, int (*)(FILE *)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
    if (!f) throw ReadError{"cannot be read (" + std::string(std::strerror(errno)) + ")"};
    std::string data;
    char buf[1 << 16];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f.get())) > 0) {
        data.append(buf, n);
        if (data.size() > kMaxFileBytes) throw ReadError{"grew past the size limit while being read"};
    }
    if (std::ferror(f.get())) throw ReadError{"cannot be read (I/O error)"};
    return data;
}

}  // namespace snnet
