/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The configuration model: every key good and bad, every rule's message. */

#include <criterion/criterion.h>

#include "config.h"
#include "kernel-cmdline.h"
#include "parse-util.h"

static HostConfig *host_default(void) {
        HostConfig *h = NULL;
        cr_assert_eq(host_config_new_default(&h), 0);
        return h;
}

/* Parses a VM config and returns all problems as one newline-joined string
 * (empty when valid). *ret gets the config on success. */
static char *vm_problems(const char *text, const HostConfig *host, VmConfig **ret) {
        Problems p = {};
        VmConfig *c = NULL;
        char *out = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&out, &len);
        int r;

        r = vm_config_parse("web1.conf", "web1", text, strlen(text), host, &c, &p);
        cr_assert(r == 0 || r == -EINVAL, "unexpected return %d", r);
        cr_assert_eq(r == 0, p.n == 0, "return value and problem list disagree");
        for (size_t i = 0; i < p.n; i++) {
                char *m = problem_format(&p.items[i]);
                fprintf(f, "%s%s", i ? "\n" : "", m);
                free(m);
        }
        fclose(f);
        problems_done(&p);
        if (ret)
                *ret = c;
        else
                vm_config_free(c);
        return out;
}

#define BASE "[vm]\nkernel = /k\n[drive.root]\npath = /img\nroot = yes\n"

static void expect_ok(const char *text, VmConfig **ret) {
        HostConfig *h = host_default();
        char *m = vm_problems(text, h, ret);
        if (*m) {
                char *t = cescape(text), *e = cescape(m);
                cr_assert(false, "expected no problems for \"%s\", got \"%s\"", t, e);
        }
        free(m);
        host_config_free(h);
}

static void expect_problem(const char *text, const char *expected) {
        HostConfig *h = host_default();
        char *m = vm_problems(text, h, NULL);
        if (!strstr(m, expected)) {
                char *t = cescape(text), *e = cescape(m);
                cr_assert(false, "expected problem \"%s\" for \"%s\", got \"%s\"", expected, t, e);
        }
        free(m);
        host_config_free(h);
}

Test(config, minimal_defaults) {
        VmConfig *c;
        expect_ok(BASE, &c);
        cr_assert_str_eq(c->id, "web1");
        cr_assert_eq(c->vcpus, 1);
        cr_assert_eq(c->memory, 256ULL << 20);
        cr_assert_eq(c->restart, RESTART_ON_FAILURE);
        cr_assert_eq(c->stop_timeout, 30 * USEC_PER_SEC);
        cr_assert(c->uid_auto);
        cr_assert(!c->autostart);
        cr_assert_eq(c->numa_node, -1);
        cr_assert_eq(c->n_drives, 1);
        cr_assert_eq(c->drives[0].mode, DRIVE_MODE_FILE);
        cr_assert(c->drives[0].root);
        cr_assert_null(c->initrd);
        cr_assert_null(c->cmdline);
        vm_config_free(c);
}

Test(config, every_vm_key) {
        VmConfig *c;
        expect_ok("[vm]\n"
                  "description = Web frontend\n"
                  "vcpus = 32\n"
                  "memory = 1G\n"
                  "kernel = /var/lib/microvm/images/vmlinux\n"
                  "initrd = /var/lib/microvm/images/initrd.img\n"
                  "cmdline = \"console=ttyS0 reboot=k panic=1 ; #x\"\n"
                  "autostart = yes\n"
                  "restart = always\n"
                  "stop_timeout = 2min\n"
                  "uid = 1000005\n"
                  "cpu_weight = 100\n"
                  "cpu_quota = 200%\n"
                  "allowed_cpus = 0-3,5\n"
                  "numa_node = 1\n"
                  "ephemeral = yes\n"
                  "on_host_shutdown = suspend\n"
                  "firecracker_log_level = warning\n"
                  "[drive.root]\npath = /img\nroot = yes\n"
                  "[vsock]\ncid = 42\n",
                  &c);
        cr_assert_str_eq(c->description, "Web frontend");
        cr_assert_eq(c->vcpus, 32);
        cr_assert_eq(c->memory, 1ULL << 30);
        cr_assert_str_eq(c->kernel, "/var/lib/microvm/images/vmlinux");
        cr_assert_str_eq(c->initrd, "/var/lib/microvm/images/initrd.img");
        cr_assert_str_eq(c->cmdline, "console=ttyS0 reboot=k panic=1 ; #x");
        cr_assert(c->autostart);
        cr_assert_eq(c->restart, RESTART_ALWAYS);
        cr_assert_eq(c->stop_timeout, 120 * USEC_PER_SEC);
        cr_assert(!c->uid_auto);
        cr_assert_eq(c->uid, 1000005);
        cr_assert_eq(c->cpu_weight, 100);
        cr_assert_eq(c->cpu_quota, 200);
        cr_assert_str_eq(c->allowed_cpus, "0-3,5");
        cr_assert_eq(c->numa_node, 1);
        cr_assert(c->ephemeral);
        cr_assert_eq(c->on_host_shutdown, ON_HOST_SHUTDOWN_SUSPEND);
        cr_assert_eq(c->firecracker_log_level, FC_LOG_LEVEL_WARNING);
        cr_assert(c->has_vsock);
        cr_assert(!c->vsock_cid_auto);
        cr_assert_eq(c->vsock_cid, 42);
        vm_config_free(c);
}

Test(config, every_drive_key) {
        VmConfig *c;
        HostConfig *h;
        Problems p = {};
        const char *host = "[thin_pool]\nname = pool\n";
        const char *text = "[vm]\nkernel = /k\n"
                           "[drive.root]\nmode = snapshot\npath = /b\nroot = yes\nsize = 4G\npersistent = yes\n"
                           "cache = writeback\nio_engine = async\n"
                           "[drive.data]\nmode = thin\npath = /t\nsize = 20G\n"
                           "[drive.lv]\nmode = block\npath = /dev/vg0/lv\nread_only = yes\n"
                           "[drive.ro]\nmode = file\npath = /ro.img\nread_only = yes\ncache = unsafe\nio_engine = sync\n";

        cr_assert_eq(host_config_parse("microvm.conf", host, strlen(host), &h, &p), 0);
        cr_assert_eq(vm_config_parse("web1.conf", "web1", text, strlen(text), h, &c, &p), 0);
        cr_assert_eq(p.n, 0);
        cr_assert_eq(c->n_drives, 4);
        cr_assert_eq(c->drives[0].mode, DRIVE_MODE_SNAPSHOT);
        cr_assert_eq(c->drives[0].size, 4ULL << 30);
        cr_assert(c->drives[0].persistent);
        cr_assert_eq(c->drives[0].cache, DRIVE_CACHE_WRITEBACK);
        cr_assert_eq(c->drives[0].io_engine, DRIVE_IO_ENGINE_ASYNC);
        cr_assert_eq(c->drives[1].mode, DRIVE_MODE_THIN);
        cr_assert_eq(c->drives[2].mode, DRIVE_MODE_BLOCK);
        cr_assert(c->drives[2].read_only);
        cr_assert_eq(c->drives[3].cache, DRIVE_CACHE_UNSAFE);
        cr_assert_eq(c->drives[3].io_engine, DRIVE_IO_ENGINE_SYNC);
        cr_assert_str_eq(vm_config_root_drive(c)->name, "root");
        vm_config_free(c);
        host_config_free(h);
}

Test(config, every_nic_key) {
        VmConfig *c;
        expect_ok(BASE "[net.eth0]\nbridge = br0\nmac = 52:54:00:12:34:56\ntap = tap-web1\nmtu = 9000\n"
                       "address = 10.0.0.2/24\ngateway = 10.0.0.1\n"
                       "[net.eth1]\nmac = auto\ntap = auto\n",
                  &c);
        cr_assert_eq(c->n_nics, 2);
        cr_assert_str_eq(c->nics[0].bridge, "br0");
        cr_assert(!c->nics[0].mac_auto);
        cr_assert_eq(c->nics[0].mac[5], 0x56);
        cr_assert_str_eq(c->nics[0].tap, "tap-web1");
        cr_assert_eq(c->nics[0].mtu, 9000);
        cr_assert_eq(c->nics[0].address, 0x0a000002);
        cr_assert_eq(c->nics[0].prefixlen, 24);
        cr_assert_eq(c->nics[0].gateway, 0x0a000001);
        cr_assert(c->nics[1].mac_auto);
        cr_assert(c->nics[1].tap_auto);
        cr_assert_null(c->nics[1].bridge);
        vm_config_free(c);
}

Test(config, host_default_bridge) {
        HostConfig *h;
        VmConfig *c;
        Problems p = {};
        const char *host = "[host]\nbridge = microvm0\n";
        const char *text = BASE "[net.eth0]\n";

        cr_assert_eq(host_config_parse("microvm.conf", host, strlen(host), &h, &p), 0);
        cr_assert_eq(vm_config_parse("web1.conf", "web1", text, strlen(text), h, &c, &p), 0);
        cr_assert_str_eq(c->nics[0].bridge, "microvm0");
        vm_config_free(c);
        host_config_free(h);
}

/* The exact message format of the issue. */
Test(config, message_format) {
        expect_problem("[vm]\nkernel = /k\n[drive.root]\nmode = snapshot\npath = /i\nroot = yes\nsize = 4X\n",
                       "web1.conf: [drive.root] size: \"4X\" is not a size (use e.g. 512M, 4G)");
}

Test(config, bad_values) {
        expect_problem(BASE "[vm]\n", "section appears twice (first at line 1)");
        expect_problem("[vm]\nkernel = /k\nvcpus = 0\n[drive.root]\npath = /i\nroot = yes\n",
                       "[vm] vcpus: \"0\" is out of range (1-32)");
        expect_problem("[vm]\nkernel = /k\nvcpus = 33\n[drive.root]\npath = /i\nroot = yes\n",
                       "[vm] vcpus: \"33\" is out of range (1-32)");
        expect_problem("[vm]\nkernel = /k\nvcpus = two\n[drive.root]\npath = /i\nroot = yes\n",
                       "[vm] vcpus: \"two\" is not a decimal number");
        expect_problem("[vm]\nkernel = /k\nvcpus = 010\n[drive.root]\npath = /i\nroot = yes\n",
                       "[vm] vcpus: \"010\" is not a decimal number");
        expect_problem("[vm]\nkernel = /k\nmemory = 127M\n[drive.root]\npath = /i\nroot = yes\n",
                       "[vm] memory: \"127M\" is out of range (128M-1T)");
        expect_problem("[vm]\nkernel = /k\nmemory = 134217729\n[drive.root]\npath = /i\nroot = yes\n",
                       "is not a whole number of MiB");
        expect_problem("[vm]\nkernel = /k\nmemory = 1.5G\n[drive.root]\npath = /i\nroot = yes\n",
                       "[vm] memory: \"1.5G\" is not a size");
        expect_problem("[vm]\nkernel = k\n[drive.root]\npath = /i\nroot = yes\n",
                       "[vm] kernel: \"k\" is not an absolute path");
        expect_problem("[vm]\nkernel = /a/../k\n[drive.root]\npath = /i\nroot = yes\n",
                       "[vm] kernel: \"/a/../k\" contains a \"..\" component");
        expect_problem("[vm]\nkernel = /a/./k\n[drive.root]\npath = /i\nroot = yes\n", "contains a \".\" component");
        expect_problem("[vm]\nkernel = /a//k\n[drive.root]\npath = /i\nroot = yes\n", "contains \"//\"");
        expect_problem("[vm]\nkernel = /a/k/\n[drive.root]\npath = /i\nroot = yes\n", "ends with \"/\"");
        expect_problem("[vm]\nkernel = /\n[drive.root]\npath = /i\nroot = yes\n", "is \"/\" itself");
        expect_problem("[vm]\nkernel =\n[drive.root]\npath = /i\nroot = yes\n", "[vm] kernel: \"\" is empty");
        expect_problem(BASE "[vm]\n", "appears twice");
        expect_problem("[vm]\nkernel = /k\nautostart = maybe\n[drive.root]\npath = /i\nroot = yes\n",
                       "[vm] autostart: \"maybe\" is not a boolean (use yes or no)");
        expect_problem("[vm]\nkernel = /k\nrestart = sometimes\n[drive.root]\npath = /i\nroot = yes\n",
                       "[vm] restart: \"sometimes\" is not a restart policy (use no, on-failure or always)");
        expect_problem("[vm]\nkernel = /k\nstop_timeout = 5 min\n[drive.root]\npath = /i\nroot = yes\n",
                       "[vm] stop_timeout: \"5 min\" is not a time span");
        expect_problem("[vm]\nkernel = /k\nstop_timeout = 2h\n[drive.root]\npath = /i\nroot = yes\n",
                       "[vm] stop_timeout: \"2h\" is out of range (1s-1h)");
        expect_problem("[vm]\nkernel = /k\nuid = 5\n[drive.root]\npath = /i\nroot = yes\n",
                       "[vm] uid: \"5\" is outside the host's uid_range (1000000-1065535)");
        expect_problem("[vm]\nkernel = /k\nuid = root\n[drive.root]\npath = /i\nroot = yes\n",
                       "[vm] uid: \"root\" is neither \"auto\" nor a decimal uid");
        expect_problem("[vm]\nkernel = /k\ncpu_weight = 0\n[drive.root]\npath = /i\nroot = yes\n",
                       "[vm] cpu_weight: \"0\" is out of range (1-10000)");
        expect_problem("[vm]\nkernel = /k\ncpu_quota = 200\n[drive.root]\npath = /i\nroot = yes\n",
                       "[vm] cpu_quota: \"200\" is not a percentage");
        expect_problem("[vm]\nkernel = /k\ncpu_quota = 0%\n[drive.root]\npath = /i\nroot = yes\n",
                       "[vm] cpu_quota: \"0%\" is out of range");
        expect_problem("[vm]\nkernel = /k\nallowed_cpus = 3-1\n[drive.root]\npath = /i\nroot = yes\n",
                       "[vm] allowed_cpus: \"3-1\" is not a CPU list");
        expect_problem("[vm]\nkernel = /k\nallowed_cpus = 0,0\n[drive.root]\npath = /i\nroot = yes\n",
                       "[vm] allowed_cpus: \"0,0\" is not a CPU list");
        expect_problem("[vm]\nkernel = /k\nnuma_node = -1\n[drive.root]\npath = /i\nroot = yes\n",
                       "[vm] numa_node: \"-1\" is not a NUMA node number");
        expect_problem("[vm]\nkernel = /k\ncmdline =\n[drive.root]\npath = /i\nroot = yes\n",
                       "[vm] cmdline: \"\" is empty");
        expect_problem("[vm]\nkernel = /k\nephemeral = 2\n[drive.root]\npath = /i\nroot = yes\n",
                       "[vm] ephemeral: \"2\" is not a boolean");
        expect_problem("[vm]\nkernel = /k\non_host_shutdown = hibernate\n[drive.root]\npath = /i\nroot = yes\n",
                       "[vm] on_host_shutdown: \"hibernate\" is neither stop nor suspend");
        expect_problem("[vm]\nkernel = /k\nfirecracker_log_level = Warning\n[drive.root]\npath = /i\nroot = yes\n",
                       "[vm] firecracker_log_level: \"Warning\" is not a firecracker log level (use error, warning, "
                       "info or debug)");
}

Test(config, bad_drives) {
        expect_problem("[vm]\nkernel = /k\n", "web1.conf: no drive configured (add a [drive.NAME] section with root = yes)");
        expect_problem("[vm]\nkernel = /k\n[drive.a]\npath = /i\n", "no drive has root = yes (exactly one root drive is required)");
        expect_problem(BASE "[drive.b]\npath = /j\nroot = yes\n",
                       "web1.conf: [drive.b] root: \"yes\" makes a second root drive ([drive.root] is already the root drive; exactly one is allowed)");
        expect_problem(BASE "[drive.b]\nmode = snapshoot\npath = /j\n",
                       "[drive.b] mode: \"snapshoot\" is not a storage mode (use file, snapshot, thin or block)");
        expect_problem(BASE "[drive.b]\n", "[drive.b] path: missing");
        expect_problem(BASE "[drive.B]\npath = /j\n", "section names are lower case");
        expect_problem(BASE "[drive.a_b]\npath = /j\n", "\"a_b\" is not a valid drive name ([a-z0-9]{1,16})");
        expect_problem(BASE "[drive.abcdefghijklmnopq]\npath = /j\n", "is not a valid drive name");
        expect_problem(BASE "[drive.b]\npath = /j\nsize = 1G\n", "[drive.b] size: \"1G\" only applies to snapshot and thin drives (mode is file)");
        expect_problem(BASE "[drive.b]\nmode = block\npath = /dev/sda\npersistent = yes\n",
                       "[drive.b] persistent: \"yes\" only applies to snapshot drives (mode is block)");
        expect_problem(BASE "[drive.b]\nmode = snapshot\npath = /j\nread_only = yes\n",
                       "[drive.b] read_only: \"yes\" is not possible with mode = snapshot: a read-only drive needs no copy-on-write volume (use mode = file)");
        expect_problem(BASE "[drive.b]\nmode = thin\npath = /j\n",
                       "[drive.b] mode: \"thin\" needs a thin pool, but the host config");
        expect_problem(BASE "[drive.b]\npath = /j\ncache = none\n", "[drive.b] cache: \"none\" is not a cache type (use unsafe or writeback)");
        expect_problem(BASE "[drive.b]\npath = /j\nio_engine = uring\n", "[drive.b] io_engine: \"uring\" is not an io engine (use sync or async)");
        expect_problem(BASE "[drive.b]\nmode = snapshot\npath = /j\nsize = 512K\n", "[drive.b] size: \"512K\" is out of range");
}

Test(config, too_many_drives) {
        char text[4096] = BASE;
        for (int i = 0; i < 17; i++)
                sprintf(text + strlen(text), "[drive.d%d]\npath = /d%d\n", i, i);
        expect_problem(text, "more than 16 drives");
}

Test(config, bad_nics) {
        expect_problem(BASE "[net.eth0]\nmac = 01:00:00:00:00:01\n", "[net.eth0] mac: \"01:00:00:00:00:01\" is not a unicast MAC address");
        expect_problem(BASE "[net.eth0]\nmac = 00:00:00:00:00:00\n", "is not a unicast MAC address");
        expect_problem(BASE "[net.eth0]\nmac = 52:54:00:12:34\n", "is neither \"auto\" nor a MAC address");
        expect_problem(BASE "[net.eth0]\nmac = 52:54:00:12:34:56\n[net.eth1]\nmac = 52:54:00:12:34:56\n",
                       "[net.eth1] mac: \"52:54:00:12:34:56\" is also the MAC of [net.eth0]");
        expect_problem(BASE "[net.eth0]\ntap = t0\n[net.eth1]\ntap = t0\n", "[net.eth1] tap: \"t0\" is also the tap of [net.eth0]");
        expect_problem(BASE "[net.eth0]\ntap = abcdefghijklmnop\n", "is neither \"auto\" nor a valid interface name");
        expect_problem(BASE "[net.eth0]\nbridge = a/b\n", "[net.eth0] bridge: \"a/b\" is not a valid interface name");
        expect_problem(BASE "[net.eth0]\nmtu = 67\n", "[net.eth0] mtu: \"67\" is out of range (68-65535)");
        expect_problem(BASE "[net.eth0]\nmtu = 65536\n", "[net.eth0] mtu: \"65536\" is out of range (68-65535)");
        expect_problem(BASE "[net.eth0]\naddress = 10.0.0.2\n", "is not an IPv4 address with prefix length");
        expect_problem(BASE "[net.eth0]\naddress = 10.0.0.256/24\n", "is not an IPv4 address with prefix length");
        expect_problem(BASE "[net.eth0]\ngateway = 10.0.0.1\n", "[net.eth0] gateway: \"10.0.0.1\" needs an address on the same NIC");
        expect_problem(BASE "[net.eth0]\naddress = 10.0.0.2/24\n[net.eth1]\naddress = 10.0.1.2/24\n",
                       "[net.eth1] address: \"10.0.1.2/24\" a second static address");
        expect_problem(BASE "[net.eth_0]\n", "\"eth_0\" is not a valid NIC name");
}

Test(config, vsock) {
        VmConfig *c;
        expect_ok(BASE "[vsock]\n", &c);
        cr_assert(c->has_vsock && c->vsock_cid_auto);
        vm_config_free(c);
        expect_problem(BASE "[vsock]\ncid = 2\n", "[vsock] cid: \"2\" is neither \"auto\" nor a context id (3-4294967294)");
        expect_problem(BASE "[vsock]\ncid = 4294967295\n", "is neither \"auto\" nor a context id");
}

Test(config, unknown_sections_and_keys) {
        expect_problem(BASE "[drv.x]\n", "web1.conf:6: [drv.x]: unknown section (use [vm], [drive.NAME], [net.NAME] or [vsock])");
        expect_problem("[vm]\nkernel = /k\nvcpu = 2\n[drive.root]\npath = /i\nroot = yes\n",
                       "web1.conf: [vm] vcpu: unknown key (did you mean \"vcpus\"?)");
        expect_problem("[vm]\nkernel = /k\nfoo = 2\n[drive.root]\npath = /i\nroot = yes\n",
                       "web1.conf: [vm] foo: unknown key (see microvm.conf(5)");
        expect_problem(BASE "[drive.b]\npath = /j\nreadonly = yes\n", "[drive.b] readonly: unknown key (did you mean \"read_only\"?)");
        expect_problem("[vm]\nkernel = /k\n[drive.root]\npath = /i\nroot = yes\n[vm]\n", "section appears twice");
        expect_problem("kernel = /k\n" BASE, "web1.conf:1: \"kernel\" key outside of any section");
        expect_problem("[drive.root]\npath = /i\nroot = yes\n", "web1.conf: [vm]: missing section");
        expect_problem("[vm]\nvcpus = 1\n[drive.root]\npath = /i\nroot = yes\n", "web1.conf: [vm] kernel: missing (the guest kernel image is required)");
}

/* What iniparser would silently mangle. */
Test(config, iniparser_traps) {
        expect_problem("[vm]\nkernel = /k\nvcpus = 1\nvcpus = 2\n[drive.root]\npath = /i\nroot = yes\n",
                       "web1.conf: [vm] vcpus: \"2\" duplicates the key at line 3 (iniparser would silently keep only the last one): keep one");
        expect_problem(BASE "[vm]\n", "appears twice");
        expect_problem("[VM]\nkernel = /k\n", "web1.conf:1: \"VM\" section names are lower case (iniparser would lowercase it silently)");
        expect_problem("[vm]\nKernel = /k\n", "web1.conf:2: \"Kernel\" key names are lower case (iniparser would lowercase it silently)");
        expect_problem("[vm]\nkernel = /k\ndescription = Web #1\n[drive.root]\npath = /i\nroot = yes\n",
                       "[vm] description: \"Web #1\" contains '#', where iniparser would cut the value");
        expect_problem("[vm]\nkernel = /k\ncmdline = console=ttyS0;x\n[drive.root]\npath = /i\nroot = yes\n",
                       "[vm] cmdline: \"console=ttyS0;x\" contains ';', where iniparser would cut the value");
        expect_problem("[vm] ; x\nkernel = /k\n", "web1.conf:1: text after the section header's ']'");
        expect_problem("[vm]\nkernel = /k \\\n", "web1.conf:2: line ends with '\\'");
        expect_problem("# comment \\\n[vm]\n", "web1.conf:1: line ends with '\\'");
        expect_problem("[vm]\ncmdline = \"a\\\"b\"\n", "contains a backslash inside quotes");
        expect_problem("[vm]\ncmdline = \"abc\" def\n", "has text after the closing quote");
        expect_problem("[vm]\ncmdline = \"abc\n", "has no closing '\"'");
        expect_problem("[vm]\ncmdline = 'abc\n", "has no closing \"'\"");
        expect_problem("[vm]\ndescription = a\"b\n", "contains a stray '\"'");
        expect_problem("[vm]\njunk\n", "web1.conf:2: is neither a section header, a comment nor a \"key = value\" line");
        expect_problem("[vm]\n= x\n", "web1.conf:2: missing key name before '='");
        expect_problem("[vm\n", "web1.conf:1: section header has no closing ']'");
        expect_problem("[vm]\nboot args = x\n", "\"boot args\" is not a valid key name");
        expect_problem("\xef\xbb\xbf[vm]\n", "starts with a UTF-8 byte order mark");
        expect_problem("[vm]\nkernel = /k\xff\n", "web1.conf:2: line is not valid UTF-8");
        expect_problem("[vm]\nkernel = /k\x01\n", "web1.conf:2: line contains a control character");
        expect_problem("[vm]\nkernel = /\xc0\xafk\n", "web1.conf:2: line is not valid UTF-8"); /* overlong '/' */
}

Test(config, nul_byte) {
        static const char text[] = "[vm]\nkernel = /k\0x\n";
        HostConfig *h = host_default();
        Problems p = {};
        VmConfig *c = NULL;
        cr_assert_eq(vm_config_parse("web1.conf", "web1", text, sizeof text - 1, h, &c, &p), -EINVAL);
        char *m = problem_format(&p.items[0]);
        cr_assert_str_eq(m, "web1.conf:2: line contains a NUL byte");
        free(m);
        problems_done(&p);
        host_config_free(h);
}

Test(config, long_line) {
        char text[2048];
        snprintf(text, sizeof text, "[vm]\ndescription = %01100d\n", 0);
        expect_problem(text, "web1.conf:2: line is longer than 1000 bytes");
}

Test(config, accepted_syntax) {
        VmConfig *c;
        /* comments, blank lines, CRLF, tabs, quoting, inline " ; " comments */
        expect_ok("# full line comment\r\n; another\r\n\r\n[ vm ]\r\n\tkernel\t=\t/k\t; inline\r\n"
                  "description = 'single quoted; with #'\r\n"
                  "initrd = \"/initrd.img\"\r\n"
                  "[drive.root]\npath = /i ; x\nroot = yes",
                  &c);
        cr_assert_str_eq(c->kernel, "/k");
        cr_assert_str_eq(c->description, "single quoted; with #");
        cr_assert_str_eq(c->drives[0].path, "/i");
        cr_assert_str_eq(c->initrd, "/initrd.img");
        vm_config_free(c);
}

Test(config, empty_cmdline_quoted_is_error) {
        /* "" is an explicitly empty command line: refused, the default is
         * had by leaving the key out. */
        expect_problem("[vm]\nkernel = /k\ncmdline = \"\"\n[drive.root]\npath = /i\nroot = yes\n", "[vm] cmdline: \"\" is empty");
}

Test(config, all_problems_in_one_round) {
        HostConfig *h = host_default();
        char *m = vm_problems("[vm]\nvcpus = 0\nmemory = 1\n[drive.r]\nmode = x\n[foo]\n", h, NULL);
        int lines = 1;
        for (char *p = m; *p; p++)
                lines += *p == '\n';
        cr_assert_geq(lines, 5, "expected every problem, got %d", lines);
        free(m);
        host_config_free(h);
}

Test(config, vm_ids) {
        static const char *const good[] = {
                "a", "0", "web1", "a-b", "a--b", "0123456789012345678901234567890123456789012345678901234567890123",
        };
        static const struct { const char *id, *reason; } bad[] = {
                { "", "is empty" },
                { "-a", "starts with '-'" },
                { "a-", "ends with '-'" },
                { "Web1", "contains an upper-case letter" },
                { "web_1", "contains '_' (the jailer rejects it; use '-')" },
                { "web.1", "contains a character other than a-z, 0-9 and '-'" },
                { "web 1", "contains a character other than" },
                { "01234567890123456789012345678901234567890123456789012345678901234", "is longer than 64 characters" },
        };
        for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
                cr_assert(vm_id_valid(good[i]), "%s should be valid", good[i]);
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                const char *r = vm_id_invalid_reason(bad[i].id);
                cr_assert_not_null(r, "%s should be invalid", bad[i].id);
                cr_assert(strstr(r, bad[i].reason), "%s: got \"%s\"", bad[i].id, r);
        }
}

Test(config, bad_id_message) {
        HostConfig *h = host_default();
        Problems p = {};
        VmConfig *c = NULL;
        cr_assert_eq(vm_config_parse("/etc/microvm/vms/web_1.conf", "web_1", BASE, strlen(BASE), h, &c, &p), -EINVAL);
        char *m = problem_format(&p.items[0]);
        cr_assert_str_eq(m, "/etc/microvm/vms/web_1.conf: \"web_1\" is not a valid VM id: it contains '_' (the jailer rejects it; use '-') (ids match [a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?)");
        free(m);
        problems_done(&p);
        host_config_free(h);
}

Test(config, boot_args) {
        VmConfig *c;
        char *a;

        expect_ok(BASE, &c);
        a = vm_config_boot_args(c, NULL);
        cr_assert_str_eq(a, "console=ttyS0 reboot=k panic=1");
        free(a);
        vm_config_free(c);

        expect_ok("[vm]\nkernel = /k\ncmdline = \"quiet\"\n[drive.root]\npath = /i\nroot = yes\n"
                  "[net.eth0]\n[net.eth1]\naddress = 192.168.1.5/20\ngateway = 192.168.0.1\n",
                  &c);
        a = vm_config_boot_args(c, NULL);
        cr_assert_str_eq(a, "quiet console=ttyS0 reboot=k ip=192.168.1.5::192.168.0.1:255.255.240.0::eth1:off");
        free(a);
        vm_config_free(c);

        expect_ok("[vm]\nkernel = /k\ncmdline = \"console=hvc0 reboot=t\"\n[drive.root]\npath = /i\nroot = yes\n", &c);
        a = vm_config_boot_args(c, NULL);
        cr_assert_str_eq(a, "console=hvc0 reboot=t");
        free(a);
        vm_config_free(c);
}

/* linux-loader's Cmdline::try_from() (src/cmdline/mod.rs, v0.13.2): the
 * first " -- " after an even number of '"'; NULL when there is none. */
static const char *linux_loader_separator(const char *s) {
        for (const char *p = strstr(s, " -- "); p; p = strstr(p + 1, " -- ")) {
                size_t quotes = 0;
                for (const char *q = s; q < p; q++)
                        quotes += *q == '"';
                if (quotes % 2 == 0)
                        return p;
        }
        return NULL;
}

/* Golden: where our parameters land relative to "--", for every way the
 * kernel and linux-loader can see the separator; and in every result
 * linux-loader splits exactly where the kernel does, so firecracker's own
 * parameters (inserted before linux-loader's separator) reach the kernel
 * too. */
Test(config, boot_args_before_init_separator) {
        static const struct {
                const char *cmdline;    /* as written in the file */
                const char *boot_args;
        } cases[] = {
                { "\"panic=1 -- single\"", "panic=1 console=ttyS0 reboot=k -- single" },
                /* "--" inside quotes is part of a value, not the separator */
                { "'foo=\"a -- b\" panic=1'", "foo=\"a -- b\" panic=1 console=ttyS0 reboot=k" },
                { "'init=/bin/sh -c \"echo -- x\" -- single'",
                  "init=/bin/sh -c \"echo -- x\" console=ttyS0 reboot=k -- single" },
                /* at the start and at the end: linux-loader needs " -- " */
                { "\"-- single\"", "console=ttyS0 reboot=k -- single" },
                { "\"panic=1 --\"", "panic=1 console=ttyS0 reboot=k" },
                { "\"  panic=1   --   single  \"", "panic=1 console=ttyS0 reboot=k -- single" },
                /* a tab is a blank to the kernel, not to linux-loader */
                { "\"panic=1\t--\tsingle\"", "panic=1 console=ttyS0 reboot=k -- single" },
                { "\"panic=1 --\tsingle\"", "panic=1 console=ttyS0 reboot=k -- single" },
                /* the kernel strips the quotes of "--" and stops there too */
                { "'quiet \"--\" single'", "quiet console=ttyS0 reboot=k -- single" },
                /* only the first separator counts; --x is a parameter */
                { "\"a --x -- b -- c\"", "a --x console=ttyS0 reboot=k -- b -- c" },
                /* console= and reboot= after "--" are init's, not the kernel's */
                { "\"quiet -- console=hvc0 reboot=t\"", "quiet console=ttyS0 reboot=k -- console=hvc0 reboot=t" },
                { "\"console=hvc0 -- x\"", "console=hvc0 reboot=k -- x" },
                { "'\"console=hvc0\" reboot=t'", "\"console=hvc0\" reboot=t" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *text = NULL, *a = NULL;
                KernelCmdlineSplit split;
                const char *ll;
                VmConfig *c;

                cr_assert(asprintf(&text, "[vm]\nkernel = /k\ncmdline = %s\n[drive.root]\npath = /i\nroot = yes\n",
                                   cases[i].cmdline) > 0);
                expect_ok(text, &c);
                a = vm_config_boot_args(c, NULL);
                cr_assert_str_eq(a, cases[i].boot_args, "cmdline = %s", cases[i].cmdline);
                kernel_cmdline_split(a, &split);
                ll = linux_loader_separator(a);
                cr_assert_eq(!!split.init, !!ll, "%s", a);
                if (ll)
                        cr_assert_eq((size_t) (ll - a), split.kernel_len, "%s", a);
                vm_config_free(c);
        }

        /* ip= lands before "--" as well */
        {
                VmConfig *c;
                char *a;

                expect_ok("[vm]\nkernel = /k\ncmdline = \"panic=1 -- single\"\n[drive.root]\npath = /i\nroot = yes\n"
                          "[net.eth0]\naddress = 10.0.0.2/24\n",
                          &c);
                a = vm_config_boot_args(c, NULL);
                cr_assert_str_eq(a, "panic=1 console=ttyS0 reboot=k ip=10.0.0.2:::255.255.255.0::eth0:off -- single");
                free(a);
                vm_config_free(c);
        }
}

Test(config, partuuid) {
        VmConfig *c;

        expect_ok(BASE "partuuid = 0eaa91a0-01\n", &c);
        cr_assert_str_eq(vm_config_root_drive(c)->partuuid, "0eaa91a0-01");
        vm_config_free(c);
        expect_ok(BASE "partuuid = 6F1E2D3C-4b5a-4978-8a9b-0c1d2e3f4a5b\n", NULL);
        expect_ok(BASE "partuuid = ffffffff-80\n", NULL);
        expect_ok(BASE, &c);
        cr_assert_null(vm_config_root_drive(c)->partuuid);
        vm_config_free(c);

        static const char *const bad[] = {
                "0eaa91a0-1", "0eaa91a0-001", "0eaa91a-01", "0eaa91a0-00", "0eaa91g0-01", "0eaa91a0_01",
                "6f1e2d3c-4b5a-4978-8a9b-0c1d2e3f4a5", "6f1e2d3c-4b5a-4978-8a9b0-c1d2e3f4a5b",
                "6f1e2d3c4b5a49788a9b0c1d2e3f4a5b", "PARTUUID=0eaa91a0-01", "0eaa91a0-01/PARTNROFF=1",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_free_ char *text = NULL, *want = NULL;
                cr_assert(asprintf(&text, BASE "partuuid = %s\n", bad[i]) > 0);
                cr_assert(asprintf(&want, "[drive.root] partuuid: \"%s\" is not a partition UUID (a GPT partition's "
                                          "unique GUID", bad[i]) > 0);
                expect_problem(text, want);
        }
        expect_problem(BASE "[drive.data]\npath = /d\npartuuid = 0eaa91a0-02\n",
                       "[drive.data] partuuid: \"0eaa91a0-02\" only applies to the root drive (root = yes): "
                       "firecracker boots with root=PARTUUID=<partuuid> of the root drive and ignores it elsewhere");
}

Test(config, cmdline_root_and_quotes_refused) {
        expect_problem("[vm]\nkernel = /k\ncmdline = \"quiet root=/dev/vdb1\"\n[drive.root]\npath = /i\nroot = yes\n",
                       "[vm] cmdline: \"quiet root=/dev/vdb1\" sets root=, which firecracker always overrides with "
                       "root=/dev/vda of the root drive (remove it; for a root filesystem on a partition of the image, "
                       "set partuuid = in the root drive's section)");
        expect_problem("[vm]\nkernel = /k\ncmdline = '\"root=/dev/vdb1\" -- x'\n[drive.root]\npath = /i\nroot = yes\n",
                       "sets root=");
        expect_problem("[vm]\nkernel = /k\ncmdline = \"panic=1\troot=PARTUUID=0eaa91a0-01\"\n[drive.root]\npath = /i\n"
                       "root = yes\n",
                       "sets root=");
        expect_problem("[vm]\nkernel = /k\ncmdline = 'quiet init=\"/bin/sh'\n[drive.root]\npath = /i\nroot = yes\n",
                       "[vm] cmdline: \"quiet init=\\\"/bin/sh\" has an unpaired '\"' (the parameters microvm and "
                       "firecracker append would end up inside the quotes)");
        /* not the kernel's root=: init's argument, another parameter, a quoted value */
        expect_ok("[vm]\nkernel = /k\ncmdline = \"quiet -- root=x\"\n[drive.root]\npath = /i\nroot = yes\n", NULL);
        expect_ok("[vm]\nkernel = /k\ncmdline = \"rootwait rootfstype=ext4 ro\"\n[drive.root]\npath = /i\nroot = yes\n",
                  NULL);
        expect_ok("[vm]\nkernel = /k\ncmdline = 'init=/bin/sh -c \"x root=y\"'\n[drive.root]\npath = /i\nroot = yes\n",
                  NULL);
}

/* ---- host config ---- */

static char *host_problems(const char *text, HostConfig **ret) {
        Problems p = {};
        HostConfig *h = NULL;
        char *out = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&out, &len);
        int r = host_config_parse("microvm.conf", text, strlen(text), &h, &p);

        cr_assert_eq(r == 0, p.n == 0);
        for (size_t i = 0; i < p.n; i++) {
                char *m = problem_format(&p.items[i]);
                fprintf(f, "%s%s", i ? "\n" : "", m);
                free(m);
        }
        fclose(f);
        problems_done(&p);
        if (ret)
                *ret = h;
        else
                host_config_free(h);
        return out;
}

static void expect_host_problem(const char *text, const char *expected) {
        char *m = host_problems(text, NULL);
        if (!strstr(m, expected)) {
                char *t = cescape(text), *e = cescape(m);
                cr_assert(false, "expected problem \"%s\" for \"%s\", got \"%s\"", expected, t, e);
        }
        free(m);
}

Test(host_config, defaults_and_every_key) {
        HostConfig *h;
        char *m = host_problems("", &h);
        cr_assert_str_empty(m);
        free(m);
        cr_assert_str_eq(h->jailer, "/usr/bin/jailer");
        cr_assert_str_eq(h->firecracker, "/usr/bin/firecracker");
        cr_assert_str_eq(h->chroot_base, "/srv/jailer");
        cr_assert_str_eq(h->state_dir, "/var/lib/microvm");
        cr_assert_str_eq(h->run_dir, "/run/microvm");
        cr_assert_eq(h->uid_min, 1000000);
        cr_assert_eq(h->uid_max, 1065535);
        cr_assert_eq(h->memory_overhead, 64ULL << 20);
        cr_assert_eq(h->on_host_shutdown, ON_HOST_SHUTDOWN_STOP);
        cr_assert_eq(h->suspend_write_rate, 100ULL << 20);
        cr_assert_eq(h->firecracker_log_level, FC_LOG_LEVEL_INFO);
        cr_assert(!h->thin_pool.configured);
        host_config_free(h);

        m = host_problems("[host]\njailer = /opt/fc/jailer\nfirecracker = /opt/fc/firecracker\nchroot_base = /j\n"
                          "state_dir = /s\nrun_dir = /r\nuid_range = 2000000-2000099\nmemory_overhead = 128M\n"
                          "bridge = br0\non_host_shutdown = suspend\nsuspend_write_rate = 50M\nfirecracker_log_level = error\n"
                          "[thin_pool]\nname = pool0\ndata = /s/pool/data\nmetadata = /s/pool/meta\n"
                          "data_size = 10G\nmetadata_size = 64M\nblock_size = 128K\n",
                          &h);
        cr_assert_str_empty(m, "%s", m);
        free(m);
        cr_assert_str_eq(h->jailer, "/opt/fc/jailer");
        cr_assert_str_eq(h->chroot_base, "/j");
        cr_assert_eq(h->uid_min, 2000000);
        cr_assert_eq(h->uid_max, 2000099);
        cr_assert_eq(h->memory_overhead, 128ULL << 20);
        cr_assert_str_eq(h->bridge, "br0");
        cr_assert_eq(h->on_host_shutdown, ON_HOST_SHUTDOWN_SUSPEND);
        cr_assert_eq(h->suspend_write_rate, 50ULL << 20);
        cr_assert_eq(h->firecracker_log_level, FC_LOG_LEVEL_ERROR);
        cr_assert(h->thin_pool.configured);
        cr_assert_str_eq(h->thin_pool.name, "pool0");
        cr_assert_eq(h->thin_pool.data_size, 10ULL << 30);
        cr_assert_eq(h->thin_pool.metadata_size, 64ULL << 20);
        cr_assert_eq(h->thin_pool.block_size, 128ULL << 10);
        host_config_free(h);
}

Test(host_config, bad) {
        expect_host_problem("[host]\nuid_range = 5\n", "[host] uid_range: \"5\" is not a uid range (use e.g. 1000000-1065535)");
        expect_host_problem("[host]\nuid_range = 0-100\n", "[host] uid_range: \"0-100\" is not a usable range");
        expect_host_problem("[host]\nuid_range = 10-5\n", "is not a usable range");
        expect_host_problem("[host]\njailer = jailer\n", "[host] jailer: \"jailer\" is not an absolute path");
        expect_host_problem("[host]\nchroot_base = /var/lib/microvm/jail\n",
                            "[host] chroot_base: \"/var/lib/microvm/jail\" overlaps state_dir \"/var/lib/microvm\"");
        expect_host_problem("[host]\nrun_dir = /srv/jailer\n", "overlaps run_dir");
        expect_host_problem("[host]\nmemory_overhead = 100G\n", "[host] memory_overhead: \"100G\" is out of range");
        expect_host_problem("[host]\nsuspend_write_rate = 1K\n", "[host] suspend_write_rate: \"1K\" is out of range");
        expect_host_problem("[host]\non_host_shutdown = yes\n", "[host] on_host_shutdown: \"yes\" is neither stop nor suspend");
        expect_host_problem("[host]\nfirecracker_log_level = trace\n",
                            "[host] firecracker_log_level: \"trace\" is not a firecracker log level");
        expect_host_problem("[hosts]\n", "[hosts]: unknown section (the host config has [host] and [thin_pool])");
        expect_host_problem("[host]\nstatedir = /x\n", "[host] statedir: unknown key (did you mean \"state_dir\"?)");
        expect_host_problem("[thin_pool]\ndata = /d\n", "[thin_pool] metadata: missing");
        expect_host_problem("[thin_pool]\ndata = /d\nmetadata = /m\n", "[thin_pool] data_size: missing");
        expect_host_problem("[thin_pool]\ndata_size = 10G\n", "[thin_pool] data_size: only applies when data and metadata are given");
        expect_host_problem("[thin_pool]\ndata = /d\nmetadata = /d\ndata_size = 1G\n", "[thin_pool] metadata: \"/d\" is the same file as data");
        expect_host_problem("[thin_pool]\nname = a/b\n", "[thin_pool] name: \"a/b\" is not a valid device-mapper name");
        expect_host_problem("[thin_pool]\nblock_size = 100K\n", "[thin_pool] block_size: \"100K\" is not a multiple of 64K");
}

Test(host_config, thin_pool_default_name) {
        HostConfig *h;
        char *m = host_problems("[thin_pool]\n", &h);
        cr_assert_str_empty(m);
        free(m);
        cr_assert(h->thin_pool.configured);
        cr_assert_str_eq(h->thin_pool.name, "microvm-pool");
        host_config_free(h);
}

Test(config, suspend_stop_budget) {
        _cleanup_host_config_ HostConfig *h = NULL;
        VmConfig c = { .memory = 1ULL << 30, .stop_timeout = 30 * USEC_PER_SEC };

        cr_assert_eq(host_config_new_default(&h), 0);
        cr_assert(!vm_config_suspends(&c, h));
        cr_assert_eq(vm_config_stop_budget(&c, h), 30 * USEC_PER_SEC);
        c.on_host_shutdown = ON_HOST_SHUTDOWN_SUSPEND;
        cr_assert(vm_config_suspends(&c, h));
        /* 1 GiB at 100 MiB/s: 10.24 s, rounded up to 11 s, + 10 s margin. */
        cr_assert_eq(vm_config_suspend_time(&c, h), 21 * USEC_PER_SEC);
        cr_assert_eq(vm_config_stop_budget(&c, h), 51 * USEC_PER_SEC);
        h->on_host_shutdown = ON_HOST_SHUTDOWN_SUSPEND;
        c.on_host_shutdown = ON_HOST_SHUTDOWN_STOP;
        cr_assert(!vm_config_suspends(&c, h));
        c.on_host_shutdown = ON_HOST_SHUTDOWN_DEFAULT;
        cr_assert(vm_config_suspends(&c, h));
}

Test(config, fc_log_level_vm_over_host) {
        _cleanup_host_config_ HostConfig *h = NULL;
        VmConfig c = {};

        cr_assert_eq(host_config_new_default(&h), 0);
        cr_assert_eq(vm_config_fc_log_level(&c, h), FC_LOG_LEVEL_INFO);
        h->firecracker_log_level = FC_LOG_LEVEL_WARNING;
        cr_assert_eq(vm_config_fc_log_level(&c, h), FC_LOG_LEVEL_WARNING);
        c.firecracker_log_level = FC_LOG_LEVEL_DEBUG;
        cr_assert_eq(vm_config_fc_log_level(&c, h), FC_LOG_LEVEL_DEBUG);
        cr_assert_str_eq(fc_log_level_to_string(FC_LOG_LEVEL_DEBUG), "Debug");
        cr_assert_null(fc_log_level_to_string(FC_LOG_LEVEL_DEFAULT));
}
