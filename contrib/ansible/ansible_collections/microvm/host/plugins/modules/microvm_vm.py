#!/usr/bin/python
# SPDX-License-Identifier: LGPL-2.1-or-later
from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
---
module: microvm_vm
short_description: A Firecracker microVM run by microvm on this host
description:
  - Writes C(/etc/microvm/vms/ID.conf) (see microvm.conf(5)) from the task's
    parameters, which map one to one to the file's keys, and brings the VM's
    unit C(microvm@ID.service) into the wanted state.
  - The new file is checked with C(microvmctl validate) before it replaces
    the old one (written to a directory of its own next to the configs,
    then renamed over the old file), so a config that does not validate
    never lands, and the old file and the running VM stay as they were.
  - C(systemctl daemon-reload) runs only when the file changed. Starts,
    stops and restarts go through systemd (C(microvmctl start|stop|restart),
    which wait for the job); a failed start fails the task with the tool's
    error line.
  - With C(state=started), a running VM whose config changed (in this run
    or since it started) is restarted.
  - Supports check mode; with C(--diff) the config's diff is shown.
version_added: "0.1.0"
author: microvm developers
requirements:
  - microvm installed on the host (C(microvmctl) in PATH), systemd
options:
  id:
    description: The VM id (1-64 of a-z, 0-9 and -, not starting or ending with -).
    type: str
    required: true
    aliases: [name]
  state:
    description:
      - C(present) the config only; C(started), C(stopped) also the unit's
        state; C(restarted) always restarts; C(absent) stops the VM, removes
        its config and (C(remove_state)) its state.
    type: str
    choices: [present, absent, started, stopped, restarted]
    default: started
  remove_state:
    description:
      - With C(state=absent), also remove C(state_dir/ID) (the VM's disk
        copies and uid record) and its uid index entry. A VM with thin
        volumes is refused (their records would be lost).
    type: bool
    default: true
  description: {description: "[vm] description=", type: str}
  vcpus: {description: "[vm] vcpus=", type: raw}
  memory: {description: "[vm] memory= (e.g. 512M, 1G)", type: raw}
  kernel: {description: "[vm] kernel= (required unless state=absent)", type: str}
  initrd: {description: "[vm] initrd=", type: str}
  cmdline: {description: "[vm] cmdline=", type: str}
  autostart: {description: "[vm] autostart=", type: bool}
  restart: {description: "[vm] restart=", type: str}
  stop_timeout: {description: "[vm] stop_timeout=", type: raw}
  uid: {description: "[vm] uid=", type: raw}
  cpu_weight: {description: "[vm] cpu_weight=", type: raw}
  cpu_quota: {description: "[vm] cpu_quota=", type: raw}
  allowed_cpus: {description: "[vm] allowed_cpus=", type: raw}
  numa_node: {description: "[vm] numa_node=", type: raw}
  ephemeral: {description: "[vm] ephemeral=", type: bool}
  on_host_shutdown: {description: "[vm] on_host_shutdown= (stop or suspend)", type: str}
  firecracker_log_level: {description: "[vm] firecracker_log_level= (error, warning, info or debug)", type: str}
  drives:
    description:
      - One C([drive.NAME]) section per entry, NAME to its keys (mode, path,
        root, partuuid, read_only, size, persistent, cache, io_engine).
    type: dict
    default: {}
  nics:
    description:
      - One C([net.NAME]) section per entry, in order, NAME to its keys
        (bridge, mac, tap, mtu, address, gateway).
    type: dict
    default: {}
  vsock:
    description:
      - A C([vsock]) section. C(true) or a mapping of its keys (cid).
    type: raw
"""

EXAMPLES = r"""
- name: A CI runner that starts from its template image every time
  microvm.host.microvm_vm:
    id: ci-runner-1
    vcpus: 2
    memory: 2G
    kernel: /var/lib/microvm/images/vmlinux
    ephemeral: true
    autostart: true
    drives:
      root: {path: /var/lib/microvm/images/runner.ext4, root: true}
    state: started
"""

RETURN = r"""
config_path: {description: The VM's config file., type: str, returned: always}
active_state: {description: The unit's ActiveState after the task., type: str, returned: always}
actions: {description: What was done (written, daemon-reload, start, restart, stop, removed, state removed)., type: list, elements: str, returned: always}
"""

import os
import shutil
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.microvm.host.plugins.module_utils.microvm import (
    ID_RE, VMS_DIR, daemon_reload, is_active, last_error_line, microvmctl, remove_vm_state,
    reset_failed, vm_action, vm_list)

# [vm] keys in microvm.conf(5)'s order.
VM_KEYS = ["description", "vcpus", "memory", "kernel", "initrd", "cmdline", "autostart", "restart",
           "stop_timeout", "uid", "cpu_weight", "cpu_quota", "allowed_cpus", "numa_node", "ephemeral",
           "on_host_shutdown", "firecracker_log_level"]
SECTION_NAME_RE = ID_RE  # checked again by validate: a-z0-9, 1-16


def ini_value(module, where, value):
    """One value as microvm.conf writes it: booleans yes/no, numbers in
    decimal, strings quoted when a comment character would end them."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return str(value)
    if not isinstance(value, str):
        module.fail_json(msg="%s: %r is not a string, number or boolean" % (where, value))
    if "\n" in value or "\r" in value:
        module.fail_json(msg="%s: a value may not contain a line break" % where)
    if "#" in value or ";" in value or value != value.strip() or value == "":
        quote = "'" if '"' in value else '"'
        return quote + value + quote
    return value


def render(module, p):
    lines = ["# Managed by Ansible (microvm.host.microvm_vm): changes made here are overwritten.",
             "# See microvm.conf(5).", "[vm]"]
    for k in VM_KEYS:
        if p[k] is not None:
            lines.append("%s = %s" % (k, ini_value(module, "[vm] %s" % k, p[k])))

    def sections(kind, entries):
        if not isinstance(entries, dict):
            module.fail_json(msg="%s: a mapping of NAME to its keys" % kind)
        for name, keys in entries.items():
            if not isinstance(name, str) or "]" in name or "\n" in name:
                module.fail_json(msg="%s: %r is not a section name" % (kind, name))
            lines.append("")
            lines.append("[%s.%s]" % (kind, name))
            for k, v in (keys or {}).items():
                if not isinstance(k, str) or not k.replace("_", "").isalnum():
                    module.fail_json(msg="[%s.%s]: %r is not a key" % (kind, name, k))
                lines.append("%s = %s" % (k, ini_value(module, "[%s.%s] %s" % (kind, name, k), v)))

    sections("drive", p["drives"])
    sections("net", p["nics"])
    vsock = p["vsock"]
    if vsock is not None and vsock is not False:
        lines.append("")
        lines.append("[vsock]")
        if isinstance(vsock, dict):
            for k, v in vsock.items():
                lines.append("%s = %s" % (k, ini_value(module, "[vsock] %s" % k, v)))
        elif vsock is not True:
            module.fail_json(msg="vsock: true or a mapping of its keys")
    return "\n".join(lines) + "\n"


def read(path):
    try:
        if os.path.islink(path):
            return "# (a symlink to %s)\n" % os.readlink(path)
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return None


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def install_validated(module, vm_id, path, content):
    """Writes content to ID.conf in a new directory beside the configs (same
    file system, invisible to the generator, the VM id from the file name as
    validate wants it), validates it, and renames it over path only when
    validate passes."""
    vms_dir = os.path.dirname(path)
    parent = os.path.dirname(vms_dir)
    os.makedirs(vms_dir, mode=0o755, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".ansible-microvm-", dir=parent)
    try:
        new = os.path.join(staging, vm_id + ".conf")
        fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(new, 0o644)
        rc, out, err = module.run_command([microvmctl(module), "validate", new])
        if rc != 0:
            problems = [l.replace(new, path) for l in (err or out).splitlines() if l.strip()]
            module.fail_json(msg="VM %s: the new config does not validate, %s was left as it was: %s"
                                 % (vm_id, path, "; ".join(problems) or last_error_line(out, err)),
                             problems=problems, rc=rc)
        os.rename(new, path)
        fsync_dir(vms_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            id=dict(type="str", required=True, aliases=["name"]),
            state=dict(type="str", default="started",
                       choices=["present", "absent", "started", "stopped", "restarted"]),
            remove_state=dict(type="bool", default=True),
            description=dict(type="str"), vcpus=dict(type="raw"), memory=dict(type="raw"),
            kernel=dict(type="str"), initrd=dict(type="str"), cmdline=dict(type="str"),
            autostart=dict(type="bool"), restart=dict(type="str"), stop_timeout=dict(type="raw"),
            uid=dict(type="raw"), cpu_weight=dict(type="raw"), cpu_quota=dict(type="raw"),
            allowed_cpus=dict(type="raw"), numa_node=dict(type="raw"), ephemeral=dict(type="bool"),
            on_host_shutdown=dict(type="str"), firecracker_log_level=dict(type="str"),
            drives=dict(type="dict", default={}), nics=dict(type="dict", default={}),
            vsock=dict(type="raw"),
        ),
        required_if=[("state", "present", ["kernel"]), ("state", "started", ["kernel"]),
                     ("state", "stopped", ["kernel"]), ("state", "restarted", ["kernel"])],
        supports_check_mode=True,
    )
    p = module.params
    vm_id, state = p["id"], p["state"]
    if not ID_RE.match(vm_id):
        module.fail_json(msg="%r is not a VM id (1-64 of a-z, 0-9 and -, not starting or ending with -)" % vm_id)
    path = os.path.join(VMS_DIR, vm_id + ".conf")
    check = module.check_mode
    actions = []
    before = read(path)
    vm = vm_list(module).get(vm_id)
    active = is_active(vm)

    if state == "absent":
        after = None
        if active:
            actions.append("stop")
            if not check:
                vm_action(module, "stop", vm_id)
        if before is not None:
            actions.append("removed")
            if not check:
                os.unlink(path)
                fsync_dir(VMS_DIR)
        if p["remove_state"] and remove_vm_state(module, vm_id, check):
            actions.append("state removed")
        if before is not None:
            actions.append("daemon-reload")
            if not check:
                daemon_reload(module)
                reset_failed(module, vm_id)
    else:
        after = render(module, p)
        written = after != before
        if written:
            actions.append("written")
            if not check:
                install_validated(module, vm_id, path, after)
                actions.append("daemon-reload")
                daemon_reload(module)
            else:
                actions.append("daemon-reload")
        config_changed = written or bool(vm and vm.get("config_changed"))
        if state == "started":
            if not active:
                actions.append("start")
                if not check:
                    vm_action(module, "start", vm_id)
            elif config_changed:
                actions.append("restart")
                if not check:
                    vm_action(module, "restart", vm_id)
        elif state == "restarted":
            actions.append("restart" if active else "start")
            if not check:
                vm_action(module, actions[-1], vm_id)
        elif state == "stopped" and active:
            actions.append("stop")
            if not check:
                vm_action(module, "stop", vm_id)

    result = dict(changed=bool(actions), actions=actions, config_path=path, id=vm_id)
    if module._diff:
        result["diff"] = dict(before=before or "", after=after or "",
                              before_header=path if before is not None else "%s (absent)" % path,
                              after_header=path if after is not None else "%s (absent)" % path)
    if check or not actions:
        result["active_state"] = vm.get("active_state") if vm else "inactive"
    else:
        now = vm_list(module).get(vm_id)
        result["active_state"] = now.get("active_state") if now else "inactive"
    module.exit_json(**result)


if __name__ == "__main__":
    main()
