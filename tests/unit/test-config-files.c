/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Finding VM configs across the search path: precedence and masking.
 * Uses a temporary directory tree, no privileges. */

#include <criterion/criterion.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>

#include "config-files.h"

static char tmp[] = "/tmp/microvm-test-files-XXXXXX";
static char etc[256], run[256], usr[256];

static void write_file(const char *dir, const char *name, const char *text) {
        char p[512];
        snprintf(p, sizeof p, "%s/%s", dir, name);
        FILE *f = fopen(p, "we");
        cr_assert_not_null(f, "%s", p);
        fputs(text, f);
        fclose(f);
}

static void setup(void) {
        cr_assert_not_null(mkdtemp(tmp));
        snprintf(etc, sizeof etc, "%s/etc", tmp);
        snprintf(run, sizeof run, "%s/run", tmp);
        snprintf(usr, sizeof usr, "%s/usr", tmp);
        mkdir(etc, 0755);
        mkdir(run, 0755);
        mkdir(usr, 0755);
        char path[1024];
        snprintf(path, sizeof path, "%s:%s:%s:%s/missing", etc, run, usr, tmp);
        setenv("MICROVM_CONFIG_PATH", path, 1);
        snprintf(path, sizeof path, "%s/microvm.conf", tmp);
        setenv("MICROVM_HOST_CONFIG", path, 1);
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

static void teardown(void) {
        cr_assert_eq(nftw(tmp, remove_one, 16, FTW_DEPTH | FTW_PHYS), 0);
}

#define VM(desc) "[vm]\ndescription = " desc "\nkernel = /k\n[drive.root]\npath = /i\nroot = yes\n"

TestSuite(config_files, .init = setup, .fini = teardown);

Test(config_files, precedence_and_masking) {
        VmConfigFile *f;
        size_t n;
        char link[512];

        write_file(usr, "a.conf", VM("usr a"));
        write_file(usr, "b.conf", VM("usr b"));
        write_file(run, "b.conf", VM("run b"));
        write_file(etc, "c.conf", VM("etc c"));
        write_file(usr, "c.conf", VM("usr c"));
        write_file(usr, "d.conf", VM("usr d"));
        snprintf(link, sizeof link, "%s/d.conf", etc);
        cr_assert_eq(symlink("/dev/null", link), 0);
        write_file(etc, "notes.txt", "not a config");
        write_file(etc, ".hidden.conf", VM("hidden"));

        cr_assert_eq(vm_config_enumerate(&f, &n), 0);
        cr_assert_eq(n, 4);
        cr_assert_str_eq(f[0].name, "a");
        cr_assert(strstr(f[0].path, "/usr/a.conf"));
        cr_assert_str_eq(f[1].name, "b");
        cr_assert(strstr(f[1].path, "/run/b.conf"), "%s", f[1].path);
        cr_assert_str_eq(f[2].name, "c");
        cr_assert(strstr(f[2].path, "/etc/c.conf"));
        cr_assert_str_eq(f[3].name, "d");
        cr_assert(f[3].masked);
        cr_assert(!f[0].masked && !f[1].masked && !f[2].masked);
        vm_config_files_free(f, n);

        char *p = NULL;
        cr_assert_eq(vm_config_find("b", &p), 0);
        cr_assert(strstr(p, "/run/b.conf"));
        free(p);
        cr_assert_eq(vm_config_find("d", &p), -ERFKILL);
        cr_assert_eq(vm_config_find("zz", &p), -ENOENT);

        HostConfig *h;
        Problems pr = {};
        VmConfig *c = NULL;
        cr_assert_eq(host_config_load(&h, &pr), 0); /* no file: defaults */
        cr_assert_null(h->source_path);
        cr_assert_eq(vm_config_load(h, "c", &c, &pr), 0);
        cr_assert_str_eq(c->description, "etc c");
        vm_config_free(c);
        cr_assert_eq(vm_config_load(h, "d", &c, &pr), -ERFKILL);
        cr_assert_eq(vm_config_load(h, "zz", &c, &pr), -ENOENT);
        cr_assert_eq(vm_config_load(h, "Bad_Id", &c, &pr), -EINVAL);
        cr_assert_eq(pr.n, 3);
        char *m = problem_format(&pr.items[0]);
        cr_assert_str_eq(m, "d: VM is masked (its config is a symlink to /dev/null)");
        free(m);
        m = problem_format(&pr.items[1]);
        cr_assert(strstr(m, "zz: no such VM: no zz.conf in "), "%s", m);
        free(m);
        m = problem_format(&pr.items[2]);
        cr_assert(strstr(m, "Bad_Id: is not a valid VM id: it contains an upper-case letter"), "%s", m);
        free(m);
        problems_done(&pr);
        host_config_free(h);
}

Test(config_files, masking_hides_lower_dirs_only_by_name) {
        char link[512], *p = NULL;
        write_file(usr, "a.conf", VM("usr a"));
        snprintf(link, sizeof link, "%s/a.conf", run);
        cr_assert_eq(symlink("/dev/null", link), 0);
        write_file(etc, "a.conf", VM("etc a"));
        /* /etc wins over the mask in /run */
        cr_assert_eq(vm_config_find("a", &p), 0);
        cr_assert(strstr(p, "/etc/a.conf"));
        free(p);
}

Test(config_files, symlinked_config_is_followed) {
        char target[512], link[512], *p = NULL;
        snprintf(target, sizeof target, "%s/real.txt", tmp);
        write_file(tmp, "real.txt", VM("linked"));
        snprintf(link, sizeof link, "%s/l.conf", etc);
        cr_assert_eq(symlink(target, link), 0);
        cr_assert_eq(vm_config_find("l", &p), 0);
        free(p);
        HostConfig *h;
        Problems pr = {};
        VmConfig *c = NULL;
        cr_assert_eq(host_config_load(&h, &pr), 0);
        cr_assert_eq(vm_config_load(h, "l", &c, &pr), 0);
        cr_assert_str_eq(c->description, "linked");
        vm_config_free(c);
        host_config_free(h);
}

Test(config_files, host_config_problems) {
        HostConfig *h = NULL;
        Problems pr = {};
        write_file(tmp, "microvm.conf", "[host]\nuid_range = x\n");
        cr_assert_eq(host_config_load(&h, &pr), -EINVAL);
        char *m = problem_format(&pr.items[0]);
        cr_assert(strstr(m, "/microvm.conf: [host] uid_range: \"x\" is not a uid range"), "%s", m);
        free(m);
        problems_done(&pr);
}

Test(config_files, read_limits) {
        char *d;
        size_t n;
        cr_assert_eq(config_read_file(etc, &d, &n), -EISDIR);
        cr_assert_eq(config_read_file("/dev/null", &d, &n), -EBADFD);
        char big[512];
        snprintf(big, sizeof big, "%s/big.conf", etc);
        int fd = open(big, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
        cr_assert_eq(ftruncate(fd, 2 * 1024 * 1024), 0);
        close(fd);
        cr_assert_eq(config_read_file(big, &d, &n), -EFBIG);
}

Test(config_files, search_path_default) {
        char **l = NULL;
        unsetenv("MICROVM_CONFIG_PATH");
        cr_assert_eq(config_search_path(&l), 0);
        cr_assert_str_eq(l[0], "/etc/microvm/vms");
        cr_assert_str_eq(l[1], "/run/microvm/vms");
        cr_assert_str_eq(l[2], "/usr/lib/microvm/vms");
        cr_assert_null(l[3]);
        strv_free(l);
        unsetenv("MICROVM_HOST_CONFIG");
        cr_assert_str_eq(host_config_path(), "/etc/microvm/microvm.conf");
}

Test(config_files, refuses_configs_others_can_write) {
        char p[512], *d;
        size_t n;
        if (geteuid() != 0)
                cr_skip_test("ownership rules apply when running as root");
        write_file(etc, "w.conf", VM("w"));
        snprintf(p, sizeof p, "%s/w.conf", etc);
        cr_assert_eq(chmod(p, 0664), 0);
        cr_assert_eq(config_read_file(p, &d, &n), -EACCES); /* the mode, not the owner */
        cr_assert_eq(chmod(p, 0644), 0);
        cr_assert_eq(chown(p, 1000, 0), 0);
        cr_assert_eq(config_read_file(p, &d, &n), -EPERM);
        cr_assert_eq(chown(p, 0, 0), 0);
        cr_assert_eq(config_read_file(p, &d, &n), 0);
        free(d);
        HostConfig *h;
        Problems pr = {};
        VmConfig *c = NULL;
        cr_assert_eq(chmod(p, 0646), 0);
        cr_assert_eq(host_config_load(&h, &pr), 0);
        cr_assert_eq(vm_config_load(h, "w", &c, &pr), -EACCES);
        char *m = problem_format(&pr.items[0]);
        cr_assert(strstr(m, "/w.conf: cannot be used: writable by group or others"), "%s", m);
        free(m);
        problems_done(&pr);
        /* The owner, not the mode (issue 12.8: say which is wrong). */
        cr_assert_eq(chmod(p, 0644), 0);
        cr_assert_eq(chown(p, 1000, 0), 0);
        pr = (Problems) {};
        cr_assert_eq(vm_config_load(h, "w", &c, &pr), -EPERM);
        m = problem_format(&pr.items[0]);
        cr_assert(strstr(m, "/w.conf: cannot be used: not owned by root"), "%s", m);
        cr_assert_null(strstr(m, "writable"), "%s", m);
        free(m);
        problems_done(&pr);
        host_config_free(h);
}
