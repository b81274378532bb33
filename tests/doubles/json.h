/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* A small, strict JSON (RFC 8259) parser for the firecracker double and the
 * doubles' tests. It keeps the line/column of every token so that errors can
 * be reported the way serde_json does ("... at line L column C"), because
 * firecracker prints serde_json's messages for a bad --config-file.
 *
 * Positions follow serde_json: line is 1-based, column is the 1-based column
 * of the last character consumed when the error was found (0 before the
 * first character of a line). They match serde_json for the common cases and
 * are close for the rest. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum JsonType {
        JSON_NULL,
        JSON_BOOL,
        JSON_NUMBER,
        JSON_STRING,
        JSON_ARRAY,
        JSON_OBJECT,
} JsonType;

typedef struct JsonPos {
        unsigned line;
        unsigned column;
} JsonPos;

typedef struct JsonValue JsonValue;

typedef struct JsonMember {
        char *key;
        JsonPos key_end;        /* the closing quote of the key */
        JsonValue *value;
} JsonMember;

struct JsonValue {
        JsonType type;
        JsonPos start;          /* first character of the value */
        JsonPos end;            /* last character of the value (']' or '}' for containers) */

        bool boolean;

        /* JSON_STRING: decoded UTF-8; may contain NUL (\u0000), hence the length. */
        char *string;
        size_t string_len;

        /* JSON_NUMBER, classified the way serde_json does: an integer that
         * fits u64 (is_u64), a negative integer that fits i64 (is_i64), else
         * a floating point number (text kept for messages). */
        char *number_text;
        bool is_u64;
        bool is_i64;
        uint64_t u64;
        int64_t i64;
        double f64;

        JsonValue **items;
        size_t n_items;

        JsonMember *members;
        size_t n_members;
};

/* A serde_json-style error: the message ("trailing comma") and where it was
 * found; serde_json prints them as "<message> at line L column C". */
typedef struct JsonError {
        char *message;
        JsonPos pos;
} JsonError;
void json_error_done(JsonError *e);

/* Parses text (len bytes, must be valid UTF-8) into a tree. On a syntax
 * error returns -EINVAL and fills *ret_error (if not NULL). */
int json_parse(const char *text, size_t len, JsonValue **ret, JsonError *ret_error);
void json_free(JsonValue *v);
static inline void json_freep(JsonValue **v) {
        json_free(*v);
}
#define _cleanup_json_ __attribute__((cleanup(json_freep)))

/* Last member named key (serde_json::Value semantics), or NULL. */
const JsonValue *json_get(const JsonValue *object, const char *key);
const char *json_type_name(JsonType t);

/* Appends a JSON string literal (with quotes and escapes) for s. */
struct StrBuf;
void json_append_string(struct StrBuf *sb, const char *s);
