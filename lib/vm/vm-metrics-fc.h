/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Firecracker's half of a collection (vm-metrics.h), begun before the rest:
 * FlushMetrics to every VMM with a launch plan, at once, and each VM's
 * metrics file summed as soon as its VMM has answered, on a thread of its
 * own. The VMMs answer while the caller asks the manager and reads the
 * configs and cgroups; then fc_scrape_finish() helps with the files of the
 * VMMs that have answered, waits for the rest (up to the flush timeout) and
 * hands each active VM its figures. */

#include "config.h"
#include "vm-metrics.h"

/* ids NULL: every VM in the run directory. Never fails for one VM. */
int fc_scrape_begin(const HostConfig *host, char *const *ids, size_t n_ids, const MetricsOptions *opts,
                    FcScrape **ret);
/* Reads, on the calling thread, the files of the VMMs as they answer (and
 * the others' once the flush is over) until every one is claimed. */
void fc_scrape_help(FcScrape *s);
/* Waits for the thread; fills fc_flushed, has_fc and fc of the VMs of h
 * whose unit is active, and the flush and firecracker collector times. */
void fc_scrape_finish(FcScrape *s, HostMetrics *h);
void fc_scrape_free(FcScrape *s);
static inline void fc_scrape_freep(FcScrape **s) {
        fc_scrape_free(*s);
}
