/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* microvmctl metrics [ID...]: the figures microvm-metrics.socket serves to
 * Prometheus (lib/vm/vm-metrics.c), for a person or as JSON. Run as root it
 * also asks firecracker to flush its counters and keeps the running sums, as
 * a scrape does; otherwise it shows what it may read. */

#include <time.h>
#include <unistd.h>

#include "log.h"
#include "microvmctl.h"
#include "vm-metrics.h"

int verb_metrics(int argc, char **argv) {
        _cleanup_(sd_lib_bus_unrefp) sd_bus *bus = NULL;
        _cleanup_host_config_ HostConfig *host = NULL;
        _cleanup_(host_metrics_done) HostMetrics h = {};
        _cleanup_free_ char *error = NULL;
        int r;

        r = ctl_check_ids(argc, argv);
        if (r < 0)
                return r;
        r = ctl_load_host(&host);
        if (r < 0)
                return r;
        r = ctl_bus_open(&bus);
        if (r < 0)
                return r;
        MetricsOptions opts = {
                .flush_timeout = 250 * USEC_PER_MSEC,
                .deadline = now_usec(CLOCK_MONOTONIC) + 5 * USEC_PER_SEC,
                .write_sums = geteuid() == 0,
        };
        r = vm_metrics_collect(host, bus, argc > 0 ? argv : NULL, (size_t) argc, &opts, NULL, &h, &error);
        if (r < 0)
                return log_error_errno(r, "Failed to collect the VMs' figures: %s", error ?: strerror(-r));
        r = arg_json ? metrics_render_json(&h, stdout) : metrics_render_text(&h, stdout);
        if (r < 0 || fflush(stdout) != 0)
                return log_error_errno(EIO, "Failed to write the figures: %m");
        return 0;
}
