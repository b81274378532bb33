#!/usr/bin/python
# SPDX-License-Identifier: LGPL-2.1-or-later
from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
---
module: microvm_sync
short_description: VMs on this host that the inventory does not know
description:
  - Lists the VMs of this host (every config in the search path and every
    loaded C(microvm@) unit, as C(microvmctl list) sees them) that are not
    in C(vms).
  - Without C(prune) they are only reported (C(unmanaged)); nothing changes.
  - With C(prune=true) each one is stopped (through systemd), its config in
    C(/etc/microvm/vms) removed and (C(remove_state)) its state removed,
    then C(systemctl daemon-reload) runs once. VMs whose config lies
    elsewhere (C(/run/microvm/vms), C(/usr/lib/microvm/vms)) are stopped and
    reported in C(not_removable), never deleted.
  - Supports check mode.
version_added: "0.1.0"
author: microvm developers
options:
  vms:
    description: The ids of the VMs this host should have (e.g. from the inventory).
    type: list
    elements: str
    required: true
  prune:
    description: Stop and remove the VMs not in C(vms).
    type: bool
    default: false
  remove_state:
    description: With C(prune), also remove each pruned VM's C(state_dir/ID) and uid index entry.
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Remove every VM of this host that the inventory does not name
  microvm.host.microvm_sync:
    vms: "{{ microvm_vms | map(attribute='id') | list }}"
    prune: true
"""

RETURN = r"""
unmanaged: {description: VMs on the host not in vms., type: list, elements: str, returned: always}
removed: {description: VMs pruned (stopped, config removed)., type: list, elements: str, returned: always}
not_removable: {description: Pruned VMs whose config is outside /etc/microvm/vms (stopped only)., type: list, elements: str, returned: always}
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.microvm.host.plugins.module_utils.microvm import (
    VMS_DIR, daemon_reload, is_active, remove_vm_state, reset_failed, vm_action, vm_list)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            vms=dict(type="list", elements="str", required=True),
            prune=dict(type="bool", default=False),
            remove_state=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    wanted = set(module.params["vms"])
    prune, check = module.params["prune"], module.check_mode
    have = vm_list(module)
    unmanaged = sorted(i for i in have if i not in wanted)
    removed, not_removable, messages = [], [], []
    reload_needed = False
    if prune:
        for vm_id in unmanaged:
            vm = have[vm_id]
            if is_active(vm):
                messages.append("%s: stopped" % vm_id)
                if not check:
                    vm_action(module, "stop", vm_id)
            path = os.path.join(VMS_DIR, vm_id + ".conf")
            if os.path.lexists(path):
                if not check:
                    os.unlink(path)
                reload_needed = True
            elif vm.get("config_path"):
                not_removable.append(vm_id)
                continue
            if module.params["remove_state"]:
                remove_vm_state(module, vm_id, check)
            removed.append(vm_id)
        if reload_needed and not check:
            daemon_reload(module)
            for vm_id in removed:
                reset_failed(module, vm_id)
    if unmanaged and not prune:
        module.warn("VMs not in the inventory (prune: true removes them): %s" % ", ".join(unmanaged))
    changed = bool(removed or messages)
    module.exit_json(changed=changed, unmanaged=unmanaged, removed=removed, not_removable=not_removable,
                     msg="; ".join(messages) if messages else
                     ("%d VM(s) not in the inventory: %s" % (len(unmanaged), ", ".join(unmanaged))
                      if unmanaged and not prune else "nothing to prune"))


if __name__ == "__main__":
    main()
