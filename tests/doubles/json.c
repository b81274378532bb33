/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "doubles-util.h"
#include "json.h"

/* Containers deeper than this are refused like serde_json's recursion limit
 * (128), so a hostile config cannot exhaust the stack. */
#define JSON_MAX_DEPTH 128

typedef struct Parser {
        const char *p;
        const char *end;
        JsonPos pos;            /* position of the last consumed character */
        int depth;
        const char *error_message;
        JsonPos error_pos;
} Parser;

static void *xcalloc(size_t n, size_t size) {
        void *p = calloc(n ?: 1, size);
        if (!p)
                abort();
        return p;
}

static int peek(Parser *ps) {
        return ps->p < ps->end ? (unsigned char) *ps->p : -1;
}

static int next(Parser *ps) {
        if (ps->p >= ps->end)
                return -1;
        int c = (unsigned char) *ps->p++;
        if (c == '\n') {
                ps->pos.line++;
                ps->pos.column = 0;
        } else
                ps->pos.column++;
        return c;
}

static int fail_here(Parser *ps, const char *msg) {
        ps->error_message = msg;
        ps->error_pos = ps->pos;
        return -EINVAL;
}

/* serde_json reports syntax errors at the offending character when it has
 * peeked at it, so consume it first to get its column. */
static int fail_at_next(Parser *ps, const char *msg) {
        if (peek(ps) >= 0)
                next(ps);
        return fail_here(ps, msg);
}

static void skip_ws(Parser *ps) {
        for (;;) {
                int c = peek(ps);
                if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
                        return;
                next(ps);
        }
}

static int parse_value(Parser *ps, JsonValue **ret);

static int parse_hex4(Parser *ps, uint32_t *ret) {
        uint32_t v = 0;
        for (int i = 0; i < 4; i++) {
                int c = next(ps);
                if (c < 0)
                        return fail_here(ps, "EOF while parsing a string");
                if (c >= '0' && c <= '9')
                        v = v * 16 + (uint32_t) (c - '0');
                else if (c >= 'a' && c <= 'f')
                        v = v * 16 + (uint32_t) (c - 'a' + 10);
                else if (c >= 'A' && c <= 'F')
                        v = v * 16 + (uint32_t) (c - 'A' + 10);
                else
                        return fail_here(ps, "invalid escape");
        }
        *ret = v;
        return 0;
}

static void append_utf8(StrBuf *sb, uint32_t cp) {
        char buf[4];
        size_t n;
        if (cp < 0x80) {
                buf[0] = (char) cp;
                n = 1;
        } else if (cp < 0x800) {
                buf[0] = (char) (0xc0 | (cp >> 6));
                buf[1] = (char) (0x80 | (cp & 0x3f));
                n = 2;
        } else if (cp < 0x10000) {
                buf[0] = (char) (0xe0 | (cp >> 12));
                buf[1] = (char) (0x80 | ((cp >> 6) & 0x3f));
                buf[2] = (char) (0x80 | (cp & 0x3f));
                n = 3;
        } else {
                buf[0] = (char) (0xf0 | (cp >> 18));
                buf[1] = (char) (0x80 | ((cp >> 12) & 0x3f));
                buf[2] = (char) (0x80 | ((cp >> 6) & 0x3f));
                buf[3] = (char) (0x80 | (cp & 0x3f));
                n = 4;
        }
        sb_append_n(sb, buf, n);
}

/* Called after the opening quote was consumed. */
static int parse_string_raw(Parser *ps, char **ret, size_t *ret_len) {
        _cleanup_sb_ StrBuf sb = {};

        for (;;) {
                int c = next(ps);
                if (c < 0)
                        return fail_here(ps, "EOF while parsing a string");
                if (c == '"')
                        break;
                if (c < 0x20)
                        return fail_here(ps, "control character (\\u0000-\\u001F) found while parsing a string");
                if (c != '\\') {
                        char ch = (char) c;
                        sb_append_n(&sb, &ch, 1);
                        continue;
                }
                c = next(ps);
                switch (c) {
                case '"':
                        sb_append(&sb, "\"");
                        break;
                case '\\':
                        sb_append(&sb, "\\");
                        break;
                case '/':
                        sb_append(&sb, "/");
                        break;
                case 'b':
                        sb_append(&sb, "\b");
                        break;
                case 'f':
                        sb_append(&sb, "\f");
                        break;
                case 'n':
                        sb_append(&sb, "\n");
                        break;
                case 'r':
                        sb_append(&sb, "\r");
                        break;
                case 't':
                        sb_append(&sb, "\t");
                        break;
                case 'u': {
                        uint32_t cp;
                        int r = parse_hex4(ps, &cp);
                        if (r < 0)
                                return r;
                        if (cp >= 0xdc00 && cp <= 0xdfff)
                                return fail_here(ps, "lone leading surrogate in hex escape");
                        if (cp >= 0xd800 && cp <= 0xdbff) {
                                uint32_t lo;
                                if (next(ps) != '\\' || next(ps) != 'u')
                                        return fail_here(ps, "unexpected end of hex escape");
                                r = parse_hex4(ps, &lo);
                                if (r < 0)
                                        return r;
                                if (lo < 0xdc00 || lo > 0xdfff)
                                        return fail_here(ps, "lone leading surrogate in hex escape");
                                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                        }
                        if (cp == 0)
                                sb_append_n(&sb, "", 1);
                        else
                                append_utf8(&sb, cp);
                        break;
                }
                case -1:
                        return fail_here(ps, "EOF while parsing a string");
                default:
                        return fail_here(ps, "invalid escape");
                }
        }

        if (!sb.s)
                sb_append(&sb, "");
        *ret_len = sb.len;
        *ret = TAKE_PTR(sb.s);
        return 0;
}

static int parse_number(Parser *ps, JsonValue *v) {
        const char *start = ps->p;
        bool negative = false;

        if (peek(ps) == '-') {
                negative = true;
                next(ps);
        }
        int c = peek(ps);
        if (c == '0') {
                next(ps);
                c = peek(ps);
                if (c >= '0' && c <= '9')
                        return fail_at_next(ps, "invalid number");
        } else if (c >= '1' && c <= '9') {
                while ((c = peek(ps)) >= '0' && c <= '9')
                        next(ps);
        } else
                return fail_at_next(ps, "invalid number");

        bool is_float = false;
        if (peek(ps) == '.') {
                is_float = true;
                next(ps);
                c = peek(ps);
                if (c < '0' || c > '9')
                        return fail_at_next(ps, "invalid number");
                while ((c = peek(ps)) >= '0' && c <= '9')
                        next(ps);
        }
        c = peek(ps);
        if (c == 'e' || c == 'E') {
                is_float = true;
                next(ps);
                c = peek(ps);
                if (c == '+' || c == '-')
                        next(ps);
                c = peek(ps);
                if (c < '0' || c > '9')
                        return fail_at_next(ps, "invalid number");
                while ((c = peek(ps)) >= '0' && c <= '9')
                        next(ps);
        }

        size_t n = (size_t) (ps->p - start);
        v->type = JSON_NUMBER;
        v->number_text = xcalloc(n + 1, 1);
        memcpy(v->number_text, start, n);
        v->end = ps->pos;

        if (!is_float) {
                errno = 0;
                if (negative) {
                        long long ll = strtoll(v->number_text, NULL, 10);
                        if (errno == 0) {
                                v->is_i64 = true;
                                v->i64 = ll;
                                return 0;
                        }
                } else {
                        unsigned long long ull = strtoull(v->number_text, NULL, 10);
                        if (errno == 0) {
                                v->is_u64 = true;
                                v->u64 = ull;
                                return 0;
                        }
                }
        }
        v->f64 = strtod(v->number_text, NULL);
        if (!isfinite(v->f64))
                return fail_here(ps, "number out of range");
        return 0;
}

static int parse_ident(Parser *ps, const char *rest) {
        for (const char *r = rest; *r; r++) {
                int c = next(ps);
                if (c < 0)
                        return fail_here(ps, "EOF while parsing a value");
                if (c != *r)
                        return fail_here(ps, "expected ident");
        }
        return 0;
}

static int parse_array(Parser *ps, JsonValue *v) {
        size_t cap = 0;

        v->type = JSON_ARRAY;
        skip_ws(ps);
        if (peek(ps) == ']') {
                next(ps);
                v->end = ps->pos;
                return 0;
        }
        for (;;) {
                JsonValue *item = NULL;
                int r = parse_value(ps, &item);
                if (r < 0)
                        return r;
                if (v->n_items == cap) {
                        cap = MAX(cap * 2, (size_t) 4);
                        JsonValue **items = realloc(v->items, cap * sizeof(JsonValue *));
                        if (!items)
                                abort();
                        v->items = items;
                }
                v->items[v->n_items++] = item;

                skip_ws(ps);
                int c = peek(ps);
                if (c == ',') {
                        next(ps);
                        skip_ws(ps);
                        if (peek(ps) == ']')
                                return fail_at_next(ps, "trailing comma");
                        continue;
                }
                if (c == ']') {
                        next(ps);
                        v->end = ps->pos;
                        return 0;
                }
                if (c < 0)
                        return fail_here(ps, "EOF while parsing a list");
                return fail_at_next(ps, "expected `,` or `]`");
        }
}

static int parse_object(Parser *ps, JsonValue *v) {
        size_t cap = 0;

        v->type = JSON_OBJECT;
        skip_ws(ps);
        if (peek(ps) == '}') {
                next(ps);
                v->end = ps->pos;
                return 0;
        }
        for (;;) {
                skip_ws(ps);
                int c = peek(ps);
                if (c < 0)
                        return fail_here(ps, "EOF while parsing an object");
                if (c != '"')
                        return fail_at_next(ps, "key must be a string");
                next(ps);

                JsonMember m = {};
                size_t key_len;
                int r = parse_string_raw(ps, &m.key, &key_len);
                if (r < 0)
                        return r;
                m.key_end = ps->pos;

                skip_ws(ps);
                c = peek(ps);
                if (c != ':') {
                        free(m.key);
                        if (c < 0)
                                return fail_here(ps, "EOF while parsing an object");
                        return fail_at_next(ps, "expected `:`");
                }
                next(ps);

                r = parse_value(ps, &m.value);
                if (r < 0) {
                        free(m.key);
                        return r;
                }
                if (v->n_members == cap) {
                        cap = MAX(cap * 2, (size_t) 4);
                        JsonMember *members = realloc(v->members, cap * sizeof(JsonMember));
                        if (!members)
                                abort();
                        v->members = members;
                }
                v->members[v->n_members++] = m;

                skip_ws(ps);
                c = peek(ps);
                if (c == ',') {
                        next(ps);
                        skip_ws(ps);
                        if (peek(ps) == '}')
                                return fail_at_next(ps, "trailing comma");
                        continue;
                }
                if (c == '}') {
                        next(ps);
                        v->end = ps->pos;
                        return 0;
                }
                if (c < 0)
                        return fail_here(ps, "EOF while parsing an object");
                return fail_at_next(ps, "expected `,` or `}`");
        }
}

static int parse_value(Parser *ps, JsonValue **ret) {
        _cleanup_json_ JsonValue *v = xcalloc(1, sizeof(JsonValue));
        int r;

        skip_ws(ps);
        v->start = (JsonPos) { .line = ps->pos.line, .column = ps->pos.column + 1 };
        int c = peek(ps);
        switch (c) {
        case -1:
                return fail_here(ps, "EOF while parsing a value");
        case 'n':
                next(ps);
                r = parse_ident(ps, "ull");
                v->type = JSON_NULL;
                break;
        case 't':
                next(ps);
                r = parse_ident(ps, "rue");
                v->type = JSON_BOOL;
                v->boolean = true;
                break;
        case 'f':
                next(ps);
                r = parse_ident(ps, "alse");
                v->type = JSON_BOOL;
                break;
        case '"':
                next(ps);
                v->type = JSON_STRING;
                r = parse_string_raw(ps, &v->string, &v->string_len);
                break;
        case '[':
        case '{':
                if (++ps->depth > JSON_MAX_DEPTH)
                        return fail_at_next(ps, "recursion limit exceeded");
                next(ps);
                r = c == '[' ? parse_array(ps, v) : parse_object(ps, v);
                ps->depth--;
                if (r < 0)
                        return r;
                *ret = TAKE_PTR(v);
                return 0;
        default:
                if (c == '-' || (c >= '0' && c <= '9'))
                        r = parse_number(ps, v);
                else
                        return fail_at_next(ps, "expected value");
        }
        if (r < 0)
                return r;
        v->end = ps->pos;
        *ret = TAKE_PTR(v);
        return 0;
}

int json_parse(const char *text, size_t len, JsonValue **ret, JsonError *ret_error) {
        Parser ps = {
                .p = text,
                .end = text + len,
                .pos = { .line = 1, .column = 0 },
        };
        _cleanup_json_ JsonValue *v = NULL;

        int r = parse_value(&ps, &v);
        if (r >= 0) {
                skip_ws(&ps);
                if (peek(&ps) >= 0)
                        r = fail_at_next(&ps, "trailing characters");
        }
        if (r < 0) {
                if (ret_error) {
                        ret_error->message = strdup(ps.error_message);
                        if (!ret_error->message)
                                abort();
                        ret_error->pos = ps.error_pos;
                }
                return r;
        }
        *ret = TAKE_PTR(v);
        return 0;
}

void json_error_done(JsonError *e) {
        free(e->message);
        e->message = NULL;
}

void json_free(JsonValue *v) {
        if (!v)
                return;
        free(v->string);
        free(v->number_text);
        for (size_t i = 0; i < v->n_items; i++)
                json_free(v->items[i]);
        free(v->items);
        for (size_t i = 0; i < v->n_members; i++) {
                free(v->members[i].key);
                json_free(v->members[i].value);
        }
        free(v->members);
        free(v);
}

const JsonValue *json_get(const JsonValue *object, const char *key) {
        const JsonValue *found = NULL;

        if (!object || object->type != JSON_OBJECT)
                return NULL;
        for (size_t i = 0; i < object->n_members; i++)
                if (streq(object->members[i].key, key))
                        found = object->members[i].value;
        return found;
}

const char *json_type_name(JsonType t) {
        switch (t) {
        case JSON_NULL:
                return "null";
        case JSON_BOOL:
                return "boolean";
        case JSON_NUMBER:
                return "number";
        case JSON_STRING:
                return "string";
        case JSON_ARRAY:
                return "array";
        case JSON_OBJECT:
                return "object";
        }
        return "?";
}

void json_append_string(StrBuf *sb, const char *s) {
        sb_append(sb, "\"");
        for (; *s; s++) {
                unsigned char c = (unsigned char) *s;
                switch (c) {
                case '"':
                        sb_append(sb, "\\\"");
                        break;
                case '\\':
                        sb_append(sb, "\\\\");
                        break;
                case '\n':
                        sb_append(sb, "\\n");
                        break;
                case '\r':
                        sb_append(sb, "\\r");
                        break;
                case '\t':
                        sb_append(sb, "\\t");
                        break;
                case '\b':
                        sb_append(sb, "\\b");
                        break;
                case '\f':
                        sb_append(sb, "\\f");
                        break;
                default:
                        if (c < 0x20)
                                sb_appendf(sb, "\\u%04x", c);
                        else
                                sb_append_n(sb, (const char *) &c, 1);
                }
        }
        sb_append(sb, "\"");
}
