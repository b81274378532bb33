# SPDX-License-Identifier: LGPL-2.1-or-later
# Shared code of the microvm.host modules: the host's view of its VMs
# (microvmctl), systemd calls, and removing a VM's config and state.
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import re
import shutil

HOST_CONFIG = "/etc/microvm/microvm.conf"
VMS_DIR = "/etc/microvm/vms"
DEFAULT_STATE_DIR = "/var/lib/microvm"
# microvm.conf(5), VM IDS: a valid jailer id, unit instance and file name.
ID_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$")


def unit_of(vm_id):
    return "microvm@%s.service" % vm_id


def microvmctl(module):
    return module.get_bin_path("microvmctl", required=True)


def last_error_line(out, err):
    """The last line microvmctl printed (stderr first): its error."""
    for text in (err, out):
        lines = [l for l in (text or "").splitlines() if l.strip()]
        if lines:
            return lines[-1]
    return "no output"


def job_error(out, err):
    """Why a start/stop/restart failed, as microvmctl said it: the error
    line of our tool from the unit's journal ("VM web1: drive root: ...
    (microvm-stage)") and the job's result, one message."""
    lines = [l.strip() for l in (err or "").splitlines() if l.strip()]
    if not lines:
        return last_error_line(out, err)
    return "; ".join(l[len("microvmctl: "):] if l.startswith("microvmctl: ") else l for l in lines)


def vm_list(module):
    """microvmctl --json list: every VM of this host (configs and loaded
    units), as a dict id -> object."""
    rc, out, err = module.run_command([microvmctl(module), "--json", "list"])
    if rc != 0:
        module.fail_json(msg="microvmctl --json list failed: %s" % last_error_line(out, err), rc=rc)
    try:
        return dict((o["id"], o) for o in json.loads(out))
    except (ValueError, KeyError, TypeError) as e:
        module.fail_json(msg="microvmctl --json list printed no usable JSON: %s" % e)


def is_active(vm):
    return bool(vm) and vm.get("active_state") in ("active", "activating", "reloading", "deactivating")


def vm_action(module, verb, vm_id):
    """microvmctl start|stop|restart ID: through systemd's D-Bus API,
    waiting for the job; fails the task with the tool's error line."""
    rc, out, err = module.run_command([microvmctl(module), verb, vm_id])
    if rc != 0:
        module.fail_json(msg=job_error(out, err), rc=rc, id=vm_id, action=verb,
                         stdout=out, stderr=err)


def daemon_reload(module):
    rc, out, err = module.run_command(["systemctl", "daemon-reload"])
    if rc != 0:
        module.fail_json(msg="systemctl daemon-reload failed: %s" % last_error_line(out, err), rc=rc)


def reset_failed(module, vm_id):
    # a failed unit stays loaded (and listed) until reset; not an error
    # when there is nothing to reset
    module.run_command(["systemctl", "reset-failed", unit_of(vm_id)])


def host_state_dir(path=HOST_CONFIG):
    """[host] state_dir of the host config (the strict INI subset of
    microvm.conf(5)), or the default."""
    section = None
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                s = line.strip()
                if not s or s[0] in "#;":
                    continue
                if s.startswith("["):
                    section = s.strip("[]").strip()
                    continue
                if section != "host" or "=" not in s:
                    continue
                key, value = s.split("=", 1)
                if key.strip() != "state_dir":
                    continue
                value = re.split(r"\s;", value, 1)[0].strip()
                if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                    value = value[1:-1]
                return value
    except FileNotFoundError:
        pass
    return DEFAULT_STATE_DIR


def remove_vm_state(module, vm_id, check_mode):
    """Removes state_dir/ID (the VM's disk copies and uid record) and the
    uid index entries naming it. Refuses (fails) when the state records a
    thin volume: deleting the record would leak the volume in the pool.
    Returns True when something was (or would be) removed."""
    state_dir = host_state_dir()
    vm_dir = os.path.join(state_dir, vm_id)
    entries = []
    uids = os.path.join(state_dir, ".uids")
    if os.path.isdir(uids):
        for name in os.listdir(uids):
            p = os.path.join(uids, name)
            try:
                if os.path.islink(p) and os.readlink(p) == vm_id:
                    entries.append(p)
            except OSError:
                pass
    exists = os.path.lexists(vm_dir)
    if exists and not os.path.islink(vm_dir) and os.path.isdir(vm_dir):
        thin = [n for n in os.listdir(vm_dir) if n.startswith("thin-")]
        if thin:
            module.fail_json(msg="VM %s: %s records thin volume(s) %s in the pool; removing the record would "
                                 "leak them: delete the volumes first, or set remove_state: false"
                                 % (vm_id, vm_dir, ", ".join(sorted(thin))))
    if not exists and not entries:
        return False
    if check_mode:
        return True
    if exists:
        if os.path.islink(vm_dir) or not os.path.isdir(vm_dir):
            os.unlink(vm_dir)
        else:
            # never follows symlinks: a link below is removed, not its target
            shutil.rmtree(vm_dir)
    for p in entries:
        os.unlink(p)
    return True
