/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* microvmctl's verbs, one file each (tools/microvmctl-*.c), sharing the
 * options parsed in tools/microvmctl.c. A verb returns 0, or -errno after
 * logging (exit 1); usage errors are caught before it runs (exit 2). */

#include <stdio.h>

#include "config.h"
#include "manager.h"
#include "plan.h"
#include "sd-lib.h"

extern const char *arg_host_config;
extern const char *arg_host;            /* -H [user@]host */
extern bool arg_json;
extern bool arg_offline;
extern bool arg_all;
extern bool arg_follow;
extern bool arg_until_stop;         /* logs: end when the VM stops */
extern unsigned arg_lines;
extern bool arg_lines_set;
extern uint64_t arg_since;              /* CLOCK_REALTIME µs, 0: unset */
extern bool arg_dry_run;
extern bool arg_restart_changed;


#define EXIT_USAGE 2

int verb_validate(int argc, char **argv);
int verb_list(int argc, char **argv);
int verb_status(int argc, char **argv);
int verb_start(int argc, char **argv);
int verb_stop(int argc, char **argv);
int verb_restart(int argc, char **argv);
int verb_logs(int argc, char **argv);
int verb_sync(int argc, char **argv);
int verb_gc(int argc, char **argv);
int verb_console(int argc, char **argv);
int verb_metrics(int argc, char **argv);
int verb_suspend(int argc, char **argv);
int verb_resume(int argc, char **argv);
int verb_discard_snapshot(int argc, char **argv);

/* One row per VM (tools/microvmctl-table.c): its config file, its loaded
 * unit and, while it runs, its launch plan. */
typedef struct VmRow {
        char id[VM_ID_MAX + 1];
        char *config_path;      /* NULL: no config file */
        bool masked;
        bool invalid;           /* the config does not validate */
        VmConfig *config;
        ManagerUnit *unit;      /* NULL: not loaded */
        Plan *plan;             /* the running VM's launch plan */
        uid_t uid;
        bool config_changed;
        bool orphan;
        bool suspended;         /* <state_dir>/<id>/suspend/ holds a snapshot */
        uint64_t snapshot_bytes;        /* its memory and state files */
        uint64_t snapshot_usec;         /* when it was taken, CLOCK_REALTIME */
} VmRow;

typedef struct VmTable {
        VmRow *rows;
        size_t n;
        ManagerUnit *units;
        size_t n_units;
} VmTable;

/* ids NULL: every VM (configs and loaded units); else only these, in this
 * order. Logs on failure. */
int vm_table_load(VmTable *t, char **ids, size_t n_ids);
void vm_table_done(VmTable *t);
/* Reads and parses row->config_path into row->config (row->invalid when
 * it does not validate). */
void row_load_config(VmRow *r, const HostConfig *host);

/* list's cache of config summaries (tools/microvmctl-cache.c). begin gives
 * NULL when it cannot be used (not root, no run dir); load_row then parses
 * as row_load_config() does. row->config from the cache holds only id,
 * vcpus, memory, autostart, uid_auto, uid and digest. end writes it back
 * (when changed) and frees it. */
typedef struct ListCache ListCache;
ListCache *list_cache_begin(const HostConfig *host, int run_fd);
void list_cache_load_row(ListCache *c, VmRow *row, const HostConfig *host);
void list_cache_end(ListCache *c);
bool unit_running(const ManagerUnit *u);
/* A row's ActiveState and SubState ("inactive"/"dead" without a unit). */
const char *row_active(const VmRow *r);
const char *row_sub(const VmRow *r);
/* The JSON members list and status share, from the opening brace on. */
void row_json_common(FILE *f, const VmRow *r);

/* Shared helpers (tools/microvmctl.c). */
int ctl_load_host(HostConfig **ret);
/* Each problem as one "microvmctl: FILE: [SECTION] KEY: ..." line. */
void ctl_log_problems(const Problems *problems);
/* libsystemd and the bus (-H honoured); logs on failure. */
int ctl_bus_open(sd_bus **ret);
/* Exits with EXIT_USAGE after a message when id is not a valid VM id. */
int ctl_check_id(const char *id);
/* The same for each of argv[0..argc). */
int ctl_check_ids(int argc, char **argv);

/* JSON output. */
void json_string(FILE *f, const char *s);
/* ,"key":true|false and ,"key":N|null, after the object's first member. */
void json_bool(FILE *f, const char *key, bool b);
void json_uint_or_null(FILE *f, const char *key, bool known, uint64_t v);
const char *yes_no(bool b);
/* "2026-12-07 02:13:50 UTC" (or "-" for 0). */
const char *format_timestamp(uint64_t usec, char buf[static 32]);
const char *format_bytes_short(uint64_t bytes, char buf[static 32]);

/* Journal (tools/microvmctl-journal.c). */
/* Prints the messages tagged MICROVM_ID=id to f, prefix before each: every
 * one since since (CLOCK_REALTIME µs) when not 0, else the last n (-1:
 * all); follow: then new ones until SIGINT or SIGTERM (return 0). */
int journal_show(const char *id, int n, uint64_t since, bool follow, const char *prefix, FILE *f);
/* For microvmctl console: the same, following, with standard input
 * handed to input(input_fd, &detach) whenever it is readable; ends when
 * input says detach, on SIGINT/SIGTERM, or on an error of input. */
typedef int (*ConsoleInputFunc)(int input_fd, bool *ret_detach);
int journal_follow_with_input(const char *id, int n, int input_fd, ConsoleInputFunc input);
/* The last n console lines of id as a NULL-terminated list. */
int journal_last_lines(const char *id, unsigned n, uint64_t since, char ***ret);
/* The last message of priority err or worse that one of our tools logged
 * for unit at or after since (CLOCK_REALTIME µs, 0: any time), as
 * "MESSAGE (IDENTIFIER)"; -ENOENT when there is none. */
int journal_last_error(const char *unit, uint64_t since, char **ret);
