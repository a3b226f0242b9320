"""``unknown_role_variables``: catch a misspelled role variable, which Ansible ignores silently.

    {{ hostvars[inventory_hostname] | unknown_role_variables('homelab_server', role_path) }}

is "" when every variable named ``homelab_server_*`` is one the role's
meta/argument_specs.yml documents, and otherwise one sentence naming the first unknown one
and the nearest known name.
"""

import difflib
import os

import yaml


def unknown_role_variables(variables, role, role_path):
    spec_file = os.path.join(role_path, "meta", "argument_specs.yml")
    with open(spec_file) as spec:
        known = set(yaml.safe_load(spec)["argument_specs"]["main"]["options"])
    prefix = role + "_"
    unknown = sorted(name for name in variables if name.startswith(prefix) and name not in known)
    if not unknown:
        return ""
    nearest = difflib.get_close_matches(unknown[0], sorted(known), n=1)
    hint = "; did you mean %s?" % nearest[0] if nearest else ""
    where = "roles/%s/meta/argument_specs.yml" % role
    return "%s is not a variable of the %s role%s (its variables are in %s)" % (
        unknown[0],
        role,
        hint,
        where,
    )


class FilterModule:
    def filters(self):
        return {"unknown_role_variables": unknown_role_variables}
