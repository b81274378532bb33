/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The boundary code every libexec tool shares: "TOOL [--help|--version] ID",
 * logging set-up, loading the host config with its problems logged. */

#include "config.h"
#include "vm-teardown.h"

/* Sets up logging and parses argv. Returns 0 with *ret_id set when the tool
 * should run, 1 when it printed --help/--version and should exit 0, -EBADR
 * (logged) when the argument is not a valid VM id, or -EINVAL (logged) on
 * another usage error. */
int tool_begin(int argc, char **argv, const char *name, const char *summary, const char **ret_id);
/* Before tool_begin(): an invalid VM id is logged as a notice, not an error
 * (microvm-cleanup: nothing can exist for it, so there is nothing to do). */
void tool_invalid_id_is_not_an_error(void);

/* Loads the host config, logging every problem. */
int tool_load_host_config(HostConfig **ret);

/* Loads the VM config, logging every problem (the validator's messages). */
int tool_load_vm_config(const HostConfig *host, const char *id, VmConfig **ret);

/* For microvm-stage under systemd: the config the unit was generated from.
 * With $MICROVM_CONFIG_DIGEST and $MICROVM_CONFIG_COPY (the generator's
 * drop-in), the copy beside the drop-in, checked against the digest; when
 * the file on disk differs (edited or removed without a daemon-reload), one
 * notice says so and that "systemctl daemon-reload" applies it. With the
 * digest only (a drop-in of an older generator), the file on disk, which
 * must match it. Without either (run by hand), tool_load_vm_config(). On
 * success, *ret_copy (if given) holds the copy's bytes (NULL without one)
 * and *ret_copy_size their size. */
int tool_load_vm_config_for_unit(const HostConfig *host, const char *id, VmConfig **ret, char **ret_copy,
                                 size_t *ret_copy_size);

/* EX_CONFIG: the exit status of microvm-launch (the unit's main process)
 * when the start was refused for a configuration error that no retry can
 * cure; microvm@.service has RestartPreventExitStatus=78. */
#define TOOL_EXIT_CONFIG 78

/* Whether microvm-stage completed for this start: <run_fd>/<id>/staged
 * holds $INVOCATION_ID (or exists, without one). */
bool tool_stage_completed(int run_fd, const char *id);

/* After a failed stage: true when loading the host config or the VM's
 * config (as microvm-stage does under the unit) fails, i.e. a retry cannot
 * succeed until an admin acts. Logs nothing (microvm-stage said why). */
bool tool_start_refusal_is_final(const char *id);

/* Logs what a teardown reports (microvm-cleanup, and microvm-stage undoing
 * a start): each object not removed (error), each removal deferred to its
 * last user (warning), each object left alone as never the VM's, and the
 * cgroups whose processes were killed (notices). */
void tool_log_teardown_report(const TeardownReport *rep, const char *id);

/* Gives back the uid of a VM that never ran, with its state directory
 * (state_fd: <state_dir>; uid UID_INVALID: read from its record, for the
 * message). Logs either way; 0 or -errno. */
int tool_give_back_uid(int state_fd, const HostConfig *host, const char *id, uid_t uid);

/* Exit status for a tool's main(). */
static inline int tool_exit(int r) {
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* The unit's main process as systemd names it ($MAINPID, for ExecStop= and
 * ExecStartPost=), opened as a pidfd while it is still there: -ESRCH
 * without one, -EINVAL for a bad value, -errno when it is gone. */
int tool_open_main_pid(int *ret_pidfd, pid_t *ret_pid);
