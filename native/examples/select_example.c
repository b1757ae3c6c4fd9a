/* Example: an app that links libsnnet_select (installed; found with find_package or pkg-config),
 * opens an engine folder, sets a throughput budget and feeds the latencies of a simulated
 * slowdown (1x, then 2.5x, then back to 1x), printing each decision.
 * usage: select_example ENGINE_FOLDER [PROFILE_FILE] */
#include <snnet_select.h>
#include <stdio.h>

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s ENGINE_FOLDER [PROFILE_FILE]\n", argv[0]);
        return 2;
    }
    printf("libsnnet_select %s (ABI %d)\n", snnet_select_version(), snnet_select_abi_version());
    snnet_select_options opts;
    snnet_select_options_init(&opts);
    opts.profile = argc > 2 ? argv[2] : NULL;
    snnet_select *sel = NULL;
    snnet_status st = snnet_select_open(argv[1], &opts, &sel);
    if (st != SNNET_OK) {
        fprintf(stderr, "cannot open %s: %s: %s\n", argv[1], snnet_status_name(st), snnet_select_errmsg(sel));
        snnet_select_close(sel);
        return 1;
    }
    snnet_decision d;
    snnet_decision_init(&d);
    snnet_select_current(sel, &d); /* the most accurate stitch */
    double budget = 1.5 * d.predicted_throughput;
    st = snnet_select_set_budget(sel, budget, 0, 0, &d);
    printf("budget %.1f images/s at batch %lld -> stitch %lld %s (Top-1 %.2f, %.1f img/s predicted)\n  run %s\n", budget,
           (long long)d.batch, (long long)d.id, d.stitch_path, d.top1, d.predicted_throughput, d.engine_path);
    const double factors[3] = {1.0, 2.5, 1.0};
    for (int phase = 0; phase < 3; ++phase) {
        for (int call = 0; call < 60; ++call) {
            snnet_select_current(sel, &d); /* the app runs d.engine_path here, and times it */
            snnet_observation ob;
            ob.struct_size = sizeof ob;
            double corr = 1.0;
            snnet_select_correction(sel, &corr, NULL, NULL);
            /* simulated call: profiled time (predicted x correction) x this phase's slowdown */
            double profiled_s = (double)d.batch / (d.predicted_throughput * corr);
            st = snnet_select_observe(sel, d.id, d.batch, profiled_s * factors[phase], &ob);
            if (st != SNNET_OK) {
                fprintf(stderr, "observe: %s\n", snnet_select_errmsg(sel));
                snnet_select_close(sel);
                return 1;
            }
            if (ob.current != d.id) {
                snnet_select_current(sel, &d);
                printf("phase %d (x%.1f) call %2d: correction %.2f -> stitch %lld %s (Top-1 %.2f)%s\n", phase,
                       factors[phase], call, ob.correction, (long long)d.id, d.stitch_path, d.top1,
                       (ob.flags & SNNET_FLAG_NO_FIT) ? " [nothing meets the budget: fastest]" : "");
            }
        }
    }
    char text[4096];
    size_t need = 0;
    if (snnet_select_describe(sel, SNNET_CURRENT, text, sizeof text, &need) == SNNET_OK) printf("describe: %s\n", text);
    snnet_select_close(sel);
    return 0;
}
