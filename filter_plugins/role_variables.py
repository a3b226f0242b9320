"""``unknown_role_variables``: catch a misspelled role variable, which Ansible ignores silently.

    {{ hostvars[inventory_hostname] | unknown_role_variables('homelab_server', role_path) }}

is "" when every variable named ``homelab_server_*`` is one the role's
meta/argument_specs.yml documents, and otherwise one sentence naming the first unknown one
and the nearest known name. Names with a double underscore (``signaling_aws__caller``) are
a role's own facts and registered results, never set from outside, so they are not checked.
"""

import difflib
import os

import yaml


def unknown_role_variables(variables, role, role_path):
    spec_file = os.path.join(role_path, "meta", "argument_specs.yml")
    with open(spec_file) as spec:
        entry_points = yaml.safe_load(spec)["argument_specs"].values()
    # Any entry point's variable is known: tasks_from=update_code takes some main does not.
    known = {name for entry in entry_points for name in entry.get("options", {})}
    prefix = role + "_"
    private = prefix + "_"
    unknown = sorted(
        name
        for name in variables
        if name.startswith(prefix) and not name.startswith(private) and name not in known
    )
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
