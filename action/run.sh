#!/usr/bin/env bash
# Runs the installed agentctl with the action's inputs. Run by action.yml's "run" step; every input
# arrives in the environment, never as code:
#   AGENTCTL_BIN              the binary (the install step's `path` output)
#   AGENTCTL_INPUT_COMMAND    `command`: review, fix, route, cost, token-refresh, config, or
#                             install (install only: later `run:` steps use the `agentctl-path` output)
#   AGENTCTL_INPUT_ARGS       `args`: extra arguments, split on whitespace (see below)
#   AGENTCTL_CONFIG, AGENTCTL_FAIL_ON, GITHUB_TOKEN and the provider keys are read by agentctl itself.
#
# `args` never reaches a shell as code: it is split into words on spaces, tabs and newlines with
# `read -ra` — no quotes, no `$`/backtick expansion, no globbing, no redirection. A word therefore
# cannot hold a space: put such values in the config file or an `env:` variable instead.
# The exit code is agentctl's own (README, "Exit codes").
set -euo pipefail

# shellcheck source=action/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# A usage error (bad input) as an annotation; exit 2.
fail() { fail_with 2 "$@"; }

bin="${AGENTCTL_BIN:-}"
[[ -n "$bin" && -x "$bin" ]] || fail "no agentctl binary at '${bin}' (the install step did not run?)"

command="${AGENTCTL_INPUT_COMMAND:-review}"
case "$command" in
  review | fix | route | cost | token-refresh | config) ;;
  install)
    echo "agentctl installed at ${bin}; nothing run (command: install)" >&2
    exit 0
    ;;
  *) fail "unknown command '${command}': expected review, fix, route, cost, token-refresh, config or install" ;;
esac

args=()
if [[ -n "${AGENTCTL_INPUT_ARGS:-}" ]]; then
  # -d '' reads every line (not only the first); read exits 1 at the end of input, which is fine.
  IFS=$' \t\n' read -r -d '' -a args <<<"$AGENTCTL_INPUT_ARGS" || true
fi

# An input left empty sets its variable to the empty string; agentctl should see it unset.
for name in AGENTCTL_CONFIG AGENTCTL_FAIL_ON GITHUB_TOKEN OPENAI_API_KEY ANTHROPIC_API_KEY AZURE_OPENAI_API_KEY GEMINI_API_KEY; do
  if [[ -z "${!name:-}" ]]; then
    unset "$name"
  fi
done

# `${args[@]+...}`: an empty array under `set -u` on the bash 3.2 of macOS.
exec "$bin" "$command" ${args[@]+"${args[@]}"}
