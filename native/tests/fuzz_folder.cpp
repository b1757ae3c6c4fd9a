// A seeded mutation fuzzer of the folder reader: mutate a valid manifest or profile (bit flips,
// splices, truncation, hostile numbers and strings, deep nesting), open it, and when it opens,
// drive a few calls. Built with ASan+UBSan, any crash, leak or undefined behaviour aborts.
// usage: fuzz_folder SEED COUNT [TEMPLATE_DIR]   (default template: the tests' tiny folder)
// prints one JSON line: inputs and how many ended in each status.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "snnet_select.h"
#include "test_folder.h"

namespace {

const char *kNumbers[] = {"1e999", "-1", "NaN", "Infinity", "18446744073709551616", "9223372036854775807",
                          "-9223372036854775808", "0", "-0", "1.5", "1e-320", "true", "null", "\"x\"", "[]", "{}",
                          "4294967296", "65537", "99999999999999999999999999999"};
const char *kStrings[] = {"\"../x\"", "\"/etc/passwd\"", "\"a\\\\b\"", "\"\\u0000\"", "\"\\ud800\"", "\"\"", "\".\"",
                          "\"a//b\"", "\"p50\"", "\"snnet-export/manifest\"", "\"\\uFFFF\xff\"", "12"};

std::string slurp(const std::string &path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// Replace the token (number or string) at a random position with one of `pool`.
void replace_token(std::string &s, std::mt19937_64 &rng, const char *const *pool, size_t n, bool strings) {
    if (s.empty()) return;
    size_t at = rng() % s.size();
    size_t start = s.find_first_of(strings ? "\"" : "-0123456789", at);
    if (start == std::string::npos) return;
    size_t end = start + 1;
    if (strings) {
        while (end < s.size() && s[end] != '"') end += s[end] == '\\' ? 2 : 1;
        end = end < s.size() ? end + 1 : s.size();
    } else {
        while (end < s.size() && std::string("0123456789.eE+-").find(s[end]) != std::string::npos) ++end;
    }
    s.replace(start, end - start, pool[rng() % n]);
}

void mutate(std::string &s, const std::string &other, std::mt19937_64 &rng) {
    int ops = 1 + int(rng() % 4);
    for (int k = 0; k < ops; ++k) {
        size_t n = s.size();
        switch (rng() % 9) {
            case 0: if (n) s[rng() % n] ^= char(1u << (rng() % 8)); break;
            case 1: if (n) s[rng() % n] = char(rng() % 256); break;
            case 2: if (n) { size_t a = rng() % n; s.erase(a, rng() % 64); } break;
            case 3: if (n) { size_t a = rng() % n; s.insert(rng() % n, s.substr(a, rng() % 256)); } break;
            case 4: if (n) s.resize(rng() % n); break;
            case 5: replace_token(s, rng, kNumbers, sizeof kNumbers / sizeof *kNumbers, false); break;
            case 6: replace_token(s, rng, kStrings, sizeof kStrings / sizeof *kStrings, true); break;
            case 7: {
                size_t depth = 1 + rng() % 2000;
                size_t at = n ? rng() % n : 0;
                s.insert(at, std::string(depth, rng() % 2 ? '[' : '{') + std::string(depth, ']'));
                break;
            }
            default:
                if (!other.empty() && n) {
                    size_t a = rng() % other.size();
                    s.replace(rng() % n, rng() % 128, other.substr(a, rng() % 512));
                }
        }
    }
}

void write_file(const std::string &path, const std::string &data) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << data;
}

}  // namespace

int main(int argc, char **argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: fuzz_folder SEED COUNT [TEMPLATE_DIR]\n");
        return 2;
    }
    unsigned long long seed = std::strtoull(argv[1], nullptr, 10);
    long count = std::atol(argv[2]);
    const char *tmp = std::getenv("TMPDIR");
    std::string work_s = std::string(tmp && *tmp ? tmp : "/tmp") + "/snnet-fuzz-XXXXXX";
    std::vector<char> work_buf(work_s.begin(), work_s.end());
    work_buf.push_back('\0');
    char *work = work_buf.data();
    if (!mkdtemp(work)) return 2;
    std::string manifest, profile, profile_name = "profile.test.json";
    if (argc > 3) {
        manifest = slurp(std::string(argv[3]) + "/manifest.json");
        profile_name = "profile.synthetic.json";
        profile = slurp(std::string(argv[3]) + "/" + profile_name);
    } else {
        manifest = test_manifest;
        profile = test_profile;
    }
    std::mt19937_64 rng(seed);
    std::map<std::string, long> seen;
    for (long i = 0; i < count; ++i) {
        std::string m = manifest, p = profile;
        if (rng() % 5 < 3) mutate(m, p, rng);
        else mutate(p, m, rng);
        write_file(std::string(work) + "/manifest.json", m);
        write_file(std::string(work) + "/" + profile_name, p);
        snnet_select *sel = nullptr;
        snnet_select_options o;
        snnet_select_options_init(&o);
        o.profile = profile_name.c_str();
        o.backend = rng() % 4 ? "ort" : "trt";
        snnet_status st = snnet_select_open(work, &o, &sel);
        seen[snnet_status_name(st)]++;
        if (st == SNNET_OK) {
            snnet_decision d;
            snnet_decision_init(&d);
            snnet_select_set_budget(sel, double(rng() % 5000) + 1.0, 0, int64_t(rng() % 20), &d);
            for (int k = 0; k < 12; ++k) snnet_select_observe(sel, d.id, 1 + int64_t(rng() % 16), 1e-3 * double(1 + rng() % 50), nullptr);
            snnet_select_set_budget(sel, 0, double(rng() % 100) + 0.5, 0, &d);
            char buf[1 << 14];
            size_t need = 0;
            snnet_select_describe(sel, SNNET_CURRENT, buf, sizeof buf, &need);
            snnet_select_choose(sel, &d);
        } else if (std::string(snnet_select_errmsg(sel)).find('\n') != std::string::npos) {
            std::fprintf(stderr, "input %ld: a message with a newline\n", i);
            return 1;
        }
        snnet_select_close(sel);
    }
    std::string cmd = std::string("rm -rf '") + work + "'";
    if (std::system(cmd.c_str()) != 0) return 2;
    std::printf("{\"seed\": %llu, \"inputs\": %ld", seed, count);
    for (const auto &kv : seen) std::printf(", \"%s\": %ld", kv.first.c_str(), kv.second);
    std::printf("}\n");
    return 0;
}
