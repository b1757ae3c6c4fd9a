// choose/observe/set_budget/describe from several threads on one handle: every call succeeds,
// every answer is a candidate, and the handle stays consistent (run under ASan+UBSan too).
#include <atomic>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>
#include <unistd.h>

#include "snnet_select.h"
#include "test_folder.h"

int main() {
    char base[] = "/tmp/snnet-threads-XXXXXX";
    if (!mkdtemp(base)) return 2;
    write_test_folder(base);
    snnet_select *sel = nullptr;
    if (snnet_select_open(base, nullptr, &sel) != SNNET_OK) {
        std::fprintf(stderr, "open: %s\n", snnet_select_errmsg(sel));
        return 1;
    }
    std::atomic<int> errors{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < 4; ++t) {
        pool.emplace_back([&, t] {
            snnet_decision d;
            snnet_decision_init(&d);
            for (int i = 0; i < 5000; ++i) {
                snnet_status st = SNNET_OK;
                if (t == 0 && i % 50 == 0) st = snnet_select_set_budget(sel, i % 100 ? 150.0 : 350.0, 0, 0, &d);
                else if (t == 1 && i % 200 == 0) {
                    char buf[4096];
                    size_t need = 0;
                    st = snnet_select_describe(sel, SNNET_CURRENT, buf, sizeof buf, &need);
                } else if (i % 3 == 0) st = snnet_select_choose(sel, &d);
                else {
                    st = snnet_select_current(sel, &d);
                    double slow = (i / 500) % 2 ? 3.0 : 1.0;  // load steps
                    if (st == SNNET_OK) st = snnet_select_observe(sel, d.id, 1, slow * 0.0025 * (d.id == 3 ? 1 : 2), nullptr);
                }
                if (st != SNNET_OK || d.id < 0 || d.id > 3) ++errors;
            }
        });
    }
    for (auto &th : pool) th.join();
    snnet_select_close(sel);
    std::string cmd = std::string("rm -rf '") + base + "'";
    if (std::system(cmd.c_str()) != 0) return 2;
    std::printf("test_threads: %d errors in 20000 calls from 4 threads\n", errors.load());
    return errors ? 1 : 0;
}
