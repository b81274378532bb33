/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The parts of libsystemd that microvmctl uses (sd-bus for the manager,
 * sd-journal for the console and the tools' messages), loaded with
 * dlopen() on first use like lib/systemd/unit-state.c does: the tools that
 * run inside a VM's unit never pay for loading it. Call sd_lib_load()
 * before any sym_*() and check its result. */

#include <systemd/sd-bus.h>
#include <systemd/sd-journal.h>

#include "macro.h"

#define SD_LIB_SYMBOLS(X)                               \
        X(sd_bus_open_system)                           \
        X(sd_bus_open_system_remote)                    \
        X(sd_bus_new)                                   \
        X(sd_bus_set_address)                           \
        X(sd_bus_start)                                 \
        X(sd_bus_flush_close_unref)                     \
        X(sd_bus_call_method)                           \
        X(sd_bus_call_method_async)                     \
        X(sd_bus_error_free)                            \
        X(sd_bus_error_has_name)                        \
        X(sd_bus_error_get_errno)                       \
        X(sd_bus_message_ref)                           \
        X(sd_bus_message_unref)                         \
        X(sd_bus_message_read)                          \
        X(sd_bus_message_read_basic)                    \
        X(sd_bus_message_enter_container)               \
        X(sd_bus_message_exit_container)                \
        X(sd_bus_message_skip)                          \
        X(sd_bus_message_peek_type)                     \
        X(sd_bus_message_get_error)                     \
        X(sd_bus_message_is_method_error)               \
        X(sd_bus_get_property_string)                   \
        X(sd_bus_get_property_trivial)                  \
        X(sd_bus_match_signal)                          \
        X(sd_bus_process)                               \
        X(sd_bus_wait)                                  \
        X(sd_bus_get_fd)                                \
        X(sd_bus_get_events)                            \
        X(sd_bus_get_timeout)                           \
        X(sd_bus_slot_unref)                            \
        X(sd_journal_open)                              \
        X(sd_journal_close)                             \
        X(sd_journal_add_match)                         \
        X(sd_journal_add_conjunction)                   \
        X(sd_journal_add_disjunction)                   \
        X(sd_journal_seek_tail)                         \
        X(sd_journal_seek_head)                         \
        X(sd_journal_seek_realtime_usec)                \
        X(sd_journal_previous)                          \
        X(sd_journal_previous_skip)                     \
        X(sd_journal_next)                              \
        X(sd_journal_get_data)                          \
        X(sd_journal_get_realtime_usec)                 \
        X(sd_journal_get_fd)                            \
        X(sd_journal_get_events)                        \
        X(sd_journal_get_timeout)                       \
        X(sd_journal_process)                           \
        X(sd_journal_wait)

#define SD_LIB_EXTERN(s) extern typeof(s) *sym_##s;
SD_LIB_SYMBOLS(SD_LIB_EXTERN)
#undef SD_LIB_EXTERN

/* 0 once every symbol above is set; -errno and, in *ret_error (optional),
 * which library or symbol is missing. */
int sd_lib_load(char **ret_error);

/* Cleanup helpers for the sym_ functions. */
static inline void sd_lib_bus_unrefp(sd_bus **b) {
        if (*b)
                sym_sd_bus_flush_close_unref(*b);
}
static inline void sd_lib_message_unrefp(sd_bus_message **m) {
        if (*m)
                sym_sd_bus_message_unref(*m);
}
static inline void sd_lib_error_freep(sd_bus_error *e) {
        sym_sd_bus_error_free(e);
}
static inline void sd_lib_journal_closep(sd_journal **j) {
        if (*j)
                sym_sd_journal_close(*j);
}
static inline void sd_lib_slot_unrefp(sd_bus_slot **s) {
        if (*s)
                sym_sd_bus_slot_unref(*s);
}
