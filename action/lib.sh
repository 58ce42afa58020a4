# shellcheck shell=bash
# Shared by action/install.sh and action/run.sh (sourced, never run on its own).

# Prints "$2…" as an `::error::` annotation (%, CR and LF escaped as the runner expects) and
# exits with code $1.
fail_with() {
  local code=$1
  shift
  local msg="$*"
  msg="${msg//'%'/'%25'}"
  msg="${msg//$'\r'/'%0D'}"
  msg="${msg//$'\n'/'%0A'}"
  echo "::error title=agentctl action::${msg}" >&2
  exit "$code"
}
