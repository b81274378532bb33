/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* microvm-pool activate|deactivate|status — the host's thin pool for
 * mode = thin drives, run by microvm-pool.service at boot (activate) and
 * shutdown (deactivate). See microvm-pool.service(8).
 *
 * With [thin_pool] data and metadata, the pool is microvm's own: activate
 * creates the files (sparse) on first use, attaches them to loop devices
 * and creates the dm thin-pool — after checking the metadata superblock
 * (magic, checksum, version, needs_check, data block size). Metadata it
 * cannot trust is never activated and never reformatted: the message says
 * what is wrong and how to check and repair it. With only [thin_pool]
 * name, the pool belongs to someone else (LVM): activate checks that it is
 * there, deactivate leaves it alone. Without [thin_pool] every command
 * succeeds with nothing to do (the unit is installed on every host). */

#include <getopt.h>
#include <inttypes.h>
#include <sys/sysmacros.h>

#include "config-files.h"
#include "dm.h"
#include "log.h"
#include "parse-util.h"
#include "seccomp-util.h"
#include "storage.h"
#include "tool.h"

#define EXIT_NOT_ACTIVE 3       /* status: the pool is not active (LSB "not running") */

static const char *pct(uint64_t used, uint64_t total, char *buf, size_t size) {
        if (total == 0)
                snprintf(buf, size, "-");
        else
                snprintf(buf, size, "%" PRIu64 ".%" PRIu64 "%%", used * 100 / total, used * 1000 / total % 10);
        return buf;
}

static void print_status(const HostConfig *h, const ThinPoolInfo *i) {
        const ThinPoolConfig *t = &h->thin_pool;
        char a[32], b[32], c[16], d[32];
        uint64_t block = (uint64_t) i->block_sectors * SECTOR_SIZE;

        printf("Thin pool %s: %s%s\n", t->name, i->active ? "active" : "not active",
               i->managed ? " (managed by microvm)" : " (not managed by microvm)");
        if (t->data) {
                printf("  data file:     %s\n", t->data);
                printf("  metadata file: %s\n", t->metadata);
        }
        if (!i->active)
                return;
        printf("  device:        /dev/dm-%u (%u:%u)\n", minor(i->devnum), major(i->devnum), minor(i->devnum));
        printf("  mode:          %s%s\n", thin_pool_mode_to_string(i->status.mode),
               i->status.needs_check ? ", needs_check" : "");
        if (i->status.mode == THIN_POOL_FAIL)
                return;
        printf("  data:          %s of %s used (%s), block size %s%s%s\n",
               format_size(i->status.used_data_blocks * block, a, sizeof a),
               format_size(i->status.total_data_blocks * block, b, sizeof b),
               pct(i->status.used_data_blocks, i->status.total_data_blocks, c, sizeof c), format_size(block, d, sizeof d),
               i->data_backing ? ", on " : "", strempty(i->data_backing));
        printf("  metadata:      %s of %s used (%s)%s%s\n",
               format_size(i->status.used_metadata_blocks * THIN_METADATA_BLOCK_SIZE, a, sizeof a),
               format_size(i->status.total_metadata_blocks * THIN_METADATA_BLOCK_SIZE, b, sizeof b),
               pct(i->status.used_metadata_blocks, i->status.total_metadata_blocks, c, sizeof c),
               i->metadata_backing ? ", on " : "", strempty(i->metadata_backing));
        printf("  transaction:   %" PRIu64 "\n", i->status.transaction_id);
}

static int help(void) {
        printf("Usage: microvm-pool [--help|--version] activate|deactivate|status\n\n"
               "Manage the host's device-mapper thin pool for mode = thin drives ([thin_pool] in %s).\n\n"
               "  activate    create the pool's files on first use, check the metadata, and activate\n"
               "              the pool (idempotent); a pool given by name only must exist\n"
               "  deactivate  remove the pool's device (only a pool microvm manages; its thin\n"
               "              volumes must be inactive)\n"
               "  status      show the pool's state and usage (exit status 3 if not active)\n\n"
               "Run by microvm-pool.service; see microvm-pool.service(8).\n",
               host_config_path());
        return 0;
}

int main(int argc, char **argv) {
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                {}
        };
        _cleanup_host_config_ HostConfig *h = NULL;
        _cleanup_free_ char *error = NULL;
        ThinPoolInfo info = {};
        const char *verb;
        int c, r;

        log_set_program_name("microvm-pool");
        log_parse_environment(false);
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        return help();
                case 'V':
                        printf("microvm-pool %s\n", PROJECT_VERSION);
                        return 0;
                default:
                        return EXIT_FAILURE;
                }
        if (optind != argc - 1) {
                log_error("Expected exactly one command: activate, deactivate or status (see --help).");
                return EXIT_FAILURE;
        }
        verb = argv[optind];
        if (!streq(verb, "activate") && !streq(verb, "deactivate") && !streq(verb, "status")) {
                log_error("Unknown command \"%s\": use activate, deactivate or status (see --help).", verb);
                return EXIT_FAILURE;
        }

        r = tool_load_host_config(&h);
        if (r < 0)
                return EXIT_FAILURE;
        if (!h->thin_pool.configured) {
                if (streq(verb, "status"))
                        printf("No thin pool is configured (no [thin_pool] in %s).\n", host_config_path());
                else
                        log_debug("No [thin_pool] in %s: nothing to do.", host_config_path());
                return EXIT_SUCCESS;
        }

        /* Everything we need is parsed: no exec, ptrace, mount or module
         * loading from here on (libdevmapper needs none of them). */
        r = seccomp_install_denylist(seccomp_deny_tools, SECCOMP_VIOLATION_TRAP);
        if (r < 0 && r != -EOPNOTSUPP)
                return tool_exit(log_error_errno(r, "Failed to install the seccomp filter: %m"));

        if (streq(verb, "activate")) {
                r = thin_pool_activate(h, &info, &error);
                if (r < 0)
                        return tool_exit(log_error_errno(r, "%s", error ?: "Failed to activate the thin pool: %m"));
                if (info.created_metadata || info.created_data)
                        log_notice("Created %s%s%s for thin pool %s (sparse).", info.created_data ? h->thin_pool.data : "",
                                   info.created_data && info.created_metadata ? " and " : "",
                                   info.created_metadata ? h->thin_pool.metadata : "", h->thin_pool.name);
                log_info("Thin pool %s is active (/dev/dm-%u, %s).", h->thin_pool.name, minor(info.devnum),
                         thin_pool_mode_to_string(info.status.mode));
        } else if (streq(verb, "deactivate")) {
                if (!h->thin_pool.data) {
                        log_info("Thin pool %s is not managed by microvm (no [thin_pool] data/metadata): leaving it alone.",
                                 h->thin_pool.name);
                        return EXIT_SUCCESS;
                }
                r = thin_pool_deactivate(h, &error);
                if (r < 0)
                        return tool_exit(log_error_errno(r, "%s", error ?: "Failed to deactivate the thin pool: %m"));
                log_info("Thin pool %s is not active.", h->thin_pool.name);
        } else {
                r = thin_pool_query(h, &info, &error);
                if (r < 0)
                        return tool_exit(log_error_errno(r, "%s", error ?: "Failed to query the thin pool: %m"));
                print_status(h, &info);
                r = info.active ? 0 : EXIT_NOT_ACTIVE;
                thin_pool_info_done(&info);
                dm_release();
                return r;
        }
        if (dm_udev_notice())
                log_warning("%s", dm_udev_notice());
        thin_pool_info_done(&info);
        dm_release();
        return EXIT_SUCCESS;
}
